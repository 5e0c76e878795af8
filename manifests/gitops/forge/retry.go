package forge

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// RetryPolicy bounds the retries of rate-limited and failed API calls.
type RetryPolicy struct {
	// Attempts is the most calls made for one request; default 5.
	Attempts int
	// Backoff is the first wait when the forge says nothing (doubling);
	// default 1 s.
	Backoff time.Duration
	// MaxWait caps one wait, also one the forge asks for: a rate limit that
	// resets in an hour fails rather than hanging; default 60 s.
	MaxWait time.Duration
	// Now is the clock the rate-limit reset is read against; default time.Now.
	Now func() time.Time
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = 5
	}
	if p.Backoff <= 0 {
		p.Backoff = time.Second
	}
	if p.MaxWait <= 0 {
		p.MaxWait = 60 * time.Second
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	return p
}

// retryTransport retries what a forge answers when it is busy or briefly
// broken: 429, 5xx, and 403 with X-RateLimit-Remaining: 0 or Retry-After
// (GitHub's primary and secondary rate limits). The wait is the forge's:
// Retry-After (seconds or an HTTP date), else X-RateLimit-Reset (Unix
// seconds), else an exponential backoff. Transport errors are retried for
// requests that are safe to repeat (GET, HEAD, PUT, DELETE): a POST that
// may have reached the forge is not sent twice. A wait longer than MaxWait ends the retries with the forge's
// answer, so the caller sees why.
type retryTransport struct {
	next   http.RoundTripper
	policy RetryPolicy
	logf   func(string, ...any)
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	next := t.next
	if next == nil {
		next = http.DefaultTransport
	}
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	backoff := t.policy.Backoff
	for attempt := 1; ; attempt++ {
		r := req.Clone(req.Context())
		if body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		}
		resp, err := next.RoundTrip(r)
		var wait time.Duration
		var why string
		switch {
		case err != nil:
			if !idempotent(req.Method) || req.Context().Err() != nil {
				return nil, err
			}
			wait, why = backoff, err.Error()
		case retryable(resp):
			wait, why = t.forgeWait(resp, backoff), resp.Status
		default:
			return resp, nil
		}
		if attempt >= t.policy.Attempts || wait > t.policy.MaxWait {
			if t.logf != nil && wait > t.policy.MaxWait {
				t.logf("forge: %s %s: %s; the forge asks to wait %s, more than %s: giving up", req.Method, req.URL.Path, why, wait, t.policy.MaxWait)
			}
			return resp, err
		}
		if resp != nil {
			// Drain so the connection is reused.
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
		}
		if t.logf != nil {
			t.logf("forge: %s %s: %s; retrying in %s (attempt %d of %d)", req.Method, req.URL.Path, why, wait, attempt+1, t.policy.Attempts)
		}
		timer := time.NewTimer(wait)
		select {
		case <-req.Context().Done():
			timer.Stop()
			return nil, fmt.Errorf("%s %s: %w (while waiting to retry after %s)", req.Method, req.URL.Path, req.Context().Err(), why)
		case <-timer.C:
		}
		backoff *= 2
	}
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions:
		return true
	}
	return false
}

// retryable says whether a response is a rate limit or a server error.
func retryable(resp *http.Response) bool {
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return true
	case resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented:
		return true
	case resp.StatusCode == http.StatusForbidden:
		// GitHub answers rate limits with 403 and these headers; a plain
		// 403 (no permission) is final.
		return resp.Header.Get("X-RateLimit-Remaining") == "0" || resp.Header.Get("Retry-After") != ""
	}
	return false
}

// forgeWait is how long the forge asks to wait, or fallback.
func (t *retryTransport) forgeWait(resp *http.Response, fallback time.Duration) time.Duration {
	now := t.policy.Now()
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if s, err := strconv.Atoi(ra); err == nil && s >= 0 {
			return time.Duration(s) * time.Second
		}
		if at, err := http.ParseTime(ra); err == nil {
			return nonNegative(at.Sub(now))
		}
	}
	if resp.Header.Get("X-RateLimit-Remaining") == "0" {
		if s, err := strconv.ParseInt(resp.Header.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			// The reset is a whole second; a second more avoids
			// arriving just before it.
			return nonNegative(time.Unix(s, 0).Sub(now)) + time.Second
		}
	}
	return fallback
}

func nonNegative(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return d
}
