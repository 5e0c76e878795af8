package pipeline

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	slsa "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	spdxjson "github.com/spdx/tools-golang/json"
	spdx "github.com/spdx/tools-golang/spdx/v2/v2_3"
	"github.com/spdx/tools-golang/spdxlib"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/notesctl/notesctl/internal/regserver"
	"github.com/notesctl/notesctl/internal/testimage"
	"github.com/notesctl/notesctl/manifests"
	"github.com/notesctl/notesctl/manifests/gitops"
	"github.com/notesctl/notesctl/registry"
	"github.com/notesctl/notesctl/registry/attest"
)

// ciEnv is what GitHub Actions sets for the provenance's run details.
func ciEnv(k string) string {
	return map[string]string{
		"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/notes",
		"GITHUB_RUN_ID": "4242", "GITHUB_RUN_ATTEMPT": "1",
	}[k]
}

// TestReleaseAttaches releases testdata/site onto a multi-platform base in
// a registry and checks what is attached to the deployed digest (the
// index): go-containerregistry's registry with the OCI 1.1 referrers API,
// and CNCF Distribution (Debian's 2.8) with htpasswd and TLS, which has no
// referrers API, so the sha256-<hex> fallback tag lists them.
func TestReleaseAttaches(t *testing.T) {
	const user, pass = "notes", "s3cr3t-Pa55word"
	withAPI := regserver.InProcess(t, regserver.InProcessOptions{Referrers: true})
	ds := regserver.Distribution(t, regserver.DistributionOptions{User: user, Password: pass, TLS: true})
	for _, tc := range []struct {
		name string
		host string
		api  bool
		reg  registry.PublishOptions
		pull []remote.Option
	}{
		{name: "ggcr referrers API", host: withAPI.Host, api: true},
		{
			name: "Distribution fallback tag", host: ds.Host,
			reg: registry.PublishOptions{
				Keychain: registry.Keychain(registry.KeychainOptions{Username: user, Password: pass, NoDefault: true}),
				CAFile:   ds.CAFile,
			},
			pull: []remote.Option{
				remote.WithAuth(&authn.Basic{Username: user, Password: pass}),
				remote.WithTransport(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: ds.CAPool, MinVersion: tls.VersionTLS12}}),
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			base := tc.host + "/library/nginx-test:1.27"
			idx, err := testimage.Index()
			if err != nil {
				t.Fatal(err)
			}
			baseRef, err := name.ParseReference(base)
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.WriteIndex(baseRef, idx, tc.pull...); err != nil {
				t.Fatalf("push base: %v", err)
			}
			baseDigest, err := idx.Digest()
			if err != nil {
				t.Fatal(err)
			}
			site := fixtureRepo(t)
			gitopsDir := filepath.Join(t.TempDir(), "gitops")
			image := tc.host + "/acme/notes"
			opts := ReleaseOptions{
				Build: BuildOptions{
					SiteDir: site, Image: image, Base: base, Registry: tc.reg,
					SBOM: true, Provenance: true, NotesctlVersion: "v0.0.0-test", Getenv: ciEnv,
				},
				GitOps:   gitops.Options{URL: gitopsDir},
				Scaffold: &manifests.ScaffoldOptions{Image: image},
			}
			res, err := Release(ctx, opts, nil)
			if err != nil {
				t.Fatalf("release: %v", err)
			}
			b := res.Build
			if b.SBOMDigest == "" || b.ProvenanceDigest == "" || b.Attestation == nil {
				t.Fatalf("release result has no attestations: %+v", b)
			}
			if !b.Attestation.Subject.MediaType.IsIndex() || b.Attestation.Subject.Digest.String() != b.Digest {
				t.Errorf("subject = %+v, want the index %s", b.Attestation.Subject, b.Digest)
			}
			if d, ok := res.Durations[StageAttest]; !ok {
				t.Errorf("no attest stage in %v", res.Durations)
			} else {
				t.Logf("attest stage: %v (push: %v)", time.Duration(d), time.Duration(res.Durations[StagePush]))
			}
			checkAttached(t, image, tc.reg, b, b.Commit, "sha256:"+baseDigest.Hex)
			if d := res.Build.Attestation.Build.Run.URL; d != "https://github.com/acme/notes/actions/runs/4242/attempts/1" {
				t.Errorf("run URL = %q", d)
			}

			fallback, err := name.NewTag(image + ":" + attest.FallbackTag(b.Attestation.Subject.Digest))
			if err != nil {
				t.Fatal(err)
			}
			_, err = remote.Head(fallback, tc.pull...)
			if tc.api != (err != nil) {
				t.Errorf("fallback tag %s: %v (registry has the referrers API: %v)", fallback, err, tc.api)
			}

			// A no-op release renders nothing and attaches nothing, and
			// reports the referrers the deployed image has.
			again, err := Release(ctx, opts, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !again.Skipped || again.Build.SBOMDigest != b.SBOMDigest || again.Build.ProvenanceDigest != b.ProvenanceDigest {
				t.Errorf("no-op release = skipped %v, sbom %s, provenance %s; want %s, %s", again.Skipped, again.Build.SBOMDigest, again.Build.ProvenanceDigest, b.SBOMDigest, b.ProvenanceDigest)
			}
		})
	}
}

