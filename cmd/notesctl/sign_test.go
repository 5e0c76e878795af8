package main

// Signatures and verify-before-deploy, end to end: the notesctl binary
// against CNCF Distribution with htpasswd and TLS and a local GitOps
// repository checked with git after every refusal.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/internal/regserver"
	"github.com/notesctl/notesctl/registry"
	"github.com/notesctl/notesctl/registry/attest"
)

const signPassword = "key-pa55word"

// writeKeyPair writes NAME.key (cosign's encrypted format, signPassword)
// and NAME.pub into dir.
func writeKeyPair(t *testing.T, dir, name string) {
	t.Helper()
	priv, pub, err := attest.GenerateKeyPair([]byte(signPassword))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), priv, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".pub"), pub, 0o644); err != nil {
		t.Fatal(err)
	}
}

func gitopsCommits(t *testing.T, bare string) string {
	t.Helper()
	return gitserver.Git(t, bare, "rev-parse", "main")
}

func TestVerifyBeforeDeploy(t *testing.T) {
	gitserver.RequireGit(t)
	const user, pass = "ci", "reg-pa55word"
	ds := regserver.Distribution(t, regserver.DistributionOptions{User: user, Password: pass, TLS: true})
	image := ds.Host + "/acme/notes"
	keys := t.TempDir()
	writeKeyPair(t, keys, "good")
	writeKeyPair(t, keys, "other")
	bare := filepath.Join(t.TempDir(), "gitops.git")
	gitserver.SeedBareRepo(t, bare, "main", scaffold(t, image, "https://github.com/acme/gitops.git"))
	site := newSite(t)
	env := []string{
		"NOTESCTL_REGISTRY_USERNAME=" + user, "NOTESCTL_REGISTRY_PASSWORD=" + pass,
		"NOTESCTL_CA_FILE=" + ds.CAFile, "NOTESCTL_BASE=scratch", "COSIGN_PASSWORD=" + signPassword,
	}
	goodKey, goodPub := filepath.Join(keys, "good.key"), filepath.Join(keys, "good.pub")
	otherKey, otherPub := filepath.Join(keys, "other.key"), filepath.Join(keys, "other.pub")

	// refused runs a command that must be refused by the gate: exit 1,
	// the image and the reason named, no GitOps commit, no password shown.
	refused := func(t *testing.T, wantImage, wantReason string, args ...string) {
		t.Helper()
		before := gitopsCommits(t, bare)
		r := notesctl(t, site, env, "", args...)
		if r.code != 1 {
			t.Fatalf("exit %d, want 1 (refused):\n%s", r.code, r.all())
		}
		if !strings.Contains(r.stderr, "image "+wantImage) || !strings.Contains(r.stderr, wantReason) || !strings.Contains(r.stderr, "nothing committed") {
			t.Errorf("error does not name image %s and reason %q:\n%s", wantImage, wantReason, r.stderr)
		}
		if after := gitopsCommits(t, bare); after != before {
			t.Errorf("the GitOps branch moved from %s to %s on a refused image", before, after)
		}
		if strings.Contains(r.all(), signPassword) || strings.Contains(r.all(), pass) {
			t.Errorf("a password shows in the output:\n%s", r.all())
		}
	}

	// 1. A release signed with the good key and gated on it is deployed.
	r := notesctl(t, site, env, "", "release", "--image", image, "--gitops", bare, "--sign-key", goodKey, "--verify-key", goodPub)
	mustSucceed(t, r)
	m := imageLine.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no image line:\n%s", r.stdout)
	}
	signed := m[1]
	signedRef, err := registry.ParseRef(signed)
	if err != nil {
		t.Fatal(err)
	}
	deployed := gitopsCommits(t, bare)
	if !strings.Contains(gitserver.Git(t, bare, "show", "main"), signed) {
		t.Fatalf("the release commit does not deploy %s", signed)
	}
	// notesctl verify agrees, by tag and by digest; another key does not.
	mustSucceed(t, notesctl(t, site, env, "", "verify", "--key", goodPub, signed))
	mustSucceed(t, notesctl(t, site, env, "", "verify", "--key", goodPub, image+":"+signedRef.Tag))
	if r := notesctl(t, site, env, "", "verify", "--key", otherPub, signed); r.code != 1 || !strings.Contains(r.stderr, "another key") {
		t.Errorf("verify with another key: exit %d, want 1 naming another key:\n%s", r.code, r.all())
	}
	if r := notesctl(t, site, env, "", "verify", "--key", filepath.Join(keys, "missing.pub"), signed); r.code != 2 {
		t.Errorf("verify with a missing key file: exit %d, want 2:\n%s", r.code, r.all())
	}

	// 2. A release signed by another key is pushed but not deployed.
	editPage(t, site, 1)
	refused(t, image+":main-", "another key", "release", "--image", image, "--gitops", bare, "--sign-key", otherKey, "--verify-key", goodPub)

	// 3. An unsigned image (notesctl build pushes without signing).
	editPage(t, site, 2)
	b := notesctl(t, site, env, "", "build", "--image", image)
	mustSucceed(t, b)
	unsigned := regexp.MustCompile(`\S+@sha256:[0-9a-f]{64}`).FindString(b.stdout)
	refused(t, unsigned, "no signature", "update", "--gitops", bare, "--image", unsigned, "--verify-key", goodPub)
	refused(t, unsigned, "no signature", "rollback", "--gitops", bare, "--to", tagOfRef(unsigned), "--verify-key", goodPub)

	// 4. A tampered image: the signed tag moved to other content (a
	// re-tag), and the signed image's bundle copied onto that content.
	unsignedRef, _ := registry.ParseRef(unsigned)
	retag(t, ds, image+":"+signedRef.Tag, unsigned)
	refused(t, image+":"+signedRef.Tag, "no signature", "update", "--gitops", bare, "--image", image+":"+signedRef.Tag, "--verify-key", goodPub)
	copySignature(t, ds, image, signedRef.Digest, unsignedRef.Digest)
	refused(t, image+":"+signedRef.Tag, "names another image", "update", "--gitops", bare, "--image", image+":"+signedRef.Tag, "--verify-key", goodPub)
	if r := notesctl(t, site, env, "", "verify", "--key", goodPub, unsigned); r.code != 1 || !strings.Contains(r.stderr, "names another image") {
		t.Errorf("verify of the tampered image: exit %d, want 1:\n%s", r.code, r.all())
	}

	// 5. The signed release by digest still passes update's gate, pinned
	// as it was; nothing else moved meanwhile.
	if got := gitopsCommits(t, bare); got != deployed {
		t.Errorf("GitOps branch moved during the refusals: %s, want %s", got, deployed)
	}
	mustSucceed(t, notesctl(t, site, env, "", "update", "--gitops", bare, "--image", signed, "--verify-key", goodPub))
}

