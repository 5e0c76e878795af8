package render

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notesctl/notesctl/internal/sitegen"
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
