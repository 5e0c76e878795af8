package registry

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/notesctl/notesctl/internal/regserver"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 5, 7, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"1", time.Second, true},
		{" 30 ", 30 * time.Second, true},
		{"0", 0, true},
		{"-5", 0, false},
		{"soon", 0, false},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{"99999999999", 24 * time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := retryAfter(tt.in, now)
			if got != tt.want || ok != tt.ok {
				t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestBackoffBounds(t *testing.T) {
	p := RetryPolicy{Attempts: 10, Base: 100 * time.Millisecond, Max: time.Second}.withDefaults()
	for n := 1; n <= 8; n++ {
		full := min(p.Base<<(n-1), p.Max)
		for i := 0; i < 50; i++ {
			got := p.backoff(n)
			if got < full/2 || got > full {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, got, full/2, full)
			}
		}
	}
}

func TestGGCRBackoffKeepsAllAttempts(t *testing.T) {
	tests := []RetryPolicy{
		{Attempts: 4, Base: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		{Attempts: 10, Base: 500 * time.Millisecond, Max: 20 * time.Second},
		{Attempts: 2, Base: time.Second, Max: time.Second},
		{Attempts: 1},
	}
	for _, p := range tests {
		t.Run(fmt.Sprint(p.Attempts, p.Base, p.Max), func(t *testing.T) {
			p = p.withDefaults()
			b := p.ggcrBackoff()
			if b.Steps != p.Attempts || b.Cap != 0 {
				t.Fatalf("backoff = %+v: Steps must equal Attempts and Cap stay 0 (a Cap ends ggcr's retries early)", b)
			}
			for i := 0; i < p.Attempts-1; i++ {
				if d := b.Step(); d > p.Max {
					t.Errorf("wait %d = %v exceeds Max %v", i+1, d, p.Max)
				}
			}
		})
	}
}

func TestReplayable(t *testing.T) {
	withBody := func(method, url string, getBody bool) *http.Request {
		r, _ := http.NewRequest(method, url, bytes.NewReader([]byte("x")))
		if !getBody {
			r.GetBody = nil
		}
		return r
	}
	noBody := func(method, url string) *http.Request {
		r, _ := http.NewRequest(method, url, nil)
		return r
	}
	tests := []struct {
		name string
		req  *http.Request
		want bool
	}{
		{"GET manifest", noBody("GET", "https://r/v2/a/manifests/v1"), true},
		{"HEAD blob", noBody("HEAD", "https://r/v2/a/blobs/sha256:00"), true},
		{"POST start upload", noBody("POST", "https://r/v2/a/blobs/uploads/"), true},
		{"PUT commit without body", noBody("PUT", "https://r/v2/a/blobs/uploads/u1?digest=sha256:00"), true},
		{"PUT manifest", withBody("PUT", "https://r/v2/a/manifests/v1", true), true},
		{"PUT manifest without GetBody", withBody("PUT", "https://r/v2/a/manifests/v1", false), false},
		{"PATCH blob", withBody("PATCH", "https://r/v2/a/blobs/uploads/u1", true), false},
		{"PUT blob with body", withBody("PUT", "https://r/v2/a/blobs/uploads/u1?digest=sha256:00", true), false},
		{"POST token form", withBody("POST", "https://auth/token", true), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := replayable(tt.req); got != tt.want {
				t.Errorf("replayable = %v, want %v", got, tt.want)
			}
		})
	}
}

// scripted is a RoundTripper that answers from a script and records bodies.
type scripted struct {
	mu     sync.Mutex
	steps  []func(*http.Request) (*http.Response, error)
	calls  int
	bodies []string
}

func (s *scripted) RoundTrip(req *http.Request) (*http.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.Body != nil {
		b, _ := io.ReadAll(req.Body)
		s.bodies = append(s.bodies, string(b))
	}
	step := s.steps[min(s.calls, len(s.steps)-1)]
	s.calls++
	return step(req)
}

func status(code int, header ...string) func(*http.Request) (*http.Response, error) {
	return func(req *http.Request) (*http.Response, error) {
		h := http.Header{}
		for i := 0; i+1 < len(header); i += 2 {
			h.Set(header[i], header[i+1])
		}
		return &http.Response{StatusCode: code, Status: fmt.Sprintf("%d %s", code, http.StatusText(code)),
			Header: h, Body: io.NopCloser(strings.NewReader("")), Request: req}, nil
	}
}

func fail(err error) func(*http.Request) (*http.Response, error) {
	return func(*http.Request) (*http.Response, error) { return nil, err }
}

func TestRetryTransport(t *testing.T) {
	policy := RetryPolicy{Attempts: 3, Base: 100 * time.Millisecond, Max: 2 * time.Second, MaxElapsed: time.Minute}
	tests := []struct {
		name      string
		method    string
		path      string
		steps     []func(*http.Request) (*http.Response, error)
		policy    RetryPolicy
		wantCalls int
		wantCode  int
		wantErr   string
		wantWaits []time.Duration // exact waits; nil: only the count matters
	}{
		{name: "503 then OK", method: "PUT", path: "/v2/a/manifests/v1",
			steps: []func(*http.Request) (*http.Response, error){status(503), status(503), status(201)}, wantCalls: 3, wantCode: 201},
		{name: "429 honours Retry-After", method: "GET", path: "/v2/a/manifests/v1",
			steps: []func(*http.Request) (*http.Response, error){status(429, "Retry-After", "1"), status(200)}, wantCalls: 2, wantCode: 200,
			wantWaits: []time.Duration{time.Second}},
		{name: "Retry-After capped at Max", method: "GET", path: "/v2/a/manifests/v1",
			steps: []func(*http.Request) (*http.Response, error){status(503, "Retry-After", "60"), status(200)}, wantCalls: 2, wantCode: 200,
			wantWaits: []time.Duration{2 * time.Second}},
		{name: "Retry-After beyond MaxElapsed gives up", method: "GET", path: "/v2/a/manifests/v1",
			policy: RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Hour, MaxElapsed: 5 * time.Second},
			steps:  []func(*http.Request) (*http.Response, error){status(503, "Retry-After", "60"), status(200)}, wantCalls: 1, wantCode: 503},
		{name: "persistent 500 stops at Attempts", method: "GET", path: "/v2/a/manifests/v1",
			steps: []func(*http.Request) (*http.Response, error){status(500)}, wantCalls: 3, wantCode: 500},
		{name: "404 is final", method: "GET", path: "/v2/a/manifests/v1",
			steps: []func(*http.Request) (*http.Response, error){status(404)}, wantCalls: 1, wantCode: 404},
		{name: "reset then OK", method: "HEAD", path: "/v2/a/blobs/sha256:00",
			steps: []func(*http.Request) (*http.Response, error){fail(syscall.ECONNRESET), status(200)}, wantCalls: 2, wantCode: 200},
		{name: "persistent EOF is exhausted", method: "HEAD", path: "/v2/a/blobs/sha256:00",
			steps: []func(*http.Request) (*http.Response, error){fail(io.ErrUnexpectedEOF)}, wantCalls: 3, wantErr: "giving up after 3 attempt(s)"},
		{name: "certificate error is final", method: "GET", path: "/v2/",
			steps: []func(*http.Request) (*http.Response, error){fail(x509.UnknownAuthorityError{})}, wantCalls: 1, wantErr: "x509"},
		{name: "PATCH is left to ggcr", method: "PATCH", path: "/v2/a/blobs/uploads/u1",
			steps: []func(*http.Request) (*http.Response, error){status(503), status(202)}, wantCalls: 1, wantCode: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := &scripted{steps: tt.steps}
			p := policy
			if tt.policy.Attempts != 0 {
				p = tt.policy
			}
			rt := newRetryTransport(inner, p, nil)
			var waits []time.Duration
			rt.sleep = func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }
			req, _ := http.NewRequest(tt.method, "https://registry.test"+tt.path, bytes.NewReader([]byte("payload")))
			resp, err := rt.RoundTrip(req)
			if inner.calls != tt.wantCalls {
				t.Errorf("inner calls = %d, want %d", inner.calls, tt.wantCalls)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantCode {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantCode)
			}
			if len(waits) != tt.wantCalls-1 {
				t.Errorf("waited %d times, want %d", len(waits), tt.wantCalls-1)
			}
			if tt.wantWaits != nil && fmt.Sprint(waits) != fmt.Sprint(tt.wantWaits) {
				t.Errorf("waits = %v, want %v", waits, tt.wantWaits)
			}
			for i, b := range inner.bodies {
				if b != "payload" {
					t.Errorf("attempt %d sent body %q, want the full payload", i+1, b)
				}
			}
			// Results of requests we owned must not be retried again by ggcr.
			if tt.method != "PATCH" && retryStatus(resp.StatusCode) {
				terr := transport.CheckError(resp, http.StatusOK)
				if retryPredicate(terr) {
					t.Errorf("ggcr predicate would retry an owned %d again", resp.StatusCode)
				}
				if got := attemptsOf(terr); got != tt.wantCalls {
					t.Errorf("attemptsOf = %d, want %d", got, tt.wantCalls)
				}
			}
		})
	}
}

