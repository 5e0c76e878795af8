package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReleaseGitOpsPathInit: a --gitops path with no repository is a
// mistake unless --init (or --local) says to create it: a typo must fail
// naming the path and create nothing.
func TestReleaseGitOpsPathInit(t *testing.T) {
	t.Parallel()
	site := newSite(t)
	tmp := t.TempDir()
	layout := "oci:" + filepath.Join(tmp, "image")
	base := []string{"release", "--image", "notes.local/notes", "--to", layout, "--base", "scratch"}
	empty := filepath.Join(tmp, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing path", filepath.Join(tmp, "gitpos"), "does not exist"},
		{"missing file URL", "file://" + filepath.Join(tmp, "gitpos2"), "does not exist"},
		{"empty folder", empty, "empty folder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := notesctl(t, site, nil, "", append(base, "--gitops", tc.path)...)
			dir := strings.TrimPrefix(tc.path, "file://")
			if r.code == 0 || !strings.Contains(r.stderr, dir) || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "--init") {
				t.Fatalf("exit %d, want a failure naming %s (%q) and --init", r.code, dir, tc.want)
			}
			if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 || err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s was written: %v %v", dir, entries, err)
			}
			if _, err := os.Stat(filepath.Join(tmp, "image")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the image was written before the GitOps path was checked")
			}
		})
	}

	t.Run("init", func(t *testing.T) {
		gitops := filepath.Join(tmp, "gitops")
		mustSucceed(t, notesctl(t, site, nil, "", append(base, "--gitops", gitops, "--init")...))
		if n := gitOut(t, gitops, "rev-list", "--count", "HEAD"); n != "2" {
			t.Errorf("want the scaffold commit and the release commit, got %s commits", n)
		}
		// Once it exists, --init is not needed.
		editPage(t, site, 1)
		mustSucceed(t, notesctl(t, site, nil, "", append(base, "--gitops", gitops)...))
	})

	t.Run("init needs a path", func(t *testing.T) {
		r := notesctl(t, site, nil, "", append(base, "--gitops", "https://git.example.org/acme/gitops.git", "--init")...)
		if r.code == 0 || !strings.Contains(r.stderr, "--init") {
			t.Fatalf("exit %d, want --init refused for a URL", r.code)
		}
	})
}
