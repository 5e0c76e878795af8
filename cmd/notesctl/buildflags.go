package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/notesctl/notesctl/pipeline"
	"github.com/notesctl/notesctl/registry"
	"github.com/notesctl/notesctl/render"
)

// DefaultBase is the base image for registry builds: nginx that runs as a
// non-root user and serves /usr/share/nginx/html on port 8080.
const DefaultBase = "docker.io/nginxinc/nginx-unprivileged:1.27-alpine"

// buildFlags are the flags build and release share.
type buildFlags struct {
	site, revision, branch string
	allowDirty             bool
	allowWarnings          bool
	hugoVersion            string
	baseURL                string
	image, to              string
	base, webRoot          string
	serving                string
	platforms              []string
	tagTemplate            string
	extraTags              []string
	username               string
	passwordStdin          bool
	insecure               bool
	caFile                 string
	registryTimeout        time.Duration
	sbom, provenance       bool
}

func (b *buildFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&b.site, "site", ".", "Hugo site directory, inside a git repository")
	f.StringVar(&b.revision, "revision", "HEAD", "site commit to render (branch, tag or sha)")
	f.StringVar(&b.branch, "branch", "", "branch name for the tag (default: detected from HEAD or CI variables)")
	f.BoolVar(&b.allowDirty, "allow-dirty", false, "render the work tree when it has uncommitted changes (revision label and tag get -dirty); without it uncommitted changes are never built: a release of a commit deployed already is a no-op whatever the work tree holds, and any other build refuses a dirty tree before it pushes")
	f.BoolVar(&b.allowWarnings, "allow-warnings", false, "do not fail the build on Hugo warnings")
	f.StringVar(&b.hugoVersion, "hugo-version", "", `Hugo version the site requires, e.g. "0.145.0" or ">=0.140.0, <0.150.0"`)
	f.StringVar(&b.baseURL, "base-url", "", "override the site's baseURL")
	f.StringVar(&b.image, "image", "", "image repository, e.g. ghcr.io/acme/notes (no tag)")
	f.StringVar(&b.to, "to", "", "write an OCI image layout instead of pushing: oci:PATH")
	f.StringVar(&b.base, "base", DefaultBase, "base image: a registry reference, oci:PATH[:TAG|@DIGEST], or scratch")
	f.StringVar(&b.webRoot, "web-root", "/usr/share/nginx/html", "directory in the image that holds the site")
	f.StringVar(&b.serving, "serving", registry.ServingAuto, "serving config: auto (nginx when the base runs nginx), nginx (config layer + .gz files), none")
	f.StringSliceVar(&b.platforms, "platform", nil, "platforms to build from a multi-platform base, e.g. linux/amd64,linux/arm64 (default: all of the base's)")
	f.StringVar(&b.tagTemplate, "tag", "", "Go template for the tag over .Branch .SHA .ShortSHA .Timestamp .Generator .GeneratorVersion .Dirty\n(default \""+registry.DefaultTagTemplate+"\")")
	f.StringSliceVar(&b.extraTags, "extra-tag", nil, "more tags to push for the same image (repeatable)")
	f.StringVar(&b.username, "username", "", "registry user name (password from --password-stdin or NOTESCTL_REGISTRY_PASSWORD)")
	f.BoolVar(&b.passwordStdin, "password-stdin", false, "read the registry password or token from standard input")
	f.BoolVar(&b.insecure, "insecure", false, "allow plain HTTP and unverified TLS to registries (never the default)")
	f.StringVar(&b.caFile, "ca-file", "", "PEM file of extra CA certificates to trust for registries")
	f.DurationVar(&b.registryTimeout, "registry-timeout", 0, "how long a registry may take to start answering a request before it is retried (default 60s)")
	f.BoolVar(&b.sbom, "sbom", true, "attach an SPDX 2.3 SBOM to the image as an OCI referrer (--sbom=false: none)")
	f.BoolVar(&b.provenance, "provenance", true, "attach SLSA v1 provenance (an in-toto statement) to the image as an OCI referrer (--provenance=false: none)")
}

// options turns the flags into pipeline options. It reads secrets from
// stdin/env and registers them for redaction.
func (b *buildFlags) options(a *app, stdin io.Reader) (pipeline.BuildOptions, error) {
	o := pipeline.BuildOptions{
		SiteDir: b.site, Revision: b.revision, AllowDirty: b.allowDirty, Branch: b.branch,
		RequireHugo: b.hugoVersion, AllowWarnings: b.allowWarnings, BaseURL: b.baseURL,
		Image: b.image, To: b.to, Base: b.base, WebRoot: b.webRoot, Serving: b.serving, Platforms: b.platforms,
		TagTemplate: b.tagTemplate, ExtraTags: b.extraTags,
		SBOM: b.sbom, Provenance: b.provenance, NotesctlVersion: notesctlVersion(), Getenv: a.getenv,
	}
	// Checked here, before anything runs, so that the error names the
	// setting as the user knows it.
	if err := render.CheckConstraint(b.hugoVersion, "--hugo-version"); err != nil {
		return o, err
	}
	if v := a.getenv("SOURCE_DATE_EPOCH"); v != "" {
		sec, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || sec < 0 {
			return o, fmt.Errorf("SOURCE_DATE_EPOCH %q: want Unix seconds", v)
		}
		t := time.Unix(sec, 0).UTC()
		o.SourceDateEpoch = &t
	}
	user := b.username
	if user == "" {
		user = a.getenv("NOTESCTL_REGISTRY_USERNAME")
	}
	password := a.getenv("NOTESCTL_REGISTRY_PASSWORD")
	if b.passwordStdin {
		data, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
		if err != nil {
			return o, fmt.Errorf("--password-stdin: %w", err)
		}
		password = strings.TrimRight(string(data), "\r\n")
		if password == "" {
			return o, fmt.Errorf("--password-stdin: standard input was empty")
		}
	}
	a.addSecret(password)
	a.addSecret(a.getenv("GITHUB_TOKEN"))
	if (user == "") != (password == "") {
		return o, fmt.Errorf("registry credentials need both a user name (--username or NOTESCTL_REGISTRY_USERNAME) and a password (--password-stdin or NOTESCTL_REGISTRY_PASSWORD)")
	}
	kc := registry.KeychainOptions{Username: user, Password: password}
	if user != "" && b.image != "" { // no --image fails in pipeline, before any request
		// Explicit credentials are for the registry pushed to, never for
		// the base image's: that one gets the docker config / helpers.
		ref, err := registry.ParseRef(b.image)
		if err != nil {
			return o, fmt.Errorf("--image %q: explicit registry credentials are sent only to the registry of --image, and this is not an image repository: %v", b.image, err)
		}
		kc.Registry = ref.RegistryHost()
	}
	if err := kc.Validate(); err != nil {
		return o, err
	}
	o.Registry = registry.PublishOptions{
		Keychain:        registry.Keychain(kc),
		Insecure:        b.insecure,
		CAFile:          b.caFile,
		UserAgent:       "notesctl/" + notesctlVersion(),
		ResponseTimeout: b.registryTimeout,
		Logger: func(format string, args ...any) {
			fmt.Fprintf(a.stderr, "notesctl: %s\n", a.redact(fmt.Sprintf(format, args...)))
		},
	}
	if b.insecure {
		fmt.Fprintln(a.stderr, "notesctl: warning: --insecure: registry TLS is not verified")
	}
	return o, nil
}
