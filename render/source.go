package render

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-git/go-billy/v5/osfs"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/spf13/afero"

	"github.com/notesctl/notesctl/internal/redact"
)

// StateDir is notesctl's own folder in a site repository (release --local
// writes its OCI layout and GitOps repository there). It is never part of the
// site and never makes the work tree dirty.
const StateDir = ".notesctl"

// MaxFileSize bounds a single source file. A notes site has no business
// holding files this large, and reading one into memory would hurt.
const MaxFileSize = 256 << 20

// SourceOptions say which commit of which site to read.
type SourceOptions struct {
	// SiteDir is the Hugo site root: the repository root or a folder in it.
	SiteDir string
	// Revision is anything go-git can resolve (HEAD, a branch, a tag, a sha).
	// Empty means HEAD.
	Revision string
	// AllowDirty renders the work tree instead of refusing when it has
	// uncommitted changes. The revision is then marked "<sha>-dirty".
	AllowDirty bool
	// Branch overrides the branch name detected from HEAD (CI checkouts are
	// often detached).
	Branch string
	// SourceDateEpoch, when set, replaces the commit time as the build time.
	SourceDateEpoch *time.Time
	// CheckCleanOnLoad moves the refusal of a dirty work tree (without
	// AllowDirty) from OpenSource to Load. The check is a status walk of
	// the whole work tree, which grows with the site; a release whose
	// commit is deployed already never loads the files, so its decision
	// then costs the same at 60 pages and at 10,000. Uncommitted changes
	// are still never released: Load refuses them before anything is
	// rendered or pushed. With AllowDirty the walk stays in OpenSource,
	// since the tag depends on it.
	CheckCleanOnLoad bool
}

// Source is one site commit, read into memory.
type Source struct {
	// Files holds the site tree, rooted at "/" (the site root).
	Files afero.Fs
	// Commit is the full hex sha of the commit.
	Commit string
	// Branch is the branch the commit was built from ("detached" if unknown).
	Branch string
	// Time is the build timestamp: the committer time, or SOURCE_DATE_EPOCH.
	Time time.Time
	// Dirty is true when the work tree, not the commit, was read.
	Dirty bool
	// RemoteURL is the origin remote with credentials removed, or "".
	RemoteURL string
	// FileCount and Bytes describe what was read.
	FileCount int
	Bytes     int64

	// mem holds the files under siteRoot, where Hugo reads them; Files is
	// a view of it. Render works on mem directly instead of copying.
	mem afero.Fs

	// load reads the files into mem (OpenSource defers it to Load).
	load     func() error
	loadOnce sync.Once
	loadErr  error
}

// Load reads the site's files into Files, once; Render calls it. Sources
// from ReadSource are loaded already.
func (s *Source) Load() error {
	s.loadOnce.Do(func() {
		if s.load != nil {
			s.loadErr = s.load()
		}
	})
	return s.loadErr
}

// Revision is the commit as the image labels carry it.
func (s *Source) Revision() string {
	if s.Dirty {
		return s.Commit + "-dirty"
	}
	return s.Commit
}

// ShortCommit is the 7-character abbreviation used in tags.
func (s *Source) ShortCommit() string {
	if len(s.Commit) < 7 {
		return s.Commit
	}
	return s.Commit[:7]
}

// DirtyError is returned when the work tree has uncommitted changes and
// AllowDirty is not set.
type DirtyError struct {
	Dir   string
	Paths []string
}

func (e *DirtyError) Error() string {
	shown := e.Paths
	more := ""
	if len(shown) > 5 {
		more = fmt.Sprintf(" (and %d more)", len(shown)-5)
		shown = shown[:5]
	}
	return fmt.Sprintf("site repository %s has uncommitted changes: %s%s; commit them, or pass --allow-dirty to render the work tree (the image revision is then marked -dirty)",
		e.Dir, strings.Join(shown, ", "), more)
}

// ReadSource reads the committed tree of the site at the requested revision.
func ReadSource(opts SourceOptions) (*Source, error) {
	src, err := OpenSource(opts)
	if err != nil {
		return nil, err
	}
	if err := src.Load(); err != nil {
		return nil, err
	}
	return src, nil
}

