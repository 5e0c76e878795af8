package attest

import (
	"bytes"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
	spdx "github.com/spdx/tools-golang/spdx/v2/v2_3"
)

// Media and artifact types of the SBOM referrer.
const (
	SBOMArtifactType = "application/spdx+json"
	SBOMMediaType    = "application/spdx+json"
)

// AnnotationCreated is the OCI annotation for when an artifact was made;
// referrers carry the site commit time there, never the wall clock.
const AnnotationCreated = "org.opencontainers.image.created"

// Build describes one image build: everything the SBOM and the provenance
// say, and nothing that differs between machines or runs of the same
// commit (except Run, which names a CI run when there is one).
type Build struct {
	Image  Image
	Source Source
	// Hugo is the version of the embedded Hugo, e.g. "0.145.0".
	Hugo string
	// Notesctl is notesctl's own version.
	Notesctl string
	// Base is the base image; the zero Base (or Name "scratch") means none.
	Base Base
	// Modules are the site's themes and Hugo modules.
	Modules []Module
	// Platforms of the image ("linux/amd64"), in manifest order.
	Platforms []string
	// Parameters are the settings that change the image, by flag name
	// ("base", "web-root", "serving", "platform", "base-url", "tag"); only
	// those set go into the provenance.
	Parameters map[string]string
	// Run names the CI run that built it (empty outside CI).
	Run Run
}

// Image is the image the records are about.
type Image struct {
	// Repository as the user wrote it (ghcr.io/acme/notes), or oci:PATH.
	Repository string
	Tag        string
	// Digest of the manifest or index that is pushed and deployed.
	Digest v1.Hash
}

// Source is the site commit the image was rendered from.
type Source struct {
	// Repository is the site repository's URL (no credentials), may be empty.
	Repository string
	Commit     string
	// Revision is Commit, or "<sha>-dirty" for a dirty work tree.
	Revision string
	Branch   string
	// Time is the commit time (or SOURCE_DATE_EPOCH): the documents'
	// creation time.
	Time time.Time
}

// Base is the base image by digest.
type Base struct {
	Name   string // as resolved: docker.io/nginxinc/nginx-unprivileged:1.27-alpine
	Digest string // sha256:...
}

// Module is a theme or Hugo module of the site.
type Module struct {
	Path     string
	Version  string // Go module version; empty for a theme in the site's tree
	Dir      string // relative to the site root, when inside it
	Theme    bool
	Vendored bool
	GoModule bool
}

func (b Base) none() bool { return b.Name == "" || b.Name == "scratch" }

