package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/notesctl/notesctl/manifests"
	"github.com/notesctl/notesctl/render"
)

func generatorVersion() string { return render.HugoVersion() }

// IsLocalPath reports whether a GitOps location is a path, not a URL.
func IsLocalPath(loc string) bool {
	if strings.HasPrefix(loc, "file://") {
		return true
	}
	if strings.Contains(loc, "://") {
		return false
	}
	// scp-like "git@host:path" has a colon before any slash.
	if i := strings.Index(loc, ":"); i > 0 && !strings.Contains(loc[:i], "/") && len(loc[:i]) > 1 {
		return false
	}
	return true
}

// missingLocal names a GitOps location that is a path with no repository
// yet (missing, or an empty folder): without ReleaseOptions.Scaffold that is
// an error, since a mistyped path must not become a new repository.
func missingLocal(loc string) error {
	if !IsLocalPath(loc) {
		return nil
	}
	dir := strings.TrimPrefix(loc, "file://")
	entries, err := os.ReadDir(dir)
	switch {
	case os.IsNotExist(err):
		return fmt.Errorf("GitOps repository %s does not exist; check the path, or pass --init to create it (scaffolded as by manifests init)", dir)
	case err == nil && len(entries) == 0:
		return fmt.Errorf("GitOps repository %s is an empty folder; pass --init to scaffold it (as by manifests init)", dir)
	}
	return nil
}

// scaffoldLocal creates a local GitOps repository with the scaffolded
// manifests when loc is a path that does not exist yet, or an empty folder.
// A dry run scaffolds into a temporary folder and returns its path instead,
// so that nothing is created. The scaffold is its own commit, so that the
// release commit shows only the image change.
func scaffoldLocal(loc string, so manifests.ScaffoldOptions, image string, dryRun bool) (made bool, url string, cleanup func(), err error) {
	cleanup = func() {}
	if !IsLocalPath(loc) {
		return false, loc, cleanup, nil
	}
	dir := strings.TrimPrefix(loc, "file://")
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return false, loc, cleanup, nil
	} else if err != nil && !os.IsNotExist(err) {
		return false, loc, cleanup, fmt.Errorf("GitOps repository %s: %w", dir, err)
	}
	if dryRun {
		tmp, err := os.MkdirTemp("", "notesctl-gitops-")
		if err != nil {
			return false, loc, cleanup, err
		}
		cleanup = func() { os.RemoveAll(tmp) }
		dir = tmp
	}
	if so.Image == "" {
		so.Image = image
	}
	if so.GitURL == "" {
		// Flux needs a URL it can clone; for a local repository the honest
		// default is its file URL, to be changed when it gets a remote.
		abs, err := filepath.Abs(strings.TrimPrefix(loc, "file://"))
		if err != nil {
			return false, loc, cleanup, err
		}
		so.GitURL = "file://" + filepath.ToSlash(abs)
	}
	if dryRun {
		if err := initScaffold(dir, so); err != nil {
			cleanup()
			return false, loc, func() {}, err
		}
		return true, dir, cleanup, nil
	}
	made, err = initScaffoldAtomic(dir, so)
	if err != nil {
		return false, loc, cleanup, err
	}
	return made, loc, cleanup, nil
}

