package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"

	"github.com/notesctl/notesctl/registry"
	"github.com/notesctl/notesctl/registry/attest"
	"github.com/notesctl/notesctl/render"
)

// Attestation is what the attest stage attached to an image, for the steps
// after it (signing the provenance).
type Attestation struct {
	// Target is where the image and its referrers are.
	Target attest.Target
	// Subject is the image's manifest (or index) descriptor: the digest
	// that is deployed, which the referrers refer to.
	Subject v1.Descriptor
	// Build is what the documents describe.
	Build attest.Build
	// SBOM and Provenance are the documents' bytes (nil when turned off);
	// Provenance is the unsigned in-toto statement.
	SBOM, Provenance []byte
}

// attestInputs is what the earlier stages found out that the documents need.
type attestInputs struct {
	site   *render.Site
	report *registry.BuildReport
	art    registry.Artifact
}

// attestStage makes the SBOM and the provenance of the image just pushed
// and attaches them to its digest as OCI referrers where it was pushed
// (registry or layout). The subject is the manifest or index that is
// deployed: for a multi-platform image that is the index, the digest
// Flux, cosign and the GitOps repository name (ko and build-push-action
// attach to it too).
func attestStage(ctx context.Context, r *runner, opts BuildOptions, p *plannedBuild, in attestInputs, res *BuildResult) error {
	if !opts.SBOM && !opts.Provenance {
		return nil
	}
	return r.stage(StageAttest, func() (string, error) {
		var desc *v1.Descriptor
		var err error
		if in.art.Index != nil {
			desc, err = partial.Descriptor(in.art.Index)
		} else {
			desc, err = partial.Descriptor(in.art.Image)
		}
		if err != nil {
			return "", err
		}
		b := attestBuild(opts, p, in, res)
		target, err := attest.NewTarget(ctx, res.Destination, opts.Registry)
		if err != nil {
			return "", err
		}
		a := &Attestation{Target: target, Subject: v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}, Build: b}
		var parts []string
		if opts.SBOM {
			if a.SBOM, err = attest.SBOM(b); err != nil {
				return "", err
			}
			d, err := attest.Attach(ctx, target, a.Subject, attest.SBOMArtifactType, a.SBOM, attest.SBOMMediaType, attest.SBOMAnnotations(b))
			if err != nil {
				return "", fmt.Errorf("image %s is pushed, but its SBOM is not; not committing: %w", res.Image, err)
			}
			res.SBOMDigest = d.Digest.String()
			parts = append(parts, "SBOM "+short(res.SBOMDigest))
		}
		if opts.Provenance {
			if a.Provenance, err = attest.Provenance(b); err != nil {
				return "", err
			}
			d, err := attest.Attach(ctx, target, a.Subject, attest.StatementMediaType, a.Provenance, attest.StatementMediaType, attest.ProvenanceAnnotations(b))
			if err != nil {
				return "", fmt.Errorf("image %s is pushed, but its provenance is not; not committing: %w", res.Image, err)
			}
			res.ProvenanceDigest = d.Digest.String()
			parts = append(parts, "provenance "+short(res.ProvenanceDigest))
		}
		res.Attestation = a
		return strings.Join(parts, ", ") + " attached to " + short(desc.Digest.String()), nil
	})
}

// attestBuild gathers what the documents say about this build.
func attestBuild(opts BuildOptions, p *plannedBuild, in attestInputs, res *BuildResult) attest.Build {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	d, _ := v1.NewHash(res.Digest)
	b := attest.Build{
		Image: attest.Image{Repository: p.repo.Repository, Tag: p.tag, Digest: d},
		Source: attest.Source{
			Repository: p.src.RemoteURL, Commit: p.src.Commit, Revision: p.src.Revision(),
			Branch: p.src.Branch, Time: p.src.Time,
		},
		Hugo:     render.HugoVersion(),
		Notesctl: opts.NotesctlVersion,
		Run:      attest.CIRun(getenv),
	}
	if b.Notesctl == "" {
		b.Notesctl = "unknown"
	}
	if in.report != nil {
		b.Base = attest.Base{Name: in.report.BaseName, Digest: in.report.BaseDigest}
		b.Platforms = in.report.Platforms
	}
	if in.site != nil {
		for _, m := range in.site.Modules {
			b.Modules = append(b.Modules, attest.Module{Path: m.Path, Version: m.Version, Dir: m.Dir, Theme: m.Theme, Vendored: m.Vendored, GoModule: m.GoModule})
		}
	}
	b.Parameters = map[string]string{
		"base":     portableBase(opts.Base),
		"web-root": opts.WebRoot,
		"serving":  opts.Serving,
		"platform": strings.Join(opts.Platforms, ","),
		"base-url": opts.BaseURL,
		"tag":      opts.TagTemplate,
	}
	if opts.AllowDirty {
		b.Parameters["allow-dirty"] = "true"
	}
	return b
}

// portableBase is the --base setting as the provenance records it: an OCI
// layout's directory is a path on one machine, so only its last element
// (and the tag or digest) is kept.
func portableBase(base string) string {
	path, ok := strings.CutPrefix(base, registry.LayoutPrefix)
	if !ok {
		return base
	}
	return registry.LayoutPrefix + filepath.Base(filepath.Clean(path))
}

// existingAttestations fills the SBOM and provenance digests of a release
// that is a no-op from the referrers the deployed image already has: one
// request, no render. A deployed image without them (released with
// --sbom=false, or by a notesctl before them) does not get them here: the
// SBOM needs the rendered site's modules, and a no-op renders nothing; the
// next release of a new commit has them. That is said in a note.
func existingAttestations(ctx context.Context, r *runner, opts BuildOptions, p *plannedBuild, res *BuildResult) {
	if (!opts.SBOM && !opts.Provenance) || res.Digest == "" {
		return
	}
	dest := p.repo.Repository
	if opts.To != "" {
		dest = opts.To
	}
	subject, err := v1.NewHash(res.Digest)
	if err != nil {
		return
	}
	target, err := attest.NewTarget(ctx, dest, opts.Registry)
	var refs []v1.Descriptor
	if err == nil {
		refs, err = attest.List(ctx, target, subject)
	}
	if err != nil {
		r.note(StageAttest, fmt.Sprintf("could not list the referrers of %s: %v", res.Image, err))
		return
	}
	var missing []string
	for _, k := range []struct {
		on           bool
		artifactType string
		what         string
		out          *string
	}{
		{opts.SBOM, attest.SBOMArtifactType, "SBOM", &res.SBOMDigest},
		{opts.Provenance, attest.StatementMediaType, "provenance", &res.ProvenanceDigest},
	} {
		if !k.on {
			continue
		}
		for _, d := range refs {
			if d.ArtifactType == k.artifactType && (k.artifactType != attest.StatementMediaType || d.Annotations[attest.AnnotationPredicateType] == attest.SLSAProvenanceType) {
				*k.out = d.Digest.String()
				break
			}
		}
		if *k.out == "" {
			missing = append(missing, k.what)
		}
	}
	if len(missing) > 0 {
		r.note(StageAttest, fmt.Sprintf("the deployed image %s has no %s referrer (released without it); a no-op does not render the site again to add it, the next release does", res.Image, strings.Join(missing, " or ")))
	}
}
