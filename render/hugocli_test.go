package render

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notesctl/notesctl/internal/sitegen"
	"github.com/notesctl/notesctl/internal/sitegit"
	"github.com/notesctl/notesctl/internal/testenv"
)

// TestStaticFilesPublished: the hugo CLI copies static/ itself, outside
// the library's build; the embedded render must do the same.
func TestStaticFilesPublished(t *testing.T) {
	site := mustRender(t, newSiteRepo(t, "testdata/mini", nil))
	got, err := fs.ReadFile(site.Files, "css/mini.css")
	if err != nil || !strings.Contains(string(got), "font-family") {
		t.Fatalf("static file not published: %v", err)
	}
}

// TestMatchesHugoCLI renders the fixture with the embedded Hugo and with
// the hugo CLI at the same version, and compares the published trees file
// for file.
func TestMatchesHugoCLI(t *testing.T) {
	hugo := hugoCLI(t)
	dir := t.TempDir()
	if err := sitegen.CopyFixture(dir); err != nil {
		t.Fatal(err)
	}
	ours := map[string][]byte{}
	site := mustRender(t, newSiteRepo(t, dir, nil))
	fs.WalkDir(site.Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			ours[p], _ = fs.ReadFile(site.Files, p)
		}
		return err
	})

	public := t.TempDir()
	cmd := exec.Command(hugo, "--source", dir, "--destination", public, "--quiet", "--panicOnWarning", "--environment", "production")
	cmd.Env = append(os.Environ(), "HUGO_CACHEDIR="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hugo: %v\n%s", err, out)
	}
	theirs := map[string][]byte{}
	filepath.WalkDir(public, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(public, p)
			theirs[filepath.ToSlash(rel)], _ = os.ReadFile(p)
		}
		return err
	})
	for p, b := range theirs {
		if o, ok := ours[p]; !ok {
			t.Errorf("hugo published %s, the embedded render did not", p)
		} else if !bytes.Equal(o, b) {
			t.Errorf("%s differs from hugo's", p)
		}
	}
	for p := range ours {
		if _, ok := theirs[p]; !ok {
			t.Errorf("the embedded render published %s, hugo did not", p)
		}
	}
	if len(theirs) < 50 {
		t.Errorf("hugo published only %d files", len(theirs))
	}
}

// TestHugoBuildLockIsNotDirt: every hugo run (hugo, hugo server) leaves an
// untracked .hugo_build.lock in the site; it is never part of the output,
// so it must not make the tree dirty. The lock here is the hugo CLI's own.
func TestHugoBuildLockIsNotDirt(t *testing.T) {
	hugo := hugoCLI(t)
	for _, tc := range []struct {
		name    string
		siteDir string // the Hugo site inside the repository
		extra   string // an untracked file written besides the lock, "" for none
		dirty   string // the path the dirty error must name, "" for clean
	}{
		{name: "site at the repository root", siteDir: "."},
		{name: "site in a folder", siteDir: "notes"},
		{name: "another untracked file still counts", siteDir: ".", extra: "content/day1/new.md", dirty: "content/day1/new.md"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := t.TempDir()
			site := filepath.Join(repo, tc.siteDir)
			if err := os.CopyFS(site, os.DirFS("testdata/mini")); err != nil {
				t.Fatal(err)
			}
			if _, err := sitegit.Init(repo); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(hugo, "--source", site, "--destination", t.TempDir(), "--quiet")
			cmd.Env = append(os.Environ(), "HUGO_CACHEDIR="+t.TempDir())
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("hugo: %v\n%s", err, out)
			}
			if _, err := os.Stat(filepath.Join(site, ".hugo_build.lock")); err != nil {
				t.Fatalf("hugo left no lock file: %v", err)
			}
			if tc.extra != "" {
				if err := os.WriteFile(filepath.Join(site, tc.extra), []byte("---\ntitle: New\n---\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for _, open := range []struct {
				name string
				fn   func(SourceOptions) (*Source, error)
			}{{"ReadSource", ReadSource}, {"OpenSource", OpenSource}} {
				src, err := open.fn(SourceOptions{SiteDir: site})
				if tc.dirty == "" {
					if err != nil || src.Dirty {
						t.Errorf("%s after a hugo run: err = %v", open.name, err)
					}
					continue
				}
				var dirty *DirtyError
				if !errors.As(err, &dirty) || !strings.Contains(err.Error(), tc.dirty) {
					t.Errorf("%s: err = %v, want the tree dirty with %s", open.name, err, tc.dirty)
				}
			}
		})
	}
}

// hugoCLI returns the hugo CLI at the pinned version, or ends the test by
// testenv.Missing.
func hugoCLI(t *testing.T) string {
	t.Helper()
	hugo, err := exec.LookPath("hugo")
	if err == nil {
		out, _ := exec.Command(hugo, "version").Output()
		if !strings.Contains(string(out), "v"+HugoVersion()) {
			err = os.ErrNotExist
		}
	}
	if err != nil {
		testenv.Missing(t, "hugo v%s not on PATH (go install github.com/gohugoio/hugo@v%s)", HugoVersion(), HugoVersion())
	}
	return hugo
}
