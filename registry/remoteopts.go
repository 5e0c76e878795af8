package registry

import (
	"context"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// RemoteOptions returns go-containerregistry options with the keychain, TLS
// settings and retries of Publish, for reading a base image from ref. The
// transport stays usable for the life of the process: base layers are read
// lazily, during the push.
func (o PublishOptions) RemoteOptions(ctx context.Context, ref string) ([]remote.Option, error) {
	if ref == "" || ref == "scratch" || strings.HasPrefix(ref, LayoutPrefix) {
		return nil, nil
	}
	var res name.Registry
	if r, err := name.ParseReference(ref); err == nil {
		res = r.Context().Registry
	}
	s, err := newSession(ctx, res, o, false)
	if err != nil {
		return nil, err
	}
	return s.ropts, nil
}
