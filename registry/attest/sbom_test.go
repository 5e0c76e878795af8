package attest

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
	spdx "github.com/spdx/tools-golang/spdx/v2/v2_3"
	"github.com/spdx/tools-golang/spdxlib"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// testBuild is a build of testdata/site's shape: its theme, plus a vendored
// Hugo module, on the default nginx base.
func testBuild() Build {
	return Build{
		Image: Image{
			Repository: "ghcr.io/acme/notes",
			Tag:        "main-b9060af-1746598316-hugo0.145.0",
			Digest:     v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)},
		},
		Source: Source{
			Repository: "https://github.com/acme/notes.git",
			Commit:     "b9060af2d6b3c8b0c2f4e1a7d9e8f7a6b5c4d3e2",
			Revision:   "b9060af2d6b3c8b0c2f4e1a7d9e8f7a6b5c4d3e2",
			Branch:     "main",
			Time:       time.Unix(1746598316, 0).UTC(),
		},
		Hugo:     "0.145.0",
		Notesctl: "v1.4.0",
		Base:     Base{Name: "docker.io/nginxinc/nginx-unprivileged:1.27-alpine", Digest: "sha256:" + strings.Repeat("cd", 32)},
		Modules: []Module{
			{Path: "notes", Theme: true, Dir: "themes/notes"},
			{Path: "github.com/acme/hugo-shortcodes", Version: "v1.4.2", Vendored: true, Dir: "_vendor/github.com/acme/hugo-shortcodes"},
		},
		Platforms:  []string{"linux/amd64", "linux/arm64"},
		Parameters: map[string]string{"base": "docker.io/nginxinc/nginx-unprivileged:1.27-alpine", "web-root": "/usr/share/nginx/html", "serving": "", "platform": "linux/amd64,linux/arm64"},
		Run:        Run{URL: "https://github.com/acme/notes/actions/runs/42/attempts/1"},
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n%s", name, got)
	}
}

// readSPDX parses an SBOM with tools-golang as SPDX 2.3 and validates it.
func readSPDX(t *testing.T, raw []byte) *spdx.Document {
	t.Helper()
	doc, err := spdxjson.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("SBOM does not parse as SPDX JSON: %v\n%s", err, raw)
	}
	if doc.SPDXVersion != "SPDX-2.3" || doc.DataLicense != "CC0-1.0" {
		t.Errorf("SBOM version/license = %q/%q", doc.SPDXVersion, doc.DataLicense)
	}
	if err := spdxlib.ValidateDocument(doc); err != nil {
		t.Errorf("SBOM is not a valid SPDX document: %v", err)
	}
	return doc
}

func packageNamed(doc *spdx.Document, name string) *spdx.Package {
	for _, p := range doc.Packages {
		if p.PackageName == name {
			return p
		}
	}
	return nil
}

func hasRelationship(doc *spdx.Document, a, kind, b string) bool {
	for _, r := range doc.Relationships {
		if string(r.RefA.ElementRefID) == a && r.Relationship == kind && string(r.RefB.ElementRefID) == b {
			return true
		}
	}
	return false
}

