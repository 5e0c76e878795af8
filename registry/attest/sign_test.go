package attest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/notesctl/notesctl/registry"
)

const testPassword = "correct horse battery staple"

// keyPair writes a cosign-format key pair (encrypted with testPassword)
// into dir and returns the paths.
func keyPair(t testing.TB, dir, name string) []string {
	priv, pub := keyPairPaths(t, dir, name)
	return []string{priv, pub}
}

func keyPairPaths(t testing.TB, dir, name string) (priv, pub string) {
	t.Helper()
	privPEM, pubPEM, err := GenerateKeyPair([]byte(testPassword))
	if err != nil {
		t.Fatal(err)
	}
	priv, pub = filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pub")
	if err := os.WriteFile(priv, privPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

func envOf(m map[string]string) Getenv { return func(k string) string { return m[k] } }

func loadPair(t testing.TB, paths ...string) (*Signer, *PublicKey) {
	t.Helper()
	priv, pub := paths[0], paths[1]
	s, err := LoadSigner(priv, envOf(map[string]string{EnvPassword: testPassword}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := LoadPublicKey(pub, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, p
}

func TestLoadKeys(t *testing.T) {
	dir := t.TempDir()
	priv, pub := keyPairPaths(t, dir, "cosign")
	privPEM, _ := os.ReadFile(priv)
	pubPEM, _ := os.ReadFile(pub)
	if !bytes.Contains(privPEM, []byte("ENCRYPTED SIGSTORE PRIVATE KEY")) {
		t.Fatalf("generated key is not in cosign's format:\n%s", privPEM)
	}
	// An unencrypted PKCS#8 Ed25519 key (openssl genpkey -algorithm ed25519).
	_, edKey, _ := ed25519.GenerateKey(nil)
	der, _ := x509.MarshalPKCS8PrivateKey(edKey)
	edPath := filepath.Join(dir, "ed.key")
	os.WriteFile(edPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)

	tests := []struct {
		name    string
		ref     string
		env     map[string]string
		public  bool
		wantErr string // "" = loads
	}{
		{name: "encrypted file with COSIGN_PASSWORD", ref: priv, env: map[string]string{EnvPassword: testPassword}},
		{name: "env:// variable", ref: "env://SIGN", env: map[string]string{"SIGN": string(privPEM), EnvPassword: testPassword}},
		{name: "inline PEM (NOTESCTL_SIGN_KEY holding the key)", ref: string(privPEM), env: map[string]string{EnvPassword: testPassword}},
		{name: "unencrypted Ed25519 PKCS#8", ref: edPath},
		{name: "wrong password", ref: priv, env: map[string]string{EnvPassword: "nope"}, wantErr: "wrong password"},
		{name: "no password", ref: priv, wantErr: EnvPassword + " is not set"},
		{name: "missing file", ref: filepath.Join(dir, "none.key"), wantErr: "none.key"},
		{name: "unset variable", ref: "env://NOPE", wantErr: "environment variable NOPE is not set"},
		{name: "public key as signing key", ref: pub, wantErr: "cosign.pub"},
		{name: "public key", ref: pub, public: true},
		{name: "public key from env", ref: "env://PUB", env: map[string]string{"PUB": string(pubPEM)}, public: true},
		{name: "private key as verification key", ref: priv, public: true, wantErr: "holds a private key"},
		{name: "not PEM", ref: filepath.Join(dir, "junk"), public: true, wantErr: "not a PEM public key"},
	}
	os.WriteFile(filepath.Join(dir, "junk"), []byte("hello"), 0o600)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.public {
				_, err = LoadPublicKey(tc.ref, envOf(tc.env))
			} else {
				_, err = LoadSigner(tc.ref, envOf(tc.env))
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("load: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("load error = %v, want one containing %q", err, tc.wantErr)
			}
			if err != nil {
				for _, secret := range []string{testPassword, "BEGIN ENCRYPTED", string(privPEM[40:80])} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error shows secret material %q: %v", secret, err)
					}
				}
			}
		})
	}
}

// TestBundleDeterminism: everything but the signature is a function of the
// statement and key; Ed25519 signatures are deterministic, so its bundles
// are byte-identical; ECDSA ones differ only in the signature.
func TestBundleDeterminism(t *testing.T) {
	dir := t.TempDir()
	ec, _ := loadPair(t, keyPair(t, dir, "ecdsa")...)
	_, edKey, _ := ed25519.GenerateKey(nil)
	der, _ := x509.MarshalPKCS8PrivateKey(edKey)
	ed, err := LoadSigner(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil)
	if err != nil {
		t.Fatal(err)
	}
	digest := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	stmt := ImageStatement(digest)
	if want := `{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"` + digest.Hex + `"}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}`; string(stmt) != want {
		t.Errorf("ImageStatement =\n%s\nwant\n%s", stmt, want)
	}
	a, _ := ed.DSSEBundle(InTotoPayloadType, stmt)
	b, _ := ed.DSSEBundle(InTotoPayloadType, stmt)
	if !bytes.Equal(a, b) {
		t.Errorf("Ed25519 bundles differ:\n%s\n%s", a, b)
	}
	x, _ := ec.DSSEBundle(InTotoPayloadType, stmt)
	y, _ := ec.DSSEBundle(InTotoPayloadType, stmt)
	if bytes.Equal(x, y) {
		t.Errorf("two ECDSA bundles are identical; ECDSA signatures are randomized")
	}
	if !bytes.Equal(withoutSig(t, x), withoutSig(t, y)) {
		t.Errorf("ECDSA bundles differ beyond the signature:\n%s\n%s", x, y)
	}
	if bytes.ContainsAny(x, " \n") {
		t.Errorf("bundle JSON is not compact: %s", x)
	}
}

func withoutSig(t *testing.T, raw []byte) []byte {
	t.Helper()
	pb := &protobundle.Bundle{}
	if err := protojson.Unmarshal(raw, pb); err != nil {
		t.Fatal(err)
	}
	pb.GetDsseEnvelope().Signatures[0].Sig = nil
	out, _ := protojson.Marshal(pb)
	var c bytes.Buffer
	json.Compact(&c, out)
	return c.Bytes()
}

func TestSignVerifyRegistries(t *testing.T) {
	dir := t.TempDir()
	s, pub := loadPair(t, keyPair(t, dir, "good")...)
	_, otherPub := loadPair(t, keyPair(t, dir, "other")...)
	otherSigner, _ := loadPair(t, filepath.Join(dir, "other.key"), filepath.Join(dir, "other.pub"))
	for _, r := range registries(t) {
		t.Run(r.name, func(t *testing.T) {
			target, err := NewTarget(context.Background(), r.repo, r.opts)
			if err != nil {
				t.Fatal(err)
			}
			checkSignVerify(t, target, pushSubject(t, r), func() v1.Descriptor { return pushSubject(t, r) }, s, pub, otherSigner, otherPub)
		})
	}
}

func TestSignVerifyLayout(t *testing.T) {
	dir := t.TempDir()
	s, pub := loadPair(t, keyPair(t, dir, "good")...)
	otherSigner, otherPub := loadPair(t, keyPair(t, dir, "other")...)
	lp := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(lp, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	add := func() v1.Descriptor {
		img, err := random.Image(128, 1)
		if err != nil {
			t.Fatal(err)
		}
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		if err := p.AppendImage(img); err != nil {
			t.Fatal(err)
		}
		d, err := partial.Descriptor(img)
		if err != nil {
			t.Fatal(err)
		}
		return *d
	}
	target, err := NewTarget(context.Background(), registry.LayoutPrefix+lp, registry.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkSignVerify(t, target, add(), add, s, pub, otherSigner, otherPub)
}

func checkSignVerify(t *testing.T, target Target, subject v1.Descriptor, another func() v1.Descriptor, s *Signer, pub *PublicKey, other *Signer, otherPub *PublicKey) {
	t.Helper()
	ctx := context.Background()
	reason := func(err error) string {
		var ve *VerificationError
		if !errors.As(err, &ve) {
			t.Fatalf("error is not a VerificationError: %v", err)
		}
		return ve.Reason
	}

	// Unsigned: refused, saying so.
	if _, err := VerifyImage(ctx, target, subject.Digest, pub); err == nil || !strings.HasPrefix(reason(err), "no signature") {
		t.Fatalf("unsigned image: VerifyImage = %v, want 'no signature'", err)
	}

	created := time.Unix(1746598316, 0)
	signed, err := SignImage(ctx, target, subject, s, SignOptions{Created: created})
	if err != nil {
		t.Fatalf("SignImage: %v", err)
	}
	if signed.Existing || signed.Referrer.ArtifactType != BundleMediaType {
		t.Errorf("SignImage = %+v", signed)
	}
	got, err := VerifyImage(ctx, target, subject.Digest, pub)
	if err != nil {
		t.Fatalf("VerifyImage with the signing key: %v", err)
	}
	if len(got) != 1 || got[0].Referrer.Digest != signed.Referrer.Digest || got[0].KeyID != pub.ID() {
		t.Errorf("VerifyImage = %+v, want the referrer %s", got, signed.Referrer.Digest)
	}
	ref, err := Fetch(ctx, target, signed.Referrer, subject.Digest)
	if err != nil {
		t.Fatal(err)
	}
	wantAnn := map[string]string{AnnotationBundleContent: "dsse-envelope", AnnotationBundlePredicateType: CosignSignPredicateType, annotationCreated: "2025-05-07T06:11:56Z"}
	for k, v := range wantAnn {
		if ref.Manifest.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, ref.Manifest.Annotations[k], v)
		}
	}
	if ref.Layer.MediaType != BundleMediaType {
		t.Errorf("layer media type %s", ref.Layer.MediaType)
	}

	// Signing again with the same key writes nothing new.
	again, err := SignImage(ctx, target, subject, s, SignOptions{Created: created})
	if err != nil || !again.Existing || again.Referrer.Digest != signed.Referrer.Digest {
		t.Errorf("SignImage again = %+v, %v; want the existing referrer", again, err)
	}

	// Another key's public key: refused, naming the cause.
	if _, err := VerifyImage(ctx, target, subject.Digest, otherPub); err == nil || !strings.Contains(reason(err), "another key") {
		t.Errorf("VerifyImage with another key = %v, want 'another key'", err)
	}
	// A second image signed only by the other key: refused with our key.
	byOther := another()
	if _, err := SignImage(ctx, target, byOther, other, SignOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyImage(ctx, target, byOther.Digest, pub); err == nil || !strings.Contains(reason(err), "another key") {
		t.Errorf("image signed by another key: VerifyImage = %v, want 'another key'", err)
	}

	// A tampered image: the valid bundle of subject copied onto another
	// digest (what a re-tag to other content plus a copied signature
	// gives) verifies cryptographically, but names another image.
	tampered := another()
	if _, err := Attach(ctx, target, tampered, BundleMediaType, ref.Blob, BundleMediaType, ref.Manifest.Annotations); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyImage(ctx, target, tampered.Digest, pub); err == nil || !strings.Contains(reason(err), "names another image") {
		t.Errorf("copied signature: VerifyImage = %v, want 'names another image'", err)
	}
	// A statement about another image is not signed for this one.
	if _, err := SignStatement(ctx, target, tampered, s, ImageStatement(subject.Digest), SignOptions{}); err == nil {
		t.Errorf("SignStatement of a statement about another image succeeded")
	}

	// Provenance: a DSSE attestation with the SLSA predicate.
	prov := []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":{"sha256":"` + subject.Digest.Hex + `"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{"buildDefinition":{"buildType":"t"}}}`)
	if _, err := VerifyAttestation(ctx, target, subject.Digest, pub, SLSAProvenancePredicateType); err == nil {
		t.Errorf("VerifyAttestation before the attestation exists succeeded")
	}
	// The unsigned statement as a release attaches it is what gets signed:
	// AttachedStatements finds it (and not statements of another type or
	// about another image).
	otherType := []byte(strings.Replace(string(prov), "https://slsa.dev/provenance/v1", "https://spdx.dev/Document", 1))
	for _, b := range [][]byte{prov, otherType} {
		if _, err := Attach(ctx, target, subject, InTotoArtifactType, b, InTotoPayloadType, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Attach(ctx, target, tampered, InTotoArtifactType, prov, InTotoPayloadType, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := AttachedStatements(ctx, target, subject.Digest, SLSAProvenancePredicateType); err != nil || len(got) != 1 || !bytes.Equal(got[0], prov) {
		t.Errorf("AttachedStatements = %q, %v; want the provenance", got, err)
	}
	if got, err := AttachedStatements(ctx, target, tampered.Digest, SLSAProvenancePredicateType); err != nil || len(got) != 0 {
		t.Errorf("AttachedStatements of a statement about another image = %q, %v; want none", got, err)
	}
	att, err := SignStatement(ctx, target, subject, s, prov, SignOptions{Created: created})
	if err != nil {
		t.Fatalf("SignStatement: %v", err)
	}
	if att.PredicateType != SLSAProvenancePredicateType {
		t.Errorf("attestation predicate type %q", att.PredicateType)
	}
	va, err := VerifyAttestation(ctx, target, subject.Digest, pub, SLSAProvenancePredicateType)
	if err != nil {
		t.Fatalf("VerifyAttestation: %v", err)
	}
	if !bytes.Equal(va[0].Statement, prov) {
		t.Errorf("verified statement = %s, want the signed bytes", va[0].Statement)
	}
	// The image signature still verifies with the attestation beside it, and
	// the attestation is not mistaken for it.
	if got, err := VerifyImage(ctx, target, subject.Digest, pub); err != nil || len(got) != 1 {
		t.Errorf("VerifyImage next to an attestation = %+v, %v", got, err)
	}
	if _, err := VerifyAttestation(ctx, target, subject.Digest, otherPub, SLSAProvenancePredicateType); err == nil {
		t.Errorf("VerifyAttestation with another key succeeded")
	}
}

// BenchmarkLoadSigner is the one-time cost of decrypting cosign's key
// format (scrypt, N=65536 as cosign writes it): paid once per notesctl run with --sign-key.
func BenchmarkLoadSigner(b *testing.B) {
	priv, _, err := GenerateKeyPair([]byte(testPassword))
	if err != nil {
		b.Fatal(err)
	}
	env := envOf(map[string]string{EnvPassword: testPassword})
	for b.Loop() {
		if _, err := LoadSigner(string(priv), env); err != nil {
			b.Fatal(err)
		}
	}
}
