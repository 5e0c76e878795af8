package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notesctl/notesctl/internal/gitserver"
)

// TestManifestsInitGitURL: without --git-url, manifests init takes the
// origin remote of the repository that holds --dir, in the form Flux
// clones; with none, it names the flag to pass and writes nothing.
func TestManifestsInitGitURL(t *testing.T) {
	for _, tc := range []struct {
		name    string
		origin  string // "" for no repository around --dir
		want    string // GitRepository url, or "" for an error
		wantErr string
	}{
		{name: "https origin", origin: "https://github.com/acme/gitops.git", want: "https://github.com/acme/gitops.git"},
		{name: "token in the origin", origin: "https://x-access-token:ghs_s3cret@github.com/acme/gitops.git", want: "https://github.com/acme/gitops.git"},
		{name: "scp-like origin", origin: "git@github.com:acme/gitops.git", want: "ssh://git@github.com/acme/gitops.git"},
		{name: "ssh origin", origin: "ssh://git@gitea.example.org:2222/acme/gitops.git", want: "ssh://git@gitea.example.org:2222/acme/gitops.git"},
		{name: "local path origin", origin: "/srv/git/gitops.git", wantErr: "is not an http(s) or ssh URL Flux can clone"},
		{name: "no repository", wantErr: "not in a git repository"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.origin != "" {
				gitserver.Git(t, dir, "init", "-q", "-b", "main")
				gitserver.Git(t, dir, "remote", "add", "origin", tc.origin)
			}
			r := notesctl(t, dir, nil, "", "manifests", "init", "--dir", "./gitops", "--image", "ghcr.io/acme/notes")
			if tc.wantErr != "" {
				if r.code == 0 || !strings.Contains(r.stderr, "needs --git-url") || !strings.Contains(r.stderr, tc.wantErr) {
					t.Errorf("exit %d, stderr %q; want an error naming --git-url and %q", r.code, r.stderr, tc.wantErr)
				}
				if strings.Contains(r.stderr, "s3cret") {
					t.Errorf("the error shows the token: %s", r.stderr)
				}
				if _, err := os.Stat(filepath.Join(dir, "gitops")); err == nil {
					t.Error("a failed init created --dir")
				}
				return
			}
			mustSucceed(t, r)
			b, err := os.ReadFile(filepath.Join(dir, "gitops/flux/notes/gitrepository.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), "url: "+tc.want+"\n") || strings.Contains(string(b), "s3cret") {
				t.Errorf("GitRepository does not clone %s:\n%s", tc.want, b)
			}
		})
	}
}
