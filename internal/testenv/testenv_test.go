package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestNewCert: a client trusting only the certificate reaches a server
// that serves it, on 127.0.0.1 and on an extra name.
func TestNewCert(t *testing.T) {
	c, err := NewCert(t.TempDir(), "testenv", "registry.test")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{c.TLS}}
	srv.StartTLS()
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.Pool}}}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatalf("GET %s with only the certificate trusted: %v", srv.URL, err)
	}
	resp.Body.Close()
	if err := c.TLS.Leaf.VerifyHostname("registry.test"); err != nil {
		t.Errorf("extra name: %v", err)
	}
	if _, err := c.TLS.Leaf.Verify(x509.VerifyOptions{Roots: c.Pool, DNSName: "localhost"}); err != nil {
		t.Errorf("localhost: %v", err)
	}
}
