// Package manifests owns what the GitOps repository holds: scaffolding the
// Kubernetes and Flux objects for the notes site and the Flux-compatible
// setter update, on any billy filesystem. Getting those files to and from
// git (clone, commit, push, local in-place commits) is package
// manifests/gitops.
//
// It never renders sites or builds images: its input is the image reference
// that was published.
package manifests

// DefaultGitOpsBranch is the branch of the GitOps repository Flux watches
// unless told otherwise.
const DefaultGitOpsBranch = "main"

// Policy is the value of one Flux ImagePolicy as the update engine applies
// it: the setter markers that name Namespace:Name get Image, Tag and Digest.
type Policy struct {
	Namespace string
	Name      string
	Image     string // repository without tag, e.g. ghcr.io/acme/notes
	Tag       string
	Digest    string // optional, "sha256:..."
}

// ID is the policy as it is written in a marker: "namespace:name".
func (p Policy) ID() string { return p.Namespace + ":" + p.Name }

// Change is one scalar the update engine rewrote.
type Change struct {
	File      string // slash path relative to the repository root
	Line      int    // 1-based line of the scalar
	Kind      string // kind of the enclosing object, if any
	Namespace string // metadata.namespace of the enclosing object, if any
	Name      string // metadata.name of the enclosing object, if any
	Setter    string // the marker's reference, e.g. "flux-system:notes:tag"
	Old       string
	New       string
}
