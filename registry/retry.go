package registry

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// How retries are layered (read with go-containerregistry v0.22.1,
// pkg/v1/remote/options.go, write.go and remote/transport/retry.go):
//
//   - ggcr wraps whatever transport it is given in its own retry transport
//     (transport.NewRetry). The only way to stop that, transport.Wrapper,
//     also skips authentication, so it is not an option. ggcr also retries a
//     whole blob upload (HEAD, POST, PATCH, PUT) in writer.uploadOne, and
//     marks the context of those requests with retry.Never so its transport
//     retry stays out of the way there.
//   - Our retryTransport sits below ggcr's and owns every request that can be
//     replayed safely: no body or a replayable body (GetBody), and not a write
//     into a blob upload session. PATCH (and a PUT/POST with a body) to
//     /blobs/uploads/ appends to server-side session state, so replaying it
//     after a partial send can corrupt the blob; those fail fast here and
//     ggcr's uploadOne restarts the whole upload in a fresh session.
//   - To avoid multiplying attempts, every result of a request we owned is
//     marked (an error type, or a context value on resp.Request that ggcr
//     copies into transport.Error), and the predicate we hand to ggcr
//     (WithRetryPredicate) refuses marked errors. We also hand ggcr no retry
//     status codes, so its transport retry never acts on responses.
//     Net effect: at most Attempts tries per request, and at most Attempts
//     tries of a blob upload, each with capped exponential backoff.
//   - A blob commit (PUT without a body) is replayed here; if its first try
//     went through but the answer was lost (a timeout), the replay finds the
//     session gone (BLOB_UPLOAD_UNKNOWN). ggcr then restarts the upload,
//     whose existence check finds the committed blob.
//   - Retry-After (on 429 and 503) is honoured for every request of the
//     session, not only for the one we retry: the transport remembers the
//     time the registry asked for and holds back every request until then.
//     That also covers ggcr's whole-upload retry, whose own backoff knows
//     nothing of Retry-After.
//   - A 401 for credentials the registry already accepted in this session
//     (a token or credential cache on the registry side that expired or
//     hiccuped mid-push) is answered by sending the credentials again, at
//     most maxReauth times per session; ggcr's bearer transport handles 401s
//     with a Bearer challenge itself by fetching a new token. A 401 for
//     credentials never accepted is wrong credentials and fails at once.

// RetryPolicy bounds retries of registry requests.
type RetryPolicy struct {
	// Attempts is the total number of tries per request, first included
	// (0: 5; 1: no retries).
	Attempts int
	// Base is the backoff before the first retry; it doubles per retry
	// (0: 500ms).
	Base time.Duration
	// Max caps one wait, including a server's Retry-After (0: 20s).
	Max time.Duration
	// MaxElapsed bounds the time one request may spend across all of its
	// attempts; no retry starts if its wait would cross it (0: 2m).
	MaxElapsed time.Duration
}

// DefaultRetryPolicy is used for zero fields of a RetryPolicy.
var DefaultRetryPolicy = RetryPolicy{Attempts: 5, Base: 500 * time.Millisecond, Max: 20 * time.Second, MaxElapsed: 2 * time.Minute}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = DefaultRetryPolicy.Attempts
	}
	if p.Base <= 0 {
		p.Base = DefaultRetryPolicy.Base
	}
	if p.Max <= 0 {
		p.Max = DefaultRetryPolicy.Max
	}
	if p.Base > p.Max {
		p.Base = p.Max
	}
	if p.MaxElapsed <= 0 {
		p.MaxElapsed = DefaultRetryPolicy.MaxElapsed
	}
	return p
}

// backoff returns the wait before retry number n (1-based): exponential,
// capped at Max, with "equal jitter" (half fixed, half random) so that
// clients retrying together spread out but never retry immediately.
func (p RetryPolicy) backoff(n int) time.Duration {
	d := p.Base
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	half := d / 2
	return half + rand.N(d-half+1)
}

// ggcrBackoff maps the policy onto ggcr's whole-upload retry. ggcr's
// Backoff stops retrying altogether once Cap is reached (it zeroes Steps),
// so instead of a Cap the growth factor is lowered until the last wait,
// jitter (up to +50%) included, stays within Max.
func (p RetryPolicy) ggcrBackoff() remote.Backoff {
	factor := 2.0
	if waits := p.Attempts - 2; waits > 0 {
		limit := float64(p.Max) / 1.5 / float64(p.Base)
		factor = max(1, min(2, math.Pow(limit, 1/float64(waits))))
	}
	base := min(p.Base, time.Duration(float64(p.Max)/1.5))
	return remote.Backoff{Duration: base, Factor: factor, Jitter: 0.5, Steps: p.Attempts}
}

// retryStatus reports whether a response status is worth retrying.
func retryStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests,
		http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// retryableErr reports whether a transport error is a transient network
