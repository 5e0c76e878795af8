package gitops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
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

func gitopsOptions(url string) Options {
	return Options{
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
		opts Options
		want string
	}{
		{"no URL", Options{}, "repository URL is empty"},
		{"bad branch", Options{URL: "https://example.com/r.git", Branch: "a..b"}, `invalid branch name "a..b"`},
		{"missing local", Options{URL: "/nonexistent/gitops"}, "/nonexistent/gitops"},
		{"missing ssh key", Options{URL: "ssh://git@127.0.0.1:1/r.git", SSHKeyFile: "/nonexistent/id"}, "/nonexistent/id"},
		{"missing signing key", Options{URL: "https://u:pw-secret@example.com/r.git", SigningKeyFile: "/nonexistent/key.asc"}, "/nonexistent/key.asc"},
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
