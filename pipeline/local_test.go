package pipeline

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/render"
)

// TestExcludeStateDir: the state folder is excluded where git reads it
// (`git rev-parse --git-path info/exclude`), whether .git is a folder, a
// linked worktree's .git file (whose exclude lives in the common dir) or a
// submodule's .git file with a relative gitdir; git then reports the
// state folder as ignored.
func TestExcludeStateDir(t *testing.T) {
	gitserver.RequireGit(t)
	newRepo := func(t *testing.T, dir string) {
		gitserver.Git(t, dir, "init", "-q", "-b", "main")
		if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("site\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		gitserver.Git(t, dir, "add", "README.md")
		gitserver.Git(t, dir, "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "-m", "init")
	}
	for _, tc := range []struct {
		name string
		// setup returns the site directory and the work tree root.
		setup func(t *testing.T, tmp string) (site, root string)
	}{
		{"plain repository", func(t *testing.T, tmp string) (string, string) {
			dir := filepath.Join(tmp, "site")
			os.Mkdir(dir, 0o755)
			newRepo(t, dir)
			return dir, dir
		}},
		{"site in a subfolder", func(t *testing.T, tmp string) (string, string) {
			dir := filepath.Join(tmp, "repo")
			os.Mkdir(dir, 0o755)
			newRepo(t, dir)
			site := filepath.Join(dir, "docs", "notes")
			if err := os.MkdirAll(site, 0o755); err != nil {
				t.Fatal(err)
			}
			return site, dir
		}},
		{"linked worktree", func(t *testing.T, tmp string) (string, string) {
			main := filepath.Join(tmp, "main")
			os.Mkdir(main, 0o755)
			newRepo(t, main)
			wt := filepath.Join(tmp, "wt")
			gitserver.Git(t, main, "worktree", "add", "-q", "-b", "feature", wt)
			return wt, wt
		}},
		{"submodule-style gitdir file", func(t *testing.T, tmp string) (string, string) {
			super := filepath.Join(tmp, "super")
			sub := filepath.Join(super, "sub")
			modules := filepath.Join(super, ".git", "modules", "sub")
			if err := os.MkdirAll(filepath.Dir(modules), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			gitserver.Git(t, sub, "init", "-q", "-b", "main", "--separate-git-dir", modules)
			// As git submodule writes it: relative to the work tree.
			if err := os.WriteFile(filepath.Join(sub, ".git"), []byte("gitdir: ../.git/modules/sub\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			gitserver.Git(t, modules, "config", "core.worktree", "../../../sub")
			newRepoCommit(t, sub)
			return sub, sub
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			site, root := tc.setup(t, tmp)
			for range 2 { // a second run adds nothing
				if err := ExcludeStateDir(site); err != nil {
					t.Fatalf("ExcludeStateDir: %v", err)
				}
			}
			exclude := gitserver.Git(t, root, "rev-parse", "--path-format=absolute", "--git-path", "info/exclude")
			b, err := os.ReadFile(exclude)
			if err != nil {
				t.Fatalf("git's exclude file %s: %v", exclude, err)
			}
			rel, _ := filepath.Rel(root, site)
			pattern := "/" + filepath.ToSlash(filepath.Join(rel, render.StateDir)) + "/"
			pattern = strings.Replace(pattern, "/./", "/", 1)
			if n := strings.Count(string(b), "\n"+pattern+"\n"); n != 1 {
				t.Errorf("%s holds %q %d times, want once:\n%s", exclude, pattern, n, b)
			}
			state := filepath.Join(site, render.StateDir, "gitops")
			if err := os.MkdirAll(state, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(state, "x"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			if st := gitserver.Git(t, root, "status", "--porcelain"); st != "" {
				t.Errorf("git status shows the state folder: %q", st)
			}
		})
	}
}

func newRepoCommit(t *testing.T, dir string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("sub\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitserver.Git(t, dir, "add", "README.md")
	gitserver.Git(t, dir, "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "-m", "init")
}
