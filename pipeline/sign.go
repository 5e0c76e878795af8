package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/notesctl/notesctl/registry"
	"github.com/notesctl/notesctl/registry/attest"
)

// StageSign signs the pushed image (and its provenance) with --sign-key.
const StageSign Stage = "sign"

// Supply-chain keys a release, update or rollback may carry.
type Keys struct {
	// Sign, when set, signs the released image digest (cosign's sigstore
	// bundle as an OCI 1.1 referrer) before the GitOps commit.
	Sign *attest.Signer
	// Verify, when set, is the policy: nothing is written into the GitOps
	// repository for an image whose signature does not verify with it.
	Verify *attest.PublicKey
}

// UnverifiedError is the refusal of the verify-before-deploy gate: it names
// the image and why its signature did not verify.
type UnverifiedError struct {
	Image string
	Err   error
}

func (e *UnverifiedError) Error() string {
	return fmt.Sprintf("image %s: signature not verified: %v; nothing committed to the GitOps repository", e.Image, e.Err)
}

func (e *UnverifiedError) Unwrap() error { return e.Err }

// VerifyImage checks the signature of image (REPOSITORY[:TAG]@DIGEST or
// REPOSITORY:TAG, as written) with key. where is the repository or
// oci:PATH holding it; "" means image's own repository. It returns the
// digest that verified (for a tag, the one the tag points at now).
func VerifyImage(ctx context.Context, image, where string, key *attest.PublicKey, ropts registry.PublishOptions) (v1.Hash, []attest.Verified, error) {
	ref, err := registry.ParseRef(image)
	if err != nil {
		return v1.Hash{}, nil, fmt.Errorf("image %q: want REPOSITORY:TAG or REPOSITORY@DIGEST: %v", image, err)
	}
	if where == "" {
		where = ref.Repository
	}
	var digest v1.Hash
	switch {
	case ref.Digest != "":
		if digest, err = v1.NewHash(ref.Digest); err != nil {
			return v1.Hash{}, nil, fmt.Errorf("image %q: %v", image, err)
		}
	case ref.Tag != "":
		if digest, err = registry.ResolveTag(ctx, where, ref.Tag, ropts); err != nil {
			return v1.Hash{}, nil, fmt.Errorf("image %s: resolve the tag: %w", image, err)
		}
	default:
		return v1.Hash{}, nil, fmt.Errorf("image %q: give a tag or a digest", image)
	}
	t, err := attest.NewTarget(ctx, where, ropts)
	if err != nil {
		return v1.Hash{}, nil, err
	}
	got, err := attest.VerifyImage(ctx, t, digest, key)
	return digest, got, err
}

// gate is verify-before-deploy: with a verification key, image must carry
// a signature by it, or the error names the image and the reason and
// nothing is written. It returns the verified digest ("" without a key).
func gate(ctx context.Context, r *runner, key *attest.PublicKey, image, where string, ropts registry.PublishOptions) (string, error) {
	if key == nil {
		return "", nil
	}
	var digest v1.Hash
	err := r.stage(StageVerify, func() (string, error) {
		var got []attest.Verified
		var err error
		digest, got, err = VerifyImage(ctx, image, where, key, ropts)
		if err != nil {
			return "", &UnverifiedError{Image: image, Err: err}
		}
		return fmt.Sprintf("signature verified with key %s (%s), %d signature(s)", shortID(key.ID()), key.Source(), len(got)), nil
	})
	if err != nil {
		return "", err
	}
	return digest.String(), nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// signRelease signs the pushed image with keys.Sign, and each in-toto
// statement given as a DSSE attestation, all attached to the image where it
// was pushed. Without statements given, it signs the SLSA provenance
// statements attached to the image (the release's attest stage runs
// before it), byte for byte as attached.
func signRelease(ctx context.Context, r *runner, keys Keys, build *BuildResult, ropts registry.PublishOptions, statements ...[]byte) ([]attest.Signed, error) {
	if keys.Sign == nil {
		return nil, nil
	}
	var out []attest.Signed
	err := r.stage(StageSign, func() (string, error) {
		h, err := v1.NewHash(build.Digest)
		if err != nil {
			return "", fmt.Errorf("sign %s: %w", build.Image, err)
		}
		t, err := attest.NewTarget(ctx, build.Destination, ropts)
		if err != nil {
			return "", err
		}
		subject, err := attest.Describe(ctx, t, h)
		if err != nil {
			return "", fmt.Errorf("sign %s: %w", build.Image, err)
		}
		opts := attest.SignOptions{Created: build.CommitTime}
		if len(statements) == 0 {
			if statements, err = attest.AttachedStatements(ctx, t, h, attest.SLSAProvenancePredicateType); err != nil {
				return "", fmt.Errorf("sign the provenance of %s: %w", build.Image, err)
			}
		}
		s, err := attest.SignImage(ctx, t, subject, keys.Sign, opts)
		if err != nil {
			return "", fmt.Errorf("sign %s: %w", build.Image, err)
		}
		out = append(out, *s)
		for _, st := range statements {
			if len(st) == 0 {
				continue
			}
			s, err := attest.SignStatement(ctx, t, subject, keys.Sign, st, opts)
			if err != nil {
				return "", fmt.Errorf("sign the attestation of %s: %w", build.Image, err)
			}
			out = append(out, *s)
		}
		var parts []string
		for _, s := range out {
			what := "signed"
			if s.Existing {
				what = "already signed"
			}
			parts = append(parts, fmt.Sprintf("%s %s (%s)", what, s.PredicateType, s.Referrer.Digest))
		}
		return strings.Join(parts, ", ") + " with " + keys.Sign.Source(), nil
	})
	return out, err
}

// IsUnverified reports whether err is the verify-before-deploy refusal.
func IsUnverified(err error) bool {
	var ue *UnverifiedError
	return errors.As(err, &ue)
}
