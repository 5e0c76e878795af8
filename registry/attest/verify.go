package attest

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/encoding/protojson"
)

// VerificationError says why an image's signature did not verify. Errors
// reading the registry are not VerificationErrors: they say nothing about
// the signature.
type VerificationError struct {
	Subject v1.Hash
	// Reason is the short cause: "no signature", "signed by another key",
	// "signature does not match the image"...
	Reason string
	// Details lists what was wrong with each signature found.
	Details []string
}

func (e *VerificationError) Error() string {
	msg := e.Reason
	if len(e.Details) > 0 {
		msg += ": " + strings.Join(e.Details, "; ")
	}
	return msg
}

// Verified is one signature (or attestation) that verified.
type Verified struct {
	Subject       v1.Hash       `json:"subject"`
	Referrer      v1.Descriptor `json:"referrer"`
	PredicateType string        `json:"predicateType"`
	KeyID         string        `json:"keyId"`
	// Statement is the signed in-toto statement, as signed.
	Statement []byte `json:"-"`
}

// VerifyImage checks that subject carries, in t, a sigstore bundle
// referrer signed by pub over a statement that names subject's digest with
// the cosign sign predicate: what `cosign verify --key pub
// --insecure-ignore-tlog` accepts. It returns the signatures that verified
// (at least one), or a *VerificationError naming why none did.
//
// The check is key-based and offline: the bundle's signature is checked
// against pub, with no transparency log entry and no timestamp required
// (what cosign does with --insecure-ignore-tlog and a key:
// sigstore-go's WithNoObserverTimestamps). A key has no validity period to
// place the signature in, so a timestamp adds nothing to what it proves.
func VerifyImage(ctx context.Context, t Target, subject v1.Hash, pub *PublicKey) ([]Verified, error) {
	return verifyReferrers(ctx, t, subject, pub, CosignSignPredicateType)
}

// VerifyAttestation is VerifyImage for a DSSE attestation with the given
// predicate type (SLSAProvenancePredicateType for the provenance): what
// `cosign verify-attestation --key pub --type ...` accepts.
func VerifyAttestation(ctx context.Context, t Target, subject v1.Hash, pub *PublicKey, predicateType string) ([]Verified, error) {
	return verifyReferrers(ctx, t, subject, pub, predicateType)
}

