package attest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"google.golang.org/protobuf/encoding/protojson"
)

// What cosign v3 reads and writes for a signature stored as an OCI 1.1
// referrer (cosign sign / cosign attest with the default new bundle format).
const (
	// BundleMediaType is the sigstore bundle v0.3: the referrer's
	// artifactType and its layer's media type.
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// InTotoPayloadType is the DSSE payload type of an in-toto statement.
	InTotoPayloadType = "application/vnd.in-toto+json"
	// InTotoStatementType is the in-toto statement v1 _type.
	InTotoStatementType = "https://in-toto.io/Statement/v1"
	// CosignSignPredicateType is the predicate of the statement `cosign
	// sign` signs: "this digest is signed", no other claim.
	CosignSignPredicateType = "https://sigstore.dev/cosign/sign/v1"
	// SLSAProvenancePredicateType is what `cosign verify-attestation
	// --type slsaprovenance1` looks for.
	SLSAProvenancePredicateType = "https://slsa.dev/provenance/v1"
	// AnnotationBundleContent and AnnotationBundlePredicateType are the
	// annotations cosign puts on a bundle referrer manifest.
	AnnotationBundleContent       = "dev.sigstore.bundle.content"
	AnnotationBundlePredicateType = "dev.sigstore.bundle.predicateType"
	annotationCreated             = "org.opencontainers.image.created"
)

// anyStatement is an in-toto statement v1 with any predicate, as signed
// and verified; the field order is the JSON order.
type anyStatement struct {
	Type          string          `json:"_type"`
	Subject       []statementSubj `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

type statementSubj struct {
	Name   string            `json:"name,omitempty"`
	Digest map[string]string `json:"digest"`
}

// ImageStatement is the statement an image signature signs, the one `cosign
// sign` writes: the image digest as its only subject, the cosign sign
// predicate type, an empty predicate. The same digest gives the same bytes.
func ImageStatement(digest v1.Hash) []byte {
	b, _ := json.Marshal(anyStatement{
		Type:          InTotoStatementType,
		Subject:       []statementSubj{{Digest: map[string]string{digest.Algorithm: digest.Hex}}},
		PredicateType: CosignSignPredicateType,
		Predicate:     json.RawMessage(`{}`),
	})
	return b
}

// parseStatement reads an in-toto statement's predicate type and subjects.
func parseStatement(b []byte) (*anyStatement, error) {
	var st anyStatement
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("not an in-toto statement: %w", err)
	}
	if st.Type != InTotoStatementType {
		return nil, fmt.Errorf("in-toto statement _type %q, want %s", st.Type, InTotoStatementType)
	}
	if st.PredicateType == "" {
		return nil, errors.New("in-toto statement has no predicateType")
	}
	return &st, nil
}

// names reports whether the statement has digest among its subjects.
func (st *anyStatement) names(digest v1.Hash) bool {
	for _, s := range st.Subject {
		if s.Digest[digest.Algorithm] == digest.Hex {
			return true
		}
	}
	return false
}

