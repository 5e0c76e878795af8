package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ErrNotFound is wrapped by FetchLabels and Verify errors when the tag or
// manifest does not exist (registry 404 / MANIFEST_UNKNOWN, or no entry in
// the layout's index.json).
var ErrNotFound = errors.New("image not found")

// maxManifestSize bounds manifests and configs read into memory; registries
// commonly reject manifests above 4 MiB.
const maxManifestSize = 4 << 20

// Verify checks that ref is complete at its destination: the manifest or
// index (fetched by digest, content checked against the digest), every child
// manifest, and every blob (configs and layers) exist, by HEAD in a registry
// or by reading the blob files of an "oci:PATH[:tag|@digest]" layout.
// ref may be "repo@sha256:...", "repo:tag@sha256:..." (the tag must point at
// that digest) or "repo:tag". The pipeline calls it before committing to
// GitOps: never commit for an image that is not complete.
func Verify(ctx context.Context, ref string, opts PublishOptions) error {
	if rest, ok := strings.CutPrefix(ref, LayoutPrefix); ok {
		return verifyLayout(rest)
	}
	r, tag, err := parseReference(ref, opts.Insecure)
	if err != nil {
		return err
	}
	s, err := newSession(ctx, r.Context(), opts, false)
	if err != nil {
		return err
	}
	defer s.close()
	c, err := s.client(r.Context())
	if err != nil {
		return s.wrap(fmt.Errorf("verify %s: %w", ref, err))
	}
	if err := c.verify(r, tag); err != nil {
		return s.wrap(fmt.Errorf("verify %s: %w", ref, err))
	}
	return nil
}

// FetchLabels returns the config labels of the image ref names (for an
// index: of its first platform image) and the digest ref resolves to (the
// index's digest for an index). ref is a registry reference or
// "oci:PATH[:tag|@digest]". A missing image yields an error wrapping
// ErrNotFound.
func FetchLabels(ctx context.Context, ref string, opts PublishOptions) (map[string]string, v1.Hash, error) {
	if rest, ok := strings.CutPrefix(ref, LayoutPrefix); ok {
		return layoutLabels(rest)
	}
	r, tag, err := parseReference(ref, opts.Insecure)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	s, err := newSession(ctx, r.Context(), opts, false)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	defer s.close()
	c, err := s.client(r.Context())
	if err != nil {
		return nil, v1.Hash{}, s.wrap(fmt.Errorf("read labels of %s: %w", ref, err))
	}
	c.seen = map[v1.Hash]cachedManifest{}
	labels, h, err := c.labels(r, tag)
	if err != nil {
		return nil, v1.Hash{}, s.wrap(fmt.Errorf("read labels of %s: %w", ref, err))
	}
	return labels, h, nil
}

// parseReference parses a registry reference, keeping the tag of a
// "repo:tag@digest" reference (ggcr's name.Digest drops it).
func parseReference(ref string, insecure bool) (name.Reference, string, error) {
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, "", fmt.Errorf("invalid image reference %q: %w", ref, err)
	}
	tag := ""
	if base, _, ok := strings.Cut(ref, "@"); ok {
		if i := strings.LastIndex(base, ":"); i > strings.LastIndex(base, "/") {
			tag = base[i+1:]
		}
	}
	return r, tag, nil
}

// regClient reads manifests and blobs of one repository through
// go-containerregistry's Puller, which authenticates once (one ping, one
// token) for all the requests of the repository.
type regClient struct {
	ctx    context.Context
	repo   name.Repository
	puller *remote.Puller
	// seen, when set, holds the manifests read so far by their digest, so
	// that a manifest read by tag is not read again by digest. FetchLabels
	// sets it; Verify does not, since that the registry serves the manifest
	// by its digest (as Flux and the kubelet pull it) is part of what it
	// checks.
	seen map[v1.Hash]cachedManifest
}

type cachedManifest struct {
	body []byte
	mt   types.MediaType
}

