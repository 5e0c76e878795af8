package pipeline

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/notesctl/notesctl/registry"
	"github.com/notesctl/notesctl/render"
)

// BuildOptions are the inputs of the first half of a release: render a site
// commit and publish it as an image.
type BuildOptions struct {
	// Source.
	SiteDir         string
	Revision        string
	AllowDirty      bool
	Branch          string
	SourceDateEpoch *time.Time

	// Render.
	RequireHugo   string
	AllowWarnings bool
	BaseURL       string

	// Image: Image is the repository the GitOps repo refers to (and the
	// push target unless To is set); To is "oci:PATH" for a layout.
	Image       string
	To          string
	Base        string
	WebRoot     string
	Serving     string // registry.ServingAuto (""), ServingNginx or ServingNone
	Platforms   []string
	TagTemplate string
	ExtraTags   []string

	// Registry access for the base and the push.
	Registry registry.PublishOptions

	// Supply chain: SBOM and Provenance attach an SPDX SBOM and a SLSA
	// provenance statement to the image as OCI referrers (attest.go).
	SBOM, Provenance bool
	// NotesctlVersion is notesctl's own version, recorded in both.
	NotesctlVersion string
	// Getenv reads the CI run variables for the provenance (nil: os.Getenv).
	Getenv func(string) string
}

// BuildResult is what a build published.
type BuildResult struct {
	Image          string        `json:"image"` // repository:tag@digest, as the GitOps repo will hold it
	Repository     string        `json:"repository"`
	Tag            string        `json:"tag"`
	Tags           []string      `json:"tags"`
	Digest         string        `json:"digest"`
	Destination    string        `json:"destination"` // registry repository or oci:PATH
	Commit         string        `json:"commit"`
	Revision       string        `json:"revision"`
	Branch         string        `json:"branch"`
	CommitTime     time.Time     `json:"commitTime"`
	Pages          int           `json:"pages"`
	Files          int           `json:"files"`
	SiteBytes      int64         `json:"siteBytes"`
	Layers         []LayerResult `json:"layers"`
	BytesUploaded  int64         `json:"bytesUploaded"`
	AlreadyPresent bool          `json:"alreadyPresent"`
	Generator      string        `json:"generator"`
	GeneratorVer   string        `json:"generatorVersion"`
	// SBOMDigest and ProvenanceDigest are the referrer manifests attached
	// to Digest (empty when turned off).
	SBOMDigest       string `json:"sbomDigest,omitempty"`
	ProvenanceDigest string `json:"provenanceDigest,omitempty"`
	// Attestation holds the attached documents for later steps.
	Attestation *Attestation `json:"-"`
}

// LayerResult describes one of the layers notesctl added.
type LayerResult struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	Files  int    `json:"files"`
}

// plannedBuild is a build up to the point where the tag is known: enough to
// decide whether anything needs doing.
type plannedBuild struct {
	src  *render.Source
	tag  string
	tags []string
	// repo is --image as the user wrote it.
	repo registry.Ref
}

func (o BuildOptions) validate() error {
	if o.Image == "" {
		return fmt.Errorf("no image repository: pass --image (e.g. ghcr.io/acme/notes)")
	}
	if o.To != "" && !strings.HasPrefix(o.To, "oci:") {
		return fmt.Errorf("--to %q: only oci:PATH is supported (to push to a registry, name it in --image)", o.To)
	}
	if o.To == "oci:" {
		return fmt.Errorf("--to %q: oci: needs a path, e.g. oci:./out/image", o.To)
	}
	return nil
}

// imageRepository parses --image. A tag or digest in it is refused: the tag
// is derived from the commit. The result keeps the user's spelling, which
// is what the GitOps repository, the outputs and the labels carry.
func imageRepository(image string, insecure bool) (registry.Ref, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	if strings.Contains(image, "@") {
		return registry.Ref{}, fmt.Errorf("--image %q: give a repository without a digest; notesctl derives the tag and digest", image)
	}
	ref, err := registry.ParseRef(image, opts...)
	if err != nil {
		return registry.Ref{}, fmt.Errorf("--image %q is not a valid image repository: %v", image, err)
	}
	if ref.Tag != "" {
		return registry.Ref{}, fmt.Errorf("--image %q: give a repository without a tag (the tag is derived from the commit): %s", image, ref.Repository)
	}
	// Docker Hub's implicit "library/" namespace is refused: the image
	// would be pushed to docker.io/library/..., which is not the name given.
	if _, err := name.NewRepository(image, append(opts, name.StrictValidation)...); err != nil {
		return registry.Ref{}, fmt.Errorf("--image %q is not a valid image repository: %v", image, err)
	}
	return ref, nil
}