func TestRetryPredicate(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"reset", fmt.Errorf("write: %w", syscall.ECONNRESET), true},
		{"unexpected EOF", io.ErrUnexpectedEOF, true},
		{"canceled", context.Canceled, false},
		{"exhausted", &RetriesExhaustedError{Attempts: 3, Err: syscall.ECONNRESET}, false},
		{"503 not owned", &transport.Error{StatusCode: 503}, true},
		{"401", &transport.Error{StatusCode: 401}, false},
		{"unknown CA", x509.UnknownAuthorityError{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := retryPredicate(tt.err); got != tt.want {
				t.Errorf("retryPredicate(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestRetryTransportStopsOnCancel(t *testing.T) {
	inner := &scripted{steps: []func(*http.Request) (*http.Response, error){status(503)}}
	rt := newRetryTransport(inner, RetryPolicy{Attempts: 5, Base: time.Hour, Max: time.Hour, MaxElapsed: 3 * time.Hour}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	rt.sleep = func(ctx context.Context, d time.Duration) error { cancel(); return sleepCtx(ctx, d) }
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://registry.test/v2/", nil)
	if _, err := rt.RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if inner.calls != 1 {
		t.Errorf("calls = %d, want 1", inner.calls)
	}
}

// faultSetup starts an in-process registry behind a FaultProxy.
func faultSetup(t *testing.T) (*regserver.Server, *regserver.FaultProxy, string) {
	t.Helper()
	srv := regserver.InProcess(t, regserver.InProcessOptions{})
	fp := regserver.NewFaultProxy(t, srv.URL)
	return srv, fp, fp.Host + "/acme/notes"
}

const (
	manifestPath = `/v2/acme/notes/manifests/`
	uploadPath   = `/v2/acme/notes/blobs/uploads/`
)

func TestPublishRetriesThroughFaults(t *testing.T) {
	ctx := context.Background()

	t.Run("503 twice then OK", func(t *testing.T) {
		_, fp, repo := faultSetup(t)
		fp.Inject(t, regserver.Fault{Method: "PUT", Path: manifestPath, Kind: regserver.FaultStatus, Status: 503, Times: 2})
		fp.Inject(t, regserver.Fault{Method: "POST", Path: uploadPath, Kind: regserver.FaultStatus, Status: 502, Times: 2})
		var (
			mu   sync.Mutex
			logs []string
		)
		opts := testOptions("v1")
		opts.Logger = func(f string, a ...any) {
			mu.Lock()
			defer mu.Unlock()
			logs = append(logs, fmt.Sprintf(f, a...))
		}
		art := Artifact{Image: testImage(t, 2, "x")}
		pub, err := Publish(ctx, repo, art, opts)
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if n := len(fp.Matching("PUT", manifestPath)); n != 3 {
			t.Errorf("manifest PUTs = %d, want 3", n)
		}
		if len(logs) != 4 || !strings.Contains(logs[0], "retrying") {
			t.Errorf("retry log = %q, want 4 retry notices", logs)
		}
		validatePulled(t, pub.Ref, art)
	})

	t.Run("429 honours Retry-After", func(t *testing.T) {
		_, fp, repo := faultSetup(t)
		fp.Inject(t, regserver.Fault{Method: "PUT", Path: manifestPath, Kind: regserver.FaultStatus, Status: 429, RetryAfter: "1"})
		opts := testOptions("v1")
		opts.Retry.Max = 5 * time.Second
		if _, err := Publish(ctx, repo, Artifact{Image: testImage(t, 1, "x")}, opts); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		puts := fp.Matching("PUT", manifestPath)
		if len(puts) != 2 || puts[0].Status != 429 {
			t.Fatalf("manifest PUTs = %+v, want a 429 then a retry", puts)
		}
		if gap := puts[1].Time.Sub(puts[0].Time); gap < time.Second {
			t.Errorf("retry came %v after the 429, want at least 1s (Retry-After: 1)", gap)
		}
	})

	t.Run("connection reset mid blob upload", func(t *testing.T) {
		srv, fp, repo := faultSetup(t)
		fp.Inject(t, regserver.Fault{Method: "PATCH", Path: uploadPath, Kind: regserver.FaultReset, ResetAfter: 100})
		art := Artifact{Image: testImage(t, 2, "x")}
		pub, err := Publish(ctx, repo, art, testOptions("v1"))
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		patches := fp.Matching("PATCH", uploadPath)
		if len(patches) < 2 || patches[0].Fault != "reset" {
			t.Errorf("PATCHes = %+v, want a reset and then retries", patches)
		}
		// The client counts what it sent, the partial attempt included.
		if pub.BytesUploaded < srv.Uploads.Bytes()+100 {
			t.Errorf("client counted %d bytes, server stored %d: the reset attempt's bytes are missing", pub.BytesUploaded, srv.Uploads.Bytes())
		}
		validatePulled(t, pub.Ref, art)
	})

	t.Run("persistent 500 on manifest fails within Attempts", func(t *testing.T) {
		_, fp, repo := faultSetup(t)
		fp.Inject(t, regserver.Fault{Method: "PUT", Path: manifestPath, Kind: regserver.FaultStatus, Status: 500, Times: -1})
		_, err := Publish(ctx, repo, Artifact{Image: testImage(t, 1, "x")}, testOptions("v1"))
		if err == nil || !strings.Contains(err.Error(), "HTTP 500; gave up after 4 attempts") {
			t.Fatalf("Publish = %v, want a 500 error after 4 attempts", err)
		}
		if n := len(fp.Matching("PUT", manifestPath)); n != fastRetry.Attempts {
			t.Errorf("manifest PUTs = %d, want exactly %d (no retry amplification)", n, fastRetry.Attempts)
		}
	})

	t.Run("persistent 503 on blob PATCH is retried by whole upload", func(t *testing.T) {
		_, fp, repo := faultSetup(t)
		fp.Inject(t, regserver.Fault{Method: "PATCH", Path: uploadPath, Kind: regserver.FaultStatus, Status: 503, Times: -1})
		opts := testOptions("v1")
		opts.Jobs = 1
		_, err := Publish(ctx, repo, Artifact{Image: testImage(t, 1, "x")}, opts)
		if err == nil || !strings.Contains(err.Error(), "PATCH") || !strings.Contains(err.Error(), "UNAVAILABLE") {
			t.Fatalf("Publish = %v, want the PATCH's UNAVAILABLE error", err)
		}
		if n := len(fp.Matching("PATCH", uploadPath)); n != fastRetry.Attempts {
			t.Errorf("PATCHes = %d, want exactly %d", n, fastRetry.Attempts)
		}
	})

	t.Run("stall is cut by the context", func(t *testing.T) {
		_, fp, repo := faultSetup(t)
		fp.Inject(t, regserver.Fault{Method: "PUT", Path: manifestPath, Kind: regserver.FaultStall, Stall: time.Minute})
		ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := Publish(ctx, repo, Artifact{Image: testImage(t, 1, "x")}, testOptions("v1"))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Publish = %v, want context.DeadlineExceeded", err)
		}
	})
}
