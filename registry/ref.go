package registry

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Ref is an image reference split into its parts, with the repository
// spelled as it was written. go-containerregistry's name package checks the
// grammar, but its Name() and Context().String() return a canonical form
// ("docker.io/x" becomes "index.docker.io/x", "nginx" becomes
// "index.docker.io/library/nginx"): that form is right for talking to a
// registry and wrong for anything a user or Flux reads back (GitOps files,
// outputs, labels), where it would be a different string from the one in
// the ImageRepository.
type Ref struct {
	// Repository is the repository as written, without tag or digest.
	Repository string
	// Tag is the tag as written; "" when there is none (no default
	// "latest" is filled in).
	Tag string
	// Digest is "algorithm:hex"; "" when there is none.
	Digest string

	repo name.Repository
}

// ParseRef parses "REPOSITORY[:TAG][@DIGEST]" with the grammar of
// name.ParseReference. Unlike name.ParseReference it keeps the tag of a
// reference that also has a digest.
func ParseRef(s string, opts ...name.Option) (Ref, error) {
	if strings.TrimSpace(s) != s || s == "" {
		return Ref{}, fmt.Errorf("image reference %q: empty or surrounded by spaces", s)
	}
	opts = append(append([]name.Option{}, opts...), name.WithDefaultTag(""))
	if _, err := name.ParseReference(s, opts...); err != nil {
		return Ref{}, fmt.Errorf("image reference %q: %w", s, err)
	}
	base, digest, _ := strings.Cut(s, "@")
	// The part before the digest parses as a tag reference whenever the
	// whole did; the tag is empty when none was written.
	t, err := name.NewTag(base, opts...)
	if err != nil {
		return Ref{}, fmt.Errorf("image reference %q: %w", s, err)
	}
	r := Ref{Repository: base, Tag: t.TagStr(), Digest: digest, repo: t.Context()}
	if r.Tag != "" {
		r.Repository = strings.TrimSuffix(base, ":"+r.Tag)
	}
	return r, nil
}

// ParseRepository parses a repository name with no tag and no digest, as
// written ("docker.io/acme/notes" stays so).
func ParseRepository(s string, opts ...name.Option) (Ref, error) {
	r, err := ParseRef(s, opts...)
	if err != nil {
		return Ref{}, err
	}
	if r.Tag != "" || r.Digest != "" {
		return Ref{}, fmt.Errorf("image repository %q: give a repository without a tag or digest (%s)", s, r.Repository)
	}
	return r, nil
}

// String returns the reference as written: repository, ":tag" if any,
// "@digest" if any.
func (r Ref) String() string {
	s := r.Repository
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// WithTag returns the reference with its tag replaced and no digest.
func (r Ref) WithTag(tag string) Ref {
	r.Tag, r.Digest = tag, ""
	return r
}

// WithDigest returns the reference with its digest replaced.
func (r Ref) WithDigest(digest string) Ref {
	r.Digest = digest
	return r
}

// Context is the canonical repository, for talking to the registry. The
// zero Ref has none.
func (r Ref) Context() name.Repository { return r.repo }

// RegistryHost is the registry's host as go-containerregistry resolves it
// ("index.docker.io" for "docker.io/x" and for "x"), the form
// KeychainOptions.Registry and credential helpers compare.
func (r Ref) RegistryHost() string { return r.repo.RegistryStr() }

// SameRepository reports whether two references name the same repository,
// whatever their spelling ("docker.io/library/nginx" and "nginx" do).
func SameRepository(a, b Ref) bool {
	return a.repo.Name() == b.repo.Name()
}
