package attest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// EnvKeyPrefix marks a key reference that names an environment variable
// holding the PEM key itself, as cosign spells it: env://COSIGN_KEY.
const EnvKeyPrefix = "env://"

// EnvPassword holds the password of an encrypted private key, the variable
// cosign reads too.
const EnvPassword = "COSIGN_PASSWORD"

// Getenv reads an environment variable; tests and the CLI pass their own.
type Getenv func(string) string

// A Signer holds a private key that signs images and attestations.
type Signer struct {
	key    crypto.Signer
	source string // where the key came from, for messages (never its content)
	alg    signature.AlgorithmDetails
}

// A PublicKey verifies what a Signer signed.
type PublicKey struct {
	key    crypto.PublicKey
	source string
}

// Source names where the key was read from (a path or env://VAR).
func (s *Signer) Source() string { return s.source }

// Public returns the public half of the signing key.
func (s *Signer) Public() *PublicKey {
	return &PublicKey{key: s.key.Public(), source: s.source}
}

// Source names where the key was read from.
func (p *PublicKey) Source() string { return p.source }

// PEM is the key as a PUBLIC KEY PEM block, the form cosign.pub has.
func (p *PublicKey) PEM() ([]byte, error) {
	return cryptoutils.MarshalPublicKeyToPEM(p.key)
}

// ID is the key's hint: the SHA-256 of its PKIX DER encoding, hex. It
// names a key in messages without showing the key.
func (p *PublicKey) ID() string {
	der, err := cryptoutils.MarshalPublicKeyToDER(p.key)
	if err != nil {
		return "?"
	}
	sum := sha256.Sum256(der)
	return fmt.Sprintf("%x", sum[:])
}

// readKeyRef returns the bytes a key reference names: the file at a path,
// the variable's value for env://VAR, or the reference itself when it is a
// PEM block already (NOTESCTL_SIGN_KEY may hold the key, not a path).
func readKeyRef(ref string, getenv Getenv) ([]byte, string, error) {
	switch {
	case ref == "":
		return nil, "", errors.New("no key given")
	case strings.HasPrefix(strings.TrimSpace(ref), "-----BEGIN "):
		return []byte(ref), "the PEM key given inline", nil
	case strings.HasPrefix(ref, EnvKeyPrefix):
		name := strings.TrimPrefix(ref, EnvKeyPrefix)
		if name == "" {
			return nil, ref, fmt.Errorf("%s: no variable name after %s", ref, EnvKeyPrefix)
		}
		v := getenv(name)
		if v == "" {
			return nil, ref, fmt.Errorf("%s: environment variable %s is not set or empty", ref, name)
		}
		return []byte(v), ref, nil
	default:
		b, err := os.ReadFile(ref)
		if err != nil {
			return nil, ref, fmt.Errorf("read key: %w", err)
		}
		return b, ref, nil
	}
}

// LoadSigner reads a private key in cosign's format: "ENCRYPTED SIGSTORE
// PRIVATE KEY" (or the older "ENCRYPTED COSIGN PRIVATE KEY"; scrypt +
// NaCl secretbox, password from COSIGN_PASSWORD, as `cosign
// generate-key-pair` writes it), or an unencrypted PKCS#8, SEC 1 or PKCS#1
// key. ref is a path, env://VAR, or the PEM text itself. ECDSA, RSA and
// Ed25519 keys sign; cosign's own keys are ECDSA P-256.
func LoadSigner(ref string, getenv Getenv) (*Signer, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	data, source, err := readKeyRef(ref, getenv)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("signing key %s: not a PEM private key", source)
	}
	encrypted := strings.HasPrefix(block.Type, "ENCRYPTED ")
	// An unset COSIGN_PASSWORD is the empty password, which is what
	// cosign writes when asked for none.
	pw := getenv(EnvPassword)
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(data, cryptoutils.StaticPasswordFunc([]byte(pw)))
	if err != nil {
		if encrypted {
			hint := ""
			if getenv(EnvPassword) == "" {
				hint = " (" + EnvPassword + " is not set)"
			}
			return nil, fmt.Errorf("signing key %s: cannot decrypt the %s block: wrong password?%s: %v", source, block.Type, hint, err)
		}
		return nil, fmt.Errorf("signing key %s: %v", source, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("signing key %s: a %T cannot sign", source, priv)
	}
	switch k := signer.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
	case *ed25519.PrivateKey:
		signer = *k
	default:
		return nil, fmt.Errorf("signing key %s: unsupported key type %T (want ECDSA, RSA or Ed25519)", source, priv)
	}
	alg, err := signature.GetDefaultAlgorithmDetails(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %v", source, err)
	}
	return &Signer{key: signer, source: source, alg: alg}, nil
}

// LoadPublicKey reads a PEM public key (cosign.pub) from a path, env://VAR
// or the PEM text itself.
func LoadPublicKey(ref string, getenv Getenv) (*PublicKey, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	data, source, err := readKeyRef(ref, getenv)
	if err != nil {
		return nil, fmt.Errorf("verification key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("verification key %s: not a PEM public key", source)
	}
	if strings.Contains(block.Type, "PRIVATE KEY") {
		return nil, fmt.Errorf("verification key %s: holds a private key (%s); give the public key (cosign.pub)", source, block.Type)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("verification key %s: %v", source, err)
	}
	if _, err := signature.GetDefaultAlgorithmDetails(pub); err != nil {
		return nil, fmt.Errorf("verification key %s: %v", source, err)
	}
	return &PublicKey{key: pub, source: source}, nil
}

// GenerateKeyPair makes an ECDSA P-256 key pair in cosign's format, the
// private key encrypted with password (cosign.key, cosign.pub), as
// `cosign generate-key-pair` does.
func GenerateKeyPair(password []byte) (privPEM, pubPEM []byte, err error) {
	return cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), cryptoutils.StaticPasswordFunc(password))
}
