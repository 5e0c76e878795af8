package registry

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/authn/github"
	"github.com/google/go-containerregistry/pkg/name"
)

// Environment variables the cmd layer reads explicit credentials from.
const (
	EnvRegistryUsername = "NOTESCTL_REGISTRY_USERNAME"
	EnvRegistryPassword = "NOTESCTL_REGISTRY_PASSWORD"
)

// KeychainOptions configures Keychain.
type KeychainOptions struct {
	// Username and Password are explicit credentials (from --password-stdin
	// or NOTESCTL_REGISTRY_USERNAME / NOTESCTL_REGISTRY_PASSWORD). They win
	// over every other source.
	Username, Password string
	// Registry limits the explicit credentials to one registry host
	// (e.g. "ghcr.io" or "127.0.0.1:5000"), so they are not sent to the
	// registry a base image comes from. Empty: every registry.
	Registry string
	// NoDefault leaves out the docker config / credential helper keychain
	// and the GITHUB_TOKEN keychain (hermetic tests, explicit-only CI).
	NoDefault bool
}

// Validate checks the explicit credentials without revealing them.
func (o KeychainOptions) Validate() error {
	if (o.Username == "") != (o.Password == "") {
		if o.Username == "" {
			return errors.New("registry password given without a username (set " + EnvRegistryUsername + " or --username)")
		}
		return fmt.Errorf("registry username %q given without a password (set %s or use --password-stdin)", o.Username, EnvRegistryPassword)
	}
	if o.Registry != "" {
		if _, err := name.NewRegistry(o.Registry); err != nil {
			return fmt.Errorf("credentials registry %q: %w", o.Registry, err)
		}
	}
	return nil
}

// Keychain returns the keychain publishing uses, in order of precedence:
// explicit credentials, docker config and credential helpers
// (authn.DefaultKeychain), then ghcr.io from GITHUB_TOKEN (GITHUB_ACTOR as
// user). authn.NewMultiKeychain picks the first non-anonymous answer.
// Secrets it holds are redacted from Publish, Verify and FetchLabels errors.
func Keychain(opts KeychainOptions) authn.Keychain {
	var chain []authn.Keychain
	var secrets []string
	if opts.Username != "" && opts.Password != "" {
		chain = append(chain, &explicitKeychain{username: opts.Username, password: opts.Password, registry: opts.Registry})
		secrets = append(secrets, opts.Password)
	}
	if !opts.NoDefault {
		chain = append(chain, authn.DefaultKeychain, github.Keychain)
	}
	return &keychain{Keychain: authn.NewMultiKeychain(chain...), secrets: secrets}
}

// keychain remembers the explicit secret so errors can be scrubbed even
// when it never reached an Authorization() call.
type keychain struct {
	authn.Keychain
	secrets []string
}

type explicitKeychain struct {
	username, password, registry string
}

func (k *explicitKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if k.registry != "" && !sameRegistry(k.registry, r.RegistryStr()) {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{Username: k.username, Password: k.password}), nil
}

// sameRegistry compares registry hosts the way name.Registry normalizes
// them (docker.io and index.docker.io are one registry).
func sameRegistry(a, b string) bool {
	ra, errA := name.NewRegistry(a)
	rb, errB := name.NewRegistry(b)
	if errA != nil || errB != nil {
		return strings.EqualFold(a, b)
	}
	return strings.EqualFold(ra.RegistryStr(), rb.RegistryStr())
}

// secretsFor collects every secret the keychain would send to the registry
// of res, plus the explicit password, for redaction. Resolution errors are
// ignored here: the push reports them itself.
func secretsFor(kc authn.Keychain, res authn.Resource) []string {
	var out []string
	if k, ok := kc.(*keychain); ok {
		out = append(out, k.secrets...)
	}
	if kc == nil || res == nil {
		return out
	}
	auth, err := kc.Resolve(res)
	if err != nil || auth == nil || auth == authn.Anonymous {
		return out
	}
	cfg, err := auth.Authorization()
	if err != nil || cfg == nil {
		return out
	}
	out = append(out, cfg.Password, cfg.IdentityToken, cfg.RegistryToken, cfg.Auth)
	if cfg.Username != "" && cfg.Password != "" {
		out = append(out, base64.StdEncoding.EncodeToString([]byte(cfg.Username+":"+cfg.Password)))
	}
	return out
}
