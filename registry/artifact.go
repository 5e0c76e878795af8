// Package registry turns a rendered site into an OCI image and publishes it:
// deterministic layers, base image resolution (registry, oci: layout, scratch),
// multi-platform indexes, labels and annotations, the tag template, the auth
// keychain, pushing with retries, and OCI image layout output.
//
// It knows nothing about Hugo or the GitOps repository: its input is an fs.FS
// of rendered files and a Metadata value.
package registry

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Artifact is what Build produces and Publish sends: exactly one of Image or
// Index is set. An Index is produced when the base image is multi-platform.
type Artifact struct {
	Image v1.Image
	Index v1.ImageIndex
}

// Digest returns the digest of the image manifest or of the index.
func (a Artifact) Digest() (v1.Hash, error) {
	if a.Index != nil {
		return a.Index.Digest()
	}
	return a.Image.Digest()
}
