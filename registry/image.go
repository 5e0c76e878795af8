package registry

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BuildOptions configures Build.
type BuildOptions struct {
	// Base is the base image: BaseScratch, a registry reference, or an OCI
	// image layout as "oci:PATH", "oci:PATH@sha256:..." (a manifest by
	// digest) or "oci:PATH:NAME" (by its org.opencontainers.image.ref.name
	// annotation). Empty means DefaultBase.
	Base string
	// WebRoot is the absolute directory the site is placed in; empty means
	// DefaultWebRoot.
	WebRoot string
	// Serving is ServingAuto (when empty), ServingNginx or ServingNone: whether
	// the image gets the serving layer and precompressed files.
	Serving string
	// Platforms selects platforms ("linux/amd64", "linux/arm64/v8") from a
	// multi-platform base; empty means every platform it has. For a scratch
	// base it lists the platforms to make (default linux/amd64); more than
	// one gives an index.
	Platforms []string
	// Created is the build timestamp: every file's mtime, the config's
	// created time and our history entries. The zero time means the Unix
	// epoch.
	Created time.Time
	// Meta becomes the labels and annotations.
	Meta Metadata
	// RemoteOptions are used to fetch a registry base (auth, transport).
	RemoteOptions []remote.Option
	// Progress, when set, hears of each site layer as it is finished (see
	// LayerOptions.Progress).
	Progress func(LayerProgress)
}

// LayerReport describes one layer Build added.
type LayerReport struct {
	Name   string  // LayerServing, LayerAssets, PageLayerName(i) or LayerPages
	Digest v1.Hash // of the compressed blob
	DiffID v1.Hash // of the uncompressed tar
	Size   int64   // compressed size in bytes
	Files  int     // regular files in the layer
}

// BuildReport describes what Build made.
type BuildReport struct {
	// Base is the base as requested; BaseName and BaseDigest are what the
	// labels record.
	Base       string
	BaseName   string
	BaseDigest string
	// Serving is the serving mode used: ServingNginx or ServingNone.
	Serving string
	// Layers are the layers added on top of the base, bottom first.
	Layers []LayerReport
	// Platforms are the platforms of the result, in manifest order.
	Platforms []string
	// Digest is the digest of the image manifest, or of the index.
	Digest v1.Hash
}

// Build makes the image for a rendered site: the site's layers on top of the
// base, the base config (user, entrypoint, cmd, env, ports, workdir) kept,
// labels and annotations from opts.Meta. A multi-platform base gives an
// index with the same layers on each selected platform image. Given the same
// files, options and base, the digest is always the same.
func Build(ctx context.Context, site fs.FS, opts BuildOptions) (Artifact, *BuildReport, error) {
	ref := opts.Base
	if ref == "" {
		ref = DefaultBase
	}
	webRoot := opts.WebRoot
	if webRoot == "" {
		webRoot = DefaultWebRoot
	}
	created, err := layerTime(opts.Created)
	if err != nil {
		return Artifact{}, nil, err
	}
	platforms, err := parsePlatforms(opts.Platforms)
	if err != nil {
		return Artifact{}, nil, err
	}
	// The base comes first: a wrong reference fails before the site is
	// compressed.
	base, err := resolveBase(ctx, ref, opts.RemoteOptions)
	if err != nil {
		return Artifact{}, nil, err
	}
	if err := ctx.Err(); err != nil {
		return Artifact{}, nil, err
	}
	bases, err := base.images(platforms)
	if err != nil {
		return Artifact{}, nil, err
	}
	serving, err := resolveServing(opts.Serving, base.scratch, bases)
	if err != nil {
		return Artifact{}, nil, err
	}
	var layers []SiteLayer
	if serving == ServingNginx {
		sl, err := servingLayer(webRoot)
		if err != nil {
			return Artifact{}, nil, err
		}
		layers = append(layers, sl)
	}
	siteLayers, err := BuildLayers(site, LayerOptions{WebRoot: webRoot, Created: created, Precompress: serving == ServingNginx, Progress: opts.Progress})
	if err != nil {
		return Artifact{}, nil, err
	}
	layers = append(layers, siteLayers...)
	if err := ctx.Err(); err != nil {
		return Artifact{}, nil, err
	}

	meta := opts.Meta
	if meta.Created.IsZero() {
		meta.Created = created
	}
	if meta.BaseName == "" {
		meta.BaseName = base.name
	}
	if meta.BaseDigest == "" {
		meta.BaseDigest = base.digest
	}
	meta.WebRoot = webRoot // checked by Layers
	if meta.Platforms, err = PlatformsLabel(opts.Platforms); err != nil {
		return Artifact{}, nil, err
	}
	meta.LayerFormat = LayerFormat
	labels := meta.Labels()

	report := &BuildReport{Base: ref, BaseName: meta.BaseName, BaseDigest: meta.BaseDigest, Serving: serving}
	for _, l := range layers {
		lr := LayerReport{Name: l.Name, Files: l.Files}
		if lr.Digest, err = l.Layer.Digest(); err == nil {
			if lr.DiffID, err = l.Layer.DiffID(); err == nil {
				lr.Size, err = l.Layer.Size()
			}
		}
		if err != nil {
			return Artifact{}, nil, fmt.Errorf("%s layer: %w", l.Name, err)
		}
		report.Layers = append(report.Layers, lr)
	}

	images := make([]v1.Image, len(bases))
	for i, b := range bases {
		images[i], err = decorate(b.image, layers, labels, created, webRoot)
		if err != nil {
			return Artifact{}, nil, fmt.Errorf("base image %q, platform %s: %w", ref, b.platform, err)
		}
		report.Platforms = append(report.Platforms, b.platform.String())
	}

	var art Artifact
	if base.index == nil && len(images) == 1 {
		art.Image = images[0]
	} else {
		art.Index, err = assembleIndex(base, bases, images, labels)
		if err != nil {
			return Artifact{}, nil, fmt.Errorf("base image %q: %w", ref, err)
		}
	}
	if report.Digest, err = art.Digest(); err != nil {
		return Artifact{}, nil, fmt.Errorf("computing image digest: %w", err)
	}
	return art, report, nil
}

