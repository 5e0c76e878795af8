package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/notesctl/notesctl/render"
)

func TestVersion(t *testing.T) {
	r := notesctl(t, t.TempDir(), nil, "", "version")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "hugo "+render.HugoVersion()+" (embedded") {
		t.Errorf("version output:\n%s", r.stdout)
	}
	r = notesctl(t, t.TempDir(), nil, "", "version", "-o", "json")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, `"hugoPin":"ok"`) {
		t.Errorf("the built binary fails its own Hugo pin check:\n%s", r.stdout)
	}
}

func TestInitThenUpdateDir(t *testing.T) {
	dir := t.TempDir()
	r := notesctl(t, dir, nil, "", "manifests", "init", "--dir", "gitops", "--image", "ghcr.io/acme/notes", "--host", "notes.example.org", "--receiver", "--git-url", "https://git.example.org/gitops.git")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "deployment.yaml") || !strings.Contains(r.stdout, "receiver.yaml") {
		t.Errorf("init output lacks files:\n%s", r.stdout)
	}
	// A second init refuses to overwrite.
	r = notesctl(t, dir, nil, "", "manifests", "init", "--dir", "gitops", "--image", "ghcr.io/acme/notes", "--git-url", "https://git.example.org/gitops.git")
	if r.code == 0 || !strings.Contains(r.stderr, "exist") {
		t.Errorf("second init: exit %d, %s", r.code, r.stderr)
	}

	deployment := findFile(t, filepath.Join(dir, "gitops"), "deployment.yaml")
	before, _ := os.ReadFile(deployment)
	ref := "ghcr.io/acme/notes:main-b9060af-1746598316-hugo0.145.0"

	// --dry-run prints the diff and writes nothing.
	r = notesctl(t, dir, nil, "", "update", "--dir", "gitops", "--image", ref, "--dry-run")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "+") || !strings.Contains(r.stdout, ref) {
		t.Errorf("dry run printed no diff:\n%s", r.stdout)
	}
	if after, _ := os.ReadFile(deployment); string(after) != string(before) {
		t.Error("--dry-run wrote the file")
	}

	r = notesctl(t, dir, nil, "", "update", "--dir", "gitops", "--set", "flux-system:notes="+ref)
	mustSucceed(t, r)
	after, _ := os.ReadFile(deployment)
	changed := 0
	bl, al := strings.Split(string(before), "\n"), strings.Split(string(after), "\n")
	if len(bl) != len(al) {
		t.Fatalf("line count changed %d -> %d", len(bl), len(al))
	}
	for i := range bl {
		if bl[i] != al[i] {
			changed++
			if !strings.Contains(al[i], "image: "+ref+` # {"$imagepolicy": "flux-system:notes"}`) {
				t.Errorf("unexpected change on line %d: %q", i+1, al[i])
			}
		}
	}
	if changed != 1 {
		t.Errorf("%d lines changed, want 1", changed)
	}

	// A policy no marker names is an error that says how many files were scanned.
	r = notesctl(t, dir, nil, "", "update", "--dir", "gitops", "--set", "flux-system:other="+ref)
	if r.code == 0 || !regexp.MustCompile(`flux-system:other.*\d+ .*scanned|scanned.*flux-system:other`).MatchString(r.stderr) {
		t.Errorf("unknown policy: exit %d, %s", r.code, r.stderr)
	}
}

func findFile(t *testing.T, root, name string) string {
	t.Helper()
	var found string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == name && found == "" {
			found = p
		}
		return nil
	})
	if found == "" {
		t.Fatalf("no %s under %s", name, root)
	}
	return found
}

// TestConfigPrecedence: flags > NOTESCTL_* env > .notesctl.yaml > defaults.
// The tag template is the observable: each layer sets a different one.
func TestConfigPrecedence(t *testing.T) {
	site := newSite(t)
	os.WriteFile(filepath.Join(site, ".notesctl.yaml"), []byte("image: file.local/notes\ntag: from-file-{{.ShortSHA}}\nbase: scratch\n"), 0o644)
	gitOut(t, site, "add", ".notesctl.yaml")
	gitOut(t, site, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "config")
	out := filepath.Join(t.TempDir(), "layout")
	build := func(env []string, args ...string) string {
		t.Helper()
		r := notesctl(t, site, env, "", append([]string{"build", "--to", "oci:" + out}, args...)...)
		mustSucceed(t, r)
		return strings.TrimSpace(r.stdout)
	}
	if got := build(nil); !strings.HasPrefix(got, "file.local/notes:from-file-") {
		t.Errorf("config file not applied: %s", got)
	}
	if got := build([]string{"NOTESCTL_TAG=from-env"}); !strings.HasPrefix(got, "file.local/notes:from-env@") {
		t.Errorf("env does not beat the file: %s", got)
	}
	if got := build([]string{"NOTESCTL_TAG=from-env"}, "--tag", "from-flag"); !strings.HasPrefix(got, "file.local/notes:from-flag@") {
		t.Errorf("flag does not beat env: %s", got)
	}

	// Unknown keys and secrets in the file are errors naming file:line.
	os.WriteFile(filepath.Join(site, ".notesctl.yaml"), []byte("image: x.local/notes\nimgae: typo\n"), 0o644)
	r := notesctl(t, site, nil, "", "build", "--to", "oci:"+out, "--allow-dirty")
	if r.code == 0 || !strings.Contains(r.stderr, ".notesctl.yaml:2: unknown key \"imgae\"") {
		t.Errorf("unknown key: exit %d, %s", r.code, r.stderr)
	}
}
