// Package regserver starts real OCI registries for tests: go-containerregistry's
// in-process registry, the CNCF Distribution binary with htpasswd and TLS, and
// a FaultProxy that injects registry failures. Every server listens on a random
// 127.0.0.1 port and is shut down by t.Cleanup.
package regserver

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// UploadCounter counts the request body bytes a server received for blob
// uploads (POST, PATCH and PUT under /v2/<name>/blobs/uploads/). It is the
// server-side truth that tests compare client-reported numbers against.
type UploadCounter struct {
	bytes     atomic.Int64
	commits   atomic.Int64
	manifests atomic.Int64
}

// Bytes returns the blob upload body bytes received so far.
func (c *UploadCounter) Bytes() int64 { return c.bytes.Load() }

// Commits returns how many blob upload requests completed a blob (a PUT or a
// monolithic POST carrying ?digest=) with a 201 answer.
func (c *UploadCounter) Commits() int64 { return c.commits.Load() }

// ManifestPuts returns how many manifest PUTs the server received.
func (c *UploadCounter) ManifestPuts() int64 { return c.manifests.Load() }

// Reset sets the counters to zero.
func (c *UploadCounter) Reset() {
	c.bytes.Store(0)
	c.commits.Store(0)
	c.manifests.Store(0)
}

// IsBlobUpload reports whether r writes into a blob upload session.
func IsBlobUpload(r *http.Request) bool {
	switch r.Method {
	case http.MethodPost, http.MethodPatch, http.MethodPut:
		return strings.HasPrefix(r.URL.Path, "/v2/") && strings.Contains(r.URL.Path, "/blobs/uploads/")
	}
	return false
}

// Wrap returns h with blob upload bodies counted into c.
func (c *UploadCounter) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v2/") && strings.Contains(r.URL.Path, "/manifests/") {
			c.manifests.Add(1)
		}
		if !IsBlobUpload(r) {
			h.ServeHTTP(w, r)
			return
		}
		if r.Body != nil {
			r.Body = &countingBody{ReadCloser: r.Body, n: &c.bytes}
		}
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		if sw.status == http.StatusCreated && r.URL.Query().Get("digest") != "" {
			c.commits.Add(1)
		}
	})
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// InProcessOptions configures InProcess.
type InProcessOptions struct {
	// Wrap, if set, wraps the registry handler (after byte counting), e.g.
	// to require authentication or to observe requests.
	Wrap func(http.Handler) http.Handler
	// Referrers turns on the OCI 1.1 referrers API
	// (GET /v2/<name>/referrers/<digest>); without it the registry answers
	// 404 there, like a registry that predates OCI 1.1.
	Referrers bool
}

// Server is a running in-process registry.
type Server struct {
	// URL is the base URL, e.g. http://127.0.0.1:41234.
	URL string
	// Host is host:port, usable as a registry name ("HOST/repo").
	Host string
	// Uploads counts blob upload bytes received by the registry.
	Uploads *UploadCounter
}

// InProcess starts go-containerregistry's registry (in-memory blobs, blob
// DELETE enabled) on a random loopback port for the duration of the test.
func InProcess(t testing.TB, opts InProcessOptions) *Server {
	t.Helper()
	counter := &UploadCounter{}
	var h http.Handler = ggcrregistry.New(ggcrregistry.Logger(discardLogger()), ggcrregistry.WithReferrersSupport(opts.Referrers))
	if opts.Wrap != nil {
		h = opts.Wrap(h)
	}
	srv := httptest.NewServer(counter.Wrap(h))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatalf("regserver: parse %q: %v", srv.URL, err)
	}
	return &Server{URL: srv.URL, Host: u.Host, Uploads: counter}
}

// DeleteBlob removes a blob from the registry's storage so that tests can
// produce an incomplete image (a manifest whose blob is missing).
func (s *Server) DeleteBlob(t testing.TB, repo string, h v1.Hash) {
	t.Helper()
	req, err := http.NewRequest(http.MethodDelete, s.URL+"/v2/"+repo+"/blobs/"+h.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("regserver: delete blob %s: %v", h, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("regserver: delete blob %s: %s: %s", h, resp.Status, b)
	}
}
