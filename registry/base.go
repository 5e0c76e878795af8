package registry

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DefaultBase is the base image used when none is given: nginx running as a
// non-root user (uid 101) on port 8080, serving DefaultWebRoot.
const DefaultBase = "docker.io/nginxinc/nginx-unprivileged:1.27-alpine"

// BaseScratch names the empty base: the image holds only the site, for use
// as a data image (an init container copying it, a volume image).
const BaseScratch = "scratch"

// defaultPlatform is the platform of a scratch base when none is requested.
var defaultPlatform = v1.Platform{OS: "linux", Architecture: "amd64"}

// resolvedBase is a base image ready to build on: exactly one of scratch,
// image or index is set.
type resolvedBase struct {
	ref     string // as the user gave it, for errors
	scratch bool
	image   v1.Image
	index   v1.ImageIndex
	name    string // for LabelBaseName; "" when there is nothing portable to say
	digest  string // for LabelBaseDigest; "" for scratch
}

// resolveBase finds the base image named by ref: "scratch", "oci:PATH",
// "oci:PATH@sha256:...", "oci:PATH:TAG" or a registry reference.
func resolveBase(ctx context.Context, ref string, ropts []remote.Option) (*resolvedBase, error) {
	switch {
	case ref == BaseScratch:
		return &resolvedBase{ref: ref, scratch: true}, nil
	case strings.HasPrefix(ref, LayoutPrefix):
		return resolveLayoutBase(ref)
	default:
		return resolveRemoteBase(ctx, ref, ropts)
	}
}

// ResolveBase says what the labels of an image built on ref now would
// record of its base: its name and digest ("" for scratch). It reads the
// base's manifest, not its layers.
func ResolveBase(ctx context.Context, ref string, ropts []remote.Option) (name, digest string, err error) {
	if ref == "" {
		ref = DefaultBase
	}
	b, err := resolveBase(ctx, ref, ropts)
	if err != nil {
		return "", "", err
	}
	return b.name, b.digest, nil
}

func resolveRemoteBase(ctx context.Context, ref string, ropts []remote.Option) (*resolvedBase, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("base image %q: not a valid image reference, oci:PATH or %q: %w", ref, BaseScratch, err)
	}
	// The caller's options carry auth and transport; the context comes last
	// so Build's context governs the fetch.
	opts := append(append([]remote.Option{}, ropts...), remote.WithContext(ctx))
	desc, err := remote.Get(r, opts...)
	if err != nil {
		return nil, fmt.Errorf("base image %q: %w", ref, err)
	}
	b := &resolvedBase{ref: ref, name: r.String(), digest: desc.Digest.String()}
	switch {
	case desc.MediaType.IsIndex():
		b.index, err = desc.ImageIndex()
	case desc.MediaType.IsImage():
		b.image, err = desc.Image()
	default:
		return nil, fmt.Errorf("base image %q: unsupported manifest media type %q", ref, desc.MediaType)
	}
	if err != nil {
		return nil, fmt.Errorf("base image %q: %w", ref, err)
	}
	return b, nil
}

// parseLayoutRef splits "oci:PATH", "oci:PATH@sha256:..." and "oci:PATH:NAME".
// NAME may itself hold colons ("oci:base:nginx:1.27"), and so may PATH: the
// whole text is taken as PATH when it is a directory, otherwise the first
// colon that ends an existing directory splits it, otherwise the last colon
// after the last slash (so a missing layout is reported under its path).
func parseLayoutRef(ref string) (dir, digest, tag string, err error) {
	rest := strings.TrimPrefix(ref, LayoutPrefix)
	isDir := func(p string) bool {
		st, err := os.Stat(p)
		return err == nil && st.IsDir()
	}
	switch at := strings.LastIndex(rest, "@"); {
	case at >= 0:
		dir, digest = rest[:at], rest[at+1:]
		if _, err := v1.NewHash(digest); err != nil {
			return "", "", "", fmt.Errorf("base image %q: bad digest %q: %w", ref, digest, err)
		}
	case isDir(rest):
		dir = rest
	default:
		dir = rest
		split := -1
		for i := 0; i < len(rest); i++ {
			if rest[i] == ':' && i > 0 && isDir(rest[:i]) {
				split = i
				break
			}
		}
		if i := strings.LastIndex(rest, ":"); split < 0 && i > strings.LastIndex(rest, "/") {
			split = i
		}
		if split >= 0 {
			dir, tag = rest[:split], rest[split+1:]
			if tag == "" {
				return "", "", "", fmt.Errorf("base image %q: empty name after ':'", ref)
			}
		}
	}
	if dir == "" {
		return "", "", "", fmt.Errorf("base image %q: no layout path after %q", ref, LayoutPrefix)
	}
	return dir, digest, tag, nil
}

