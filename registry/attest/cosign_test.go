package attest

// The real cosign CLI (v3.1.3, tools/cosign/build.sh) against what notesctl
// writes, and notesctl against what cosign writes, on the in-process
// registry (with and without the referrers API) and on CNCF Distribution
// with htpasswd and TLS.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/notesctl/notesctl/internal/regserver"
	"github.com/notesctl/notesctl/internal/testenv"
	"github.com/notesctl/notesctl/registry"
)

// cosignFlags are what a key-based check needs with no transparency log
// reachable: --insecure-ignore-tlog=true (the bundle carries no Rekor
// entry, and cosign must not ask for one). No other flag: with --key,
// cosign v3 asks for no certificate, SCT or timestamp.
var cosignFlags = []string{"--insecure-ignore-tlog=true"}

type cosignRegistry struct {
	regTarget
	env []string // DOCKER_CONFIG with the credentials, SSL_CERT_FILE with the CA
}

func cosignRegistries(t *testing.T) []cosignRegistry {
	t.Helper()
	const user, pass = "notes", "cosign-Pa55"
	withAPI := regserver.InProcess(t, regserver.InProcessOptions{Referrers: true})
	noAPI := regserver.InProcess(t, regserver.InProcessOptions{})
	ds := regserver.Distribution(t, regserver.DistributionOptions{User: user, Password: pass, TLS: true})
	docker := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	if err := os.WriteFile(filepath.Join(docker, "config.json"), []byte(`{"auths":{"`+ds.Host+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return []cosignRegistry{
		{regTarget: regTarget{name: "ggcr with referrers API", repo: withAPI.Host + "/acme/notes", api: true}},
		{regTarget: regTarget{name: "ggcr without referrers API", repo: noAPI.Host + "/acme/notes"}},
		{
			regTarget: regTarget{
				name: "Distribution htpasswd TLS", repo: ds.Host + "/acme/notes",
				opts: registry.PublishOptions{
					Keychain: registry.Keychain(registry.KeychainOptions{Username: user, Password: pass, NoDefault: true}),
					CAFile:   ds.CAFile,
				},
				pull: []remote.Option{
					remote.WithAuth(&authn.Basic{Username: user, Password: pass}),
					remote.WithTransport(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: ds.CAPool, MinVersion: tls.VersionTLS12}}),
				},
			},
			// cosign reads docker's config for credentials; Go's TLS
			// honours SSL_CERT_FILE for the registry's CA.
			env: []string{"DOCKER_CONFIG=" + docker, "SSL_CERT_FILE=" + ds.CAFile},
		},
	}
}

// runCosign runs the cosign CLI hermetically (own HOME, no TUF cache, no
// network beyond the loopback registry) and returns its exit code and
// output.
func runCosign(t *testing.T, bin string, env []string, args ...string) (int, string) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "TUF_ROOT=" + filepath.Join(home, "tuf"), "DOCKER_CONFIG=" + filepath.Join(home, "docker")}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("cosign %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("cosign %s → exit %d\n%s", strings.Join(args, " "), code, out.String())
	return code, out.String()
}

func TestCosignCLI(t *testing.T) {
	cosign := testenv.Cosign(t)
	dir := t.TempDir()
	s, pub := loadPair(t, keyPair(t, dir, "notesctl")...)
	otherPub := filepath.Join(dir, "other.pub")
	_, other := keyPairPaths(t, dir, "other")
	os.Rename(other, otherPub)

	// A key pair made by cosign itself, for the other direction and to
	// prove notesctl reads cosign's key format.
	code, out := runCosign(t, cosign, []string{"COSIGN_PASSWORD=" + testPassword}, "generate-key-pair", "--output-key-prefix", filepath.Join(dir, "cosign"))
	if code != 0 {
		t.Fatalf("cosign generate-key-pair: %s", out)
	}
	cosignSigner, cosignPub := loadPair(t, filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub"))

	for _, r := range cosignRegistries(t) {
		t.Run(r.name, func(t *testing.T) {
			ctx := context.Background()
			target, err := NewTarget(ctx, r.repo, r.opts)
			if err != nil {
				t.Fatal(err)
			}

			// notesctl signs (its key, and cosign's key) → cosign verifies.
			for _, k := range []struct {
				name   string
				signer *Signer
				pub    string
			}{
				{"notesctl's key", s, filepath.Join(dir, "notesctl.pub")},
				{"a key from cosign generate-key-pair", cosignSigner, filepath.Join(dir, "cosign.pub")},
			} {
				subject := pushSubject(t, r.regTarget)
				ref := r.repo + "@" + subject.Digest.String()
				if _, err := SignImage(ctx, target, subject, k.signer, SignOptions{}); err != nil {
					t.Fatal(err)
				}
				prov := []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"` + r.repo + `","digest":{"sha256":"` + subject.Digest.Hex + `"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{"buildDefinition":{"buildType":"https://notesctl.dev/release/v1","externalParameters":{}},"runDetails":{"builder":{"id":"notesctl"}}}}`)
				if _, err := SignStatement(ctx, target, subject, k.signer, prov, SignOptions{}); err != nil {
					t.Fatal(err)
				}
				if code, out := runCosign(t, cosign, r.env, append([]string{"verify", "--key", k.pub}, append(cosignFlags, ref)...)...); code != 0 {
					t.Errorf("%s: cosign verify refused notesctl's signature:\n%s", k.name, out)
				}
				if code, out := runCosign(t, cosign, r.env, append([]string{"verify-attestation", "--key", k.pub, "--type", "slsaprovenance1"}, append(cosignFlags, ref)...)...); code != 0 {
					t.Errorf("%s: cosign verify-attestation refused notesctl's provenance:\n%s", k.name, out)
				} else if !strings.Contains(out, base64.StdEncoding.EncodeToString(prov)) {
					t.Errorf("cosign verify-attestation did not print the signed statement:\n%s", out)
				}
				// The check can fail: another key is refused.
				if code, out := runCosign(t, cosign, r.env, append([]string{"verify", "--key", otherPub}, append(cosignFlags, ref)...)...); code == 0 {
					t.Errorf("%s: cosign verify accepted the signature with another key:\n%s", k.name, out)
				}
			}

			// cosign signs → notesctl verifies (and refuses another key).
			subject := pushSubject(t, r.regTarget)
			ref := r.repo + "@" + subject.Digest.String()
			code, out := runCosign(t, cosign, append([]string{"COSIGN_PASSWORD=" + testPassword}, r.env...),
				"sign", "--key", filepath.Join(dir, "cosign.key"), "--use-signing-config=false", "--tlog-upload=false", "--yes", ref)
			if code != 0 {
				t.Fatalf("cosign sign: %s", out)
			}
			if _, err := VerifyImage(ctx, target, subject.Digest, cosignPub); err != nil {
				t.Errorf("notesctl does not verify cosign's signature: %v", err)
			}
			if _, err := VerifyImage(ctx, target, subject.Digest, pub); err == nil {
				t.Errorf("notesctl verified cosign's signature with another key")
			}
		})
	}
}
