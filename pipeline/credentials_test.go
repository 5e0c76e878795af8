package pipeline

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/notesctl/notesctl/registry"
)

// TestWithCredentials: explicit credentials reach the registry of the
// scope and no other; with no usable scope they reach none.
func TestWithCredentials(t *testing.T) {
	creds := registry.KeychainOptions{Username: "u", Password: "p", NoDefault: true}
	for _, c := range []struct {
		repository, deployed string
		offered              map[string]bool // registry host -> gets the credentials
	}{
		{"", "ghcr.io/acme/notes:v1@" + digestA, map[string]bool{"ghcr.io": true, "index.docker.io": false, "127.0.0.1:5000": false}},
		{"", "docker.io/acme/notes:v1", map[string]bool{"index.docker.io": true, "ghcr.io": false}},
		{"127.0.0.1:5000/acme/notes", "ghcr.io/acme/notes:v1", map[string]bool{"127.0.0.1:5000": true, "ghcr.io": false}},
		{"oci:/srv/layout", "ghcr.io/acme/notes:v1", map[string]bool{"ghcr.io": true}},
		{"", "${IMAGE}", map[string]bool{"ghcr.io": false, "index.docker.io": false}},
	} {
		o := withCredentials(registry.PublishOptions{}, creds, credentialsScope(c.repository, c.deployed))
		for host, want := range c.offered {
			reg, err := name.NewRegistry(host)
			if err != nil {
				t.Fatal(err)
			}
			auth, err := o.Keychain.Resolve(reg)
			if err != nil {
				t.Fatal(err)
			}
			cfg, _ := auth.Authorization()
			got := auth != authn.Anonymous && cfg != nil && cfg.Password == "p"
			if got != want {
				t.Errorf("repository %q, deployed %q: credentials offered to %s = %v, want %v", c.repository, c.deployed, host, got, want)
			}
		}
	}
	if o := withCredentials(registry.PublishOptions{}, registry.KeychainOptions{}, parseRef("ghcr.io/x")); o.Keychain != nil {
		t.Error("no credentials: the keychain should stay the default")
	}
}
