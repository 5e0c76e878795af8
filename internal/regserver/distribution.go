package regserver

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/notesctl/notesctl/internal/testenv"
)

// DistributionOptions configures Distribution.
type DistributionOptions struct {
	// User and Password enable htpasswd (bcrypt) authentication.
	// Both empty: anonymous access.
	User, Password string
	// TLS serves HTTPS with a freshly generated self-signed certificate.
	TLS bool
}

// DistributionServer is a running CNCF Distribution registry.
//
// Design: the registry process listens on one loopback port (Backend) and a
// small Go reverse proxy listens on another (Host). The proxy exists to count
// blob upload bytes server-side; counting needs to see plain request bodies, so
// with TLS the proxy terminates TLS itself (same certificate) and re-encrypts
// to the registry, which serves its own TLS from http.tls in its config. Both
// ends are therefore real TLS endpoints that verify against CAFile. The proxy
// preserves Host and sets X-Forwarded-Proto/Host so the upload Locations the
// registry hands out point back at the proxy.
type DistributionServer struct {
	// Host is the proxy's host:port: use it as the registry name.
	Host string
	// Backend is the registry process's own host:port (no byte counting).
	Backend string
	// Scheme is "https" with TLS, else "http".
	Scheme string
	// CAFile and CAPool hold the self-signed certificate (TLS only).
	CAFile string
	CAPool *x509.CertPool
	// User and Password are the htpasswd credentials (may be empty).
	User, Password string
	// Uploads counts blob upload bytes that passed through the proxy.
	Uploads *UploadCounter
	// Dir is the registry's storage root directory.
	Dir string
}

// LookupDistribution finds the Distribution binary: Debian's docker-registry
// (2.8.x) or an upstream build named registry (v3).
func LookupDistribution() (string, error) {
	var errs []error
	for _, name := range []string{"docker-registry", "registry"} {
		p, err := exec.LookPath(name)
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("CNCF Distribution binary not found (apt-get install docker-registry): %w", errors.Join(errs...))
}

// Distribution starts the CNCF Distribution registry for the duration of the
// test. It skips the test when the binary is missing, unless
// NOTESCTL_REQUIRE_TOOLS=1, in which case it fails.
func Distribution(t testing.TB, opts DistributionOptions) *DistributionServer {
	t.Helper()
	bin, err := LookupDistribution()
	if err != nil {
		testenv.Missing(t, "regserver: %v", err)
	}
	if (opts.User == "") != (opts.Password == "") {
		t.Fatalf("regserver: DistributionOptions needs both User and Password, or neither")
	}
	dir := t.TempDir()
	ds := &DistributionServer{
		Scheme:   "http",
		User:     opts.User,
		Password: opts.Password,
		Uploads:  &UploadCounter{},
		Dir:      filepath.Join(dir, "storage"),
	}
	var cert *Cert
	if opts.TLS {
		cert, err = NewCert(dir)
		if err != nil {
			t.Fatalf("regserver: %v", err)
		}
		ds.Scheme, ds.CAFile, ds.CAPool = "https", cert.CertFile, cert.Pool
	}
	htpasswd := ""
	if opts.User != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(opts.Password), bcrypt.MinCost)
		if err != nil {
			t.Fatalf("regserver: bcrypt: %v", err)
		}
		htpasswd = filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(opts.User+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// The free-port probe can race with other processes; retry a few times.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("regserver: %v", err)
		}
		ds.Backend = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		cfg := distributionConfig(ds, cert, htpasswd)
		cfgPath := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		lastErr = startDistribution(t, bin, cfgPath, ds, cert)
		if lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("regserver: %v", lastErr)
	}

	backendURL := &url.URL{Scheme: ds.Scheme, Host: ds.Backend}
	backendTransport := http.DefaultTransport.(*http.Transport).Clone()
	if cert != nil {
		backendTransport.TLSClientConfig = &tls.Config{RootCAs: cert.Pool, MinVersion: tls.VersionTLS12}
	}
	t.Cleanup(backendTransport.CloseIdleConnections)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(backendURL)
			r.Out.Host = r.In.Host
			r.SetXForwarded()
		},
		Transport: backendTransport,
		ErrorLog:  discardLogger(),
	}
	srv := httptest.NewUnstartedServer(ds.Uploads.Wrap(proxy))
	if cert != nil {
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert.TLS}, MinVersion: tls.VersionTLS12}
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	ds.Host = srv.Listener.Addr().String()
	return ds
}

func distributionConfig(ds *DistributionServer, cert *Cert, htpasswd string) string {
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	var b bytes.Buffer
	fmt.Fprintf(&b, "version: 0.1\n")
	fmt.Fprintf(&b, "log:\n  level: error\n  accesslog:\n    disabled: true\n")
	fmt.Fprintf(&b, "storage:\n  filesystem:\n    rootdirectory: %q\n  delete:\n    enabled: true\n", ds.Dir)
	fmt.Fprintf(&b, "http:\n  addr: %q\n  secret: %q\n", ds.Backend, hex.EncodeToString(secret))
	if cert != nil {
		fmt.Fprintf(&b, "  tls:\n    certificate: %q\n    key: %q\n", cert.CertFile, cert.KeyFile)
	}
	if htpasswd != "" {
		fmt.Fprintf(&b, "auth:\n  htpasswd:\n    realm: notesctl-test\n    path: %q\n", htpasswd)
	}
	return b.String()
}

// startDistribution runs the binary and waits until /v2/ answers (200 or 401).
func startDistribution(t testing.TB, bin, cfgPath string, ds *DistributionServer, cert *Cert) error {
	var out lockedBuffer
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	client := &http.Client{Timeout: time.Second}
	if cert != nil {
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cert.Pool, MinVersion: tls.VersionTLS12}}
	}
	defer client.CloseIdleConnections()
	ping := ds.Scheme + "://" + ds.Backend + "/v2/"
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err // let a later stop() not block
			return fmt.Errorf("%s exited before serving (%v): %s", bin, err, out.String())
		default:
		}
		resp, err := client.Get(ping)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				t.Cleanup(stop)
				return nil
			}
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("%s did not answer %s within 15s (last error %v): %s", bin, ping, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