// retag points tag at the digest of ref (same repository) by pushing that
// manifest under the tag, as `crane tag` does.
func retag(t *testing.T, ds *regserver.DistributionServer, tag, ref string) {
	t.Helper()
	opts := dsRemote(ds)
	src, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(src, opts...)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Tag(dst, desc, opts...); err != nil {
		t.Fatal(err)
	}
}

// copySignature attaches the signature referrer of from onto to: a valid
// signature, for other content.
func copySignature(t *testing.T, ds *regserver.DistributionServer, repo, from, to string) {
	t.Helper()
	ctx := context.Background()
	target, err := attest.NewTarget(ctx, repo, registry.PublishOptions{CAFile: ds.CAFile, Keychain: registry.Keychain(registry.KeychainOptions{Username: ds.User, Password: ds.Password, NoDefault: true})})
	if err != nil {
		t.Fatal(err)
	}
	fromH, toH := mustHash(t, from), mustHash(t, to)
	refs, err := attest.Find(ctx, target, fromH, attest.BundleMediaType)
	if err != nil || len(refs) == 0 {
		t.Fatalf("no signature on %s: %v", from, err)
	}
	subject, err := attest.Describe(ctx, target, toH)
	if err != nil {
		t.Fatal(err)
	}
	// Every bundle: the image signature and the signed provenance, as an
	// attacker copying "the signatures" would.
	for _, r := range refs {
		ref, err := attest.Fetch(ctx, target, r, fromH)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := attest.Attach(ctx, target, subject, attest.BundleMediaType, ref.Blob, attest.BundleMediaType, ref.Manifest.Annotations); err != nil {
			t.Fatal(err)
		}
	}
}

func dsRemote(ds *regserver.DistributionServer) []remote.Option {
	return []remote.Option{remote.WithAuth(&authn.Basic{Username: ds.User, Password: ds.Password}), remote.WithTransport(caTransport(ds.CAPool))}
}

func caTransport(pool *x509.CertPool) http.RoundTripper {
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
}

func mustHash(t *testing.T, s string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestActionsSignInputs: under Actions the key comes as PEM in the
// sign-key input (a secret), its password in cosign-password, the policy
// in verify-key; the release is signed and gated, and no line of the key
// or the password shows outside the mask commands.
func TestActionsSignInputs(t *testing.T) {
	reg := regserver.InProcess(t, regserver.InProcessOptions{})
	site := newSite(t)
	keys := t.TempDir()
	writeKeyPair(t, keys, "cosign")
	priv, _ := os.ReadFile(filepath.Join(keys, "cosign.key"))
	gitops := filepath.Join(t.TempDir(), "gitops")
	inputs := map[string]string{
		"site": site, "images": reg.Host + "/acme/notes", "base": "scratch", "gitops-repo": gitops,
		"sign-key": string(priv), "cosign-password": signPassword, "verify-key": filepath.Join(keys, "cosign.pub"),
	}
	env, _, _ := actionsEnv(t, false, true, inputs)
	env = append(env, "NOTESCTL_INIT=true")
	r := notesctl(t, site, env, "", "release")
	mustSucceed(t, r)
	if !strings.Contains(r.all(), "signed https://sigstore.dev/cosign/sign/v1") || !strings.Contains(r.all(), "signature verified with key") {
		t.Errorf("the release was not signed and verified:\n%s", r.all())
	}
	out := r.all()
	for _, l := range append(strings.Split(strings.TrimSpace(string(priv)), "\n"), signPassword) {
		if len(l) < 8 {
			continue
		}
		if !strings.Contains(out, "::add-mask::"+l) {
			t.Errorf("secret line %q is not masked", l)
		}
		if strings.Contains(strings.ReplaceAll(out, "::add-mask::"+l, ""), l) {
			t.Errorf("secret line %q shows in the log", l)
		}
	}
}