// failure. Certificate problems and cancellation are never retried.
func retryableErr(err error) bool {
	var stall *stallError
	if errors.As(err, &stall) {
		return true
	}
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verify           *tls.CertificateVerificationError
		record           tls.RecordHeaderError
	)
	if errors.As(err, &unknownAuthority) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &verify) || errors.As(err, &record) {
		return false
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// retryPredicate is handed to ggcr for its transport and whole-upload
// retries: it retries transient failures that our transport did not own.
func retryPredicate(err error) bool {
	if err == nil || ownedByUs(err) {
		return false
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		return retryStatus(terr.StatusCode) || terr.Temporary()
	}
	return retryableErr(err)
}

// stallError is a request that timed out (the transport's
// ResponseHeaderTimeout, a dial timeout) while the caller's context was
// still live: the registry stalled, which is worth a retry. net/http's
// timeout errors match context.DeadlineExceeded, which retryableErr must
// refuse for the caller's own deadline, so the transport marks them.
type stallError struct{ err error }

func (e *stallError) Error() string   { return e.err.Error() }
func (e *stallError) Timeout() bool   { return true }
func (e *stallError) Temporary() bool { return true }

// markStall turns a timeout into a stallError when ctx is still live.
func markStall(ctx context.Context, err error) error {
	var ne net.Error
	if err != nil && ctx.Err() == nil && errors.As(err, &ne) && ne.Timeout() {
		return &stallError{err: err}
	}
	return err
}

type ownedKey struct{}

// ownedInfo travels in the context of resp.Request for responses our
// transport returned after owning the retries of a request.
type ownedInfo struct{ attempts int }

// RetriesExhaustedError is returned when a request kept failing with a
// transient error until the retry policy ran out.
type RetriesExhaustedError struct {
	Method, URL string
	Attempts    int
	Err         error
}

func (e *RetriesExhaustedError) Error() string {
	return fmt.Sprintf("%s %s: giving up after %d attempt(s): %v", e.Method, e.URL, e.Attempts, e.Err)
}

func (e *RetriesExhaustedError) Unwrap() error { return e.Err }

func ownedByUs(err error) bool {
	var rerr *RetriesExhaustedError
	if errors.As(err, &rerr) {
		return true
	}
	return attemptsOf(err) > 0
}

// attemptsOf returns how many attempts our transport made for the request
// behind a ggcr transport.Error, or 0 if it did not own that request.
func attemptsOf(err error) int {
	var terr *transport.Error
	if errors.As(err, &terr) && terr.Request != nil {
		if info, ok := terr.Request.Context().Value(ownedKey{}).(ownedInfo); ok {
			return info.attempts
		}
	}
	return 0
}

// retryTransport retries replayable requests on 5xx, 429 and transient
// network errors, honouring Retry-After. See the comment at the top of
// this file for how it cooperates with ggcr's own retries.
type retryTransport struct {
	inner  http.RoundTripper
	policy RetryPolicy
	logf   func(string, ...any)
	// sleep is replaceable in tests; it returns early with ctx's error.
	sleep func(ctx context.Context, d time.Duration) error

	mu sync.Mutex
	// notBefore is when the registry said (Retry-After) it takes requests again.
	notBefore time.Time
	// accepted holds digests of Authorization header values the registry
	// answered with a success in this session; reauths counts the 401s
	// retried because of it.
	accepted map[[sha256.Size]byte]bool
	reauths  int
}

// maxReauth bounds the 401s one session retries with credentials the
// registry had accepted before.
const maxReauth = 3

func newRetryTransport(inner http.RoundTripper, policy RetryPolicy, logf func(string, ...any)) *retryTransport {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &retryTransport{inner: inner, policy: policy.withDefaults(), logf: logf, sleep: sleepCtx,
		accepted: map[[sha256.Size]byte]bool{}}
}

// predicate is handed to ggcr (WithRetryPredicate): retryPredicate, plus a
// 401 on a request that was not ours to retry (a write into an upload
// session) when its credentials had been accepted before: ggcr then
// restarts the whole blob upload.
func (t *retryTransport) predicate(err error) bool {
	if retryPredicate(err) {
		return true
	}
	if uploadSessionGone(err) {
		// The registry no longer knows the upload session: it expired, or
		// a commit we retried had gone through the first time (its answer
		// timed out or was lost). A new upload starts with an existence
		// check, which finds a committed blob.
		t.logf("%v: starting the blob upload again", err)
		return true
	}
	var terr *transport.Error
	if err == nil || ownedByUs(err) || !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized || terr.Request == nil {
		return false
	}
	if t.reauth(terr.Request, nil) {
		t.logf("%s %s: 401 Unauthorized for credentials the registry accepted earlier; sending them again in a new upload",
			terr.Request.Method, safeURL(terr.Request))
		return true
	}
	return false
}

// uploadSessionGone reports whether err is a registry saying that a blob
// upload session does not exist (BLOB_UPLOAD_UNKNOWN).
func uploadSessionGone(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	for _, d := range terr.Errors {
		if d.Code == transport.BlobUploadUnknownErrorCode {
			return true
		}
	}
	return false
}

// observe learns from a response: credentials that worked, and a
// Retry-After that applies to every request of the session. It returns the
// time the gate was set to when this response set it.
func (t *retryTransport) observe(req *http.Request, resp *http.Response) time.Time {
	if resp == nil {
		return time.Time{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if auth := req.Header.Get("Authorization"); auth != "" && resp.StatusCode >= 200 && resp.StatusCode < 400 {
		t.accepted[sha256.Sum256([]byte(auth))] = true
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if ra, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			if at := time.Now().Add(min(ra, t.policy.Max)); at.After(t.notBefore) {
				t.notBefore = at
				return at
			}
		}
	}
	return time.Time{}
}

// reauth reports whether a 401 to req is worth one more try with the same
// credentials, and uses up one of the session's tries if so.
func (t *retryTransport) reauth(req *http.Request, resp *http.Response) bool {
	auth := req.Header.Get("Authorization")
	if auth == "" {
		return false
	}
	if resp != nil {
		for _, c := range resp.Header.Values("WWW-Authenticate") {
			if strings.HasPrefix(strings.ToLower(strings.TrimSpace(c)), "bearer") {
				// ggcr's bearer transport above us fetches a new token.
				return false
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.accepted[sha256.Sum256([]byte(auth))] || t.reauths >= maxReauth {
		return false
	}
	t.reauths++
	return true
}

// gate waits until the time a Retry-After named, if any. waited is a gate
// time the caller has already slept until (its own Retry-After); the gate
// is skipped if nobody moved it since.
func (t *retryTransport) gate(ctx context.Context, waited time.Time) error {
	t.mu.Lock()
	wait := time.Until(t.notBefore)
	if !waited.IsZero() && t.notBefore.Equal(waited) {
		wait = 0
	}
	t.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	return t.sleep(ctx, wait)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// replayable reports whether the transport may send req more than once.
func replayable(req *http.Request) bool {
	hasBody := req.Body != nil && req.Body != http.NoBody
	if hasBody && req.GetBody == nil {
		return false
	}
	if req.Method == http.MethodPatch {
		return false
	}
	if hasBody && strings.Contains(req.URL.Path, "/blobs/uploads/") {
		return false
	}
	return true
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if !replayable(req) {
		if err := t.gate(ctx, time.Time{}); err != nil {
			if req.Body != nil {
				_ = req.Body.Close()
			}
			return nil, err
		}
		resp, err := t.inner.RoundTrip(req)
		t.observe(req, resp)
		return resp, markStall(ctx, err)
	}
	start := time.Now()
	var gated time.Time // the Retry-After this loop last slept for
	for attempt := 1; ; attempt++ {
		try := req
		if attempt > 1 && req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, fmt.Errorf("%s %s: rewind request body for retry: %w", req.Method, safeURL(req), err)
			}
			try = req.Clone(ctx)
			try.Body = body
		}
		if err := t.gate(ctx, gated); err != nil {
			return nil, err
		}
		resp, err := t.inner.RoundTrip(try)
		gated = t.observe(try, resp)
		err = markStall(ctx, err)

		var wait time.Duration
		var reason string
		switch {
		case err != nil && retryableErr(err) && ctx.Err() == nil:
			reason = err.Error()
			wait = t.policy.backoff(attempt)
		case err != nil:
			return nil, err
		case retryStatus(resp.StatusCode):
			reason = resp.Status
			wait = t.policy.backoff(attempt)
			if ra, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
				wait = min(ra, t.policy.Max)
			}
		case resp.StatusCode == http.StatusUnauthorized && attempt < t.policy.Attempts && t.reauth(try, resp):
			reason = resp.Status + " for credentials the registry accepted earlier; sending them again"
			wait = t.policy.backoff(attempt)
		default:
			return markOwned(resp, attempt), nil
		}

		elapsed := time.Since(start)
		if attempt >= t.policy.Attempts || elapsed+wait > t.policy.MaxElapsed {
			if err != nil {
				return nil, &RetriesExhaustedError{Method: req.Method, URL: safeURL(req), Attempts: attempt, Err: err}
			}
			return markOwned(resp, attempt), nil
		}
		if resp != nil {
			drainClose(resp)
		}
		t.logf("retrying %s %s after %s (attempt %d of %d, waiting %s)",
			req.Method, safeURL(req), reason, attempt+1, t.policy.Attempts, wait.Round(time.Millisecond))
		if err := t.sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

func markOwned(resp *http.Response, attempts int) *http.Response {
	if resp.Request != nil {
		ctx := context.WithValue(resp.Request.Context(), ownedKey{}, ownedInfo{attempts: attempts})
		resp.Request = resp.Request.WithContext(ctx)
	}
	return resp
}

func drainClose(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}

// retryAfter parses a Retry-After value: delta-seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(24*time.Hour/time.Second) {
			secs = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(at.Sub(now), 0), true
	}
	return 0, false
}

// safeURL renders a request URL for messages without query or user info:
// upload locations may carry signed tokens in their query.
func safeURL(req *http.Request) string {
	if req.URL == nil {
		return ""
	}
	return req.URL.Scheme + "://" + req.URL.Host + req.URL.Path
}