// OpenSource is ReadSource without reading the files: it resolves the
// commit, its branch and time, and refuses a dirty work tree, which is all
// a release needs to tell whether this commit is deployed already. Load
// (or Render) reads the files.
func OpenSource(opts SourceOptions) (*Source, error) {
	siteDir, err := filepath.Abs(opts.SiteDir)
	if err != nil {
		return nil, fmt.Errorf("site directory %q: %w", opts.SiteDir, err)
	}
	if st, err := os.Stat(siteDir); err != nil {
		return nil, fmt.Errorf("site directory %s: %w", siteDir, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("site directory %s is not a directory", siteDir)
	}
	repo, err := git.PlainOpenWithOptions(siteDir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return nil, fmt.Errorf("site directory %s is not in a git repository (notesctl renders commits, not loose files): %w", siteDir, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, fmt.Errorf("site repository %s: %w", siteDir, err)
	}
	repoRoot := wt.Filesystem.Root()
	prefix, err := filepath.Rel(repoRoot, siteDir)
	if err != nil {
		return nil, fmt.Errorf("site directory %s: %w", siteDir, err)
	}
	prefix = filepath.ToSlash(prefix)
	if prefix == "." {
		prefix = ""
	}

	rev := opts.Revision
	if rev == "" {
		rev = "HEAD"
	}
	hash, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return nil, fmt.Errorf("site repository %s: revision %q: %w", repoRoot, rev, err)
	}
	commit, err := repo.CommitObject(*hash)
	if err != nil {
		return nil, fmt.Errorf("site repository %s: commit %s: %w", repoRoot, hash, err)
	}

	mem := afero.NewMemMapFs()
	src := &Source{
		mem:       mem,
		Files:     afero.NewBasePathFs(mem, siteRoot),
		Commit:    hash.String(),
		Branch:    detectBranch(repo, rev, opts.Branch),
		Time:      commit.Committer.When.UTC(),
		RemoteURL: originURL(repo),
	}
	if opts.SourceDateEpoch != nil {
		src.Time = opts.SourceDateEpoch.UTC()
	}

	// Only a HEAD build can be dirty: an explicit older revision is read from
	// the object store whatever the work tree holds.
	status := func() ([]string, error) {
		dirty, err := dirtyPaths(wt, prefix)
		if err != nil {
			return nil, fmt.Errorf("site repository %s: status: %w", repoRoot, err)
		}
		return dirty, nil
	}
	checkClean := func() error {
		dirty, err := status()
		if err == nil && len(dirty) > 0 {
			err = &DirtyError{Dir: siteDir, Paths: dirty}
		}
		return err
	}
	readWorkTree, deferredCheck := false, false
	switch {
	case rev != "HEAD":
	case opts.AllowDirty:
		dirty, err := status()
		if err != nil {
			return nil, err
		}
		readWorkTree = len(dirty) > 0
	case opts.CheckCleanOnLoad:
		deferredCheck = true
	default:
		if err := checkClean(); err != nil {
			return nil, err
		}
	}

	if readWorkTree {
		src.Dirty = true
		src.load = func() error { return copyWorkTree(src, siteDir, repoRoot, prefix) }
		return src, nil
	}
	src.load = func() error {
		if deferredCheck {
			if err := checkClean(); err != nil {
				return err
			}
		}
		tree, err := commit.Tree()
		if err != nil {
			return fmt.Errorf("site repository %s: tree of %s: %w", repoRoot, hash, err)
		}
		return copyTree(src, repo, repoRoot, tree, prefix)
	}
	return src, nil
}

// detectBranch names the branch a build comes from. CI systems check out a
// detached HEAD and say the branch in the environment.
func detectBranch(repo *git.Repository, rev, override string) string {
	if override != "" {
		return override
	}
	if rev != "HEAD" {
		if ref, err := repo.Reference(plumbing.NewBranchReferenceName(rev), true); err == nil && ref != nil {
			return rev
		}
	}
	if head, err := repo.Head(); err == nil && head.Name().IsBranch() {
		if rev == "HEAD" {
			return head.Name().Short()
		}
		// An older commit of the checked-out branch belongs to it.
		if h, err := repo.ResolveRevision(plumbing.Revision(rev)); err == nil {
			if c, err := repo.CommitObject(*h); err == nil {
				if tip, err := repo.CommitObject(head.Hash()); err == nil {
					if ok, err := c.IsAncestor(tip); err == nil && ok {
						return head.Name().Short()
					}
				}
			}
		}
	}
	for _, env := range []string{"GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_BRANCH"} {
		if v := os.Getenv(env); v != "" {
			return v
		}
	}
	return "detached"
}

// originURL returns the origin remote without user info: it ends up in an
// image label, and labels are public.
func originURL(repo *git.Repository) string {
	remote, err := repo.Remote("origin")
	if err != nil || len(remote.Config().URLs) == 0 {
		return ""
	}
	return redact.StripUserinfo(remote.Config().URLs[0])
}

// hugoBuildLock is the lock file every hugo run (hugo, hugo server) leaves
// in the site root. It is never part of the output, so it is no change.
const hugoBuildLock = ".hugo_build.lock"

func dirtyPaths(wt *git.Worktree, prefix string) ([]string, error) {
	status, err := wt.Status()
	if err != nil {
		return nil, err
	}
	var dirty []string
	for p, s := range status {
		if s.Worktree == git.Unmodified && s.Staging == git.Unmodified {
			continue
		}
		if strings.HasPrefix(p, path.Join(prefix, StateDir)+"/") || p == path.Join(prefix, hugoBuildLock) {
			continue
		}
		if s.Worktree == git.Untracked && s.Staging == git.Untracked {
			// Untracked files are not part of any commit; they only count
			// when they sit inside the site, where Hugo would read them.
			if prefix != "" && !strings.HasPrefix(p, prefix+"/") {
				continue
			}
		} else if prefix != "" && !strings.HasPrefix(p, prefix+"/") {
			continue
		}
		dirty = append(dirty, p)
	}
	sort.Strings(dirty)
	return dirty, nil
}

func copyTree(src *Source, repo *git.Repository, repoRoot string, tree *object.Tree, prefix string) error {
	if prefix != "" {
		sub, err := tree.Tree(prefix)
		if err != nil {
			return fmt.Errorf("site directory %s is not in commit %s: %w", prefix, src.ShortCommit(), err)
		}
		tree = sub
	}
	return copyTreeInto(src, repo, repoRoot, tree, prefix, "")
}

func copyTreeInto(src *Source, repo *git.Repository, repoRoot string, tree *object.Tree, repoPrefix, dst string) error {
	walker := object.NewTreeWalker(tree, true, nil)
	defer walker.Close()
	for {
		name, entry, err := walker.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading commit %s: %w", src.ShortCommit(), err)
		}
		rel := path.Join(dst, name)
		switch entry.Mode {
		case filemode.Dir:
			continue
		case filemode.Submodule:
			if err := copySubmodule(src, repoRoot, path.Join(repoPrefix, rel), entry.Hash, rel); err != nil {
				return err
			}
			continue
		case filemode.Symlink:
			target, err := blobBytes(repo, entry.Hash, rel)
			if err != nil {
				return err
			}
			if err := copySymlinkTarget(src, repo, tree, rel, name, string(target)); err != nil {
				return err
			}
			continue
		}
		data, err := blobBytes(repo, entry.Hash, rel)
		if err != nil {
			return err
		}
		if err := src.add(rel, data); err != nil {
			return err
		}
	}
}

