package forge

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// scripted answers each request with the next of its responses and records
// what it saw.
type scripted struct {
	mu      sync.Mutex
	answers []func(w http.ResponseWriter)
	bodies  []string
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bodies = append(s.bodies, string(b))
	if len(s.answers) == 0 {
		http.Error(w, "no more answers", http.StatusTeapot)
		return
	}
	a := s.answers[0]
	s.answers = s.answers[1:]
	a(w)
}

func status(code int, headers ...string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, http.StatusText(code))
	}
}

func TestRetryTransport(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name     string
		method   string
		answers  []func(http.ResponseWriter)
		policy   RetryPolicy
		want     int
		calls    int
		minWaits []time.Duration // the waits logged, in order
	}{
		{"429 Retry-After seconds", "GET", []func(http.ResponseWriter){status(429, "Retry-After", "0"), status(200)}, RetryPolicy{}, 200, 2, []time.Duration{0}},
		{"503 backoff doubles", "POST", []func(http.ResponseWriter){status(503), status(502), status(201)}, RetryPolicy{Backoff: time.Millisecond}, 201, 3, []time.Duration{time.Millisecond, 2 * time.Millisecond}},
		{"403 primary rate limit waits for the reset", "GET", []func(http.ResponseWriter){
			status(403, "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", strconv.FormatInt(now.Unix(), 10)), status(200)},
			RetryPolicy{Now: func() time.Time { return now }}, 200, 2, []time.Duration{time.Second}},
		{"403 secondary rate limit Retry-After", "PATCH", []func(http.ResponseWriter){status(403, "Retry-After", "0"), status(200)}, RetryPolicy{}, 200, 2, []time.Duration{0}},
		{"403 without rate-limit headers is final", "GET", []func(http.ResponseWriter){status(403), status(200)}, RetryPolicy{}, 403, 1, nil},
		{"404 is final", "GET", []func(http.ResponseWriter){status(404), status(200)}, RetryPolicy{}, 404, 1, nil},
		{"501 is final", "GET", []func(http.ResponseWriter){status(501), status(200)}, RetryPolicy{}, 501, 1, nil},
		{"attempts bound", "GET", []func(http.ResponseWriter){status(500), status(500), status(500), status(200)}, RetryPolicy{Attempts: 3, Backoff: time.Millisecond}, 500, 3, []time.Duration{time.Millisecond, 2 * time.Millisecond}},
		{"a reset beyond MaxWait gives up with the forge's answer", "GET", []func(http.ResponseWriter){
			status(429, "Retry-After", "3600"), status(200)}, RetryPolicy{MaxWait: time.Second}, 429, 1, nil},
		{"Retry-After as an HTTP date", "GET", []func(http.ResponseWriter){
			status(503, "Retry-After", now.Add(2*time.Second).UTC().Format(http.TimeFormat)), status(200)},
			RetryPolicy{Now: func() time.Time { return now.Add(2 * time.Second) }}, 200, 2, []time.Duration{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &scripted{answers: tt.answers}
			srv := httptest.NewServer(s)
			defer srv.Close()
			var waits []time.Duration
			var logs []string
			rt := &retryTransport{policy: tt.policy.withDefaults(), logf: func(f string, a ...any) {
				for _, x := range a {
					if d, ok := x.(time.Duration); ok {
						waits = append(waits, d)
						break
					}
				}
				logs = append(logs, f)
			}}
			req, _ := http.NewRequest(tt.method, srv.URL+"/x", strings.NewReader(`{"a":1}`))
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if len(s.bodies) != tt.calls {
				t.Errorf("%d calls, want %d", len(s.bodies), tt.calls)
			}
			for i, b := range s.bodies {
				if b != `{"a":1}` {
					t.Errorf("call %d sent body %q, want the request's body every time", i+1, b)
				}
			}
			if tt.minWaits != nil {
				if len(waits) < len(tt.minWaits) {
					t.Fatalf("waits %v, want %v", waits, tt.minWaits)
				}
				for i, w := range tt.minWaits {
					if waits[i] != w {
						t.Errorf("wait %d = %s, want %s", i+1, waits[i], w)
					}
				}
			}
		})
	}
}

type failingTransport struct{ calls int }

func (f *failingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	f.calls++
	return nil, errors.New("connection reset by peer")
}

func TestRetryTransportErrorsRetryOnlyIdempotent(t *testing.T) {
	for _, tt := range []struct {
		method string
		calls  int
	}{{"GET", 3}, {"PUT", 3}, {"POST", 1}, {"PATCH", 1}} {
		f := &failingTransport{}
		rt := &retryTransport{next: f, policy: RetryPolicy{Attempts: 3, Backoff: time.Millisecond}.withDefaults()}
		req, _ := http.NewRequest(tt.method, "http://127.0.0.1:1/x", nil)
		if _, err := rt.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "connection reset") {
			t.Errorf("%s: err = %v, want the transport's error", tt.method, err)
		}
		if f.calls != tt.calls {
			t.Errorf("%s: %d calls, want %d (a POST that may have arrived is not sent twice)", tt.method, f.calls, tt.calls)
		}
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		url, kind string
		want      Location
		err       string
	}{
		{"https://github.com/acme/gitops.git", "", Location{KindGitHub, "https://github.com", Repo{"acme", "gitops"}}, ""},
		{"git@github.com:acme/gitops.git", "", Location{KindGitHub, "https://github.com", Repo{"acme", "gitops"}}, ""},
		{"ssh://git@github.com/acme/gitops", "", Location{KindGitHub, "https://github.com", Repo{"acme", "gitops"}}, ""},
		{"https://x:secret@gitea.example.org/acme/gitops.git", "", Location{KindGitea, "https://gitea.example.org", Repo{"acme", "gitops"}}, ""},
		{"https://codeberg.org/acme/site", "", Location{KindGitea, "https://codeberg.org", Repo{"acme", "site"}}, ""},
		{"http://127.0.0.1:3000/notesbot/gitops.git", "gitea", Location{KindGitea, "http://127.0.0.1:3000", Repo{"notesbot", "gitops"}}, ""},
		{"https://git.example.org/forge/acme/gitops.git", "forgejo", Location{KindGitea, "https://git.example.org/forge", Repo{"acme", "gitops"}}, ""},
		{"https://ghe.corp.example/acme/gitops", "github", Location{KindGitHub, "https://ghe.corp.example", Repo{"acme", "gitops"}}, ""},
		{"https://x:secret@git.example.org/acme/gitops.git", "", Location{}, "cannot tell which forge serves https://git.example.org/acme/gitops.git: pass --forge"},
		{"https://github.com/acme", "", Location{}, "OWNER/REPO"},
		{"../gitops", "", Location{}, "a local path has no pull requests"},
		{"https://github.com/acme/gitops", "gitlab", Location{}, `--forge "gitlab"`},
	}
	for _, tt := range tests {
		got, err := Detect(tt.url, tt.kind)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Detect(%q, %q) err = %v, want %q", tt.url, tt.kind, err, tt.err)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("Detect(%q) error shows the password: %v", tt.url, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Detect(%q, %q) = %+v, %v; want %+v", tt.url, tt.kind, got, err, tt.want)
		}
	}
}
