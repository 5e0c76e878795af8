package registry

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TaggedDigest is a tag and the digest it points at.
type TaggedDigest struct {
	Tag    string
	Digest v1.Hash
}

// ListTags lists the tags of a repository, or of an OCI layout
// ("oci:PATH"), sorted. Digests are filled for layouts; for a registry
// only the tags are listed (resolving each would be a request per tag).
func ListTags(ctx context.Context, repo string, opts PublishOptions) ([]TaggedDigest, error) {
	if strings.HasPrefix(repo, LayoutPrefix) {
		dir := strings.TrimPrefix(repo, LayoutPrefix)
		p, err := layout.FromPath(dir)
		if err != nil {
			return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
		}
		idx, err := p.ImageIndex()
		if err != nil {
			return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
		}
		var out []TaggedDigest
		for _, d := range im.Manifests {
			if t := d.Annotations[AnnotationRefName]; t != "" {
				out = append(out, TaggedDigest{Tag: t, Digest: d.Digest})
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Tag < out[j].Tag })
		return out, nil
	}
	var nopts []name.Option
	if opts.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.NewRepository(repo, nopts...)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %w", repo, err)
	}
	s, err := newSession(ctx, r, opts, false)
	if err != nil {
		return nil, err
	}
	defer s.close()
	tags, err := remote.List(r, s.ropts...)
	if err != nil {
		return nil, s.wrap(fmt.Errorf("list tags of %s: %w", r.Name(), err))
	}
	sort.Strings(tags)
	out := make([]TaggedDigest, len(tags))
	for i, t := range tags {
		out[i] = TaggedDigest{Tag: t}
	}
	return out, nil
}

// ResolveTag returns the digest a tag points at, in a registry or layout.
func ResolveTag(ctx context.Context, repo, tag string, opts PublishOptions) (v1.Hash, error) {
	if strings.HasPrefix(repo, LayoutPrefix) {
		tags, err := ListTags(ctx, repo, opts)
		if err != nil {
			return v1.Hash{}, err
		}
		for _, t := range tags {
			if t.Tag == tag {
				return t.Digest, nil
			}
		}
		return v1.Hash{}, fmt.Errorf("%s:%s: %w", repo, tag, ErrNotFound)
	}
	var nopts []name.Option
	if opts.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.NewTag(repo+":"+tag, nopts...)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("%s:%s: %w", repo, tag, err)
	}
	s, err := newSession(ctx, ref.Context(), opts, false)
	if err != nil {
		return v1.Hash{}, err
	}
	defer s.close()
	desc, err := remote.Head(ref, s.ropts...)
	if err != nil {
		return v1.Hash{}, s.wrap(fmt.Errorf("%s: %w", ref, err))
	}
	return desc.Digest, nil
}