func (s *session) client(repo name.Repository) (*regClient, error) {
	p, err := remote.NewPuller(s.ropts...)
	if err != nil {
		return nil, err
	}
	return &regClient{ctx: s.ctx, repo: repo, puller: p}, nil
}

// manifest fetches a manifest by tag or digest; the Puller checks its
// content against the digest when fetched by digest.
func (c *regClient) manifest(ident string) ([]byte, types.MediaType, v1.Hash, error) {
	var ref name.Reference = c.repo.Tag(ident)
	if h, err := v1.NewHash(ident); err == nil {
		if m, ok := c.seen[h]; ok {
			return m.body, m.mt, h, nil
		}
		ref = c.repo.Digest(ident)
	}
	d, err := c.puller.Get(c.ctx, ref)
	if err != nil {
		if isManifestUnknown(err) {
			return nil, "", v1.Hash{}, fmt.Errorf("manifest %s: %w (%v)", ident, ErrNotFound, err)
		}
		return nil, "", v1.Hash{}, fmt.Errorf("manifest %s: %w", ident, err)
	}
	if len(d.Manifest) > maxManifestSize {
		return nil, "", v1.Hash{}, fmt.Errorf("manifest %s: larger than %d bytes", ident, maxManifestSize)
	}
	mt := manifestMediaType(string(d.MediaType), d.Manifest)
	if c.seen != nil {
		c.seen[d.Digest] = cachedManifest{body: d.Manifest, mt: mt}
	}
	return d.Manifest, mt, d.Digest, nil
}

// layer names a blob of the repository; nothing is fetched yet.
func (c *regClient) layer(h v1.Hash) (v1.Layer, error) {
	return c.puller.Layer(c.ctx, c.repo.Digest(h.String()))
}