// copySymlinkTarget resolves a committed symlink inside the site tree. A
// link that leaves the site would make the image depend on the machine it is
// built on, so it is refused.
func copySymlinkTarget(src *Source, repo *git.Repository, tree *object.Tree, rel, nameInTree, target string) error {
	if path.IsAbs(target) {
		return fmt.Errorf("%s: symlink to %s points outside the site", rel, target)
	}
	resolved := path.Join(path.Dir(nameInTree), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return fmt.Errorf("%s: symlink to %s points outside the site", rel, target)
	}
	f, err := tree.File(resolved)
	if err != nil {
		// Links to directories are rare in sites; say what is unsupported.
		return fmt.Errorf("%s: symlink to %s: target is not a file in the commit", rel, target)
	}
	data, err := blobBytes(repo, f.Hash, rel)
	if err != nil {
		return err
	}
	return src.add(rel, data)
}

func copySubmodule(src *Source, repoRoot, repoPath string, commit plumbing.Hash, dst string) error {
	subDir := filepath.Join(repoRoot, filepath.FromSlash(repoPath))
	sub, err := git.PlainOpen(subDir)
	if err != nil {
		return fmt.Errorf("%s: submodule is not checked out (run git submodule update --init): %w", dst, err)
	}
	c, err := sub.CommitObject(commit)
	if err != nil {
		return fmt.Errorf("%s: submodule commit %s is not available (run git submodule update --init): %w", dst, commit, err)
	}
	tree, err := c.Tree()
	if err != nil {
		return fmt.Errorf("%s: submodule tree: %w", dst, err)
	}
	return copyTreeInto(src, sub, subDir, tree, "", dst)
}

