package regserver

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"
)

// FaultKind selects what a Fault does to a matching request.
type FaultKind int

const (
	// FaultStatus answers with Fault.Status (and Retry-After if set)
	// without forwarding the request.
	FaultStatus FaultKind = iota
	// FaultReset reads Fault.ResetAfter bytes of the request body, then
	// resets the TCP connection (RST) without answering.
	FaultReset
	// FaultStall waits Fault.Stall (or until the client gives up) and then
	// forwards the request normally.
	FaultStall
)

func (k FaultKind) String() string {
	switch k {
	case FaultStatus:
		return "status"
	case FaultReset:
		return "reset"
	case FaultStall:
		return "stall"
	}
	return "FaultKind(" + strconv.Itoa(int(k)) + ")"
}

// Fault describes a failure to inject into the next Times requests that
// match Method and Path.
type Fault struct {
	// Method matches the HTTP method exactly; empty matches any method.
	Method string
	// Path is a regular expression matched against the URL path; empty
	// matches any path. Example: `/blobs/uploads/` or `/manifests/[^/]+$`.
	Path string
	Kind FaultKind
	// Status and RetryAfter are used by FaultStatus. RetryAfter is sent
	// verbatim (seconds or an HTTP date).
	Status     int
	RetryAfter string
	// ResetAfter is how many body bytes FaultReset reads before resetting.
	ResetAfter int64
	// Stall is how long FaultStall waits.
	Stall time.Duration
	// Times is how many matching requests the fault applies to: 0 means 1,
	// a negative value means every matching request from now on.
	Times int
}

// RecordedRequest is one request seen by a FaultProxy.
type RecordedRequest struct {
	Time   time.Time
	Method string
	Path   string
	// Status is the status sent to the client (0 after a reset or when the
	// client went away during a stall).
	Status int
	// Fault names the injected fault kind, or is empty for a forwarded
	// request.
	Fault string
}

type activeFault struct {
	Fault
	path      *regexp.Regexp
	remaining int
}

// FaultProxy is a reverse proxy in front of a registry that injects faults
// and records every request with its arrival time.
type FaultProxy struct {
	// URL is the proxy's base URL; Host its host:port.
	URL, Host string

	mu       sync.Mutex
	faults   []*activeFault
	requests []RecordedRequest
	proxy    *httputil.ReverseProxy
}

// NewFaultProxy starts a plain-HTTP proxy on a random loopback port that
// forwards to target (a base URL such as an InProcess Server's URL).
func NewFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		t.Fatalf("regserver: fault proxy target %q is not a base URL: %v", target, err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	p := &FaultProxy{}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host
			r.SetXForwarded()
		},
		Transport: tr,
		ErrorLog:  discardLogger(),
	}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	p.Host = srv.Listener.Addr().String()
	return p
}

// Inject adds a fault. Faults are consulted in the order they were added;
// a request consumes one use of the first fault it matches.
func (p *FaultProxy) Inject(t testing.TB, f Fault) {
	t.Helper()
	af := &activeFault{Fault: f, remaining: f.Times}
	if af.remaining == 0 {
		af.remaining = 1
	}
	if f.Path != "" {
		re, err := regexp.Compile(f.Path)
		if err != nil {
			t.Fatalf("regserver: fault path %q: %v", f.Path, err)
		}
		af.path = re
	}
	if f.Kind == FaultStatus && (f.Status < 100 || f.Status > 999) {
		t.Fatalf("regserver: FaultStatus needs a valid Status, got %d", f.Status)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, af)
}

// Clear removes all pending faults.
func (p *FaultProxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = nil
}

// Requests returns a copy of every request recorded so far, in arrival order.
func (p *FaultProxy) Requests() []RecordedRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]RecordedRequest(nil), p.requests...)
}

// Matching returns the recorded requests with the given method (empty: any)
// whose path matches the regular expression pathRe (empty: any).
func (p *FaultProxy) Matching(method, pathRe string) []RecordedRequest {
	re := regexp.MustCompile(pathRe)
	var out []RecordedRequest
	for _, r := range p.Requests() {
		if (method == "" || r.Method == method) && re.MatchString(r.Path) {
			out = append(out, r)
		}
	}
	return out
}

func (p *FaultProxy) take(r *http.Request) *Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.faults {
		if f.remaining == 0 {
			continue
		}
		if f.Method != "" && f.Method != r.Method {
			continue
		}
		if f.path != nil && !f.path.MatchString(r.URL.Path) {
			continue
		}
		if f.remaining > 0 {
			f.remaining--
		}
		fault := f.Fault
		return &fault
	}
	return nil
}

// arrive records a request on arrival, so that Requests is in arrival
// order, and returns a function that fills in the final outcome.
func (p *FaultProxy) arrive(rec RecordedRequest) func(status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := len(p.requests)
	p.requests = append(p.requests, rec)
	return func(status int) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.requests[i].Status = status
	}
}

func (p *FaultProxy) serve(w http.ResponseWriter, r *http.Request) {
	rec := RecordedRequest{Time: time.Now(), Method: r.Method, Path: r.URL.Path}
	f := p.take(r)
	if f != nil {
		rec.Fault = f.Kind.String()
	}
	done := p.arrive(rec)
	switch {
	case f == nil:
	case f.Kind == FaultStatus:
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		code := "UNAVAILABLE"
		if f.Status == http.StatusTooManyRequests {
			code = "TOOMANYREQUESTS"
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.Status)
		fmt.Fprintf(w, `{"errors":[{"code":%q,"message":"injected fault"}]}`, code)
		done(f.Status)
		return
	case f.Kind == FaultReset:
		_, _ = io.CopyN(io.Discard, r.Body, f.ResetAfter)
		reset(w)
		return
	case f.Kind == FaultStall:
		// Buffer the body first: net/http notices a client hang-up (and
		// cancels r.Context) only once the request body has been read.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		timer := time.NewTimer(f.Stall)
		select {
		case <-timer.C:
		case <-r.Context().Done():
			timer.Stop()
			return
		}
	}
	sw := &statusWriter{ResponseWriter: w}
	p.proxy.ServeHTTP(sw, r)
	done(sw.status)
}

// reset closes the client connection with a TCP RST, so the client sees
// "connection reset by peer" (or a broken pipe while still sending).
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("regserver: response writer cannot be hijacked")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(fmt.Sprintf("regserver: hijack: %v", err))
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
