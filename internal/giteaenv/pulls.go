package giteaenv

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Comment is an issue or pull request comment.
type Comment struct {
	ID   int64  `json:"id"`
	Body string `json:"body"`
}

// Comments lists the comments of issue or pull request number of Owner/repo.
func (e *Env) Comments(repo string, number int) ([]Comment, error) {
	var out []Comment
	err := e.API(http.MethodGet, fmt.Sprintf("/repos/%s/%s/issues/%d/comments", Owner, repo, number), nil, &out)
	return out, err
}

// PullRequest is the part of a pull request the tests read.
type PullRequest struct {
	Number int    `json:"number"`
	State  string `json:"state"`
	Merged bool   `json:"merged"`
	Body   string `json:"body"`
	Head   struct {
		Ref string `json:"ref"`
		SHA string `json:"sha"`
	} `json:"head"`
	Base struct {
		Ref string `json:"ref"`
	} `json:"base"`
}

// PullRequests lists the pull requests of Owner/repo in state (open, closed, all).
func (e *Env) PullRequests(repo, state string) ([]PullRequest, error) {
	var out []PullRequest
	err := e.API(http.MethodGet, fmt.Sprintf("/repos/%s/%s/pulls?state=%s&limit=50", Owner, repo, state), nil, &out)
	return out, err
}

// OpenPR opens a pull request from head to base as the admin.
func (e *Env) OpenPR(t testing.TB, repo, head, base, title string) PullRequest {
	t.Helper()
	var pr PullRequest
	if err := e.API(http.MethodPost, fmt.Sprintf("/repos/%s/%s/pulls", Owner, repo),
		map[string]string{"head": head, "base": base, "title": title}, &pr); err != nil {
		t.Fatalf("open pull request %s -> %s: %v", head, base, err)
	}
	return pr
}

// ClosePR closes pull request number without merging it.
func (e *Env) ClosePR(t testing.TB, repo string, number int) {
	t.Helper()
	if err := e.API(http.MethodPatch, fmt.Sprintf("/repos/%s/%s/pulls/%d", Owner, repo, number),
		map[string]string{"state": "closed"}, nil); err != nil {
		t.Fatalf("close pull request #%d: %v", number, err)
	}
}

// ProtectBranch protects branch of Owner/repo: no direct push, for anyone,
// so changes land only through pull requests.
func (e *Env) ProtectBranch(t testing.TB, repo, branch string) {
	t.Helper()
	body := map[string]any{"rule_name": branch, "enable_push": false, "enable_merge_whitelist": false}
	if err := e.API(http.MethodPost, fmt.Sprintf("/repos/%s/%s/branch_protections", Owner, repo), body, nil); err != nil {
		t.Fatalf("protect branch %s: %v", branch, err)
	}
}

// GitRepo makes a work tree with files committed on main, by the real git.
func GitRepo(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	WriteFiles(t, dir, files)
	Git(t, dir, "init", "-q", "-b", "main")
	Commit(t, dir, "init")
	return dir
}

// WriteFiles writes files (slash paths) under dir.
func WriteFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Commit commits every change in the work tree dir.
func Commit(t testing.TB, dir, message string) {
	t.Helper()
	Git(t, dir, "add", "-A")
	Git(t, dir, "-c", "user.name=Test", "-c", "user.email=test@example.org", "-c", "commit.gpgsign=false", "commit", "-q", "-m", message)
}

// Git runs git in dir and returns its output.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}