// hint is what sigstore bundles name a public key by: base64 of the
// SHA-256 of its PKIX DER encoding (sigstore-go's default hint).
func hint(pub crypto.PublicKey) string {
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// pae is DSSE's pre-authentication encoding of a payload: what is signed.
func pae(payloadType string, payload []byte) []byte {
	return []byte(fmt.Sprintf("DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(payload), payload))
}

// signData signs data with the key's default algorithm: its SHA-256 (or
// the key's hash) for ECDSA and RSA, randomized, so ECDSA signatures
// differ on every call; data itself for Ed25519, deterministic: the same
// key and data give the same signature.
func (s *Signer) signData(data []byte) ([]byte, error) {
	hf := s.alg.GetHashType()
	toSign := data
	if hf != crypto.Hash(0) {
		h := hf.New()
		h.Write(data)
		toSign = h.Sum(nil)
	}
	sig, err := s.key.Sign(rand.Reader, toSign, hf)
	if err != nil {
		return nil, fmt.Errorf("sign with %s: %w", s.source, err)
	}
	return sig, nil
}

// DSSEBundle signs payload as a DSSE envelope of payloadType and returns the
// sigstore bundle v0.3 JSON that carries it, with the public key's hint as
// verification material and no certificate, transparency log entry or
// timestamp: what `cosign sign --key` / `cosign attest --key` write when no
// transparency log is used (--tlog-upload=false). Everything but the
// signature bytes is a function of the payload and the key; with an
// Ed25519 key the whole bundle is.
func (s *Signer) DSSEBundle(payloadType string, payload []byte) ([]byte, error) {
	sig, err := s.signData(pae(payloadType, payload))
	if err != nil {
		return nil, err
	}
	pb := &protobundle.Bundle{
		MediaType: BundleMediaType,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{
				PublicKey: &protocommon.PublicKeyIdentifier{Hint: hint(s.key.Public())},
			},
		},
		Content: &protobundle.Bundle_DsseEnvelope{
			DsseEnvelope: &protodsse.Envelope{
				Payload:     payload,
				PayloadType: payloadType,
				Signatures:  []*protodsse.Signature{{Sig: sig}},
			},
		},
	}
	raw, err := protojson.Marshal(pb)
	if err != nil {
		return nil, fmt.Errorf("encode sigstore bundle: %w", err)
	}
	// protojson varies its whitespace on purpose; compacted, the bytes
	// depend on the content only.
	var out bytes.Buffer
	if err := json.Compact(&out, raw); err != nil {
		return nil, fmt.Errorf("encode sigstore bundle: %w", err)
	}
	return out.Bytes(), nil
}

// SignOptions tune what SignImage and SignStatement write.
type SignOptions struct {
	// Created, when set, is the referrer's org.opencontainers.image.created
	// annotation (cosign writes the signing time; the pipeline passes the
	// build time, so that the manifest does not vary with the clock).
	Created time.Time
}

// Signed is one signature referrer written (or found) by SignImage or
// SignStatement.
type Signed struct {
	Referrer      v1.Descriptor `json:"referrer"`
	PredicateType string        `json:"predicateType"`
	// Existing is true when a signature by the same key over the same
	// statement was already attached, so nothing was written.
	Existing bool `json:"existing,omitempty"`
}

// SignImage signs subject's digest as `cosign sign --key` does and
// attaches the bundle to it in t as an OCI 1.1 referrer; `cosign verify
// --key` accepts it. A subject that already carries a signature by the
// same key is left as it is (ECDSA signatures differ each time, so signing
// again would add a referrer on every run).
func SignImage(ctx context.Context, t Target, subject v1.Descriptor, s *Signer, opts SignOptions) (*Signed, error) {
	return signStatement(ctx, t, subject, s, ImageStatement(subject.Digest), opts)
}

// SignStatement signs an in-toto statement about subject (the SLSA
// provenance, say) as a DSSE attestation in a sigstore bundle, attached to
// subject in t, as `cosign attest --key` does; `cosign verify-attestation
// --key --type <predicate>` accepts it. The statement must name subject's
// digest among its subjects; its bytes are signed as given.
func SignStatement(ctx context.Context, t Target, subject v1.Descriptor, s *Signer, stmt []byte, opts SignOptions) (*Signed, error) {
	return signStatement(ctx, t, subject, s, stmt, opts)
}

func signStatement(ctx context.Context, t Target, subject v1.Descriptor, s *Signer, stmt []byte, opts SignOptions) (*Signed, error) {
	st, err := parseStatement(stmt)
	if err != nil {
		return nil, err
	}
	if !st.names(subject.Digest) {
		return nil, fmt.Errorf("the %s statement does not name %s among its subjects; not signing it for that image", st.PredicateType, subject.Digest)
	}
	if existing, err := findSigned(ctx, t, subject.Digest, s.Public(), st.PredicateType, stmt); err != nil {
		return nil, err
	} else if existing != nil {
		return &Signed{Referrer: *existing, PredicateType: st.PredicateType, Existing: true}, nil
	}
	bundle, err := s.DSSEBundle(InTotoPayloadType, stmt)
	if err != nil {
		return nil, err
	}
	ann := map[string]string{
		AnnotationBundleContent:       "dsse-envelope",
		AnnotationBundlePredicateType: st.PredicateType,
	}
	if !opts.Created.IsZero() {
		ann[annotationCreated] = opts.Created.UTC().Format(time.RFC3339)
	}
	desc, err := Attach(ctx, t, subject, BundleMediaType, bundle, BundleMediaType, ann)
	if err != nil {
		return nil, fmt.Errorf("attach the %s signature: %w", st.PredicateType, err)
	}
	return &Signed{Referrer: desc, PredicateType: st.PredicateType}, nil
}

// findSigned returns the referrer of a bundle that pub verifies for digest
// whose statement is exactly stmt; nil when there is none.
func findSigned(ctx context.Context, t Target, digest v1.Hash, pub *PublicKey, predicateType string, stmt []byte) (*v1.Descriptor, error) {
	found, err := verifyReferrers(ctx, t, digest, pub, predicateType)
	if err != nil {
		var ve *VerificationError
		if errors.As(err, &ve) {
			return nil, nil
		}
		return nil, err
	}
	for _, f := range found {
		if bytes.Equal(f.Statement, stmt) {
			d := f.Referrer
			return &d, nil
		}
	}
	return nil, nil
}

// Describe returns the descriptor of the manifest or index h names in t
// (media type, digest, size), what a referrer's subject needs.
func Describe(ctx context.Context, t Target, h v1.Hash) (v1.Descriptor, error) {
	raw, err := t.Read(ctx, h)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("read %s in %s: %w", h, t, err)
	}
	var m struct {
		MediaType types.MediaType `json:"mediaType"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return v1.Descriptor{}, fmt.Errorf("%s in %s is not a manifest: %w", h, t, err)
	}
	if m.MediaType == "" {
		m.MediaType = types.OCIManifestSchema1
	}
	return v1.Descriptor{MediaType: m.MediaType, Digest: h, Size: int64(len(raw))}, nil
}

// InTotoArtifactType is the artifact type of an unsigned in-toto statement
// attached as a referrer (the provenance a release attaches).
const InTotoArtifactType = InTotoPayloadType

// AttachedStatements returns the unsigned in-toto statements attached to
// subject in t whose predicate type is predicateType and whose subjects
// name it: the bytes to sign as they are, so that the signed attestation
// and the attached statement are the same document.
func AttachedStatements(ctx context.Context, t Target, subject v1.Hash, predicateType string) ([][]byte, error) {
	refs, err := Find(ctx, t, subject, InTotoArtifactType)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, d := range refs {
		ref, err := Fetch(ctx, t, d, subject)
		if err != nil {
			return nil, err
		}
		st, err := parseStatement(ref.Blob)
		if err != nil || st.PredicateType != predicateType || !st.names(subject) {
			continue
		}
		out = append(out, ref.Blob)
	}
	return out, nil
}
