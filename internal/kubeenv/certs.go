package kubeenv

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"github.com/notesctl/notesctl/internal/testenv"
)

// servingCert writes a self-signed serving certificate for the API server
// into dir and returns the certificate and key paths and the PEM
// certificate (it is its own CA).
func servingCert(dir string) (certFile, keyFile string, certPEM []byte, err error) {
	c, err := testenv.NewCert(dir, "kubeenv kube-apiserver", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
	if err != nil {
		return "", "", nil, fmt.Errorf("serving certificate: %w", err)
	}
	return c.CertFile, c.KeyFile, c.PEM, nil
}

// serviceAccountKeys writes the RSA key pair kube-apiserver signs and
// verifies service-account tokens with, and returns the file paths.
func serviceAccountKeys(dir string) (pubFile, keyFile string, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", "", fmt.Errorf("generate service-account key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", "", err
	}
	pubFile = filepath.Join(dir, "sa.pub")
	keyFile = filepath.Join(dir, "sa.key")
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return "", "", err
	}
	return pubFile, keyFile, nil
}

// randomToken returns a bearer token of 32 random hex characters.
func randomToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", b), nil
}