// plan reads the source and works out the tags.
func plan(r *runner, opts BuildOptions) (*plannedBuild, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	repo, err := imageRepository(opts.Image, opts.Registry.Insecure)
	if err != nil {
		return nil, err
	}
	p := &plannedBuild{repo: repo}
	err = r.stage(StageSource, func() (string, error) {
		// The files are read by the render, not here, and so is the work
		// tree checked for uncommitted changes: a release of a commit that
		// is deployed already never needs either (issue #15).
		src, err := render.OpenSource(render.SourceOptions{
			SiteDir:          opts.SiteDir,
			Revision:         opts.Revision,
			AllowDirty:       opts.AllowDirty,
			Branch:           opts.Branch,
			SourceDateEpoch:  opts.SourceDateEpoch,
			CheckCleanOnLoad: true,
		})
		if err != nil {
			return "", err
		}
		p.src = src
		p.tag, err = registry.RenderTag(opts.TagTemplate, registry.TagData{
			Branch:           src.Branch,
			SHA:              src.Commit,
			ShortSHA:         src.ShortCommit(),
			Timestamp:        src.Time.Unix(),
			Generator:        render.GeneratorName,
			GeneratorVersion: render.HugoVersion(),
			Dirty:            src.Dirty,
		})
		if err != nil {
			return "", err
		}
		p.tags = []string{p.tag}
		for _, t := range opts.ExtraTags {
			st := registry.SanitizeTag(t)
			if st == "" {
				return "", fmt.Errorf("--extra-tag %q: nothing of it is valid in an OCI tag", t)
			}
			if !contains(p.tags, st) {
				p.tags = append(p.tags, st)
			}
		}
		state := "commit " + src.ShortCommit()
		if src.Dirty {
			state += " (dirty work tree)"
		}
		return fmt.Sprintf("%s on %s", state, src.Branch), nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Build renders the site commit and publishes the image.
func Build(ctx context.Context, opts BuildOptions, sink Sink) (*BuildResult, error) {
	r := newRunner(sink)
	p, err := plan(r, opts)
	if err != nil {
		return nil, err
	}
	return buildPlanned(ctx, r, opts, p)
}

func buildPlanned(ctx context.Context, r *runner, opts BuildOptions, p *plannedBuild) (*BuildResult, error) {
	res := &BuildResult{
		Repository:   p.repo.Repository,
		Tag:          p.tag,
		Tags:         p.tags,
		Commit:       p.src.Commit,
		Revision:     p.src.Revision(),
		Branch:       p.src.Branch,
		CommitTime:   p.src.Time,
		Generator:    render.GeneratorName,
		GeneratorVer: render.HugoVersion(),
	}

	// Hugo publishes into a temporary directory on disk, which the image
	// stage reads and then it goes: a 10,000-page site's published tree
	// kept in memory made the release's peak 1.33x the hugo CLI's.
	publishDir, err := os.MkdirTemp("", "notesctl-public-")
	if err != nil {
		return nil, fmt.Errorf("a directory for the rendered site: %w", err)
	}
	defer os.RemoveAll(publishDir)

	var site *render.Site
	err = r.stage(StageRender, func() (string, error) {
		var err error
		site, err = render.Render(ctx, p.src, render.Options{
			PublishDir:    publishDir,
			BaseURL:       opts.BaseURL,
			RequireHugo:   opts.RequireHugo,
			AllowWarnings: opts.AllowWarnings,
			// Sinks throttle what they show; every file is an event.
			Progress: func(written int) {
				r.sink.Event(Event{Stage: StageRender, Kind: EventProgress, Files: written})
			},
		})
		if err != nil {
			return "", err
		}
		res.Pages, res.Files, res.SiteBytes = site.Pages, site.FileCount, site.Bytes
		for _, w := range site.Warnings {
			r.note(StageRender, w)
		}
		return fmt.Sprintf("%d pages, %d files, %s with Hugo %s", site.Pages, site.FileCount, humanBytes(site.Bytes), render.HugoVersion()), nil
	})
	if err != nil {
		return nil, err
	}

	var art registry.Artifact
	var report *registry.BuildReport
	err = r.stage(StageImage, func() (string, error) {
		ropts, err := opts.Registry.RemoteOptions(ctx, opts.Base)
		if err != nil {
			return "", err
		}
		art, report, err = registry.Build(ctx, site.Files, registry.BuildOptions{
			Base:      opts.Base,
			WebRoot:   opts.WebRoot,
			Serving:   opts.Serving,
			Platforms: opts.Platforms,
			Created:   p.src.Time,
			Meta: registry.Metadata{
				Source:           p.src.RemoteURL,
				Revision:         p.src.Revision(),
				Created:          p.src.Time,
				Version:          p.tag,
				Title:            site.Title,
				Generator:        render.GeneratorName,
				GeneratorVersion: render.HugoVersion(),
			},
			RemoteOptions: ropts,
			Progress: func(lp registry.LayerProgress) {
				r.sink.Event(Event{Stage: StageImage, Kind: EventProgress, Layer: lp.Layer,
					LayersDone: lp.Done, Layers: lp.Total, Bytes: lp.CompressedSoFar})
			},
		})
		if err != nil {
			return "", err
		}
		var parts []string
		// The page bucket layers (registry "Page layers") are summed up in
		// one part: a large site has dozens.
		var buckets, bucketFiles int
		var bucketSize int64
		for _, l := range report.Layers {
			res.Layers = append(res.Layers, LayerResult{Name: l.Name, Digest: l.Digest.String(), Size: l.Size, Files: l.Files})
			if strings.HasPrefix(l.Name, registry.LayerPages+"-") {
				buckets, bucketFiles, bucketSize = buckets+1, bucketFiles+l.Files, bucketSize+l.Size
				continue
			}
			if l.Name == registry.LayerPages && buckets > 0 {
				parts = append(parts, fmt.Sprintf("%d page buckets %s (%d files)", buckets, humanBytes(bucketSize), bucketFiles))
				buckets = 0
			}
			parts = append(parts, fmt.Sprintf("%s %s (%d files)", l.Name, humanBytes(l.Size), l.Files))
		}
		if buckets > 0 {
			parts = append(parts, fmt.Sprintf("%d page buckets %s (%d files)", buckets, humanBytes(bucketSize), bucketFiles))
		}
		d, err := art.Digest()
		if err != nil {
			return "", err
		}
		res.Digest = d.String()
		return fmt.Sprintf("%s; layers: %s", short(d.String()), strings.Join(parts, ", ")), nil
	})
	if err != nil {
		return nil, err
	}

	dest := p.repo.Repository
	if opts.To != "" {
		dest = opts.To
	}
	res.Destination = dest
	err = r.stage(StagePush, func() (string, error) {
		popts := opts.Registry
		popts.Tags = p.tags
		userProgress := popts.Progress
		popts.Progress = func(done, total int64) {
			r.sink.Event(Event{Stage: StagePush, Kind: EventProgress, Bytes: done, Total: total})
			if userProgress != nil {
				userProgress(done, total)
			}
		}
		popts.LayerNames = map[v1.Hash]string{}
		for _, l := range res.Layers {
			if h, err := v1.NewHash(l.Digest); err == nil {
				popts.LayerNames[h] = l.Name
			}
		}
		popts.LayerProgress = func(u registry.LayerUpload) {
			r.sink.Event(Event{Stage: StagePush, Kind: EventProgress, UploadLayer: u.Name, UploadDone: u.Done, UploadTotal: u.Total})
		}
		pub, err := registry.Publish(ctx, dest, art, popts)
		if err != nil {
			return "", err
		}
		res.BytesUploaded = pub.BytesUploaded
		res.AlreadyPresent = pub.AlreadyPresent
		if pub.AlreadyPresent {
			return fmt.Sprintf("%s:%s already points at %s: nothing uploaded", dest, p.tag, short(res.Digest)), nil
		}
		return fmt.Sprintf("%s:%s, %s uploaded", dest, strings.Join(p.tags, ","), humanBytes(pub.BytesUploaded)), nil
	})
	if err != nil {
		return nil, err
	}
	res.Image = p.repo.WithTag(p.tag).WithDigest(res.Digest).String()
	if err := attestStage(ctx, r, opts, p, attestInputs{site: site, report: report, art: art}, res); err != nil {
		return nil, err
	}
	return res, nil
}

func short(digest string) string {
	if i := strings.Index(digest, ":"); i >= 0 && len(digest) > i+13 {
		return digest[:i+13]
	}
	return digest
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