// checkAttached lists the referrers of the release's digest and reads both
// documents back: the SBOM as SPDX 2.3 with tools-golang, listing the theme;
// the provenance as an in-toto statement with SLSA v1, naming the commit
// and the base digest.
func checkAttached(t *testing.T, dest string, reg registry.PublishOptions, b *BuildResult, commit, baseDigest string) {
	t.Helper()
	ctx := context.Background()
	target, err := attest.NewTarget(ctx, dest, reg)
	if err != nil {
		t.Fatal(err)
	}
	subject, err := v1.NewHash(b.Digest)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := attest.List(ctx, target, subject)
	if err != nil {
		t.Fatalf("list referrers: %v", err)
	}
	byType := map[string]v1.Descriptor{}
	for _, d := range refs {
		byType[d.ArtifactType] = d
	}
	if len(refs) != 2 || byType[attest.SBOMArtifactType].Digest.String() != b.SBOMDigest || byType[attest.StatementMediaType].Digest.String() != b.ProvenanceDigest {
		t.Fatalf("referrers of %s = %+v; want the SBOM %s and the provenance %s", subject, refs, b.SBOMDigest, b.ProvenanceDigest)
	}

	sb, err := attest.Fetch(ctx, target, byType[attest.SBOMArtifactType], subject)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sb.Blob, b.Attestation.SBOM) {
		t.Error("the SBOM read back differs from the one attached")
	}
	doc, err := spdxjson.Read(bytes.NewReader(sb.Blob))
	if err != nil {
		t.Fatalf("SBOM is not SPDX JSON: %v", err)
	}
	if doc.SPDXVersion != "SPDX-2.3" {
		t.Errorf("spdxVersion = %s", doc.SPDXVersion)
	}
	if err := spdxlib.ValidateDocument(doc); err != nil {
		t.Errorf("invalid SPDX: %v", err)
	}
	pkgs := map[string]*spdx.Package{}
	for _, p := range doc.Packages {
		pkgs[string(p.PackageSPDXIdentifier)] = p
	}
	if p := pkgs["Module-notes"]; p == nil || p.PackageName != "notes" || !strings.Contains(p.PackageComment, "Hugo theme") || p.PackageVersion != commit {
		t.Errorf("theme package = %+v", p)
	}
	if p := pkgs["Hugo"]; p == nil || p.PackageVersion != "0.145.0" {
		t.Errorf("hugo package = %+v", p)
	}
	if p := pkgs["Site-Source"]; p == nil || p.PackageVersion != commit {
		t.Errorf("source package = %+v", p)
	}
	if baseDigest != "" {
		if p := pkgs["Base-Image"]; p == nil || p.PackageVersion != baseDigest {
			t.Errorf("base package = %+v, want %s", p, baseDigest)
		}
	}
	if p := pkgs["Image"]; p == nil || len(p.PackageChecksums) != 1 || "sha256:"+p.PackageChecksums[0].Value != b.Digest {
		t.Errorf("image package = %+v", p)
	}

	pr, err := attest.Fetch(ctx, target, byType[attest.StatementMediaType], subject)
	if err != nil {
		t.Fatal(err)
	}
	var st intoto.Statement
	if err := protojson.Unmarshal(pr.Blob, &st); err != nil {
		t.Fatalf("provenance is not an in-toto statement: %v", err)
	}
	if err := st.Validate(); err != nil {
		t.Fatal(err)
	}
	if s := st.GetSubject(); len(s) != 1 || "sha256:"+s[0].GetDigest()["sha256"] != b.Digest {
		t.Errorf("statement subject = %v, want %s", s, b.Digest)
	}
	pj, _ := protojson.Marshal(st.GetPredicate())
	var prov slsa.Provenance
	if err := protojson.Unmarshal(pj, &prov); err != nil {
		t.Fatal(err)
	}
	if err := prov.Validate(); err != nil {
		t.Fatal(err)
	}
	src, _ := prov.GetBuildDefinition().GetExternalParameters().AsMap()["source"].(map[string]any)
	if src["commit"] != commit {
		t.Errorf("externalParameters.source = %v, want commit %s", src, commit)
	}
	var sawBase bool
	for _, d := range prov.GetBuildDefinition().GetResolvedDependencies() {
		if d.GetName() == "base" {
			sawBase = "sha256:"+d.GetDigest()["sha256"] == baseDigest
		}
	}
	if baseDigest != "" && !sawBase {
		t.Errorf("resolvedDependencies do not name the base %s: %v", baseDigest, prov.GetBuildDefinition().GetResolvedDependencies())
	}
	if v := prov.GetRunDetails().GetBuilder().GetVersion()["notesctl"]; v != "v0.0.0-test" {
		t.Errorf("builder version = %q", v)
	}
}