// layoutEntry is a manifest found in a layout, with the index that holds it.
type layoutEntry struct {
	desc   v1.Descriptor
	parent v1.ImageIndex
}

func resolveLayoutBase(ref string) (*resolvedBase, error) {
	dir, digest, tag, err := parseLayoutRef(ref)
	if err != nil {
		return nil, err
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("base image %q: reading OCI image layout %s: %w", ref, dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("base image %q: reading index.json in %s: %w", ref, dir, err)
	}
	var picked *layoutEntry
	switch {
	case digest != "":
		picked, err = pickByDigest(idx, im, digest)
	case tag != "":
		picked = pickByTag(idx, im, tag)
	case len(im.Manifests) == 1:
		picked = &layoutEntry{desc: im.Manifests[0], parent: idx}
	}
	if err != nil {
		return nil, fmt.Errorf("base image %q: %w", ref, err)
	}
	if picked == nil {
		what := "the layout holds no manifests"
		switch {
		case digest != "":
			what = "no manifest with digest " + digest
		case tag != "":
			what = fmt.Sprintf("no manifest named %q", tag)
		case len(im.Manifests) > 1:
			what = fmt.Sprintf("the layout holds %d manifests; pick one with oci:PATH@DIGEST or oci:PATH:NAME", len(im.Manifests))
		}
		return nil, fmt.Errorf("base image %q: %s (choices: %s)", ref, what, describeChoices(im.Manifests))
	}
	b := &resolvedBase{ref: ref, name: picked.desc.Annotations[AnnotationRefName], digest: picked.desc.Digest.String()}
	switch mt := picked.desc.MediaType; {
	case mt.IsIndex():
		b.index, err = picked.parent.ImageIndex(picked.desc.Digest)
	case mt.IsImage():
		b.image, err = picked.parent.Image(picked.desc.Digest)
	default:
		return nil, fmt.Errorf("base image %q: manifest %s has unsupported media type %q", ref, picked.desc.Digest, mt)
	}
	if err != nil {
		return nil, fmt.Errorf("base image %q: %w", ref, err)
	}
	return b, nil
}

// pickByDigest finds a manifest listed in index.json, or one level down in
// an index it lists (a single platform of a multi-platform image).
func pickByDigest(idx v1.ImageIndex, im *v1.IndexManifest, digest string) (*layoutEntry, error) {
	h, err := v1.NewHash(digest)
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if d.Digest == h {
			return &layoutEntry{desc: d, parent: idx}, nil
		}
	}
	for _, d := range im.Manifests {
		if !d.MediaType.IsIndex() {
			continue
		}
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("reading index %s: %w", d.Digest, err)
		}
		cm, err := child.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("reading index %s: %w", d.Digest, err)
		}
		for _, cd := range cm.Manifests {
			if cd.Digest == h {
				return &layoutEntry{desc: cd, parent: child}, nil
			}
		}
	}
	return nil, nil
}

// pickByTag matches the ref.name annotation: exactly, or by the tag part of
// a full reference ("example.com/nginx:1.27" matches "1.27"), the two forms
// tools write. An exact match wins.
func pickByTag(idx v1.ImageIndex, im *v1.IndexManifest, tag string) *layoutEntry {
	var suffix []v1.Descriptor
	for _, d := range im.Manifests {
		n := d.Annotations[AnnotationRefName]
		if n == tag {
			return &layoutEntry{desc: d, parent: idx}
		}
		if i := strings.LastIndex(n, ":"); i > strings.LastIndex(n, "/") && n[i+1:] == tag {
			suffix = append(suffix, d)
		}
	}
	if len(suffix) == 1 {
		return &layoutEntry{desc: suffix[0], parent: idx}
	}
	return nil
}