// blobExists checks a blob by HEAD (the layer's Size), including its size.
func (c *regClient) blobExists(d v1.Descriptor) error {
	l, err := c.layer(d.Digest)
	if err != nil {
		return fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	size, err := l.Size()
	var terr *transport.Error
	switch {
	case errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound:
		return fmt.Errorf("blob %s (%s) is missing", d.Digest, d.MediaType)
	case err != nil:
		return fmt.Errorf("blob %s: %w", d.Digest, err)
	case size > 0 && d.Size > 0 && size != d.Size:
		return fmt.Errorf("blob %s has size %d, manifest says %d", d.Digest, size, d.Size)
	}
	return nil
}

// blob downloads a small blob (a config); the Puller checks its digest.
func (c *regClient) blob(h v1.Hash) ([]byte, error) {
	l, err := c.layer(h)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	defer rc.Close()
	body, err := readAtMost(rc, maxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	return body, nil
}

// resolve returns the digest that r (and tag, if given with a digest)
// names, checking that both agree.
func (c *regClient) resolve(r name.Reference, tag string) (v1.Hash, error) {
	if d, ok := r.(name.Digest); ok {
		h, err := v1.NewHash(d.DigestStr())
		if err != nil {
			return v1.Hash{}, err
		}
		if tag != "" {
			_, _, got, err := c.manifest(tag)
			if err != nil {
				return v1.Hash{}, fmt.Errorf("tag %s: %w", tag, err)
			}
			if got != h {
				return v1.Hash{}, fmt.Errorf("tag %s points at %s, not %s", tag, got, h)
			}
		}
		return h, nil
	}
	_, _, h, err := c.manifest(r.Identifier())
	return h, err
}

func (c *regClient) verify(r name.Reference, tag string) error {
	h, err := c.resolve(r, tag)
	if err != nil {
		return err
	}
	return verifyTree(h, func(d v1.Hash) ([]byte, types.MediaType, error) {
		body, mt, _, err := c.manifest(d.String())
		return body, mt, err
	}, c.blobExists)
}

func (c *regClient) labels(r name.Reference, tag string) (map[string]string, v1.Hash, error) {
	h, err := c.resolve(r, tag)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	labels, err := labelsOf(h, func(d v1.Hash) ([]byte, types.MediaType, error) {
		body, mt, _, err := c.manifest(d.String())
		return body, mt, err
	}, c.blob)
	return labels, h, err
}

type fetchManifest func(v1.Hash) ([]byte, types.MediaType, error)

// maxConcurrentChecks bounds the blob checks of one manifest that run at
// once (go-containerregistry's default upload concurrency is 4).
const maxConcurrentChecks = 4

// verifyTree walks an index or image manifest and checks every child
// manifest and blob.
func verifyTree(root v1.Hash, fetch fetchManifest, blobExists func(v1.Descriptor) error) error {
	seen := map[v1.Hash]bool{}
	var walk func(h v1.Hash, path string) error
	walk = func(h v1.Hash, path string) error {
		if seen[h] {
			return nil
		}
		seen[h] = true
		body, mt, err := fetch(h)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		switch {
		case mt.IsIndex():
			im, err := v1.ParseIndexManifest(bytes.NewReader(body))
			if err != nil {
				return fmt.Errorf("%s: parse index %s: %w", path, h, err)
			}
			for i, d := range im.Manifests {
				child := fmt.Sprintf("%s > manifest %d (%s)", path, i, d.Digest)
				if d.MediaType.IsIndex() || d.MediaType.IsImage() {
					if err := walk(d.Digest, child); err != nil {
						return err
					}
				} else if err := blobExists(d); err != nil {
					return fmt.Errorf("%s: %w", child, err)
				}
			}
		case mt.IsImage():
			m, err := v1.ParseManifest(bytes.NewReader(body))
			if err != nil {
				return fmt.Errorf("%s: parse manifest %s: %w", path, h, err)
			}
			// The blobs are checked at once (each check is a round trip);
			// the error reported is the first in manifest order.
			errs := make([]error, 1+len(m.Layers))
			var wg sync.WaitGroup
			slots := make(chan struct{}, maxConcurrentChecks)
			check := func(i int, d v1.Descriptor, what string) {
				wg.Add(1)
				slots <- struct{}{}
				go func() {
					defer func() { <-slots; wg.Done() }()
					if err := blobExists(d); err != nil {
						errs[i] = fmt.Errorf("%s: %s: %w", path, what, err)
					}
				}()
			}
			check(0, m.Config, "config")
			for i, l := range m.Layers {
				if !l.MediaType.IsDistributable() {
					continue // foreign layers live elsewhere by design
				}
				check(1+i, l, fmt.Sprintf("layer %d", i))
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("%s: unsupported manifest media type %q", path, mt)
		}
		return nil
	}
	return walk(root, "manifest "+root.String())
}

// labelsOf reads the config labels of an image, or of the first platform
// image of an index (attestation entries with platform unknown/unknown
// are skipped).
func labelsOf(root v1.Hash, fetch fetchManifest, blob func(v1.Hash) ([]byte, error)) (map[string]string, error) {
	h := root
	for depth := 0; depth < 8; depth++ {
		body, mt, err := fetch(h)
		if err != nil {
			return nil, err
		}
		switch {
		case mt.IsIndex():
			im, err := v1.ParseIndexManifest(bytes.NewReader(body))
			if err != nil {
				return nil, fmt.Errorf("parse index %s: %w", h, err)
			}
			next, ok := firstPlatformChild(im)
			if !ok {
				return nil, fmt.Errorf("index %s has no image manifest", h)
			}
			h = next
		case mt.IsImage():
			m, err := v1.ParseManifest(bytes.NewReader(body))
			if err != nil {
				return nil, fmt.Errorf("parse manifest %s: %w", h, err)
			}
			raw, err := blob(m.Config.Digest)
			if err != nil {
				return nil, fmt.Errorf("config of %s: %w", h, err)
			}
			cf, err := v1.ParseConfigFile(bytes.NewReader(raw))
			if err != nil {
				return nil, fmt.Errorf("parse config %s: %w", m.Config.Digest, err)
			}
			labels := map[string]string{}
			for k, v := range cf.Config.Labels {
				labels[k] = v
			}
			return labels, nil
		default:
			return nil, fmt.Errorf("unsupported manifest media type %q for %s", mt, h)
		}
	}
	return nil, fmt.Errorf("index %s nests too deep", root)
}

func firstPlatformChild(im *v1.IndexManifest) (v1.Hash, bool) {
	for _, d := range im.Manifests {
		if !d.MediaType.IsImage() && !d.MediaType.IsIndex() {
			continue
		}
		if d.Platform != nil && d.Platform.OS == "unknown" && d.Platform.Architecture == "unknown" {
			continue
		}
		return d.Digest, true
	}
	return v1.Hash{}, false
}

// manifestMediaType prefers the mediaType inside the manifest and falls
// back to the Content-Type header.
func manifestMediaType(contentType string, body []byte) types.MediaType {
	var probe struct {
		MediaType types.MediaType `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
		Config    json.RawMessage `json:"config"`
	}
	if json.Unmarshal(body, &probe) == nil {
		switch {
		case probe.MediaType != "":
			return probe.MediaType
		case probe.Manifests != nil:
			return types.OCIImageIndex
		case probe.Config != nil:
			return types.OCIManifestSchema1
		}
	}
	ct, _, _ := strings.Cut(contentType, ";")
	return types.MediaType(strings.TrimSpace(ct))
}

func readAtMost(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return b, nil
}

func digestOf(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// layoutTarget is a parsed "PATH[:tag|@digest]" (after the oci: prefix).
type layoutTarget struct {
	path   string
	tag    string
	digest *v1.Hash
}

func parseLayoutTarget(s string) (layoutTarget, error) {
	var r layoutTarget
	if i := strings.LastIndex(s, "@"); i >= 0 {
		h, err := v1.NewHash(s[i+1:])
		if err != nil {
			return r, fmt.Errorf("oci reference %q: invalid digest: %w", LayoutPrefix+s, err)
		}
		r.digest = &h
		s = s[:i]
	}
	r.path = s
	// A ":tag" suffix counts only if it follows the last path separator and
	// PATH itself is not an existing layout (a directory may contain ':').
	if i := strings.LastIndex(s, ":"); i >= 0 && i > strings.LastIndexAny(s, `/\`) {
		if _, err := os.Stat(s + "/index.json"); err != nil {
			r.path, r.tag = s[:i], s[i+1:]
			if _, err := normalizeTags([]string{r.tag}); err != nil {
				return r, fmt.Errorf("oci reference %q: %w", LayoutPrefix+s, err)
			}
		}
	}
	if r.path == "" {
		return r, fmt.Errorf("oci reference %q has no path", LayoutPrefix+s)
	}
	return r, nil
}

// resolveLayout finds the index.json entry a layout reference names.
func resolveLayout(s string) (layout.Path, v1.Descriptor, error) {
	r, err := parseLayoutTarget(s)
	if err != nil {
		return "", v1.Descriptor{}, err
	}
	if _, err := os.Stat(r.path + "/index.json"); errors.Is(err, os.ErrNotExist) {
		return "", v1.Descriptor{}, fmt.Errorf("oci layout %s: no index.json: %w", r.path, ErrNotFound)
	}
	p, err := layout.FromPath(r.path)
	if err != nil {
		return "", v1.Descriptor{}, fmt.Errorf("oci layout %s: %w", r.path, err)
	}
	im, err := layoutIndexManifest(p)
	if err != nil {
		return "", v1.Descriptor{}, err
	}
	var found []v1.Descriptor
	for _, d := range im.Manifests {
		if r.tag != "" && d.Annotations[AnnotationRefName] != r.tag {
			continue
		}
		if r.digest != nil && r.tag == "" && d.Digest != *r.digest {
			continue
		}
		found = append(found, d)
	}
	switch {
	case len(found) == 0 && r.tag != "":
		return "", v1.Descriptor{}, fmt.Errorf("oci layout %s: tag %s: %w", r.path, r.tag, ErrNotFound)
	case len(found) == 0 && r.digest != nil:
		return "", v1.Descriptor{}, fmt.Errorf("oci layout %s: digest %s: %w", r.path, r.digest, ErrNotFound)
	case len(found) == 0:
		return "", v1.Descriptor{}, fmt.Errorf("oci layout %s is empty: %w", r.path, ErrNotFound)
	case len(found) > 1 && r.tag == "" && r.digest == nil:
		return "", v1.Descriptor{}, fmt.Errorf("oci layout %s holds %d images; name one as oci:%s:TAG or oci:%s@DIGEST", r.path, len(found), r.path, r.path)
	case len(found) > 1 && r.tag != "":
		return "", v1.Descriptor{}, fmt.Errorf("oci layout %s lists tag %s %d times", r.path, r.tag, len(found))
	}
	d := found[0]
	if r.tag != "" && r.digest != nil && d.Digest != *r.digest {
		return "", v1.Descriptor{}, fmt.Errorf("oci layout %s: tag %s points at %s, not %s", r.path, r.tag, d.Digest, r.digest)
	}
	return p, d, nil
}

// layoutBlob reads a blob of a layout and checks it against its digest.
func layoutBlob(p layout.Path, h v1.Hash, limit int64) ([]byte, error) {
	f, err := os.Open(layoutBlobPath(string(p), h))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("blob %s is missing", h)
		}
		return nil, err
	}
	defer f.Close()
	b, err := readAtMost(f, limit)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	if got := digestOf(b); h.Algorithm == "sha256" && got != h {
		return nil, fmt.Errorf("blob %s is corrupt (content digest %s)", h, got)
	}
	return b, nil
}

// layoutBlobOK checks that a blob file exists, has the right size and
// hashes to its digest (a streaming hash: layers may be large).
func layoutBlobOK(p layout.Path, d v1.Descriptor) error {
	f, err := os.Open(layoutBlobPath(string(p), d.Digest))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("blob %s (%s) is missing", d.Digest, d.MediaType)
		}
		return err
	}
	defer f.Close()
	got, n, err := v1.SHA256(f)
	if err != nil {
		return fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	if d.Size > 0 && n != d.Size {
		return fmt.Errorf("blob %s has size %d, manifest says %d", d.Digest, n, d.Size)
	}
	if d.Digest.Algorithm == "sha256" && got != d.Digest {
		return fmt.Errorf("blob %s is corrupt (content digest %s)", d.Digest, got)
	}
	return nil
}

func layoutFetch(p layout.Path) fetchManifest {
	return func(h v1.Hash) ([]byte, types.MediaType, error) {
		b, err := layoutBlob(p, h, maxManifestSize)
		if err != nil {
			return nil, "", err
		}
		return b, manifestMediaType("", b), nil
	}
}

func verifyLayout(s string) error {
	p, d, err := resolveLayout(s)
	if err != nil {
		return fmt.Errorf("verify %s%s: %w", LayoutPrefix, s, err)
	}
	err = verifyTree(d.Digest, layoutFetch(p), func(d v1.Descriptor) error { return layoutBlobOK(p, d) })
	if err != nil {
		return fmt.Errorf("verify %s%s: %w", LayoutPrefix, s, err)
	}
	return nil
}

func layoutLabels(s string) (map[string]string, v1.Hash, error) {
	p, d, err := resolveLayout(s)
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("read labels of %s%s: %w", LayoutPrefix, s, err)
	}
	labels, err := labelsOf(d.Digest, layoutFetch(p), func(h v1.Hash) ([]byte, error) {
		return layoutBlob(p, h, maxManifestSize)
	})
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("read labels of %s%s: %w", LayoutPrefix, s, err)
	}
	return labels, d.Digest, nil
}