// decorate puts the site layers on one base image and sets the config's
// created time, labels, history and the manifest annotations.
func decorate(base v1.Image, layers []SiteLayer, labels map[string]string, created time.Time, webRoot string) (v1.Image, error) {
	mt, err := base.MediaType()
	if err != nil {
		return nil, fmt.Errorf("reading manifest media type: %w", err)
	}
	// Docker schema 2 manifests get Docker layer media types: some runtimes
	// and registries refuse a Docker manifest that lists OCI layers.
	layerType := types.OCILayer
	if mt == types.DockerManifestSchema2 {
		layerType = types.DockerLayer
	}
	adds := make([]mutate.Addendum, 0, len(layers))
	for _, l := range layers {
		layer := l.Layer
		if sl, ok := layer.(*siteLayer); ok {
			layer = sl.withMediaType(layerType)
		}
		createdBy := fmt.Sprintf("notesctl: %s layer, %d files in %s", l.Name, l.Files, webRoot)
		if l.Name == LayerServing {
			createdBy = fmt.Sprintf("notesctl: %s layer, nginx config %s for %s", l.Name, NginxConfigPath, webRoot)
		}
		adds = append(adds, mutate.Addendum{
			Layer:     layer,
			MediaType: layerType,
			History: v1.History{
				Created:   v1.Time{Time: created},
				CreatedBy: createdBy,
			},
		})
	}
	img, err := mutate.Append(baseManifestOnly{base}, adds...)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.Created = v1.Time{Time: created}
	if cfg.Config.Labels == nil {
		cfg.Config.Labels = map[string]string{}
	}
	// Base labels stay; ours win on conflicts (the base's own
	// org.opencontainers.image.* labels describe the base, not us).
	maps.Copy(cfg.Config.Labels, labels)
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, labels).(v1.Image), nil
}

// baseManifestOnly hides the annotations and subject of the base manifest
// from mutate.Append, which would otherwise copy them into ours: they
// describe the base (its version, its source), not the site image. Config
// labels, in contrast, are inherited as a Dockerfile's FROM does.
type baseManifestOnly struct{ v1.Image }

func (b baseManifestOnly) Manifest() (*v1.Manifest, error) {
	m, err := b.Image.Manifest()
	if err != nil {
		return nil, err
	}
	m = m.DeepCopy()
	m.Annotations, m.Subject = nil, nil
	return m, nil
}

// assembleIndex builds the output index: one child per built image with the
// base descriptor's platform, the base index's media type and annotations.
func assembleIndex(base *resolvedBase, bases []baseImage, images []v1.Image, labels map[string]string) (v1.ImageIndex, error) {
	indexType := types.OCIImageIndex
	if base.index != nil {
		mt, err := base.index.MediaType()
		if err != nil {
			return nil, fmt.Errorf("reading index media type: %w", err)
		}
		indexType = mt
	}
	adds := make([]mutate.IndexAddendum, len(images))
	for i, img := range images {
		p := bases[i].platform
		adds[i] = mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &p},
		}
	}
	idx := mutate.IndexMediaType(empty.Index, indexType)
	idx = mutate.AppendManifests(idx, adds...)
	return mutate.Annotations(idx, labels).(v1.ImageIndex), nil
}