func describeChoices(ds []v1.Descriptor) string {
	if len(ds) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(ds))
	for _, d := range ds {
		s := d.Digest.String()
		var extra []string
		if n := d.Annotations[AnnotationRefName]; n != "" {
			extra = append(extra, "name "+n)
		}
		if d.Platform != nil {
			extra = append(extra, d.Platform.String())
		}
		if d.MediaType.IsIndex() {
			extra = append(extra, "index")
		}
		if len(extra) > 0 {
			s += " (" + strings.Join(extra, ", ") + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// parsePlatforms parses and de-duplicates "os/arch[/variant]" strings,
// keeping their order.
func parsePlatforms(ss []string) ([]v1.Platform, error) {
	var out []v1.Platform
	seen := map[string]bool{}
	for _, s := range ss {
		p, err := v1.ParsePlatform(s)
		if err != nil || p.OS == "" || p.Architecture == "" || strings.Contains(p.OS, "/") {
			return nil, fmt.Errorf("platform %q: want os/arch[/variant], e.g. linux/amd64", s)
		}
		if seen[p.String()] {
			continue
		}
		seen[p.String()] = true
		out = append(out, *p)
	}
	return out, nil
}

// platformMatches reports whether have satisfies the requested platform; a
// request without a variant accepts any variant (linux/arm64 matches
// linux/arm64/v8, linux/arm matches linux/arm/v7).
func platformMatches(want, have v1.Platform) bool {
	return want.OS == have.OS && want.Architecture == have.Architecture &&
		(want.Variant == "" || normVariant(want) == normVariant(have)) &&
		(want.OSVersion == "" || want.OSVersion == have.OSVersion)
}

// normVariant treats arm64 and arm64/v8 as the same platform, as
// container runtimes do (v8 is the only arm64 variant in use).
func normVariant(p v1.Platform) string {
	if p.Architecture == "arm64" && p.Variant == "v8" {
		return ""
	}
	return p.Variant
}

// baseImage is one platform image of the base, with the descriptor fields
// the output index keeps.
type baseImage struct {
	image    v1.Image
	platform v1.Platform
}

// images returns the platform images to build on, in the base's order.
// Children of an index that are not runnable images (attestations, with
// platform unknown/unknown, or artifacts) are skipped.
func (b *resolvedBase) images(want []v1.Platform) ([]baseImage, error) {
	switch {
	case b.scratch:
		if len(want) == 0 {
			want = []v1.Platform{defaultPlatform}
		}
		out := make([]baseImage, 0, len(want))
		for _, p := range want {
			img, err := scratchImage(p)
			if err != nil {
				return nil, err
			}
			out = append(out, baseImage{image: img, platform: p})
		}
		return out, nil
	case b.image != nil:
		cfg, err := b.image.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("base image %q: reading config: %w", b.ref, err)
		}
		have := v1.Platform{}
		haveName := "no platform in its config"
		if p := cfg.Platform(); p != nil {
			have, haveName = *p, p.String()
		}
		for _, w := range want {
			if !platformMatches(w, have) {
				return nil, fmt.Errorf("base image %q has no platform %s (it has: %s)", b.ref, w, haveName)
			}
		}
		return []baseImage{{image: b.image, platform: have}}, nil
	}
	im, err := b.index.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("base image %q: reading index: %w", b.ref, err)
	}
	var all []v1.Descriptor
	for _, d := range im.Manifests {
		if d.MediaType.IsIndex() {
			return nil, fmt.Errorf("base image %q: nested index %s is not supported; name a platform manifest or flat index instead", b.ref, d.Digest)
		}
		if !d.MediaType.IsImage() || d.Platform == nil || d.Platform.OS == "unknown" || d.Platform.Architecture == "unknown" {
			continue
		}
		all = append(all, d)
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("base image %q: its index lists no platform images", b.ref)
	}
	var picked []v1.Descriptor
	if len(want) == 0 {
		picked = all
	} else {
		for _, w := range want {
			found := false
			for _, d := range all {
				if platformMatches(w, *d.Platform) {
					found = true
					break
				}
			}
			if !found {
				return nil, fmt.Errorf("base image %q has no platform %s (it has: %s)", b.ref, w, platformList(all))
			}
		}
		for _, d := range all {
			for _, w := range want {
				if platformMatches(w, *d.Platform) {
					picked = append(picked, d)
					break
				}
			}
		}
	}
	out := make([]baseImage, 0, len(picked))
	for _, d := range picked {
		img, err := b.index.Image(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("base image %q: platform %s (%s): %w", b.ref, d.Platform, d.Digest, err)
		}
		out = append(out, baseImage{image: img, platform: *d.Platform})
	}
	return out, nil
}

func platformList(ds []v1.Descriptor) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.Platform.String()
	}
	return strings.Join(s, ", ")
}

// scratchImage is an empty OCI image for platform p.
func scratchImage(p v1.Platform) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{
		OS:           p.OS,
		Architecture: p.Architecture,
		Variant:      p.Variant,
		OSVersion:    p.OSVersion,
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, fmt.Errorf("building scratch base for %s: %w", p, err)
	}
	return img, nil
}
