package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/internal/regserver"
)

// fakeGitHubPulls is GitHub's pull-request API for acme/gitops, in memory.
type fakeGitHubPulls struct {
	mu        sync.Mutex
	prs       []map[string]any
	autoMerge []string
}

func (f *fakeGitHubPulls) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	var in map[string]any
	_ = json.Unmarshal(body, &in)
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/repos/acme/gitops/pulls":
		out := []map[string]any{}
		for _, p := range f.prs {
			if p["state"] == r.URL.Query().Get("state") && "acme:"+p["head"].(map[string]any)["ref"].(string) == r.URL.Query().Get("head") &&
				p["base"].(map[string]any)["ref"] == r.URL.Query().Get("base") {
				out = append(out, p)
			}
		}
		_ = enc.Encode(out)
	case r.Method == http.MethodPost && r.URL.Path == "/repos/acme/gitops/pulls":
		n := len(f.prs) + 1
		p := map[string]any{"number": n, "node_id": "PR_" + strconv.Itoa(n), "state": "open", "title": in["title"], "body": in["body"],
			"html_url": "https://github.com/acme/gitops/pull/" + strconv.Itoa(n),
			"head":     map[string]any{"ref": in["head"]}, "base": map[string]any{"ref": in["base"]}}
		f.prs = append(f.prs, p)
		w.WriteHeader(http.StatusCreated)
		_ = enc.Encode(p)
	case r.Method == http.MethodPatch && strings.HasPrefix(r.URL.Path, "/repos/acme/gitops/pulls/"):
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/repos/acme/gitops/pulls/"))
		p := f.prs[n-1]
		p["title"], p["body"] = in["title"], in["body"]
		_ = enc.Encode(p)
	case r.Method == http.MethodPost && r.URL.Path == "/graphql":
		f.autoMerge = append(f.autoMerge, string(body))
		_ = enc.Encode(map[string]any{"data": map[string]any{"enablePullRequestAutoMerge": map[string]any{}}})
	default:
		http.Error(w, `{"message":"unexpected"}`, http.StatusTeapot)
	}
}