// TestLocalReleaseAttaches: --local writes the referrers into the OCI
// layout (index.json names the sha256-<hex> referrers index), and
// --sbom=false --provenance=false attach nothing.
func TestLocalReleaseAttaches(t *testing.T) {
	site := fixtureRepo(t)
	res := localRelease(t, site, filepath.Join(t.TempDir(), "gitops"), "notes.local/notes", func(o *ReleaseOptions) {
		o.Build.SBOM, o.Build.Provenance, o.Build.NotesctlVersion = true, true, "v0.0.0-test"
	})
	layout := "oci:" + filepath.Join(site, ".notesctl", "image")
	checkAttached(t, layout, registry.PublishOptions{}, res.Build, res.Build.Commit, "")
	raw, err := os.ReadFile(filepath.Join(site, ".notesctl", "image", "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `"sha256-` + strings.TrimPrefix(res.Build.Digest, "sha256:") + `"`; !strings.Contains(string(raw), want) {
		t.Errorf("index.json has no referrers tag %s:\n%s", want, raw)
	}
	if err := registry.Verify(context.Background(), layout+":"+res.Build.Tag, registry.PublishOptions{}); err != nil {
		t.Errorf("layout image no longer verifies: %v", err)
	}

	site = fixtureRepo(t)
	off := localRelease(t, site, filepath.Join(t.TempDir(), "gitops"), "notes.local/notes", nil)
	if off.Build.SBOMDigest != "" || off.Build.ProvenanceDigest != "" || off.Build.Attestation != nil {
		t.Errorf("release without sbom/provenance attached %+v", off.Build)
	}
	target, err := attest.NewTarget(context.Background(), "oci:"+filepath.Join(site, ".notesctl", "image"), registry.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := v1.NewHash(off.Build.Digest)
	if refs, err := attest.List(context.Background(), target, d); err != nil || len(refs) != 0 {
		t.Errorf("referrers with both off = %v, %v", refs, err)
	}
}

// TestAttestationsDeterministic: the fixture commit built twice, from two
// directories, a second apart, with another time zone, home, user and host
// name the second time, gives the same SBOM and provenance bytes; their
// digests are pinned in testdata/fixture.attest, so another machine gets
// them too.
func TestAttestationsDeterministic(t *testing.T) {
	build := func() *BuildResult {
		t.Helper()
		res, err := Build(context.Background(), BuildOptions{
			SiteDir: fixtureRepo(t), Image: "notes.example.org/notes", Base: "scratch",
			To:   "oci:" + filepath.Join(t.TempDir(), "layout"),
			SBOM: true, Provenance: true, NotesctlVersion: "v0.0.0-test",
			Getenv: func(string) string { return "" },
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first := build()
	time.Sleep(1100 * time.Millisecond)
	local := time.Local
	time.Local = time.FixedZone("UTC-7", -7*3600)
	t.Cleanup(func() { time.Local = local })
	t.Setenv("TZ", "America/Los_Angeles")
	t.Setenv("HOME", t.TempDir())
	t.Setenv("USER", "someone-else")
	t.Setenv("HOSTNAME", "another-machine")
	second := build()
	if !bytes.Equal(first.Attestation.SBOM, second.Attestation.SBOM) || !bytes.Equal(first.Attestation.Provenance, second.Attestation.Provenance) {
		t.Fatalf("two builds of one commit made different documents:\n%s\n%s", first.Attestation.SBOM, second.Attestation.SBOM)
	}
	if first.SBOMDigest != second.SBOMDigest || first.ProvenanceDigest != second.ProvenanceDigest {
		t.Fatalf("digests differ: %s/%s vs %s/%s", first.SBOMDigest, first.ProvenanceDigest, second.SBOMDigest, second.ProvenanceDigest)
	}
	got := "image " + first.Digest + "\nsbom " + first.SBOMDigest + "\nprovenance " + first.ProvenanceDigest + "\n"
	golden := filepath.Join("testdata", "fixture.attest")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./pipeline -run TestAttestationsDeterministic -update)", err)
	}
	if got != string(want) {
		t.Errorf("fixture attestations drifted:\n got %s want %s(if intended, rerun with -update)", got, want)
	}
}
