package attest

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	slsa "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// readStatement parses a statement with the in-toto attestation library and
// validates it and its SLSA provenance v1 predicate.
func readStatement(t *testing.T, raw []byte) (*intoto.Statement, *slsa.Provenance) {
	t.Helper()
	var st intoto.Statement
	if err := protojson.Unmarshal(raw, &st); err != nil {
		t.Fatalf("statement does not parse as an in-toto Statement v1: %v\n%s", err, raw)
	}
	if err := st.Validate(); err != nil {
		t.Fatalf("invalid statement: %v", err)
	}
	if st.GetPredicateType() != SLSAProvenanceType {
		t.Errorf("predicateType = %s", st.GetPredicateType())
	}
	pj, err := protojson.Marshal(st.GetPredicate())
	if err != nil {
		t.Fatal(err)
	}
	var prov slsa.Provenance
	if err := protojson.Unmarshal(pj, &prov); err != nil {
		t.Fatalf("predicate is not SLSA provenance v1: %v", err)
	}
	if err := prov.Validate(); err != nil {
		t.Fatalf("invalid SLSA provenance: %v", err)
	}
	return &st, &prov
}

func TestProvenance(t *testing.T) {
	b := testBuild()
	raw, err := Provenance(b)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "provenance.intoto.json", raw)
	st, prov := readStatement(t, raw)

	if s := st.GetSubject(); len(s) != 1 || s[0].GetName() != "ghcr.io/acme/notes" || s[0].GetDigest()["sha256"] != b.Image.Digest.Hex {
		t.Errorf("subject = %v", s)
	}
	bd := prov.GetBuildDefinition()
	if bd.GetBuildType() != BuildType {
		t.Errorf("buildType = %s", bd.GetBuildType())
	}
	ext := bd.GetExternalParameters().AsMap()
	src, _ := ext["source"].(map[string]any)
	if src["commit"] != b.Source.Commit || src["repository"] != b.Source.Repository {
		t.Errorf("externalParameters.source = %v", src)
	}
	params, _ := ext["parameters"].(map[string]any)
	if params["base"] != b.Base.Name || params["web-root"] != "/usr/share/nginx/html" {
		t.Errorf("externalParameters.parameters = %v", params)
	}
	if _, ok := params["serving"]; ok {
		t.Errorf("an unset parameter is listed: %v", params)
	}
	deps := map[string]*intoto.ResourceDescriptor{}
	for _, d := range bd.GetResolvedDependencies() {
		deps[d.GetName()] = d
	}
	if d := deps["base"]; d == nil || "sha256:"+d.GetDigest()["sha256"] != b.Base.Digest {
		t.Errorf("base dependency = %v, want digest %s", d, b.Base.Digest)
	}
	if d := deps["site"]; d == nil || d.GetDigest()["gitCommit"] != b.Source.Commit {
		t.Errorf("site dependency = %v", d)
	}
	if d := deps["hugo"]; d == nil || d.GetUri() != "pkg:golang/github.com/gohugoio/hugo@v0.145.0" {
		t.Errorf("hugo dependency = %v", d)
	}
	if d := deps["github.com/acme/hugo-shortcodes"]; d == nil || d.GetUri() != "pkg:golang/github.com/acme/hugo-shortcodes@v1.4.2" {
		t.Errorf("module dependency = %v", d)
	}
	if d := deps["notes"]; d == nil || d.GetAnnotations().AsMap()["theme"] != true {
		t.Errorf("theme dependency = %v", d)
	}
	rd := prov.GetRunDetails()
	if rd.GetBuilder().GetId() != BuilderID || rd.GetBuilder().GetVersion()["notesctl"] != "v1.4.0" {
		t.Errorf("builder = %v", rd.GetBuilder())
	}
	if rd.GetMetadata().GetInvocationId() != b.Run.URL || rd.GetMetadata().GetStartedOn() != nil {
		t.Errorf("metadata = %v, want the run URL and no time", rd.GetMetadata())
	}
	// No wall-clock time anywhere: the same build later gives the same bytes.
	time.Sleep(1100 * time.Millisecond)
	again, err := Provenance(testBuild())
	if err != nil || !bytes.Equal(raw, again) {
		t.Errorf("provenance changed between two calls a second apart (%v)", err)
	}
	var generic map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil || generic["_type"] != StatementType {
		t.Errorf("_type = %v, %v", generic["_type"], err)
	}
}

func TestCIRun(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, ""},
		{map[string]string{"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/notes", "GITHUB_RUN_ID": "42", "GITHUB_RUN_ATTEMPT": "2"}, "https://github.com/acme/notes/actions/runs/42/attempts/2"},
		{map[string]string{"GITHUB_SERVER_URL": "http://gitea.local:3000/", "GITHUB_REPOSITORY": "acme/notes", "GITHUB_RUN_ID": "7"}, "http://gitea.local:3000/acme/notes/actions/runs/7"},
		{map[string]string{"GITHUB_SERVER_URL": "https://user:tok@github.com", "GITHUB_REPOSITORY": "acme/notes", "GITHUB_RUN_ID": "1"}, "https://github.com/acme/notes/actions/runs/1"},
		{map[string]string{"GITHUB_SERVER_URL": "github.com", "GITHUB_REPOSITORY": "acme/notes", "GITHUB_RUN_ID": "1"}, ""},
		{map[string]string{"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/notes"}, ""},
	} {
		if got := CIRun(func(k string) string { return tc.env[k] }).URL; got != tc.want {
			t.Errorf("CIRun(%v) = %q, want %q", tc.env, got, tc.want)
		}
	}
}

// TestProvenanceWithoutRun: outside CI there are no run metadata, and the
// statement still validates.
func TestProvenanceWithoutRun(t *testing.T) {
	b := testBuild()
	b.Run = Run{}
	b.Base = Base{Name: "scratch"}
	raw, err := Provenance(b)
	if err != nil {
		t.Fatal(err)
	}
	_, prov := readStatement(t, raw)
	if prov.GetRunDetails().GetMetadata() != nil {
		t.Errorf("metadata outside CI = %v", prov.GetRunDetails().GetMetadata())
	}
	for _, d := range prov.GetBuildDefinition().GetResolvedDependencies() {
		if d.GetName() == "base" {
			t.Errorf("scratch build has a base dependency %v", d)
		}
	}
}
