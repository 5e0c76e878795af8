package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/notesctl/notesctl/pipeline"
	"github.com/notesctl/notesctl/registry"
	"github.com/notesctl/notesctl/registry/attest"
)

// keyFlags are the supply-chain key flags: --sign-key (release) and
// --verify-key (release, update, rollback).
type keyFlags struct {
	signKey, verifyKey string
}

func (k *keyFlags) registerSign(cmd *cobra.Command) {
	cmd.Flags().StringVar(&k.signKey, "sign-key", "", "cosign private key that signs the pushed image: a file (cosign.key), env://VAR, or the PEM itself;\npassword of an encrypted key in COSIGN_PASSWORD")
}

func (k *keyFlags) registerVerify(cmd *cobra.Command) {
	cmd.Flags().StringVar(&k.verifyKey, "verify-key", "", "cosign public key (file or env://VAR): refuse to write the GitOps update unless the image's signature verifies with it")
}

// keys loads the keys the flags name. The password and a key given as text
// are secrets: they are redacted from every message.
func (k *keyFlags) keys(a *app) (pipeline.Keys, error) {
	var out pipeline.Keys
	getenv := func(name string) string {
		v := a.getenv(name)
		if name == attest.EnvPassword || strings.Contains(v, "PRIVATE KEY") {
			a.addSecret(v)
		}
		return v
	}
	if strings.Contains(k.signKey, "PRIVATE KEY") {
		a.addSecret(k.signKey)
	}
	var err error
	if k.signKey != "" {
		if out.Sign, err = attest.LoadSigner(k.signKey, getenv); err != nil {
			return out, fmt.Errorf("--sign-key: %w", err)
		}
	}
	if k.verifyKey != "" {
		if out.Verify, err = attest.LoadPublicKey(k.verifyKey, getenv); err != nil {
			return out, fmt.Errorf("--verify-key: %w", err)
		}
	}
	return out, nil
}

func (a *app) verifyCommand() *cobra.Command {
	var bf buildFlags
	var key, where string
	var provenance bool
	cmd := &cobra.Command{
		Use:   "verify --key PUB IMAGE",
		Short: "Check an image's cosign signature with a public key (exit 0 verified, 1 not)",
		Long: `verify checks that IMAGE (REPOSITORY:TAG, REPOSITORY@DIGEST or
REPOSITORY:TAG@DIGEST) carries a signature by the key: a sigstore bundle
attached as an OCI 1.1 referrer (or under the sha256-<hex> fallback tag), as
"notesctl release --sign-key" and "cosign sign --key" write it. It is the check
release, update and rollback make with --verify-key before they write a
GitOps commit, and it accepts what "cosign verify --key PUB
--insecure-ignore-tlog" accepts.

The check is offline and key-based: no transparency log or timestamp
authority is asked. A tag is resolved to its digest first and the digest is
what is checked (and printed). --provenance also requires a signed SLSA
provenance attestation (cosign verify-attestation --type slsaprovenance1).

Exit status: 0 verified; 1 not verified (no signature, another key, a
signature for other content), with the reason; 2 the check could not be made
(key unreadable, registry unreachable, image missing).`,
		Example: `  notesctl verify --key cosign.pub ghcr.io/acme/notes:main-b9060af-1746598316-hugo0.145.0
  notesctl verify --key cosign.pub --provenance ghcr.io/acme/notes@sha256:0d3b2b1f8c6a1f3f6bb1c3d5ad1f8e1e4c7b9a8d2e5f60718293a4b5c6d7e8f9
  notesctl verify --key env://COSIGN_PUBLIC_KEY --repository oci:.notesctl/image notes.local/notes:main-b9060af-1746598316-hugo0.145.0`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.prepare(cmd, siteDirFor(cmd, a, bf.site), nil); err != nil {
				return &exitError{code: 2, err: err}
			}
			image := args[0]
			if key == "" {
				return &exitError{code: 2, err: errors.New("verify needs --key PUB (a cosign public key file or env://VAR)")}
			}
			pub, err := attest.LoadPublicKey(key, a.getenv)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--key: %w", err)}
			}
			ropts, kc, err := registryOptions(a, &bf)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if kc.Username != "" {
				// Explicit credentials go to the registry of IMAGE only.
				ref, err := registry.ParseRef(image)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("image %q: %v", image, err)}
				}
				kc.Registry = ref.RegistryHost()
			}
			ropts.Keychain = registry.Keychain(kc)
			digest, got, err := pipeline.VerifyImage(cmd.Context(), image, where, pub, ropts)
			var ve *attest.VerificationError
			if err == nil && provenance {
				var t attest.Target
				if t, err = provenanceTarget(cmd, image, where, ropts); err == nil {
					var att []attest.Verified
					att, err = attest.VerifyAttestation(cmd.Context(), t, digest, pub, attest.SLSAProvenancePredicateType)
					got = append(got, att...)
				}
			}
			switch {
			case errors.As(err, &ve):
				return &exitError{code: 1, err: fmt.Errorf("image %s: not verified: %w", image, err)}
			case err != nil:
				return &exitError{code: 2, err: err}
			}
			if a.output == "json" {
				return a.printJSON(struct {
					Image    string            `json:"image"`
					Digest   string            `json:"digest"`
					Verified bool              `json:"verified"`
					Key      string            `json:"key"`
					Found    []attest.Verified `json:"signatures"`
				}{image, digest.String(), true, pub.ID(), got})
			}
			for _, v := range got {
				fmt.Fprintf(a.stderr, "verified %s: referrer %s, key %s\n", v.PredicateType, v.Referrer.Digest, pub.ID()[:12])
			}
			fmt.Fprintf(a.stdout, "%s verified\n", digest)
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "cosign public key: a file (cosign.pub) or env://VAR")
	cmd.Flags().StringVar(&where, "repository", "", "where the image and its signatures are: a repository or oci:PATH (default: IMAGE's repository)")
	cmd.Flags().BoolVar(&provenance, "provenance", false, "also require a signed SLSA provenance attestation")
	bf.registerReadOnly(cmd)
	return cmd
}

func provenanceTarget(cmd *cobra.Command, image, where string, ropts registry.PublishOptions) (attest.Target, error) {
	if where == "" {
		ref, err := registry.ParseRef(image)
		if err != nil {
			return nil, err
		}
		where = ref.Repository
	}
	return attest.NewTarget(cmd.Context(), where, ropts)
}

// registerRegistryRead registers the registry access flags of
// registerReadOnly without --site, for update --verify-key.
func (b *buildFlags) registerRegistryRead(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&b.username, "username", "", "registry user name, for --verify-key (password in NOTESCTL_REGISTRY_PASSWORD)")
	f.BoolVar(&b.insecure, "insecure", false, "allow plain HTTP and unverified TLS to registries")
	f.StringVar(&b.caFile, "ca-file", "", "PEM file of extra CA certificates to trust for registries")
}

// verifyRegistry is the registry access of --verify-key for update and
// rollback: explicit credentials go to the registry of image only.
func verifyRegistry(a *app, bf *buildFlags, image string) (registry.PublishOptions, error) {
	ropts, kc, err := registryOptions(a, bf)
	if err != nil {
		return ropts, err
	}
	if kc.Username != "" && image != "" {
		if ref, err := registry.ParseRef(image); err == nil {
			kc.Registry = ref.RegistryHost()
		}
	}
	ropts.Keychain = registry.Keychain(kc)
	return ropts, nil
}