// SBOM returns the SPDX 2.3 JSON document for b: the image, the site source
// it was rendered from, the base image by digest, Hugo, notesctl, and the
// site's themes and Hugo modules with their versions. The same Build gives
// the same bytes: the creation time is the commit time, the namespace is
// derived from the image digest, and the packages are in a fixed order.
func SBOM(b Build) ([]byte, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	doc := &spdx.Document{
		SPDXVersion:       spdx.Version,
		DataLicense:       spdx.DataLicense,
		SPDXIdentifier:    "DOCUMENT",
		DocumentName:      b.Image.Repository + ":" + b.Image.Tag,
		DocumentNamespace: namespace(b.Image),
		CreationInfo: &spdx.CreationInfo{
			Creators: []common.Creator{{CreatorType: "Tool", Creator: "notesctl-" + b.Notesctl}},
			Created:  b.Source.Time.UTC().Format(time.RFC3339),
		},
	}
	imageID := common.ElementID("Image")
	image := &spdx.Package{
		PackageName:             b.Image.Repository,
		PackageSPDXIdentifier:   imageID,
		PackageVersion:          b.Image.Tag,
		PackageDownloadLocation: "NOASSERTION",
		PackageChecksums:        checksums(b.Image.Digest.String()),
		PrimaryPackagePurpose:   "CONTAINER",
		PackageExternalReferences: []*spdx.PackageExternalReference{
			purlRef(ociPURL(b.Image.Repository, b.Image.Digest.String(), b.Image.Tag)),
		},
	}
	if len(b.Platforms) > 0 {
		image.PackageComment = "platforms: " + strings.Join(b.Platforms, ", ")
	}
	doc.Packages = append(doc.Packages, image)
	rel := func(a common.ElementID, kind string, bID common.ElementID) {
		doc.Relationships = append(doc.Relationships, &spdx.Relationship{
			RefA: common.MakeDocElementID("", string(a)), RefB: common.MakeDocElementID("", string(bID)), Relationship: kind,
		})
	}
	rel("DOCUMENT", common.TypeRelationshipDescribe, imageID)

	sourceID := common.ElementID("Site-Source")
	source := &spdx.Package{
		PackageName:             sourceName(b.Source.Repository),
		PackageSPDXIdentifier:   sourceID,
		PackageVersion:          b.Source.Revision,
		PackageDownloadLocation: gitLocation(b.Source.Repository, b.Source.Commit),
		PrimaryPackagePurpose:   "SOURCE",
		PackageComment:          "the site repository's commit that was rendered" + branchNote(b.Source.Branch),
	}
	doc.Packages = append(doc.Packages, source)
	rel(imageID, common.TypeRelationshipGeneratedFrom, sourceID)

	if !b.Base.none() {
		baseID := common.ElementID("Base-Image")
		doc.Packages = append(doc.Packages, &spdx.Package{
			PackageName:             b.Base.Name,
			PackageSPDXIdentifier:   baseID,
			PackageVersion:          b.Base.Digest,
			PackageDownloadLocation: "NOASSERTION",
			PackageChecksums:        checksums(b.Base.Digest),
			PrimaryPackagePurpose:   "CONTAINER",
			PackageExternalReferences: []*spdx.PackageExternalReference{
				purlRef(ociPURL(baseRepository(b.Base.Name), b.Base.Digest, "")),
			},
		})
		rel(imageID, common.TypeRelationshipDescendantOf, baseID)
	}

	hugoID := common.ElementID("Hugo")
	doc.Packages = append(doc.Packages, &spdx.Package{
		PackageName:             "hugo",
		PackageSPDXIdentifier:   hugoID,
		PackageVersion:          b.Hugo,
		PackageDownloadLocation: "https://github.com/gohugoio/hugo/tree/v" + b.Hugo,
		PrimaryPackagePurpose:   "APPLICATION",
		PackageComment:          "the site generator, embedded in notesctl; it rendered every page",
		PackageExternalReferences: []*spdx.PackageExternalReference{
			purlRef("pkg:golang/github.com/gohugoio/hugo@v" + b.Hugo),
		},
	})
	rel(hugoID, common.TypeRelationshipBuildToolOf, imageID)

	notesctlID := common.ElementID("notesctl")
	doc.Packages = append(doc.Packages, &spdx.Package{
		PackageName:             "notesctl",
		PackageSPDXIdentifier:   notesctlID,
		PackageVersion:          b.Notesctl,
		PackageDownloadLocation: "https://github.com/notesctl/notesctl",
		PrimaryPackagePurpose:   "APPLICATION",
		PackageComment:          "built the image from the rendered site",
		PackageExternalReferences: []*spdx.PackageExternalReference{
			purlRef("pkg:golang/github.com/notesctl/notesctl@" + b.Notesctl),
		},
	})
	rel(notesctlID, common.TypeRelationshipBuildToolOf, imageID)

	used := map[common.ElementID]bool{}
	for _, m := range b.Modules {
		id := common.ElementID("Module-" + spdxIDPart(m.Path))
		for n := 2; used[id]; n++ {
			id = common.ElementID(fmt.Sprintf("Module-%s-%d", spdxIDPart(m.Path), n))
		}
		used[id] = true
		doc.Packages = append(doc.Packages, modulePackage(id, m, b.Source))
		rel(imageID, common.TypeRelationshipDependsOn, id)
	}

	var buf bytes.Buffer
	if err := spdxjson.Write(doc, &buf, spdxjson.Indent("  "), spdxjson.EscapeHTML(false)); err != nil {
		return nil, fmt.Errorf("write SPDX document: %w", err)
	}
	return buf.Bytes(), nil
}