// TestReleaseGitOpsPR: with --gitops-pr a release pushes its commit to
// notesctl/<policy>/<site-sha7>, never to the GitOps branch, and opens one
// pull request with the diff in its body; a re-run reuses it, and
// --auto-merge asks GitHub (GraphQL) to merge it.
func TestReleaseGitOpsPR(t *testing.T) {
	reg := regserver.InProcess(t, regserver.InProcessOptions{})
	gs := gitserver.StartHTTPBackend(t, "", "")
	// The git server serves acme/gitops.git; the forge API is the fake.
	gitopsURL := gs.RepoURL("acme/gitops.git")
	gitserver.SeedBareRepo(t, gs.RepoPath("acme/gitops.git"), "main", scaffold(t, reg.Host+"/acme/notes", gitopsURL))
	site := newSite(t)
	fake := &fakeGitHubPulls{}
	api := httptest.NewServer(fake)
	defer api.Close()
	env := []string{"NOTESCTL_FORGE_TOKEN=forge-t0ken", "NOTESCTL_FORGE_API_URL=" + api.URL + "/"}
	mainBefore := gitOut(t, gs.RepoPath("acme/gitops.git"), "rev-parse", "main")
	release := func(extra ...string) result {
		r := notesctl(t, site, env, "", append([]string{"release", "--image", reg.Host + "/acme/notes", "--base", "scratch",
			"--gitops", gitopsURL, "--forge", "github", "--gitops-pr"}, extra...)...)
		mustSucceed(t, r)
		return r
	}
	r := release()
	sha7 := gitOut(t, site, "rev-parse", "--short=7", "HEAD")
	branch := "notesctl/flux-system/notes/" + sha7
	if !strings.Contains(r.stdout, "gitops-pr: https://github.com/acme/gitops/pull/1 (#1, open)") {
		t.Errorf("no pull request line:\n%s", r.stdout)
	}
	if got := gitOut(t, gs.RepoPath("acme/gitops.git"), "rev-parse", "main"); got != mainBefore {
		t.Errorf("the GitOps branch moved to %s: --gitops-pr must not push to it", got)
	}
	log := gitOut(t, gs.RepoPath("acme/gitops.git"), "log", "--format=%s", "main.."+branch)
	if !strings.Contains(log, "Deploy ") {
		t.Errorf("branch %s holds no release commit: %q", branch, log)
	}
	fake.mu.Lock()
	if len(fake.prs) != 1 || !strings.Contains(fake.prs[0]["body"].(string), "```diff") || fake.prs[0]["head"].(map[string]any)["ref"] != branch {
		t.Errorf("pull requests %+v: want one from %s with the diff", fake.prs, branch)
	}
	body := fake.prs[0]["body"]
	fake.mu.Unlock()

	// A re-run of the same site commit: no new commit, the same pull
	// request, its body kept; --auto-merge asks for the merge.
	r = release("--auto-merge")
	if !strings.Contains(r.stdout, "gitops-pr: https://github.com/acme/gitops/pull/1 (#1, open)") {
		t.Errorf("the re-run did not reuse #1:\n%s", r.stdout)
	}
	fake.mu.Lock()
	if len(fake.prs) != 1 || fake.prs[0]["body"] != body {
		t.Errorf("after the re-run: %d pull requests, body %q; want the one, unchanged", len(fake.prs), fake.prs[0]["body"])
	}
	if len(fake.autoMerge) != 1 || !strings.Contains(fake.autoMerge[0], "enablePullRequestAutoMerge") || !strings.Contains(fake.autoMerge[0], `"PR_1"`) {
		t.Errorf("auto-merge calls %q", fake.autoMerge)
	}
	fake.mu.Unlock()

	// A preview through a pull request: its own branch, the overlay's diff
	// in the body, the GitOps branch untouched.
	r = notesctl(t, site, env, "", "preview", "--pr", "12", "--preview-domain", "preview.example.org", "--image", reg.Host+"/acme/notes",
		"--base", "scratch", "--gitops", gitopsURL, "--forge", "github", "--gitops-pr")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "gitops-pr: https://github.com/acme/gitops/pull/2 (#2, open)") {
		t.Errorf("no pull request for the preview:\n%s", r.stdout)
	}
	if got := gitOut(t, gs.RepoPath("acme/gitops.git"), "rev-parse", "main"); got != mainBefore {
		t.Errorf("the GitOps branch moved to %s", got)
	}
	// A rollback through a pull request: its own branch, from the GitOps
	// branch, the release found in the registry.
	r = notesctl(t, site, env, "", "rollback", "--gitops", gitopsURL, "--forge", "github", "--to", sha7, "--gitops-pr")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "gitops-pr: https://github.com/acme/gitops/pull/3 (#3, open)") {
		t.Errorf("no pull request for the rollback:\n%s", r.stdout)
	}
	if got := gitOut(t, gs.RepoPath("acme/gitops.git"), "rev-parse", "main"); got != mainBefore {
		t.Errorf("the GitOps branch moved to %s", got)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.prs) != 3 || fake.prs[2]["head"].(map[string]any)["ref"] != "notesctl/flux-system/notes/rollback-"+sha7 ||
		!strings.Contains(fake.prs[2]["body"].(string), "```diff") {
		t.Errorf("the rollback pull request: %+v", fake.prs[len(fake.prs)-1])
	}
	if len(fake.prs) < 2 || fake.prs[1]["head"].(map[string]any)["ref"] != "notesctl/preview/pr-12/"+sha7 ||
		!strings.Contains(fake.prs[1]["body"].(string), "+++ b/previews/pr-12/kustomization.yaml") {
		t.Errorf("the preview pull request: %+v", fake.prs[len(fake.prs)-1])
	}
}