func TestSBOM(t *testing.T) {
	b := testBuild()
	raw, err := SBOM(b)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "sbom.spdx.json", raw)
	doc := readSPDX(t, raw)

	if doc.CreationInfo.Created != "2025-05-07T06:11:56Z" {
		t.Errorf("created = %s, want the commit time", doc.CreationInfo.Created)
	}
	if want := "https://github.com/notesctl/notesctl/spdx/ghcr.io/acme/notes@sha256:" + strings.Repeat("ab", 32); doc.DocumentNamespace != want {
		t.Errorf("namespace = %s", doc.DocumentNamespace)
	}
	described, err := spdxlib.GetDescribedPackageIDs(doc)
	if err != nil || len(described) != 1 || described[0] != "Image" {
		t.Errorf("described = %v, %v", described, err)
	}
	for _, tc := range []struct {
		name, version, purl string
		checksum            string
	}{
		{"ghcr.io/acme/notes", b.Image.Tag, "pkg:oci/notes@sha256%3A" + strings.Repeat("ab", 32) + "?repository_url=ghcr.io%2Facme%2Fnotes&tag=" + b.Image.Tag, strings.Repeat("ab", 32)},
		{"https://github.com/acme/notes.git", b.Source.Commit, "", ""},
		{"docker.io/nginxinc/nginx-unprivileged:1.27-alpine", b.Base.Digest, "pkg:oci/nginx-unprivileged@sha256%3A" + strings.Repeat("cd", 32) + "?repository_url=docker.io%2Fnginxinc%2Fnginx-unprivileged", strings.Repeat("cd", 32)},
		{"hugo", "0.145.0", "pkg:golang/github.com/gohugoio/hugo@v0.145.0", ""},
		{"notesctl", "v1.4.0", "pkg:golang/github.com/notesctl/notesctl@v1.4.0", ""},
		{"notes", b.Source.Commit, "", ""},
		{"github.com/acme/hugo-shortcodes", "v1.4.2", "pkg:golang/github.com/acme/hugo-shortcodes@v1.4.2", ""},
	} {
		p := packageNamed(doc, tc.name)
		if p == nil {
			t.Errorf("no package %s", tc.name)
			continue
		}
		if p.PackageVersion != tc.version {
			t.Errorf("%s: version %q, want %q", tc.name, p.PackageVersion, tc.version)
		}
		var purl string
		for _, r := range p.PackageExternalReferences {
			if r.RefType == common.TypePackageManagerPURL {
				purl = r.Locator
			}
		}
		if purl != tc.purl {
			t.Errorf("%s: purl %q, want %q", tc.name, purl, tc.purl)
		}
		if tc.checksum != "" && (len(p.PackageChecksums) != 1 || p.PackageChecksums[0].Value != tc.checksum) {
			t.Errorf("%s: checksums %v", tc.name, p.PackageChecksums)
		}
	}
	if p := packageNamed(doc, "https://github.com/acme/notes.git"); p != nil && p.PackageDownloadLocation != "git+https://github.com/acme/notes.git@"+b.Source.Commit {
		t.Errorf("source download location = %s", p.PackageDownloadLocation)
	}
	for _, r := range [][3]string{
		{"Image", "DESCENDANT_OF", "Base-Image"},
		{"Image", "GENERATED_FROM", "Site-Source"},
		{"Hugo", "BUILD_TOOL_OF", "Image"},
		{"notesctl", "BUILD_TOOL_OF", "Image"},
		{"Image", "DEPENDS_ON", "Module-notes"},
		{"Image", "DEPENDS_ON", "Module-github.com-acme-hugo-shortcodes"},
	} {
		if !hasRelationship(doc, r[0], r[1], r[2]) {
			t.Errorf("no relationship %v", r)
		}
	}
}

// TestSBOMDeterministic: the same build gives the same bytes, whatever the
// time zone of the commit time or the order the modules come in.
func TestSBOMDeterministic(t *testing.T) {
	a, err := SBOM(testBuild())
	if err != nil {
		t.Fatal(err)
	}
	b := testBuild()
	b.Source.Time = b.Source.Time.In(time.FixedZone("UTC+9", 9*3600))
	c, err := SBOM(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, c) {
		t.Errorf("commit time in another zone changed the SBOM")
	}
	b = testBuild()
	b.Image.Digest.Hex = strings.Repeat("ef", 32)
	d, err := SBOM(b)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, d) || readSPDX(t, d).DocumentNamespace == readSPDX(t, a).DocumentNamespace {
		t.Errorf("another image digest gave the same SBOM namespace")
	}
}

func TestSBOMScratchAndRefusals(t *testing.T) {
	b := testBuild()
	b.Base = Base{Name: "scratch"}
	b.Source.Repository = ""
	raw, err := SBOM(b)
	if err != nil {
		t.Fatal(err)
	}
	doc := readSPDX(t, raw)
	for _, p := range doc.Packages {
		if p.PrimaryPackagePurpose == "CONTAINER" && p.PackageSPDXIdentifier != "Image" {
			t.Errorf("scratch build lists a base image package %s", p.PackageName)
		}
	}
	if p := packageNamed(doc, "site"); p == nil || p.PackageDownloadLocation != "NOASSERTION" {
		t.Errorf("source without a URL = %+v", p)
	}
	for name, mutate := range map[string]func(*Build){
		"no digest": func(b *Build) { b.Image.Digest = v1.Hash{} },
		"no commit": func(b *Build) { b.Source.Commit = "" },
		"no hugo":   func(b *Build) { b.Hugo = "" },
	} {
		b := testBuild()
		mutate(&b)
		if _, err := SBOM(b); err == nil {
			t.Errorf("%s: no error", name)
		}
		if _, err := Provenance(b); err == nil {
			t.Errorf("%s: provenance: no error", name)
		}
	}
}
