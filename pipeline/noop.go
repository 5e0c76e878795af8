package pipeline

import (
	"context"
	"fmt"

	"github.com/notesctl/notesctl/manifests"
	"github.com/notesctl/notesctl/registry"
)

// imageKey is what decides an image's bytes besides the files rendered
// from its commit, as the image's labels record it. Two builds with the
// same key and the same commit give the same image, so a release whose key
// matches the deployed image's has nothing to do.
type imageKey struct {
	Revision, GeneratorVersion, Source string
	BaseName, BaseDigest               string
	WebRoot, Platforms, LayerFormat    string
}

func keyOf(m registry.Metadata) imageKey {
	return imageKey{
		Revision: m.Revision, GeneratorVersion: m.GeneratorVersion, Source: m.Source,
		BaseName: m.BaseName, BaseDigest: m.BaseDigest,
		WebRoot: m.WebRoot, Platforms: m.Platforms, LayerFormat: m.LayerFormat,
	}
}

// differs names the first input that is not what the deployed image was
// built from, in words for the output; "" when none.
func (want imageKey) differs(deployed imageKey) string {
	for _, f := range []struct{ what, deployed, now string }{
		{"site commit", deployed.Revision, want.Revision},
		{"Hugo version", deployed.GeneratorVersion, want.GeneratorVersion},
		{"layer format", deployed.LayerFormat, want.LayerFormat},
		{"base image", deployed.BaseName, want.BaseName},
		{"base image digest", deployed.BaseDigest, want.BaseDigest},
		{"web root", deployed.WebRoot, want.WebRoot},
		{"platforms", orAll(deployed.Platforms), orAll(want.Platforms)},
		{"source repository", deployed.Source, want.Source},
	} {
		if f.deployed != f.now {
			return fmt.Sprintf("the %s changed: the deployed image has %s, this release %s", f.what, orNone(f.deployed), orNone(f.now))
		}
	}
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func orAll(platforms string) string {
	if platforms == "" {
		return "every platform of the base"
	}
	return platforms
}

// wantKey is the key of the image this release would build. It resolves
// the base (its manifest only): a base tag that moved is a new image.
func wantKey(ctx context.Context, opts BuildOptions, p *plannedBuild) (imageKey, error) {
	ropts, err := opts.Registry.RemoteOptions(ctx, opts.Base)
	if err != nil {
		return imageKey{}, err
	}
	baseName, baseDigest, err := registry.ResolveBase(ctx, opts.Base, ropts)
	if err != nil {
		return imageKey{}, err
	}
	platforms, err := registry.PlatformsLabel(opts.Platforms)
	if err != nil {
		return imageKey{}, err
	}
	webRoot := opts.WebRoot
	if webRoot == "" {
		webRoot = registry.DefaultWebRoot
	}
	m := registry.Metadata{
		Source: p.src.RemoteURL, Revision: p.src.Revision(), GeneratorVersion: generatorVersion(),
		BaseName: baseName, BaseDigest: baseDigest,
		WebRoot: webRoot, Platforms: platforms, LayerFormat: registry.LayerFormat,
	}
	// Through the labels and back, so that both sides are normalized alike
	// (the source URL loses its credentials there).
	read, _ := registry.MetadataFromLabels(m.Labels())
	return keyOf(read), nil
}

// deployedRelease decides whether the GitOps repository already deploys the
// image this release would build, from that image's labels. ok: it does,
// and ref is the reference deployed. reason says why or why not.
func deployedRelease(ctx context.Context, opts ReleaseOptions, p *plannedBuild, found []manifests.Found) (ref, reason string, ok bool) {
	if p.src.Dirty {
		return "", "a build of a dirty work tree is always made again", false
	}
	ref = manifests.Deployed{Found: found}.Ref()
	deployed := parseRef(ref)
	if deployed.Tag != p.tag {
		return "", fmt.Sprintf("the GitOps repository deploys %s, not %s", orNone(ref), p.tag), false
	}
	at := p.repo.WithTag(p.tag).String()
	if opts.Build.To != "" {
		at = opts.Build.To + ":" + p.tag
	}
	labels, digest, err := registry.FetchLabels(ctx, at, opts.Build.Registry)
	if err != nil {
		return "", fmt.Sprintf("the deployed tag's image %s could not be read, so it is built again: %v", at, err), false
	}
	have, notesctl := registry.MetadataFromLabels(labels)
	if !notesctl {
		return "", fmt.Sprintf("%s was not built by notesctl (no generator labels)", at), false
	}
	if deployed.Digest != "" && deployed.Digest != digest.String() {
		return "", fmt.Sprintf("%s now points at %s, not at the deployed %s", at, digest, deployed.Digest), false
	}
	want, err := wantKey(ctx, opts.Build, p)
	if err != nil {
		return "", fmt.Sprintf("the base image could not be resolved: %v", err), false
	}
	if d := want.differs(keyOf(have)); d != "" {
		return "", d, false
	}
	return ref, fmt.Sprintf("the GitOps repository already deploys %s, built from commit %s with Hugo %s on the same base image, web root and platforms", ref, p.src.ShortCommit(), generatorVersion()), true
}
