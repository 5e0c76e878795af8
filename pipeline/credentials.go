package pipeline

import (
	"strings"

	"github.com/notesctl/notesctl/registry"
)

// withCredentials adds explicit credentials to o for the registry of scope
// only: every other registry gets the docker config and credential helpers,
// so that a password for one registry never reaches another (a base
// image's, or one a GitOps file names). A Keychain already in o wins, and
// so does having no credentials. When scope names no registry (it did not
// parse), the credentials go nowhere.
func withCredentials(o registry.PublishOptions, creds registry.KeychainOptions, scope registry.Ref) registry.PublishOptions {
	if o.Keychain != nil || creds.Username == "" {
		return o
	}
	host := ""
	if scope.Repository != "" {
		host = scope.RegistryHost()
	}
	if host == "" {
		creds.Username, creds.Password = "", ""
	}
	creds.Registry = host
	o.Keychain = registry.Keychain(creds)
	return o
}

// credentialsScope is the registry explicit credentials are for when
// reading releases: the repository the user named, unless it is an OCI
// layout, else the image the GitOps repository deploys.
func credentialsScope(repository, deployed string) registry.Ref {
	if repository != "" && !strings.HasPrefix(repository, registry.LayoutPrefix) {
		if r := parseRef(repository); r.Repository != "" {
			return r
		}
	}
	return parseRef(deployed)
}
