package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/notesctl/notesctl/internal/regserver"
)

// TestReleaseAttestFlags: a release prints the SBOM and provenance digests
// (text, JSON), a no-op release prints the same ones again, and
// --sbom=false / --provenance=false (or NOTESCTL_SBOM=false) leave them out.
func TestReleaseAttestFlags(t *testing.T) {
	digestLine := func(name string) *regexp.Regexp {
		return regexp.MustCompile(`(?m)^` + name + `:\s+(sha256:[0-9a-f]{64})$`)
	}
	site := newSite(t)
	r := notesctl(t, site, nil, "", "release", "--local")
	mustSucceed(t, r)
	sbom, prov := digestLine("sbom").FindStringSubmatch(r.stdout), digestLine("provenance").FindStringSubmatch(r.stdout)
	if sbom == nil || prov == nil {
		t.Fatalf("release output names no sbom/provenance digest:\n%s", r.stdout)
	}

	r = notesctl(t, site, nil, "", "release", "--local", "--output", "json")
	mustSucceed(t, r)
	var res struct {
		Skipped bool
		Build   struct{ SBOMDigest, ProvenanceDigest string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	if !res.Skipped || res.Build.SBOMDigest != sbom[1] || res.Build.ProvenanceDigest != prov[1] {
		t.Errorf("no-op release JSON = %+v, want the digests %s, %s", res, sbom[1], prov[1])
	}

	for _, tc := range []struct {
		args []string
		env  []string
	}{
		{args: []string{"--sbom=false", "--provenance=false"}},
		{env: []string{"NOTESCTL_SBOM=false", "NOTESCTL_PROVENANCE=false"}},
	} {
		site := newSite(t)
		r := notesctl(t, site, tc.env, "", append([]string{"release", "--local"}, tc.args...)...)
		mustSucceed(t, r)
		if strings.Contains(r.stdout, "sbom:") || strings.Contains(r.stdout, "provenance:") {
			t.Errorf("%v %v: output names attestations:\n%s", tc.args, tc.env, r.stdout)
		}
	}
}

// TestActionsAttestOutputs: the step outputs sbom-digest and
// provenance-digest; the inputs sbom/provenance take true or false.
func TestActionsAttestOutputs(t *testing.T) {
	reg := regserver.InProcess(t, regserver.InProcessOptions{Referrers: true})
	site := newSite(t)
	inputs := map[string]string{
		"site": site, "images": reg.Host + "/acme/notes", "base": "scratch",
		"gitops-repo": filepath.Join(t.TempDir(), "gitops"), "provenance": "false",
	}
	env, outFile, _ := actionsEnv(t, false, true, inputs)
	env = append(env, "NOTESCTL_INIT=true")
	r := notesctl(t, site, env, "", "release")
	mustSucceed(t, r)
	outputs := readFile(t, outFile)
	if v := outputValue(t, outputs, "sbom-digest"); !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(v) {
		t.Errorf("sbom-digest = %q", v)
	}
	if v := outputValue(t, outputs, "provenance-digest"); v != "" {
		t.Errorf("provenance-digest with provenance false = %q", v)
	}

	inputs["sbom"] = "yes"
	env, _, _ = actionsEnv(t, false, true, inputs)
	r = notesctl(t, site, env, "", "release")
	if r.code == 0 || !strings.Contains(r.all(), `input sbom: want true or false, got "yes"`) {
		t.Errorf("sbom: yes = exit %d:\n%s", r.code, r.all())
	}
}