func blobBytes(repo *git.Repository, h plumbing.Hash, rel string) ([]byte, error) {
	blob, err := repo.BlobObject(h)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	if blob.Size > MaxFileSize {
		return nil, fmt.Errorf("%s: file is %d bytes, larger than the %d byte limit", rel, blob.Size, MaxFileSize)
	}
	r, err := blob.Reader()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	return data, nil
}

func copyWorkTree(src *Source, siteDir, repoRoot, prefix string) error {
	var patterns []gitignore.Pattern
	if ps, err := gitignore.ReadPatterns(osfs.New(repoRoot), nil); err == nil {
		patterns = ps
	}
	matcher := gitignore.NewMatcher(patterns)
	return filepath.WalkDir(siteDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(siteDir, p)
		if rel == "." {
			return nil
		}
		relSlash := filepath.ToSlash(rel)
		inRepo := strings.Split(path.Join(prefix, relSlash), "/")
		if d.Name() == ".git" || relSlash == StateDir {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if matcher.Match(inRepo, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if info.Mode()&os.ModeSymlink != 0 {
			target, err := filepath.EvalSymlinks(p)
			if err != nil {
				return fmt.Errorf("%s: %w", relSlash, err)
			}
			if r, err := filepath.Rel(siteDir, target); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
				return fmt.Errorf("%s: symlink points outside the site", relSlash)
			}
			info, err = os.Stat(target)
			if err != nil || info.IsDir() {
				return fmt.Errorf("%s: symlink target is not a file", relSlash)
			}
			p = target
		}
		if !info.Mode().IsRegular() && info.Mode()&os.ModeSymlink == 0 {
			return nil
		}
		if info.Size() > MaxFileSize {
			return fmt.Errorf("%s: file is %d bytes, larger than the %d byte limit", relSlash, info.Size(), MaxFileSize)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("%s: %w", relSlash, err)
		}
		return src.add(relSlash, data)
	})
}

func (s *Source) add(rel string, data []byte) error {
	if err := checkName(rel); err != nil {
		return err
	}
	name := "/" + rel
	if err := s.Files.MkdirAll(path.Dir(name), 0o755); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if err := afero.WriteFile(s.Files, name, data, 0o644); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	s.FileCount++
	s.Bytes += int64(len(data))
	return nil
}

// checkName refuses file names that cannot be served or reproduced: names
// that are not valid UTF-8 differ by platform, and control characters break
// tar listings and logs.
func checkName(rel string) error {
	if !utf8.ValidString(rel) {
		return fmt.Errorf("%s: file name is not valid UTF-8", strconv.Quote(rel))
	}
	for _, r := range rel {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%s: file name holds control characters", strconv.Quote(rel))
		}
	}
	return nil
}
