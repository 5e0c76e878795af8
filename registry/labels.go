package registry

import (
	"strings"
	"time"

	"github.com/notesctl/notesctl/internal/redact"
)

// Keys of the image config labels and manifest annotations Build writes.
// Labels and annotations carry the same keys and values: labels are what
// `docker inspect` and Kubernetes tooling show, annotations are what
// registries and `crane manifest` show without fetching the config.
const (
	// LabelSource is the URL of the site's source repository.
	LabelSource = "org.opencontainers.image.source"
	// LabelRevision is the source commit SHA ("<sha>-dirty" for a build of a
	// modified work tree).
	LabelRevision = "org.opencontainers.image.revision"
	// LabelCreated is the build timestamp, RFC 3339 in UTC.
	LabelCreated = "org.opencontainers.image.created"
	// LabelVersion is the image tag.
	LabelVersion = "org.opencontainers.image.version"
	// LabelTitle is the site title.
	LabelTitle = "org.opencontainers.image.title"
	// LabelBaseName is the reference of the base image.
	LabelBaseName = "org.opencontainers.image.base.name"
	// LabelBaseDigest is the digest of the base image (of its index for a
	// multi-platform base).
	LabelBaseDigest = "org.opencontainers.image.base.digest"
	// LabelGenerator names the static site generator that rendered the
	// site, e.g. "hugo". The OCI spec has no key for it, hence our own.
	LabelGenerator = "io.notesctl.generator"
	// LabelGeneratorVersion is the generator's version, e.g. "0.145.0".
	LabelGeneratorVersion = "io.notesctl.generator.version"
	// LabelWebRoot is the directory in the image that holds the site.
	LabelWebRoot = "io.notesctl.web-root"
	// LabelPlatforms lists the platforms requested from the base
	// (PlatformsLabel); absent when every platform of the base was taken.
	LabelPlatforms = "io.notesctl.platforms"
	// LabelLayerFormat is LayerFormat at build time: the version of the
	// way files become layers.
	LabelLayerFormat = "io.notesctl.layer-format"
)

// Metadata describes a build; it becomes the image's labels and annotations.
type Metadata struct {
	// Source is the source repository URL. Credentials in it are dropped.
	Source string
	// Revision is the commit SHA, or "<sha>-dirty" for a dirty work tree.
	Revision string
	// Created is the build timestamp (the commit time, or
	// SOURCE_DATE_EPOCH). Build uses BuildOptions.Created when it is zero.
	Created time.Time
	// Version is the image tag.
	Version string
	// Title is a human-readable title for the site.
	Title string
	// Generator names the site generator, e.g. "hugo".
	Generator string
	// GeneratorVersion is the generator version, e.g. "0.145.0".
	GeneratorVersion string
	// BaseName and BaseDigest describe the base image; Build fills them from
	// base resolution when they are empty.
	BaseName   string
	BaseDigest string
	// WebRoot, Platforms and LayerFormat are the rest of what decides the
	// image besides the files and the base; Build fills them.
	WebRoot     string
	Platforms   string
	LayerFormat string
}

// Labels returns the metadata as labels (and annotations), leaving out empty
// values. Created is written RFC 3339 in UTC.
func (m Metadata) Labels() map[string]string {
	out := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			out[k] = v
		}
	}
	set(LabelSource, redact.StripUserinfo(m.Source))
	set(LabelRevision, m.Revision)
	if !m.Created.IsZero() {
		out[LabelCreated] = m.Created.UTC().Format(time.RFC3339)
	}
	set(LabelVersion, m.Version)
	set(LabelTitle, m.Title)
	set(LabelBaseName, m.BaseName)
	set(LabelBaseDigest, m.BaseDigest)
	set(LabelGenerator, m.Generator)
	set(LabelGeneratorVersion, m.GeneratorVersion)
	set(LabelWebRoot, m.WebRoot)
	set(LabelPlatforms, m.Platforms)
	set(LabelLayerFormat, m.LayerFormat)
	return out
}

// MetadataFromLabels reads back what Labels wrote, from an image's config
// labels or manifest annotations. ok is false when the labels were not
// written by notesctl (no generator or revision label) or the created label
// is not RFC 3339; the fields found are returned either way.
func MetadataFromLabels(labels map[string]string) (m Metadata, ok bool) {
	m = Metadata{
		Source:           labels[LabelSource],
		Revision:         labels[LabelRevision],
		Version:          labels[LabelVersion],
		Title:            labels[LabelTitle],
		Generator:        labels[LabelGenerator],
		GeneratorVersion: labels[LabelGeneratorVersion],
		BaseName:         labels[LabelBaseName],
		BaseDigest:       labels[LabelBaseDigest],
		WebRoot:          labels[LabelWebRoot],
		Platforms:        labels[LabelPlatforms],
		LayerFormat:      labels[LabelLayerFormat],
	}
	ok = m.Generator != "" && m.Revision != ""
	if s, found := labels[LabelCreated]; found {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return m, false
		}
		m.Created = t.UTC()
	}
	return m, ok
}

// PlatformsLabel is the value of LabelPlatforms for the platforms requested
// from a base: each normalized (os/arch[/variant]), duplicates dropped, in
// the order given; "" when none was requested.
func PlatformsLabel(requested []string) (string, error) {
	ps, err := parsePlatforms(requested)
	if err != nil {
		return "", err
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return strings.Join(out, ","), nil
}