func modulePackage(id common.ElementID, m Module, src Source) *spdx.Package {
	p := &spdx.Package{
		PackageName:             m.Path,
		PackageSPDXIdentifier:   id,
		PackageVersion:          m.Version,
		PackageDownloadLocation: "NOASSERTION",
		PrimaryPackagePurpose:   "LIBRARY",
	}
	kind := "Hugo module"
	if m.Theme {
		kind = "Hugo theme"
	}
	switch {
	case m.Version != "":
		p.PackageExternalReferences = []*spdx.PackageExternalReference{purlRef("pkg:golang/" + m.Path + "@" + m.Version)}
		if m.GoModule || m.Vendored {
			p.PackageDownloadLocation = "https://" + m.Path
		}
	default:
		// A theme in the site's own tree is versioned with the site.
		p.PackageVersion = src.Revision
		p.PackageDownloadLocation = gitLocation(src.Repository, src.Commit)
	}
	where := ""
	switch {
	case m.Vendored:
		where = ", vendored in the site repository"
	case m.Dir != "":
		where = ", in the site repository"
	}
	if m.Dir != "" {
		where += " at " + m.Dir
	}
	p.PackageComment = kind + where
	return p
}

func (b Build) check() error {
	switch {
	case b.Image.Repository == "" || b.Image.Digest.Hex == "":
		return fmt.Errorf("attest: the build names no image repository and digest")
	case b.Source.Commit == "":
		return fmt.Errorf("attest: the build of %s names no site commit", b.Image.Repository)
	case b.Hugo == "" || b.Notesctl == "":
		return fmt.Errorf("attest: the build of %s names no Hugo or notesctl version", b.Image.Repository)
	}
	return nil
}

// namespace is unique per image: the project URL, the repository and the
// digest; the same image always gets the same namespace.
func namespace(img Image) string {
	return "https://github.com/notesctl/notesctl/spdx/" + strings.TrimPrefix(img.Repository, "oci:") + "@" + img.Digest.String()
}

func checksums(digest string) []common.Checksum {
	alg, hex, ok := strings.Cut(digest, ":")
	if !ok || alg != "sha256" {
		return nil
	}
	return []common.Checksum{{Algorithm: common.SHA256, Value: hex}}
}

func purlRef(purl string) *spdx.PackageExternalReference {
	return &spdx.PackageExternalReference{Category: common.CategoryPackageManager, RefType: common.TypePackageManagerPURL, Locator: purl}
}

// ociPURL is the package URL of an OCI image: pkg:oci/NAME@DIGEST with the
// repository (and tag) as qualifiers.
func ociPURL(repository, digest, tag string) string {
	repository = strings.TrimPrefix(repository, "oci:")
	last := repository[strings.LastIndex(repository, "/")+1:]
	q := url.Values{}
	q.Set("repository_url", repository)
	if tag != "" {
		q.Set("tag", tag)
	}
	return "pkg:oci/" + strings.ToLower(last) + "@" + strings.ReplaceAll(digest, ":", "%3A") + "?" + q.Encode()
}

// baseRepository drops the tag and digest of a base reference.
func baseRepository(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

func sourceName(repo string) string {
	if repo == "" {
		return "site"
	}
	return repo
}

// gitLocation is SPDX's VCS download location: git+URL@COMMIT.
func gitLocation(repo, commit string) string {
	if repo == "" {
		return "NOASSERTION"
	}
	if strings.HasPrefix(repo, "git+") {
		return repo + "@" + commit
	}
	return "git+" + repo + "@" + commit
}

func branchNote(branch string) string {
	if branch == "" {
		return ""
	}
	return " (branch " + branch + ")"
}

var notIDChar = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

func spdxIDPart(s string) string {
	s = strings.Trim(notIDChar.ReplaceAllString(s, "-"), "-")
	if s == "" {
		return "module"
	}
	return s
}