// initScaffoldAtomic scaffolds into a temporary folder next to dir and
// renames it into place, so that a run killed while scaffolding leaves no
// half-made repository behind (one without the scaffold commit, which the
// next run would take for the GitOps repository and fail on). A killed run
// leaves only the hidden temporary folder. made is false when another run
// created dir meanwhile.
func initScaffoldAtomic(dir string, so manifests.ScaffoldOptions) (made bool, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return false, fmt.Errorf("GitOps repository %s: %w", abs, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(abs), "."+filepath.Base(abs)+".scaffold-")
	if err != nil {
		return false, fmt.Errorf("GitOps repository %s: %w", abs, err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := initScaffold(tmp, so); err != nil {
		return false, err
	}
	// An empty folder may stand where the repository goes.
	if err := os.Remove(abs); err != nil && !os.IsNotExist(err) {
		if entries, rerr := os.ReadDir(abs); rerr == nil && len(entries) > 0 {
			return false, nil
		}
		return false, fmt.Errorf("GitOps repository %s: %w", abs, err)
	}
	if err := os.Rename(tmp, abs); err != nil {
		if entries, rerr := os.ReadDir(abs); rerr == nil && len(entries) > 0 {
			return false, nil
		}
		return false, fmt.Errorf("GitOps repository %s: %w", abs, err)
	}
	return true, nil
}

func initScaffold(dir string, so manifests.ScaffoldOptions) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return fmt.Errorf("GitOps repository %s: %w", abs, err)
	}
	repo, err := git.PlainInitWithOptions(abs, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")},
	})
	if err != nil {
		return fmt.Errorf("GitOps repository %s: git init: %w", abs, err)
	}
	written, err := manifests.Scaffold(osfs.New(abs), "", so)
	if err != nil {
		return err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return err
	}
	for _, f := range written {
		if _, err := wt.Add(filepath.ToSlash(f)); err != nil {
			return fmt.Errorf("GitOps repository %s: git add %s: %w", abs, f, err)
		}
	}
	sig := scaffoldSignature()
	if _, err := wt.Commit("Scaffold notes site manifests (notesctl manifests init)\n", &git.CommitOptions{Author: sig, Committer: sig}); err != nil {
		return fmt.Errorf("GitOps repository %s: commit: %w", abs, err)
	}
	return nil
}

func scaffoldSignature() *object.Signature {
	return &object.Signature{Name: "notesctl", Email: "notesctl@localhost", When: nowFunc()}
}

// ExcludeStateDir adds notesctl's state folder (.notesctl/) to the site
// repository's .git/info/exclude, so that release --local leaves
// `git status` clean without touching any tracked file.
func ExcludeStateDir(siteDir string) error {
	repo, err := git.PlainOpenWithOptions(siteDir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return fmt.Errorf("site directory %s: %w", siteDir, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(siteDir)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(wt.Filesystem.Root(), abs)
	if err != nil {
		return err
	}
	pattern := "/" + filepath.ToSlash(filepath.Join(rel, render.StateDir)) + "/"
	pattern = strings.Replace(pattern, "/./", "/", 1)
	gitDir, err := commonGitDir(wt.Filesystem.Root())
	if err != nil {
		return fmt.Errorf("site directory %s: %w", siteDir, err)
	}
	excludeFile := filepath.Join(gitDir, "info", "exclude")
	data, err := os.ReadFile(excludeFile)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == pattern {
			return nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(excludeFile), 0o755); err != nil {
		return err
	}
	if len(data) > 0 && !strings.HasSuffix(string(data), "\n") {
		data = append(data, '\n')
	}
	data = append(data, []byte("# notesctl release --local state (OCI layout, GitOps repository)\n"+pattern+"\n")...)
	return os.WriteFile(excludeFile, data, 0o644)
}

// commonGitDir is the git directory that holds the info/exclude git reads
// for the work tree at root (`git rev-parse --git-path info/exclude`):
// .git itself, or where a .git file points (a submodule's or a linked
// worktree's git directory), and for a linked worktree the common
// directory its commondir file names, which info/ belongs to.
func commonGitDir(root string) (string, error) {
	dotGit := filepath.Join(root, ".git")
	fi, err := os.Stat(dotGit)
	if err != nil {
		return "", err
	}
	gitDir := dotGit
	if !fi.IsDir() {
		b, err := os.ReadFile(dotGit)
		if err != nil {
			return "", err
		}
		dir, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir:")
		if !ok {
			return "", fmt.Errorf("%s is neither a folder nor a gitdir file", dotGit)
		}
		gitDir = resolveFrom(root, strings.TrimSpace(dir))
	}
	if b, err := os.ReadFile(filepath.Join(gitDir, "commondir")); err == nil {
		gitDir = resolveFrom(gitDir, strings.TrimSpace(string(b)))
	} else if !os.IsNotExist(err) {
		return "", err
	}
	return gitDir, nil
}

// resolveFrom reads p relative to base unless it is absolute.
func resolveFrom(base, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(base, p)
}

// tempDir is a temporary OCI layout for dry runs.
type tempDir struct{ dir string }

func tempLayout() (*tempDir, error) {
	d, err := os.MkdirTemp("", "notesctl-dry-run-")
	if err != nil {
		return nil, err
	}
	return &tempDir{dir: d}, nil
}

func (t *tempDir) cleanup() { os.RemoveAll(t.dir) }
