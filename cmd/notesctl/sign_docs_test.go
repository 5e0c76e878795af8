package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/internal/regserver"
	"github.com/notesctl/notesctl/registry"
	"github.com/notesctl/notesctl/registry/attest"
)

// The documented signing and verification commands, in their offline form
// (see docScenarios): cosign.key / cosign.pub are a key pair in cosign's
// format made for the scenario, ghcr.io the in-process registry.
func init() {
	docScenarios = append(docScenarios,
		docScenario{
			name:  "sign, verify, gate",
			setup: signScenarioEnv,
			steps: []docStep{
				{cmd: "COSIGN_PASSWORD=$PASSWORD notesctl release --image ghcr.io/acme/notes --gitops ../gitops --sign-key cosign.key --verify-key cosign.pub", check: func(t *testing.T, e *docEnv, r result) {
					m := imageLine.FindStringSubmatch(r.stdout)
					if m == nil {
						t.Fatalf("no image line:\n%s", r.stdout)
					}
					ref, err := registry.ParseRef(m[1])
					if err != nil {
						t.Fatal(err)
					}
					e.subst = append(e.subst, "main-b9060af-1746598316-hugo0.145.0", ref.Tag,
						"sha256:0d3b2b1f8c6a1f3f6bb1c3d5ad1f8e1e4c7b9a8d2e5f60718293a4b5c6d7e8f9", ref.Digest)
				}},
				{cmd: "notesctl verify --key cosign.pub ghcr.io/acme/notes:main-b9060af-1746598316-hugo0.145.0"},
				{do: signProvenance},
				{cmd: "notesctl verify --key cosign.pub --provenance ghcr.io/acme/notes@sha256:0d3b2b1f8c6a1f3f6bb1c3d5ad1f8e1e4c7b9a8d2e5f60718293a4b5c6d7e8f9"},
				{do: func(t *testing.T, e *docEnv) {
					mustSucceed(t, e.run(t, "notesctl manifests init --dir ./gitops --image ghcr.io/acme/notes --host notes.example.org"))
				}},
				{cmd: "notesctl update --dir ./gitops --image ghcr.io/acme/notes:main-b9060af-1746598316-hugo0.145.0 --verify-key cosign.pub", check: func(t *testing.T, e *docEnv, r result) {
					b, _ := os.ReadFile(findFile(t, filepath.Join(e.dir, "gitops"), "deployment.yaml"))
					if !strings.Contains(string(b), "@sha256:") {
						t.Errorf("update --verify-key did not pin the verified digest:\n%s", b)
					}
				}},
			},
		},
		docScenario{
			// release --local --sign-key signs into the OCI layout.
			name: "verify in a local layout",
			setup: func(t *testing.T) *docEnv {
				keys := t.TempDir()
				writeKeyPair(t, keys, "cosign")
				pub, _ := os.ReadFile(filepath.Join(keys, "cosign.pub"))
				site := newSite(t)
				e := &docEnv{dir: site, env: []string{"COSIGN_PASSWORD=" + signPassword, "COSIGN_PUBLIC_KEY=" + string(pub)}}
				r := e.run(t, "notesctl release --local --sign-key "+filepath.Join(keys, "cosign.key"))
				mustSucceed(t, r)
				e.subst = []string{"main-b9060af-1746598316-hugo0.145.0", tagOfRef(imageLine.FindStringSubmatch(r.stdout)[1])}
				return e
			},
			steps: []docStep{{cmd: "notesctl verify --key env://COSIGN_PUBLIC_KEY --repository oci:.notesctl/image notes.local/notes:main-b9060af-1746598316-hugo0.145.0"}},
		},
	)
}

// signScenarioEnv: a site with a GitOps clone beside it (../gitops), a key
// pair beside both, ghcr.io the in-process registry.
func signScenarioEnv(t *testing.T) *docEnv {
	root := t.TempDir()
	site := filepath.Join(root, "site")
	if err := os.Mkdir(site, 0o755); err != nil {
		t.Fatal(err)
	}
	copySite(t, site)
	reg := regserver.InProcess(t, regserver.InProcessOptions{})
	repo := reg.Host + "/acme/notes"
	gs := filepath.Join(root, "gitops.git")
	gitserver.SeedBareRepo(t, gs, "main", scaffold(t, repo, "https://github.com/acme/gitops.git"))
	gitserver.CloneWorktree(t, gs, filepath.Join(root, "gitops"), "main")
	keys := filepath.Join(root, "keys")
	os.Mkdir(keys, 0o755)
	writeKeyPair(t, keys, "cosign")
	return &docEnv{dir: site, env: []string{"NOTESCTL_BASE=scratch", "PASSWORD=" + signPassword}, subst: []string{
		"ghcr.io/acme/notes", repo,
		"cosign.key", filepath.Join(keys, "cosign.key"),
		"cosign.pub", filepath.Join(keys, "cosign.pub"),
	}}
}

// signProvenance attaches a signed SLSA provenance statement for the
// released digest (the one the scenario substituted for the documents'),
// as a release with provenance and --sign-key does.
func signProvenance(t *testing.T, e *docEnv) {
	t.Helper()
	var repo, digest, key string
	for i := 0; i+1 < len(e.subst); i += 2 {
		switch e.subst[i] {
		case "ghcr.io/acme/notes":
			repo = e.subst[i+1]
		case "sha256:0d3b2b1f8c6a1f3f6bb1c3d5ad1f8e1e4c7b9a8d2e5f60718293a4b5c6d7e8f9":
			digest = e.subst[i+1]
		case "cosign.key":
			key = e.subst[i+1]
		}
	}
	ctx := context.Background()
	s, err := attest.LoadSigner(key, func(k string) string {
		if k == attest.EnvPassword {
			return signPassword
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	target, err := attest.NewTarget(ctx, repo, registry.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	subject, err := attest.Describe(ctx, target, mustHash(t, digest))
	if err != nil {
		t.Fatal(err)
	}
	hex := strings.TrimPrefix(digest, "sha256:")
	stmt := []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"` + repo + `","digest":{"sha256":"` + hex + `"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{"buildDefinition":{"buildType":"https://notesctl.dev/release/v1"}}}`)
	if _, err := attest.SignStatement(ctx, target, subject, s, stmt, attest.SignOptions{}); err != nil {
		t.Fatal(err)
	}
}
