package manifests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/util"

	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/internal/testenv"
)

const (
	gitopsDeployPath = "apps/notes/deployment.yaml"
	gitopsSeedTag    = "main-aaaaaaa-1700000000-hugo0.145.0"
)

var gitopsImageRE = regexp.MustCompile(`(image: ghcr\.io/acme/notes:)(\S+)( # \{"\$imagepolicy": "flux-system:notes"\})`)

// gitopsSeed writes a small GitOps tree and returns its directory.
func gitopsSeed(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		gitopsDeployPath: `apiVersion: apps/v1
kind: Deployment
metadata:
  name: notes
  namespace: notes
spec:
  template:
    spec:
      containers:
        - name: notes
          image: ghcr.io/acme/notes:` + gitopsSeedTag + ` # {"$imagepolicy": "flux-system:notes"}
`,
		"apps/notes/service.yaml": "apiVersion: v1\nkind: Service\nmetadata:\n  name: notes\n",
		"README.md":               "GitOps repository for the notes site.\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// gitopsSetTag is the edit the tests use: it rewrites the tag of the image line,
// creating the file in an empty repository.
func gitopsSetTag(tag string) Edit {
	return func(fs billy.Filesystem, head CommitInfo) (string, bool, error) {
		b, err := util.ReadFile(fs, gitopsDeployPath)
		if errors.Is(err, os.ErrNotExist) {
			b = []byte("image: ghcr.io/acme/notes:none # {\"$imagepolicy\": \"flux-system:notes\"}\n")
		} else if err != nil {
			return "", false, err
		}
		m := gitopsImageRE.FindSubmatch(b)
		if m == nil {
			return "", false, fmt.Errorf("%s: no image line", gitopsDeployPath)
		}
		if string(m[2]) == tag {
			return "", false, nil
		}
		out := gitopsImageRE.ReplaceAll(b, []byte("${1}"+tag+"${3}"))
		if err := fs.MkdirAll("apps/notes", 0o755); err != nil {
			return "", false, err
		}
		if err := util.WriteFile(fs, gitopsDeployPath, out, 0o644); err != nil {
			return "", false, err
		}
		return "notes: set image tag " + tag + "\n\nSource-Commit: " + head.Hash + "\n", true, nil
	}
}

func gitopsTagIn(t *testing.T, content string) string {
	t.Helper()
	m := gitopsImageRE.FindStringSubmatch(content)
	if m == nil {
		t.Fatalf("no image line in:\n%s", content)
	}
	return m[2]
}

func gitopsOptions(url string) GitOpsOptions {
	return GitOpsOptions{
		URL:            url,
		Branch:         "main",
		AuthorName:     "Release Bot",
		AuthorEmail:    "release@example.com",
		RetryBaseDelay: 5 * time.Millisecond,
	}
}

// gitopsVerifyCommit checks with the git CLI that branch main of the bare
// repository got exactly one commit on top of seed that changes only the
// deployment to tag.
func gitopsVerifyCommit(t *testing.T, bare, seed, tag string) string {
	t.Helper()
	gitserver.Git(t, bare, "fsck", "--strict", "--no-progress")
	if got := gitserver.Git(t, bare, "rev-list", "--count", seed+"..main"); got != "1" {
		t.Fatalf("commits on top of the seed = %s, want 1", got)
	}
	if got := gitserver.Git(t, bare, "rev-parse", "main~1"); got != seed {
		t.Fatalf("parent of main = %s, want the seed %s", got, seed)
	}
	if got := gitserver.Git(t, bare, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%s", "main"); got !=
		"Release Bot <release@example.com>|Release Bot <release@example.com>|notes: set image tag "+tag {
		t.Fatalf("commit = %q", got)
	}
	if got := gitserver.Git(t, bare, "diff", "--name-only", "main~1", "main"); got != gitopsDeployPath {
		t.Fatalf("changed files = %q, want only %s", got, gitopsDeployPath)
	}
	if got := gitopsTagIn(t, gitserver.Git(t, bare, "show", "main:"+gitopsDeployPath)); got != tag {
		t.Fatalf("tag in the committed file = %q, want %q", got, tag)
	}
	return gitserver.Git(t, bare, "rev-parse", "main")
}

func TestCommitRemotes(t *testing.T) {
	gitserver.RequireGit(t)
	seedDir := gitopsSeed(t)
	tests := []struct {
		name  string
		setup func(t *testing.T) (GitOpsOptions, string)
	}{
		{"gittestserver http basic auth", func(t *testing.T) (GitOpsOptions, string) {
			srv := gitserver.StartFluxServer(t, "bob", "s3cret-pass", false)
			opts := gitopsOptions(srv.HTTPURL + "/gitops.git")
			opts.Username, opts.Password = "bob", "s3cret-pass"
			return opts, srv.RepoPath("gitops.git")
		}},
		{"http-backend basic auth", func(t *testing.T) (GitOpsOptions, string) {
			srv := gitserver.StartHTTPBackend(t, "bob", "s3cret-pass")
			opts := gitopsOptions(srv.RepoURL("gitops.git"))
			opts.Username, opts.Password = "bob", "s3cret-pass"
			return opts, srv.RepoPath("gitops.git")
		}},
		{"http-backend credentials in URL", func(t *testing.T) (GitOpsOptions, string) {
			srv := gitserver.StartHTTPBackend(t, "bob", "s3cret-pass")
			opts := gitopsOptions(strings.Replace(srv.RepoURL("gitops.git"), "http://", "http://bob:s3cret-pass@", 1))
			return opts, srv.RepoPath("gitops.git")
		}},
		{"gittestserver ssh known_hosts", func(t *testing.T) (GitOpsOptions, string) {
			srv := gitserver.StartFluxServer(t, "", "", true)
			key, _ := gitserver.WriteSSHKey(t, "key-pass")
			opts := gitopsOptions(srv.SSHURL + "/gitops.git")
			opts.SSHKeyFile, opts.SSHKeyPassphrase = key, "key-pass"
			opts.KnownHostsFile = srv.KnownHostsFile(t, nil)
			return opts, srv.RepoPath("gitops.git")
		}},
		{"local bare path", func(t *testing.T) (GitOpsOptions, string) {
			dir := filepath.Join(t.TempDir(), "gitops.git")
			return gitopsOptions(dir), dir
		}},
		{"local bare file URL", func(t *testing.T) (GitOpsOptions, string) {
			dir := filepath.Join(t.TempDir(), "gitops.git")
			return gitopsOptions("file://" + dir), dir
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, bare := tt.setup(t)
			seed := gitserver.SeedBareRepo(t, bare, "main", seedDir)
			var logs bytes.Buffer
			opts.Logger = func(format string, args ...any) { fmt.Fprintf(&logs, format+"\n", args...) }
			const tag = "main-b9060af-1746598316-hugo0.145.0"

			res, err := Commit(context.Background(), opts, gitopsSetTag(tag))
			if err != nil {
				t.Fatalf("Commit: %v", err)
			}
			head := gitopsVerifyCommit(t, bare, seed, tag)
			want := CommitResult{Hash: head, Changed: true, Attempts: 1, Branch: "main", Files: []string{gitopsDeployPath}}
			if fmt.Sprint(*res) != fmt.Sprint(want) {
				t.Errorf("result = %+v, want %+v", *res, want)
			}
			if strings.Contains(logs.String(), "s3cret-pass") || strings.Contains(logs.String(), "key-pass") {
				t.Errorf("log leaks a secret:\n%s", logs.String())
			}

			// Same tag again: nothing to commit, nothing pushed.
			res, err = Commit(context.Background(), opts, gitopsSetTag(tag))
			if err != nil {
				t.Fatalf("second Commit: %v", err)
			}
			if res.Changed || res.Hash != head || len(res.Files) != 0 {
				t.Errorf("second Commit = %+v, want unchanged at %s", *res, head)
			}
			if got := gitserver.Git(t, bare, "rev-parse", "main"); got != head {
				t.Errorf("branch moved to %s on a no-op commit", got)
			}

			fs, info, err := Checkout(context.Background(), opts)
			if err != nil {
				t.Fatalf("Checkout: %v", err)
			}
			if info.Hash != head || !strings.HasPrefix(info.Message, "notes: set image tag "+tag) || info.Author != "Release Bot <release@example.com>" {
				t.Errorf("Checkout info = %+v", info)
			}
			b, err := util.ReadFile(fs, gitopsDeployPath)
			if err != nil {
				t.Fatal(err)
			}
			if got := gitopsTagIn(t, string(b)); got != tag {
				t.Errorf("Checkout sees tag %q, want %q", got, tag)
			}
		})
	}
}

func TestCommitLocalWorktree(t *testing.T) {
	gitserver.RequireGit(t)
	tmp := t.TempDir()
	bare := filepath.Join(tmp, "origin.git")
	seed := gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
	work := filepath.Join(tmp, "work")
	gitserver.CloneWorktree(t, bare, work, "main")
	// An untracked file elsewhere does not count as dirty.
	if err := os.WriteFile(filepath.Join(work, "notes.txt"), []byte("scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const tag = "main-1234567-1746598400-hugo0.145.0"
	res, err := Commit(context.Background(), gitopsOptions(work), gitopsSetTag(tag))
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	head := gitopsVerifyCommit(t, filepath.Join(work, ".git"), seed, tag)
	if !res.Changed || res.Hash != head || fmt.Sprint(res.Files) != "["+gitopsDeployPath+"]" {
		t.Errorf("result = %+v", *res)
	}
	// The worktree and index follow the commit, as after `git commit`.
	if got := gitserver.Git(t, work, "status", "--porcelain"); got != "?? notes.txt" {
		t.Errorf("git status after commit = %q, want only the untracked file", got)
	}
	b, err := os.ReadFile(filepath.Join(work, gitopsDeployPath))
	if err != nil {
		t.Fatal(err)
	}
	if got := gitopsTagIn(t, string(b)); got != tag {
		t.Errorf("worktree file has tag %q, want %q", got, tag)
	}
	if _, err := os.Stat(filepath.Join(work, ".git", "index.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("index.lock left behind: %v", err)
	}

	// A dirty worktree is refused and left alone.
	if err := os.WriteFile(filepath.Join(work, "README.md"), []byte("local edit\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Commit(context.Background(), gitopsOptions(work), gitopsSetTag("main-7654321-1746598500-hugo0.145.0"))
	if !errors.Is(err, ErrDirtyWorktree) || !strings.Contains(err.Error(), "README.md") {
		t.Fatalf("Commit on a dirty worktree: err = %v, want ErrDirtyWorktree naming README.md", err)
	}
	if got := gitserver.Git(t, work, "rev-parse", "main"); got != head {
		t.Errorf("branch moved to %s although the worktree was dirty", got)
	}
	if got := gitopsTagIn(t, gitserver.Git(t, work, "show", "main:"+gitopsDeployPath)); got != tag {
		t.Errorf("tag after refused commit = %q", got)
	}
}

func TestCommitLocalWorktreeLocked(t *testing.T) {
	gitserver.RequireGit(t)
	tmp := t.TempDir()
	bare := filepath.Join(tmp, "origin.git")
	gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
	work := filepath.Join(tmp, "work")
	gitserver.CloneWorktree(t, bare, work, "main")
	lock := filepath.Join(work, ".git", "index.lock")
	if err := os.WriteFile(lock, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	opts := gitopsOptions(work)
	opts.MaxAttempts = 2
	_, err := Commit(context.Background(), opts, gitopsSetTag("main-1234567-1746598400-hugo0.145.0"))
	if !errors.Is(err, ErrConcurrentUpdates) || !strings.Contains(err.Error(), lock) {
		t.Fatalf("err = %v, want ErrConcurrentUpdates naming %s", err, lock)
	}
	if _, err := os.Stat(lock); err != nil {
		t.Errorf("someone else's lock was removed: %v", err)
	}
}

// TestCommitEmptyRepository: an empty repository checks out empty, and
// the first commit creates the branch, over HTTP and written in place into
// a bare repository given as a path (then with no git on PATH).
func TestCommitEmptyRepository(t *testing.T) {
	gitserver.RequireGit(t)
	srv := gitserver.StartHTTPBackend(t, "", "")
	for _, way := range []string{"http", "in place"} {
		t.Run(way, func(t *testing.T) {
			name := strings.ReplaceAll(way, " ", "-") + ".git"
			bare := srv.RepoPath(name)
			gitserver.InitBareRepo(t, bare, "main")
			opts := gitopsOptions(srv.RepoURL(name))
			if way == "in place" {
				opts = gitopsOptions(bare)
			}

			fs, info, err := Checkout(context.Background(), opts)
			if err != nil {
				t.Fatalf("Checkout of an empty repository: %v", err)
			}
			if info.Hash != "" {
				t.Errorf("Checkout of an empty repository: hash %q, want empty", info.Hash)
			}
			if entries, _ := fs.ReadDir("/"); len(entries) != 0 {
				t.Errorf("Checkout of an empty repository has %d entries", len(entries))
			}

			const tag = "main-b9060af-1746598316-hugo0.145.0"
			var res *CommitResult
			t.Run("commit", func(t *testing.T) {
				if way == "in place" {
					t.Setenv("PATH", t.TempDir()) // no git to start
				}
				res, err = Commit(context.Background(), opts, gitopsSetTag(tag))
			})
			if err != nil {
				t.Fatalf("Commit: %v", err)
			}
			gitserver.Git(t, bare, "fsck", "--strict", "--no-progress")
			if got := gitserver.Git(t, bare, "rev-list", "--count", "main"); got != "1" {
				t.Errorf("commits = %s, want 1", got)
			}
			if got := gitserver.Git(t, bare, "rev-parse", "main"); got != res.Hash {
				t.Errorf("main = %s, result hash %s", got, res.Hash)
			}
			if got := gitopsTagIn(t, gitserver.Git(t, bare, "show", "main:"+gitopsDeployPath)); got != tag {
				t.Errorf("tag = %q", got)
			}
		})
	}
}

func TestCommitMissingBranch(t *testing.T) {
	gitserver.RequireGit(t)
	bare := filepath.Join(t.TempDir(), "gitops.git")
	gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
	opts := gitopsOptions(bare)
	opts.Branch = "production"
	_, err := Commit(context.Background(), opts, gitopsSetTag("main-b9060af-1746598316-hugo0.145.0"))
	if !errors.Is(err, ErrBranchNotFound) || !strings.Contains(err.Error(), `"production"`) {
		t.Fatalf("err = %v, want ErrBranchNotFound naming the branch", err)
	}
	_, info, err := Checkout(context.Background(), opts)
	if err != nil || info.Hash != "" {
		t.Fatalf("Checkout of a missing branch = %+v, %v; want empty info and no error", info, err)
	}
}

func TestCommitWrongPassword(t *testing.T) {
	gitserver.RequireGit(t)
	const password = "correct-horse-battery"
	tests := []struct {
		name string
		url  func(base string) string
		user string
		pass string
	}{
		{"options", func(b string) string { return b }, "bob", "wrong-password-123"},
		{"in URL", func(b string) string { return strings.Replace(b, "http://", "http://bob:wrong-password-123@", 1) }, "", ""},
		{"token in URL", func(b string) string { return strings.Replace(b, "http://", "http://tok-wrong-password-123@", 1) }, "", ""},
		{"none", func(b string) string { return b }, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := gitserver.StartHTTPBackend(t, "bob", password)
			gitserver.SeedBareRepo(t, srv.RepoPath("gitops.git"), "main", "")
			opts := gitopsOptions(tt.url(srv.RepoURL("gitops.git")))
			opts.Username, opts.Password = tt.user, tt.pass
			_, err := Commit(context.Background(), opts, gitopsSetTag("x"))
			if !errors.Is(err, ErrAuthentication) {
				t.Fatalf("err = %v, want ErrAuthentication", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "authentication failed for "+RedactURL(opts.URL)) {
				t.Errorf("error does not name the redacted URL %s: %s", RedactURL(opts.URL), msg)
			}
			if strings.Contains(msg, "wrong-password-123") || strings.Contains(msg, password) {
				t.Errorf("error leaks the password: %s", msg)
			}
		})
	}
}

func TestCommitHookRejection(t *testing.T) {
	gitserver.RequireGit(t)
	srv := gitserver.StartHTTPBackend(t, "bob", "pw-1234")
	bare := srv.RepoPath("gitops.git")
	seed := gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
	gitserver.InstallHook(t, bare, "pre-receive", "#!/bin/sh\necho 'policy: main is protected, open a pull request' >&2\nexit 1\n")
	opts := gitopsOptions(srv.RepoURL("gitops.git"))
	opts.Username, opts.Password = "bob", "pw-1234"
	opts.MaxAttempts = 3
	res, err := Commit(context.Background(), opts, gitopsSetTag("main-b9060af-1746598316-hugo0.145.0"))
	if !errors.Is(err, ErrPushRejected) {
		t.Fatalf("Commit = %+v, %v; want ErrPushRejected", res, err)
	}
	if !strings.Contains(err.Error(), "policy: main is protected, open a pull request") {
		t.Errorf("error lacks the hook's message: %v", err)
	}
	if strings.Contains(err.Error(), "pw-1234") {
		t.Errorf("error leaks the password: %v", err)
	}
	if got := gitserver.Git(t, bare, "rev-parse", "main"); got != seed {
		t.Errorf("main moved to %s despite the hook", got)
	}
}

func TestCommitSSHHostKey(t *testing.T) {
	gitserver.RequireGit(t)
	srv := gitserver.StartFluxServer(t, "", "", true)
	seed := gitserver.SeedBareRepo(t, srv.RepoPath("gitops.git"), "main", gitopsSeed(t))
	key, _ := gitserver.WriteSSHKey(t, "")
	tests := []struct {
		name       string
		knownHosts func(t *testing.T) string
		want       string
	}{
		{"mismatch", func(t *testing.T) string { return srv.KnownHostsFile(t, gitserver.RandomHostKey(t)) }, "does not match"},
		{"unknown host", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "known_hosts")
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, "is not in"},
		{"missing file", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, "cannot read known_hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := gitopsOptions(srv.SSHURL + "/gitops.git")
			opts.SSHKeyFile = key
			opts.KnownHostsFile = tt.knownHosts(t)
			_, err := Commit(context.Background(), opts, gitopsSetTag("main-b9060af-1746598316-hugo0.145.0"))
			if !errors.Is(err, ErrHostKey) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), srv.SSHURL) {
				t.Fatalf("err = %v, want ErrHostKey containing %q and the URL", err, tt.want)
			}
		})
	}
	t.Run("insecure skip", func(t *testing.T) {
		opts := gitopsOptions(srv.SSHURL + "/gitops.git")
		opts.SSHKeyFile = key
		opts.InsecureSkipHostKeyCheck = true
		var warned bool
		opts.Logger = func(format string, args ...any) {
			if strings.Contains(fmt.Sprintf(format, args...), "WARNING: SSH host key checking is disabled") {
				warned = true
			}
		}
		if _, err := Commit(context.Background(), opts, gitopsSetTag("main-b9060af-1746598316-hugo0.145.0")); err != nil {
			t.Fatal(err)
		}
		if !warned {
			t.Error("no warning logged for disabled host key checking")
		}
		gitopsVerifyCommit(t, srv.RepoPath("gitops.git"), seed, "main-b9060af-1746598316-hugo0.145.0")
	})
}

// gitopsSigningKey generates a throwaway OpenPGP key, writes the armored
// private key (protected by passphrase) and imports the public key into a
// fresh GNUPGHOME, which it returns.
func gitopsSigningKey(t *testing.T, passphrase string) (keyFile, gnupgHome string) {
	t.Helper()
	e, err := openpgp.NewEntity("Release Bot", "test", "release@example.com", &packet.Config{
		Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519,
	})
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	w, err := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := e.EncryptPrivateKeys([]byte(passphrase), nil); err != nil {
		t.Fatal(err)
	}
	var priv bytes.Buffer
	w, err = armor.Encode(&priv, openpgp.PrivateKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SerializePrivateWithoutSigning(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	keyFile = filepath.Join(t.TempDir(), "signing.asc")
	if err := os.WriteFile(keyFile, priv.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	// gpg-agent sockets need a short path.
	gnupgHome, err = os.MkdirTemp("/tmp", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("gpgconf", "--homedir", gnupgHome, "--kill", "all").Run()
		os.RemoveAll(gnupgHome)
	})
	if err := os.Chmod(gnupgHome, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("gpg", "--batch", "--homedir", gnupgHome, "--import")
	cmd.Stdin = &pub
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gpg --import: %v\n%s", err, out)
	}
	return keyFile, gnupgHome
}

func TestCommitSigned(t *testing.T) {
	gitserver.RequireGit(t)
	testenv.LookPath(t, "gpg", "apt-get install -y gnupg")
	keyFile, gnupgHome := gitopsSigningKey(t, "sign-pass")
	bare := filepath.Join(t.TempDir(), "gitops.git")
	seed := gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
	opts := gitopsOptions(bare)
	opts.SigningKeyFile, opts.SigningKeyPassphrase = keyFile, "sign-pass"
	const tag = "main-b9060af-1746598316-hugo0.145.0"
	if _, err := Commit(context.Background(), opts, gitopsSetTag(tag)); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	gitopsVerifyCommit(t, bare, seed, tag)
	if _, err := gitserver.GitE(bare, []string{"GNUPGHOME=" + gnupgHome}, "verify-commit", "main"); err != nil {
		t.Fatalf("git verify-commit: %v", err)
	}
	// The seed commit is unsigned: verify-commit must be able to fail.
	if _, err := gitserver.GitE(bare, []string{"GNUPGHOME=" + gnupgHome}, "verify-commit", seed); err == nil {
		t.Fatal("git verify-commit accepted the unsigned seed commit")
	}

	opts.SigningKeyPassphrase = "wrong"
	_, err := Commit(context.Background(), opts, gitopsSetTag("main-b9060af-1746598999-hugo0.145.0"))
	if err == nil || !strings.Contains(err.Error(), keyFile) || strings.Contains(err.Error(), "sign-pass") {
		t.Fatalf("wrong signing passphrase: err = %v, want an error naming %s", err, keyFile)
	}
}

// TestCommitRace: writers racing on one branch all land, one after the
// other, with no merge and no loss: all pushing over HTTP (receive-pack),
// and half of them writing in place into the same bare repository by its
// path, which takes git's own ref lock (manifests/bare.go).
func TestCommitRace(t *testing.T) {
	gitserver.RequireGit(t)
	srv := gitserver.StartHTTPBackend(t, "bob", "race-pass")
	for _, mode := range []string{"http", "http and in place"} {
		t.Run(mode, func(t *testing.T) {
			name := strings.ReplaceAll(mode, " ", "-") + ".git"
			bare := srv.RepoPath(name)
			gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
			const writers = 8
			var (
				wg       sync.WaitGroup
				mu       sync.Mutex
				errs     []error
				attempts int
			)
			start := make(chan struct{})
			for i := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					opts := gitopsOptions(srv.RepoURL(name))
					opts.Username, opts.Password = "bob", "race-pass"
					if mode != "http" && i%2 == 0 {
						opts = gitopsOptions(bare)
					}
					opts.MaxAttempts = 30
					tag := fmt.Sprintf("main-%07x-%d-hugo0.145.0", 0xabc000+i, 1746598316+i)
					<-start
					res, err := Commit(context.Background(), opts, gitopsSetTag(tag))
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						errs = append(errs, fmt.Errorf("writer %d: %w", i, err))
						return
					}
					if !res.Changed {
						errs = append(errs, fmt.Errorf("writer %d: no change", i))
					}
					attempts += res.Attempts
				}()
			}
			close(start)
			wg.Wait()
			for _, err := range errs {
				t.Error(err)
			}
			t.Logf("%d writers needed %d attempts in total", writers, attempts)

			gitserver.Git(t, bare, "fsck", "--strict", "--no-progress")
			if got := gitserver.Git(t, bare, "rev-list", "--merges", "main"); got != "" {
				t.Errorf("history has merges: %s", got)
			}
			if got := gitserver.Git(t, bare, "rev-list", "--count", "main"); got != strconv.Itoa(writers+1) {
				t.Errorf("commits = %s, want %d", got, writers+1)
			}
			// Every tag landed exactly once, and each commit changed only the deployment.
			subjects := strings.Split(gitserver.Git(t, bare, "log", "--format=%s", "main~"+strconv.Itoa(writers)+"..main"), "\n")
			seen := map[string]bool{}
			for _, s := range subjects {
				seen[strings.TrimPrefix(s, "notes: set image tag ")] = true
			}
			if len(seen) != writers {
				t.Errorf("distinct tags in history = %d, want %d: %q", len(seen), writers, subjects)
			}
			last := strings.TrimPrefix(subjects[0], "notes: set image tag ")
			if got := gitopsTagIn(t, gitserver.Git(t, bare, "show", "main:"+gitopsDeployPath)); got != last {
				t.Errorf("final file holds %q, the last commit set %q", got, last)
			}
			for i := range writers {
				rev := "main~" + strconv.Itoa(i)
				if got := gitserver.Git(t, bare, "diff", "--name-only", rev+"~1", rev); got != gitopsDeployPath {
					t.Errorf("%s changed %q", rev, got)
				}
			}
		})
	}
}

func TestCommitContextCanceled(t *testing.T) {
	gitserver.RequireGit(t)
	bare := filepath.Join(t.TempDir(), "gitops.git")
	gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Commit(ctx, gitopsOptions(bare), gitopsSetTag("x"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestCommitOptionErrors(t *testing.T) {
	tests := []struct {
		name string
		opts GitOpsOptions
		want string
	}{
		{"no URL", GitOpsOptions{}, "repository URL is empty"},
		{"bad branch", GitOpsOptions{URL: "https://example.com/r.git", Branch: "a..b"}, `invalid branch name "a..b"`},
		{"missing local", GitOpsOptions{URL: "/nonexistent/gitops"}, "/nonexistent/gitops"},
		{"missing ssh key", GitOpsOptions{URL: "ssh://git@127.0.0.1:1/r.git", SSHKeyFile: "/nonexistent/id"}, "/nonexistent/id"},
		{"missing signing key", GitOpsOptions{URL: "https://u:pw-secret@example.com/r.git", SigningKeyFile: "/nonexistent/key.asc"}, "/nonexistent/key.asc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Commit(context.Background(), tt.opts, gitopsSetTag("x"))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "pw-secret") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

func TestCommitEditError(t *testing.T) {
	gitserver.RequireGit(t)
	bare := filepath.Join(t.TempDir(), "gitops.git")
	seed := gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
	errBroken := errors.New("no marker for flux-system:notes")
	_, err := Commit(context.Background(), gitopsOptions(bare), func(billy.Filesystem, CommitInfo) (string, bool, error) {
		return "", false, errBroken
	})
	if !errors.Is(err, errBroken) || !strings.Contains(err.Error(), bare) || !strings.Contains(err.Error(), seed[:7]) {
		t.Fatalf("err = %v, want the edit's error naming %s at %s", err, bare, seed[:7])
	}
	if got := gitserver.Git(t, bare, "rev-parse", "main"); got != seed {
		t.Errorf("main moved to %s after a failed edit", got)
	}
}
