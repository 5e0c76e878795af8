package gitserver

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSeedBareRepoIsDeterministic(t *testing.T) {
	RequireGit(t)
	seed := t.TempDir()
	if err := os.MkdirAll(filepath.Join(seed, "apps"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(seed, "apps", "a.yaml"), []byte("a: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := SeedBareRepo(t, filepath.Join(t.TempDir(), "a.git"), "main", seed)
	b := SeedBareRepo(t, filepath.Join(t.TempDir(), "b.git"), "main", seed)
	if a != b {
		t.Errorf("same seed gave commits %s and %s", a, b)
	}
	dir := filepath.Join(t.TempDir(), "c.git")
	SeedBareRepo(t, dir, "main", seed)
	if got := Git(t, dir, "symbolic-ref", "HEAD"); got != "refs/heads/main" {
		t.Errorf("HEAD = %s", got)
	}
	if got := Git(t, dir, "log", "-1", "--format=%an <%ae> %aI %cI", "main"); got != "Seed Bot <seed@example.com> 2025-05-07T06:11:56+00:00 2025-05-07T06:11:56+00:00" {
		t.Errorf("seed commit = %q", got)
	}
	if got := Git(t, dir, "show", "main:apps/a.yaml"); got != "a: 1" {
		t.Errorf("seeded file = %q", got)
	}
}

func TestHTTPBackendAuth(t *testing.T) {
	RequireGit(t)
	srv := StartHTTPBackend(t, "alice", "pw-123")
	SeedBareRepo(t, srv.RepoPath("r.git"), "main", "")
	infoRefs := srv.RepoURL("r.git") + "/info/refs?service=git-upload-pack"
	tests := []struct {
		name       string
		user, pass string
		want       int
	}{
		{"no credentials", "", "", http.StatusUnauthorized},
		{"wrong password", "alice", "nope", http.StatusUnauthorized},
		{"right", "alice", "pw-123", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, infoRefs, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.user != "" {
				req.SetBasicAuth(tt.user, tt.pass)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
	// The git CLI can clone and push through it.
	work := filepath.Join(t.TempDir(), "w")
	authURL := strings.Replace(srv.RepoURL("r.git"), "http://", "http://alice:pw-123@", 1)
	Git(t, filepath.Dir(work), "clone", "-q", "-b", "main", authURL, work)
	Git(t, work, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "second")
	Git(t, work, "push", "-q", "origin", "main")
	if got := Git(t, srv.RepoPath("r.git"), "rev-list", "--count", "main"); got != "2" {
		t.Errorf("commits after push = %s, want 2", got)
	}
}

func TestFluxServerSSHHostKey(t *testing.T) {
	RequireGit(t)
	srv := StartFluxServer(t, "u", "p", true)
	if srv.HostKey == nil || !strings.HasPrefix(srv.SSHURL, "ssh://git@127.0.0.1:") {
		t.Fatalf("SSH not started: %+v", srv)
	}
	b, err := os.ReadFile(srv.KnownHostsFile(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "["+strings.Replace(srv.SSHHostPort, ":", "]:", 1)+" ssh-rsa ") {
		t.Errorf("known_hosts line = %q", b)
	}
}
