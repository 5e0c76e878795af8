// Package gitserver starts real git servers on loopback for tests: Flux's
// gittestserver (HTTP with basic auth, SSH) and `git http-backend` behind
// net/http/cgi. Every server is stopped through t.Cleanup.
//
// The helpers shell out to the git CLI (Debian package "git"); tests that
// use them are skipped when git is not on PATH.
package gitserver

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fluxcd/pkg/gittestserver"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/notesctl/notesctl/internal/testenv"
)

// Fixed identity and dates for seed commits, so that seeded repositories have
// the same hashes on every run.
const (
	SeedAuthorName  = "Seed Bot"
	SeedAuthorEmail = "seed@example.com"
	SeedDate        = "2025-05-07T06:11:56Z"
	SeedMessage     = "seed"
)

// RequireGit returns the git CLI, or ends the test (testenv.Missing).
func RequireGit(t testing.TB) string {
	t.Helper()
	return testenv.LookPath(t, "git", "apt-get install -y git")
}

// Git runs the git CLI in dir with a hermetic environment (no user or system
// config) and returns trimmed stdout. It fails the test on error.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := GitE(dir, nil, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

// GitE is Git returning the error; extraEnv is appended to the environment.
func GitE(dir string, extraEnv []string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(hermeticEnv(), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s (in %s): %v\n%s", strings.Join(args, " "), dir, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

func hermeticEnv() []string {
	env := []string{
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_TERMINAL_PROMPT=0",
		"LC_ALL=C",
	}
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "GNUPGHOME"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// SeedBareRepo creates a bare repository at dir whose branch holds one commit
// with the files of seedDir (may be "" for an empty tree), authored by
// SeedAuthorName at SeedDate. HEAD points at branch. It returns the commit
// hash.
func SeedBareRepo(t testing.TB, dir, branch, seedDir string) string {
	t.Helper()
	RequireGit(t)
	InitBareRepo(t, dir, branch)
	work := t.TempDir()
	Git(t, work, "init", "-q", "-b", branch)
	if seedDir != "" {
		if err := copyTree(seedDir, work); err != nil {
			t.Fatalf("seed %s from %s: %v", dir, seedDir, err)
		}
	}
	Git(t, work, "add", "-A")
	env := []string{
		"GIT_AUTHOR_NAME=" + SeedAuthorName, "GIT_AUTHOR_EMAIL=" + SeedAuthorEmail, "GIT_AUTHOR_DATE=" + SeedDate,
		"GIT_COMMITTER_NAME=" + SeedAuthorName, "GIT_COMMITTER_EMAIL=" + SeedAuthorEmail, "GIT_COMMITTER_DATE=" + SeedDate,
	}
	if _, err := GitE(work, env, "commit", "-q", "--allow-empty", "--no-gpg-sign", "-m", SeedMessage); err != nil {
		t.Fatal(err)
	}
	Git(t, work, "push", "-q", dir, branch+":refs/heads/"+branch)
	return Git(t, dir, "rev-parse", "refs/heads/"+branch)
}

// InitBareRepo creates an empty bare repository at dir with HEAD at branch.
func InitBareRepo(t testing.TB, dir, branch string) {
	t.Helper()
	RequireGit(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	Git(t, dir, "init", "-q", "--bare", "-b", branch)
}

// CloneWorktree makes a non-bare clone of a seeded bare repository at dir
// with branch checked out, as a user's local GitOps checkout would be.
func CloneWorktree(t testing.TB, bare, dir, branch string) {
	t.Helper()
	Git(t, filepath.Dir(dir), "clone", "-q", "-b", branch, bare, dir)
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// HTTPBackend is `git http-backend` served over HTTP on 127.0.0.1.
type HTTPBackend struct {
	// URL is the server's base URL without credentials.
	URL string
	// Root holds the served bare repositories (GIT_PROJECT_ROOT).
	Root               string
	Username, Password string
}

// RepoURL is the clone URL of the repository name under Root.
func (s *HTTPBackend) RepoURL(name string) string { return s.URL + "/" + name }

// RepoPath is the directory of the repository name under Root.
func (s *HTTPBackend) RepoPath(name string) string { return filepath.Join(s.Root, name) }

// StartHTTPBackend serves the bare repositories under a new temporary root
// with `git http-backend`. With username set, every request needs basic auth
// with those credentials; pushes are allowed for the authenticated user
// (REMOTE_USER), and for everyone when no username is set.
func StartHTTPBackend(t testing.TB, username, password string) *HTTPBackend {
	t.Helper()
	gitPath := RequireGit(t)
	root := t.TempDir()
	s := &HTTPBackend{Root: root, Username: username, Password: password}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		env := []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null"}
		if username != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != username || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
			env = append(env, "REMOTE_USER="+u)
		} else {
			// http-backend only accepts anonymous pushes when told so.
			env = append(env, "REMOTE_USER=anonymous")
		}
		h := &cgi.Handler{
			Path:       gitPath,
			Args:       []string{"http-backend"},
			Env:        env,
			InheritEnv: []string{"HOME", "TMPDIR"},
			Stderr:     testWriter{t},
		}
		h.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("git http-backend: %s", strings.TrimSpace(string(p)))
	return len(p), nil
}

// InstallHook writes an executable hook script (e.g. "pre-receive") into the
// bare repository at repoDir.
func InstallHook(t testing.TB, repoDir, name, script string) {
	t.Helper()
	p := filepath.Join(repoDir, "hooks", name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// FluxServer is Flux's gittestserver with HTTP basic auth and SSH.
type FluxServer struct {
	Server *gittestserver.GitServer
	// Root holds the served bare repositories.
	Root string
	// HTTPURL is the base HTTP URL without credentials.
	HTTPURL string
	// SSHURL is the base SSH URL (ssh://git@127.0.0.1:PORT), empty without SSH.
	SSHURL string
	// HostKey is the server's SSH host key, nil without SSH.
	HostKey ssh.PublicKey
	// SSHHostPort is the "127.0.0.1:PORT" the SSH server listens on.
	SSHHostPort        string
	Username, Password string
}

// StartFluxServer starts gittestserver over HTTP with basic auth (when
// username is set) and, when withSSH, over SSH. The SSH server accepts any
// client key, as gittestserver does; host keys are what the tests check.
func StartFluxServer(t testing.TB, username, password string, withSSH bool) *FluxServer {
	t.Helper()
	RequireGit(t)
	root := t.TempDir()
	srv := gittestserver.NewGitServer(root)
	if username != "" {
		srv.Auth(username, password)
	}
	if err := srv.StartHTTP(); err != nil {
		t.Fatalf("start gittestserver HTTP: %v", err)
	}
	t.Cleanup(srv.StopHTTP)
	fs := &FluxServer{Server: srv, Root: root, HTTPURL: srv.HTTPAddress(), Username: username, Password: password}
	if withSSH {
		keyDir := t.TempDir()
		srv.KeyDir(keyDir)
		if err := srv.ListenSSH(); err != nil {
			t.Fatalf("listen gittestserver SSH: %v", err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			// Serve returns an error once the listener is closed by StopSSH.
			_ = srv.StartSSH()
		}()
		t.Cleanup(func() {
			_ = srv.StopSSH()
			<-done
		})
		fs.SSHURL = srv.SSHAddress()
		fs.SSHHostPort = strings.TrimPrefix(fs.SSHURL, "ssh://git@")
		pub, err := os.ReadFile(filepath.Join(keyDir, "gitkit.rsa.pub"))
		if err != nil {
			t.Fatalf("read gittestserver host key: %v", err)
		}
		key, _, _, _, err := ssh.ParseAuthorizedKey(pub)
		if err != nil {
			t.Fatalf("parse gittestserver host key: %v", err)
		}
		fs.HostKey = key
	}
	return fs
}

// RepoPath is the directory of the repository name under Root.
func (s *FluxServer) RepoPath(name string) string { return filepath.Join(s.Root, name) }

// KnownHostsFile writes a known_hosts file holding key for the SSH server
// (key == nil means the server's real host key) and returns its path.
func (s *FluxServer) KnownHostsFile(t testing.TB, key ssh.PublicKey) string {
	t.Helper()
	if s.HostKey == nil {
		t.Fatal("KnownHostsFile: server started without SSH")
	}
	if key == nil {
		key = s.HostKey
	}
	p := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{s.SSHHostPort}, key) + "\n"
	if err := os.WriteFile(p, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// WriteSSHKey generates an ed25519 key pair, writes the private key in
// OpenSSH format (encrypted when passphrase is set) and returns its path and
// public key.
func WriteSSHKey(t testing.TB, passphrase string) (string, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "notesctl test")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "notesctl test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return p, sshPub
}

// RandomHostKey returns a fresh public key, for known_hosts files that must
// not match the server.
func RandomHostKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	_, pub := WriteSSHKey(t, "")
	return pub
}
