// Package attest makes the supply-chain records of an image (an SPDX SBOM,
// SLSA provenance, signatures) and attaches them to it as OCI 1.1
// referrers: small artifact manifests whose subject is the image's digest.
// A registry with the referrers API lists them itself; for one without it,
// the referrers tag schema of the OCI distribution spec 1.1 (an image index
// tagged sha256-<hex> listing the referrers) is kept up to date; an OCI
// image layout gets the same tag in its index.json.
//
// It renders nothing and knows nothing of git: its inputs are digests,
// versions and bytes.
package attest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/notesctl/notesctl/registry"
)

// EmptyConfig is the config of every referrer manifest written here: the
// OCI 1.1 empty descriptor ({}), as the image spec's guidance for artifacts
// says when the artifact has no config of its own.
var EmptyConfig = v1.Descriptor{
	MediaType: types.OCIEmptyJSON,
	Digest:    v1.Hash{Algorithm: "sha256", Hex: "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
	Size:      2,
}

var emptyJSON = []byte("{}")

// maxReferrerBlob bounds what Fetch reads of a referrer's blob or manifest:
// SBOMs, statements and bundles are small; a huge one is refused, not read.
const maxReferrerBlob = 64 << 20

// Target is where referrers are written and listed: a registry repository
// (NewTarget("ghcr.io/acme/notes", ...)) or an OCI image layout
// (NewTarget("oci:PATH", ...)). Subjects are digests in that repository or
// layout.
type Target interface {
	// String names the target in messages: the repository as given, or
	// oci:PATH.
	String() string
	// Put stores a referrer: its blobs (config, layers) first, then its
	// manifest, and then records it among the referrers of the subject
	// named in the manifest (the registry's referrers API does that
	// itself; otherwise the sha256-<hex> fallback tag is updated).
	Put(ctx context.Context, manifest []byte, blobs map[v1.Hash]Blob) error
	// Referrers lists the descriptors that refer to subject (empty, not
	// an error, when there are none).
	Referrers(ctx context.Context, subject v1.Hash) ([]v1.Descriptor, error)
	// Read returns a manifest or blob by digest, checked against it.
	Read(ctx context.Context, h v1.Hash) ([]byte, error)
}

// Blob is one blob of a referrer with its media type.
type Blob struct {
	MediaType types.MediaType
	Data      []byte
}

// NewTarget returns the Target for dest: "oci:PATH" for an OCI image layout
// (created if missing), else a registry repository reached with opts'
// keychain, TLS settings and retries.
func NewTarget(ctx context.Context, dest string, opts registry.PublishOptions) (Target, error) {
	if path, ok := strings.CutPrefix(dest, registry.LayoutPrefix); ok {
		if path == "" {
			return nil, errors.New("oci: target needs a directory path, e.g. oci:./out/image")
		}
		return layoutTarget{path: path}, nil
	}
	var nopts []name.Option
	if opts.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	repo, err := name.NewRepository(dest, nopts...)
	if err != nil {
		return nil, fmt.Errorf("referrer target %q is not a valid repository: %w", dest, err)
	}
	ropts, err := opts.RemoteOptions(ctx, dest)
	if err != nil {
		return nil, err
	}
	// One pusher and one puller for every request to the target: the
	// registry's auth handshake (ping, token) happens once, not per blob.
	pusher, err := remote.NewPusher(ropts...)
	if err != nil {
		return nil, err
	}
	puller, err := remote.NewPuller(ropts...)
	if err != nil {
		return nil, err
	}
	ropts = append(ropts, remote.Reuse(pusher), remote.Reuse(puller))
	return &remoteTarget{dest: dest, repo: repo, ropts: ropts, retry: opts.Retry}, nil
}

// Attach stores blob as an OCI 1.1 referrer of subject in t: an image
// manifest with artifactType, the empty config, blob as its one layer (of
// mediaType), annotations, and subject. The manifest is the same bytes for
// the same inputs, so attaching again is a no-op that returns the same
// descriptor. The returned descriptor (media type, digest, size,
// artifactType, annotations) is the one the referrers list carries.
func Attach(ctx context.Context, t Target, subject v1.Descriptor, artifactType string, blob []byte, mediaType string, annotations map[string]string) (v1.Descriptor, error) {
	raw, desc, err := ReferrerManifest(subject, artifactType, blob, mediaType, annotations)
	if err != nil {
		return v1.Descriptor{}, err
	}
	layer := Blob{MediaType: types.MediaType(mediaType), Data: blob}
	blobs := map[v1.Hash]Blob{
		EmptyConfig.Digest: {MediaType: types.OCIEmptyJSON, Data: emptyJSON},
		digestOf(blob):     layer,
	}
	if err := t.Put(ctx, raw, blobs); err != nil {
		return v1.Descriptor{}, fmt.Errorf("attach %s to %s in %s: %w", artifactType, subject.Digest, t, err)
	}
	return desc, nil
}

// referrerManifest is an OCI 1.1 image manifest used as an artifact; the
// field order is the JSON order (deterministic bytes).
type referrerManifest struct {
	SchemaVersion int64             `json:"schemaVersion"`
	MediaType     types.MediaType   `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        v1.Descriptor     `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Subject       *v1.Descriptor    `json:"subject"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// ReferrerManifest returns the manifest Attach writes and its descriptor,
// without writing anything.
func ReferrerManifest(subject v1.Descriptor, artifactType string, blob []byte, mediaType string, annotations map[string]string) ([]byte, v1.Descriptor, error) {
	switch {
	case artifactType == "":
		return nil, v1.Descriptor{}, errors.New("attach: empty artifact type")
	case mediaType == "":
		return nil, v1.Descriptor{}, errors.New("attach: empty blob media type")
	case subject.Digest.Hex == "" || subject.Size <= 0 || subject.MediaType == "":
		return nil, v1.Descriptor{}, fmt.Errorf("attach: subject descriptor needs a media type, digest and size, got %+v", subject)
	}
	sub := v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	m := referrerManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  artifactType,
		Config:        EmptyConfig,
		Layers:        []v1.Descriptor{{MediaType: types.MediaType(mediaType), Digest: digestOf(blob), Size: int64(len(blob))}},
		Subject:       &sub,
	}
	if len(annotations) > 0 {
		m.Annotations = annotations
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	desc := v1.Descriptor{
		MediaType:    types.OCIManifestSchema1,
		Digest:       digestOf(raw),
		Size:         int64(len(raw)),
		ArtifactType: artifactType,
		Annotations:  m.Annotations,
	}
	return raw, desc, nil
}

// List returns the referrers of subject in t, sorted by artifact type and
// then digest. Empty when there are none.
func List(ctx context.Context, t Target, subject v1.Hash) ([]v1.Descriptor, error) {
	ds, err := t.Referrers(ctx, subject)
	if err != nil {
		return nil, fmt.Errorf("list referrers of %s in %s: %w", subject, t, err)
	}
	slices.SortFunc(ds, func(a, b v1.Descriptor) int {
		if c := strings.Compare(a.ArtifactType, b.ArtifactType); c != 0 {
			return c
		}
		return strings.Compare(a.Digest.String(), b.Digest.String())
	})
	return ds, nil
}

// Find returns the referrers of subject with the given artifact type.
func Find(ctx context.Context, t Target, subject v1.Hash, artifactType string) ([]v1.Descriptor, error) {
	ds, err := List(ctx, t, subject)
	if err != nil {
		return nil, err
	}
	var out []v1.Descriptor
	for _, d := range ds {
		if d.ArtifactType == artifactType {
			out = append(out, d)
		}
	}
	return out, nil
}

// Referrer is a referrer manifest read back with its one layer.
type Referrer struct {
	Descriptor v1.Descriptor // of the referrer manifest
	Manifest   *v1.Manifest
	Raw        []byte        // the manifest bytes
	Layer      v1.Descriptor // Manifest.Layers[0]
	Blob       []byte        // its content, checked against Layer.Digest
}

// Fetch reads the referrer ref (a descriptor from List) and its single
// layer from t, checking digests, and that it refers to subject.
func Fetch(ctx context.Context, t Target, ref v1.Descriptor, subject v1.Hash) (*Referrer, error) {
	raw, err := t.Read(ctx, ref.Digest)
	if err != nil {
		return nil, fmt.Errorf("read referrer %s in %s: %w", ref.Digest, t, err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("referrer %s in %s: %w", ref.Digest, t, err)
	}
	if m.Subject == nil || m.Subject.Digest != subject {
		return nil, fmt.Errorf("referrer %s in %s does not refer to %s", ref.Digest, t, subject)
	}
	if len(m.Layers) != 1 {
		return nil, fmt.Errorf("referrer %s in %s has %d layers, want 1", ref.Digest, t, len(m.Layers))
	}
	if m.Layers[0].Size > maxReferrerBlob {
		return nil, fmt.Errorf("referrer %s in %s: blob of %d bytes is larger than %d", ref.Digest, t, m.Layers[0].Size, maxReferrerBlob)
	}
	blob, err := t.Read(ctx, m.Layers[0].Digest)
	if err != nil {
		return nil, fmt.Errorf("read blob of referrer %s in %s: %w", ref.Digest, t, err)
	}
	return &Referrer{Descriptor: ref, Manifest: m, Raw: raw, Layer: m.Layers[0], Blob: blob}, nil
}

// FallbackTag is the referrers tag schema's tag for subject: sha256-<hex>.
func FallbackTag(subject v1.Hash) string {
	return subject.Algorithm + "-" + subject.Hex
}

func digestOf(b []byte) v1.Hash {
	h, _, _ := v1.SHA256(bytes.NewReader(b))
	return h
}

func checkDigest(h v1.Hash, b []byte) error {
	if got := digestOf(b); got != h {
		return fmt.Errorf("content of %s has digest %s", h, got)
	}
	return nil
}

// subjectOf parses the subject and its own descriptor out of a referrer
// manifest.
func subjectOf(raw []byte) (v1.Hash, v1.Descriptor, error) {
	var m struct {
		MediaType    types.MediaType   `json:"mediaType"`
		ArtifactType string            `json:"artifactType"`
		Config       v1.Descriptor     `json:"config"`
		Subject      *v1.Descriptor    `json:"subject"`
		Annotations  map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return v1.Hash{}, v1.Descriptor{}, fmt.Errorf("referrer manifest: %w", err)
	}
	if m.Subject == nil {
		return v1.Hash{}, v1.Descriptor{}, errors.New("referrer manifest has no subject")
	}
	at := m.ArtifactType
	if at == "" {
		at = string(m.Config.MediaType)
	}
	return m.Subject.Digest, v1.Descriptor{
		MediaType:    m.MediaType,
		Digest:       digestOf(raw),
		Size:         int64(len(raw)),
		ArtifactType: at,
		Annotations:  m.Annotations,
	}, nil
}

// remoteTarget is a registry repository.
type remoteTarget struct {
	dest  string
	repo  name.Repository
	ropts []remote.Option
	retry registry.RetryPolicy
}

func (r *remoteTarget) String() string { return r.dest }

// Put uploads the blobs (those present are skipped) and the manifest by
// digest. go-containerregistry then asks the registry for the subject's
// referrers: a registry with the API keeps the list itself; for one
// without (404), it adds the manifest to the image index tagged
// sha256-<subject hex>, creating it if needed.
//
// Releases attaching at once all upload the same empty config blob, and a
// registry can refuse a manifest for a blob another upload is still
// linking: the whole put is tried again then (registry.RetryBlobUnknown).
func (r *remoteTarget) Put(ctx context.Context, manifest []byte, blobs map[v1.Hash]Blob) error {
	if _, _, err := subjectOf(manifest); err != nil {
		return err
	}
	opts := append(slices.Clone(r.ropts), remote.WithContext(ctx))
	ref := r.repo.Digest(digestOf(manifest).String())
	return registry.RetryBlobUnknown(ctx, r.retry, func() error {
		for _, h := range sortedKeys(blobs) {
			b := blobs[h]
			if err := remote.WriteLayer(r.repo, static.NewLayer(b.Data, b.MediaType), opts...); err != nil {
				return fmt.Errorf("upload blob %s: %w", h, err)
			}
		}
		if err := remote.Put(ref, rawManifest(manifest), opts...); err != nil {
			return fmt.Errorf("put referrer manifest %s: %w", ref.DigestStr(), err)
		}
		return nil
	})
}

func (r *remoteTarget) Referrers(ctx context.Context, subject v1.Hash) ([]v1.Descriptor, error) {
	opts := append(slices.Clone(r.ropts), remote.WithContext(ctx))
	idx, err := remote.Referrers(r.repo.Digest(subject.String()), opts...)
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	out := slices.Clone(im.Manifests)
	for i, d := range out {
		// The spec lists a manifest's artifactType, and its config's media
		// type only when it has none; some registries (go-containerregistry's
		// own) always list the config's. The empty config's media type is
		// never a real artifact type: read the manifest for the right one.
		if d.ArtifactType != "" && d.ArtifactType != string(types.OCIEmptyJSON) {
			continue
		}
		raw, err := r.Read(ctx, d.Digest)
		if err != nil {
			return nil, fmt.Errorf("referrer %s: %w", d.Digest, err)
		}
		_, own, err := subjectOf(raw)
		if err != nil {
			return nil, fmt.Errorf("referrer %s: %w", d.Digest, err)
		}
		out[i].ArtifactType = own.ArtifactType
	}
	return out, nil
}

func (r *remoteTarget) Read(ctx context.Context, h v1.Hash) ([]byte, error) {
	opts := append(slices.Clone(r.ropts), remote.WithContext(ctx))
	// A manifest first (the common case: a referrer), then a blob.
	if d, err := remote.Get(r.repo.Digest(h.String()), opts...); err == nil {
		if err := checkDigest(h, d.Manifest); err != nil {
			return nil, err
		}
		return d.Manifest, nil
	}
	l, err := remote.Layer(r.repo.Digest(h.String()), opts...)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxReferrerBlob+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxReferrerBlob {
		return nil, fmt.Errorf("blob %s is larger than %d bytes", h, maxReferrerBlob)
	}
	if err := checkDigest(h, b); err != nil {
		return nil, err
	}
	return b, nil
}

// rawManifest is a remote.Taggable of fixed bytes.
type rawManifest []byte

func (m rawManifest) RawManifest() ([]byte, error) { return m, nil }

func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// layoutTarget is an OCI image layout. Referrers are listed the way the
// referrers tag schema lists them in a registry: index.json gets an entry
// named (org.opencontainers.image.ref.name) sha256-<subject hex> for an
// image index of the referrers, so the layout copied to a registry tag by
// tag carries them, and tools that read layouts (oras) find them. Like the
// image written by Publish, a layout is not safe for concurrent writers.
type layoutTarget struct{ path string }

func (l layoutTarget) String() string { return registry.LayoutPrefix + l.path }

func (l layoutTarget) Put(_ context.Context, manifest []byte, blobs map[v1.Hash]Blob) error {
	subject, desc, err := subjectOf(manifest)
	if err != nil {
		return err
	}
	p, im, err := l.open(true)
	if err != nil {
		return err
	}
	for _, h := range sortedKeys(blobs) {
		if err := writeBlob(p, h, blobs[h].Data); err != nil {
			return err
		}
	}
	if err := writeBlob(p, desc.Digest, manifest); err != nil {
		return err
	}
	tag := FallbackTag(subject)
	current, err := l.fallbackIndex(p, im, tag)
	if err != nil {
		return err
	}
	for _, d := range current.Manifests {
		if d.Digest == desc.Digest {
			return nil
		}
	}
	current.Manifests = append(current.Manifests, desc)
	// Sorted by digest, as go-containerregistry sorts the registry's
	// fallback index: the same referrers give the same index bytes.
	slices.SortFunc(current.Manifests, func(a, b v1.Descriptor) int {
		return strings.Compare(a.Digest.String(), b.Digest.String())
	})
	raw, err := json.Marshal(current)
	if err != nil {
		return err
	}
	h := digestOf(raw)
	if err := writeBlob(p, h, raw); err != nil {
		return err
	}
	entry := v1.Descriptor{
		MediaType:   types.OCIImageIndex,
		Digest:      h,
		Size:        int64(len(raw)),
		Annotations: map[string]string{registry.AnnotationRefName: tag},
	}
	keep := im.Manifests[:0]
	for _, d := range im.Manifests {
		if d.Annotations[registry.AnnotationRefName] != tag {
			keep = append(keep, d)
		}
	}
	im.Manifests = append(keep, entry)
	if err := writeIndexJSON(l.path, im); err != nil {
		return fmt.Errorf("write index.json: %w", err)
	}
	return nil
}

func (l layoutTarget) Referrers(_ context.Context, subject v1.Hash) ([]v1.Descriptor, error) {
	p, im, err := l.open(false)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	idx, err := l.fallbackIndex(p, im, FallbackTag(subject))
	if err != nil {
		return nil, err
	}
	return idx.Manifests, nil
}

func (l layoutTarget) Read(_ context.Context, h v1.Hash) ([]byte, error) {
	f, err := os.Open(filepath.Join(l.path, "blobs", h.Algorithm, h.Hex))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxReferrerBlob+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxReferrerBlob {
		return nil, fmt.Errorf("blob %s is larger than %d bytes", h, maxReferrerBlob)
	}
	if err := checkDigest(h, b); err != nil {
		return nil, err
	}
	return b, nil
}

// open reads index.json; with create, a missing layout is created.
func (l layoutTarget) open(create bool) (layout.Path, *v1.IndexManifest, error) {
	raw, err := os.ReadFile(filepath.Join(l.path, "index.json"))
	if errors.Is(err, os.ErrNotExist) && create {
		if _, err := layout.Write(l.path, empty.Index); err != nil {
			return "", nil, fmt.Errorf("create oci layout: %w", err)
		}
		raw, err = os.ReadFile(filepath.Join(l.path, "index.json"))
	}
	if err != nil {
		return "", nil, err
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return "", nil, fmt.Errorf("parse index.json: %w", err)
	}
	return layout.Path(l.path), im, nil
}

// fallbackIndex returns the referrers index tagged tag, or an empty one.
func (l layoutTarget) fallbackIndex(p layout.Path, im *v1.IndexManifest, tag string) (*v1.IndexManifest, error) {
	for _, d := range im.Manifests {
		if d.Annotations[registry.AnnotationRefName] != tag {
			continue
		}
		b, err := l.Read(context.Background(), d.Digest)
		if err != nil {
			return nil, fmt.Errorf("referrers index %s: %w", tag, err)
		}
		idx, err := v1.ParseIndexManifest(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("referrers index %s: %w", tag, err)
		}
		if idx.MediaType != types.OCIImageIndex {
			return nil, fmt.Errorf("referrers index %s has media type %q, want %s", tag, idx.MediaType, types.OCIImageIndex)
		}
		return idx, nil
	}
	return &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}}, nil
}

// writeBlob writes b unless a blob of that digest and size is there.
func writeBlob(p layout.Path, h v1.Hash, b []byte) error {
	file := filepath.Join(string(p), "blobs", h.Algorithm, h.Hex)
	if fi, err := os.Stat(file); err == nil && fi.Size() == int64(len(b)) {
		return nil
	} else if err == nil {
		// A blob of the wrong size is what a killed write leaves.
		if err := os.Remove(file); err != nil {
			return err
		}
	}
	if err := p.WriteBlob(h, io.NopCloser(bytes.NewReader(b))); err != nil {
		return fmt.Errorf("write blob %s: %w", h, err)
	}
	return nil
}

// writeIndexJSON replaces index.json through a temporary file renamed into
// place, so that a killed run never leaves it truncated.
func writeIndexJSON(path string, im *v1.IndexManifest) error {
	raw, err := json.MarshalIndent(im, "", "   ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(path, ".index.json.tmp-")
	if err != nil {
		return err
	}
	_, werr := f.Write(raw)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(path, "index.json")); err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	return nil
}

func sortedKeys(m map[v1.Hash]Blob) []v1.Hash {
	keys := make([]v1.Hash, 0, len(m))
	for h := range m {
		keys = append(keys, h)
	}
	slices.SortFunc(keys, func(a, b v1.Hash) int { return strings.Compare(a.String(), b.String()) })
	return keys
}