func verifyReferrers(ctx context.Context, t Target, subject v1.Hash, pub *PublicKey, predicateType string) ([]Verified, error) {
	refs, err := Find(ctx, t, subject, BundleMediaType)
	if err != nil {
		return nil, err
	}
	what := "signature"
	if predicateType != CosignSignPredicateType {
		what = predicateType + " attestation"
	}
	if len(refs) == 0 {
		return nil, &VerificationError{Subject: subject, Reason: "no " + what + ": " + subject.String() + " has no sigstore bundle referrer in " + t.String()}
	}
	v, err := newKeyVerifier(pub)
	if err != nil {
		return nil, err
	}
	var ok []Verified
	var details []string
	badKey, badSubject, other := 0, 0, 0
	for _, d := range refs {
		ref, err := Fetch(ctx, t, d, subject)
		if err != nil {
			details = append(details, err.Error())
			other++
			continue
		}
		stmt, reason, kind := v.check(ref.Blob, subject, predicateType)
		if reason == "" {
			ok = append(ok, Verified{Subject: subject, Referrer: d, PredicateType: predicateType, KeyID: pub.ID(), Statement: stmt})
			continue
		}
		switch kind {
		case failOtherPredicate:
			// A bundle of another kind (the provenance next to the
			// signature): not a failure of this check.
			continue
		case failKey:
			badKey++
		case failSubject:
			badSubject++
		default:
			other++
		}
		details = append(details, fmt.Sprintf("referrer %s: %s", d.Digest, reason))
	}
	if len(ok) > 0 {
		return ok, nil
	}
	ve := &VerificationError{Subject: subject, Details: details}
	switch {
	case len(details) == 0:
		ve.Reason = "no " + what + ": the sigstore bundles attached to " + subject.String() + " in " + t.String() + " are of other predicate types"
	case badKey > 0 && badSubject == 0 && other == 0:
		ve.Reason = fmt.Sprintf("no %s by key %s (%s): %d signature(s) by another key", what, shortID(pub.ID()), pub.Source(), badKey)
	case badSubject > 0 && badKey == 0 && other == 0:
		ve.Reason = fmt.Sprintf("no %s for %s: the signed statement names another image (tampered or copied signature)", what, subject)
	default:
		ve.Reason = fmt.Sprintf("no valid %s by key %s (%s)", what, shortID(pub.ID()), pub.Source())
	}
	sort.Strings(ve.Details)
	return nil, ve
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

type failKind int

const (
	failOther failKind = iota
	failKey
	failSubject
	failOtherPredicate
)

type keyVerifier struct {
	verifier signature.Verifier
}

func newKeyVerifier(pub *PublicKey) (*keyVerifier, error) {
	sv, err := signature.LoadDefaultVerifier(pub.key)
	if err != nil {
		return nil, fmt.Errorf("verification key %s: %w", pub.Source(), err)
	}
	return &keyVerifier{verifier: sv}, nil
}

// bundleMediaTypes are the names of the sigstore bundle v0.3.
var bundleMediaTypes = map[string]bool{
	BundleMediaType: true,
	"application/vnd.dev.sigstore.bundle+json;version=0.3": true,
}

// check verifies one bundle as sigstore-go does for a key (cosign verify
// --key --insecure-ignore-tlog): the DSSE envelope's signature over its
// pre-authentication encoding verifies with the key, and the in-toto
// statement it signs names subject. A bundle's key hint is not
// authenticated and is not consulted; the signature is. It returns the
// signed statement, or why it does not verify and what kind of failure
// that is.
func (v *keyVerifier) check(raw []byte, subject v1.Hash, predicateType string) ([]byte, string, failKind) {
	pb := &protobundle.Bundle{}
	if err := protojson.Unmarshal(raw, pb); err != nil {
		return nil, "not a sigstore bundle: " + err.Error(), failOther
	}
	if !bundleMediaTypes[pb.GetMediaType()] {
		return nil, fmt.Sprintf("sigstore bundle media type %q, want %s", pb.GetMediaType(), BundleMediaType), failOther
	}
	env := pb.GetDsseEnvelope()
	if env == nil {
		return nil, "the bundle holds no DSSE envelope (a message signature of another tool?)", failOther
	}
	if env.GetPayloadType() != InTotoPayloadType {
		return nil, fmt.Sprintf("DSSE payload type %q, want %s", env.GetPayloadType(), InTotoPayloadType), failOther
	}
	stmt := env.GetPayload()
	st, err := parseStatement(stmt)
	if err != nil {
		return nil, err.Error(), failOther
	}
	if st.PredicateType != predicateType {
		return nil, "predicate type " + st.PredicateType, failOtherPredicate
	}
	if len(env.GetSignatures()) == 0 {
		return nil, "the DSSE envelope carries no signature", failOther
	}
	msg := pae(env.GetPayloadType(), stmt)
	verified := false
	for _, sig := range env.GetSignatures() {
		if v.verifier.VerifySignature(bytes.NewReader(sig.GetSig()), bytes.NewReader(msg)) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, "the signature does not verify with this key", failKey
	}
	if !st.names(subject) {
		return nil, "the signed statement names " + subjects(st) + ", not " + subject.String(), failSubject
	}
	return stmt, "", 0
}

func subjects(st *anyStatement) string {
	var out []string
	for _, s := range st.Subject {
		for alg, hex := range s.Digest {
			out = append(out, alg+":"+hex)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "no subject"
	}
	return strings.Join(out, ", ")
}
