package forge

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// exchange is one request the client must send and the answer it gets
// (testdata/github/README.md).
type exchange struct {
	Request struct {
		Method       string          `json:"method"`
		Path         string          `json:"path"`
		Query        string          `json:"query"`
		Body         json.RawMessage `json:"body"`
		BodyContains string          `json:"bodyContains"`
	} `json:"request"`
	Response struct {
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers"`
		Body    json.RawMessage   `json:"body"`
	} `json:"response"`
}

// replay serves the exchanges of a testdata file in order and fails the
// test on any request that does not match the next one, or on exchanges
// left over.
func replay(t *testing.T, file string) *httptest.Server {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "github", file))
	if err != nil {
		t.Fatal(err)
	}
	var exs []exchange
	if err := json.Unmarshal(data, &exs); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var mu sync.Mutex
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		if len(exs) == 0 {
			t.Errorf("%s: unexpected request %s %s?%s", file, r.Method, r.URL.Path, r.URL.RawQuery)
			http.Error(w, "unexpected", http.StatusTeapot)
			return
		}
		ex := exs[0]
		exs = exs[1:]
		if got := r.Header.Get("Authorization"); got != "Bearer test-token" {
			t.Errorf("%s %s: Authorization %q, want the token as Bearer", r.Method, r.URL.Path, got)
		}
		if r.Method != ex.Request.Method || r.URL.Path != ex.Request.Path || r.URL.RawQuery != ex.Request.Query {
			t.Errorf("%s: request %s %s?%s, want %s %s?%s", file, r.Method, r.URL.Path, r.URL.RawQuery,
				ex.Request.Method, ex.Request.Path, ex.Request.Query)
		}
		if len(ex.Request.Body) > 0 {
			var want, got map[string]any
			_ = json.Unmarshal(ex.Request.Body, &want)
			if err := json.Unmarshal(body, &got); err != nil {
				t.Errorf("%s %s: body %q is not JSON", r.Method, r.URL.Path, body)
			}
			for k, v := range want {
				if !reflect.DeepEqual(got[k], v) {
					t.Errorf("%s %s: body field %q = %v, want %v", r.Method, r.URL.Path, k, got[k], v)
				}
			}
		}
		if ex.Request.BodyContains != "" && !strings.Contains(string(body), ex.Request.BodyContains) {
			t.Errorf("%s %s: body %s lacks %q", r.Method, r.URL.Path, body, ex.Request.BodyContains)
		}
		for k, v := range ex.Response.Headers {
			w.Header().Set(k, strings.ReplaceAll(v, "{{server}}", srv.URL))
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(ex.Response.Status)
		_, _ = w.Write(ex.Response.Body)
	}))
	t.Cleanup(func() {
		srv.Close()
		mu.Lock()
		defer mu.Unlock()
		if len(exs) > 0 && !t.Failed() {
			t.Errorf("%s: %d exchanges never requested, first %s %s", file, len(exs), exs[0].Request.Method, exs[0].Request.Path)
		}
	})
	return srv
}

func githubFor(t *testing.T, srv *httptest.Server) Forge {
	t.Helper()
	f, err := New(context.Background(), Options{Kind: KindGitHub, URL: "https://github.com", APIURL: srv.URL + "/",
		Token: "test-token", Retry: RetryPolicy{Backoff: time.Millisecond}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

var (
	gitopsRepo = Repo{"acme", "gitops"}
	siteRepo   = Repo{"acme", "site"}
	prSpec     = PRSpec{Head: "notesctl/notes/b9060af", Base: "main", Title: "Deploy ghcr.io/acme/notes:main-b9060af-1746598316-hugo0.145.0"}
)

func TestGitHubEnsurePR(t *testing.T) {
	for _, tt := range []struct {
		file, body string
		result     Result
		headSHA    string
	}{
		{"ensure_pr_create.json", "diff v1", Created, "1111111111111111111111111111111111111111"},
		{"ensure_pr_update.json", "diff v2", Updated, "4444444444444444444444444444444444444444"},
		{"ensure_pr_unchanged.json", "diff v2", Unchanged, "4444444444444444444444444444444444444444"},
	} {
		t.Run(tt.file, func(t *testing.T) {
			f := githubFor(t, replay(t, tt.file))
			spec := prSpec
			spec.Body = tt.body
			pr, res, err := f.EnsurePR(context.Background(), gitopsRepo, spec)
			if err != nil {
				t.Fatal(err)
			}
			if res != tt.result || pr.Number != 7 || pr.URL != "https://github.com/acme/gitops/pull/7" || pr.Body != tt.body ||
				pr.HeadSHA != tt.headSHA || pr.State != StateOpen || pr.NodeID == "" || pr.MergeCommit != "" {
				t.Errorf("EnsurePR = %+v, %s; want #7 %s with body %q", pr, res, tt.result, tt.body)
			}
		})
	}
}

func TestGitHubUpsertComment(t *testing.T) {
	marker := MarkerComment("preview")
	for _, tt := range []struct {
		file, body string
		result     Result
		id         int64
	}{
		{"comment_update.json", "Preview: https://pr-12.preview.example.org/ (def5678)", Updated, 99},
		{"comment_create_paged.json", "Preview: https://pr-12.preview.example.org/ (abc1234)", Created, 101},
	} {
		t.Run(tt.file, func(t *testing.T) {
			f := githubFor(t, replay(t, tt.file))
			c, res, err := f.UpsertComment(context.Background(), siteRepo, 12, marker, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if res != tt.result || c.ID != tt.id || c.Body != marker+"\n"+tt.body {
				t.Errorf("UpsertComment = %+v, %s; want comment %d %s", c, res, tt.id, tt.result)
			}
		})
	}
}

func TestGitHubGetPR(t *testing.T) {
	f := githubFor(t, replay(t, "get_pr_merged_after_rate_limit.json"))
	pr, err := f.GetPR(context.Background(), gitopsRepo, 7)
	if err != nil {
		t.Fatal(err)
	}
	if !pr.Merged || pr.State != StateClosed || pr.MergeCommit != "5555555555555555555555555555555555555555" {
		t.Errorf("GetPR = %+v, want merged with its merge commit", pr)
	}

	f = githubFor(t, replay(t, "get_pr_missing.json"))
	_, err = f.GetPR(context.Background(), gitopsRepo, 404)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "pull request #404 in acme/gitops") {
		t.Errorf("GetPR of a missing PR: %v, want ErrNotFound naming it", err)
	}
}

func TestGitHubAutoMerge(t *testing.T) {
	pr := &PR{Number: 7, NodeID: "PR_kwDOAAABc84AAAAB"}
	f := githubFor(t, replay(t, "auto_merge.json"))
	if err := f.EnableAutoMerge(context.Background(), gitopsRepo, pr); err != nil {
		t.Fatal(err)
	}
	f = githubFor(t, replay(t, "auto_merge_not_allowed.json"))
	err := f.EnableAutoMerge(context.Background(), gitopsRepo, pr)
	if err == nil || !strings.Contains(err.Error(), "Auto merge is not allowed for this repository") {
		t.Errorf("auto-merge refused: err = %v, want GitHub's message", err)
	}
}
