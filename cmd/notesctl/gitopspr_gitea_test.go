package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/notesctl/notesctl/internal/giteaenv"
	"github.com/notesctl/notesctl/internal/regserver"
)

// TestGitOpsPROnProtectedGitea: the GitOps branch is protected on a real
// Gitea (no direct push). A plain release is refused by the server and says
// how to go on, with nothing pushed; --gitops-pr opens one pull request
// from notesctl/<policy>/<site-sha7> with the diff in its body; a re-run
// reuses it; --auto-merge has Gitea merge it, and the branch then deploys
// the release.
func TestGitOpsPROnProtectedGitea(t *testing.T) {
	t.Parallel()
	gitea := giteaenv.Start(t, giteaenv.Options{NoRunner: true})
	reg := regserver.InProcess(t, regserver.InProcessOptions{})
	image := reg.Host + "/acme/notes"

	gitea.CreateRepo(t, "gitops")
	dir := scaffold(t, image, gitea.CloneURL("gitops"))
	giteaenv.Git(t, dir, "init", "-q", "-b", "main")
	giteaenv.Commit(t, dir, "scaffold")
	gitea.Push(t, dir, "gitops", "main")
	gitea.ProtectBranch(t, "gitops", "main")
	mainTip := func() string {
		t.Helper()
		out := strings.Fields(giteaenv.Git(t, dir, "ls-remote", gitea.AuthURL("gitops"), "refs/heads/main"))
		if len(out) == 0 {
			t.Fatal("main is gone from the GitOps repository")
		}
		return out[0]
	}
	before := mainTip()

	site := newSite(t)
	sha7 := gitOut(t, site, "rev-parse", "--short=7", "HEAD")
	env := []string{"NOTESCTL_GITOPS_PASSWORD=" + gitea.Token, "NOTESCTL_FORGE_TOKEN=" + gitea.Token}
	release := func(extra ...string) result {
		t.Helper()
		return notesctl(t, site, env, "", append([]string{"release", "--image", image, "--base", "scratch",
			"--gitops", gitea.CloneURL("gitops"), "--gitops-username", giteaenv.Owner}, extra...)...)
	}

	// A direct push: Gitea refuses it; the error names the branch and the
	// way out, and the branch is where it was.
	r := release()
	if r.code == 0 {
		t.Fatalf("a release pushed to the protected branch:\n%s", r.all())
	}
	if !strings.Contains(r.stderr, "protected") || !strings.Contains(r.stderr, "--gitops-pr") {
		t.Errorf("the refusal does not say the branch is protected and what to do:\n%s", r.stderr)
	}
	if strings.Contains(r.all(), gitea.Token) {
		t.Errorf("the token shows in the output:\n%s", r.all())
	}
	if got := mainTip(); got != before {
		t.Fatalf("main moved to %s after a refused push", got)
	}

	// --gitops-pr: one pull request, from the release branch, with the diff.
	branch := "notesctl/flux-system/notes/" + sha7
	r = release("--forge", "gitea", "--gitops-pr")
	mustSucceed(t, r)
	prs, err := gitea.PullRequests("gitops", "all")
	if err != nil || len(prs) != 1 {
		t.Fatalf("pull requests on Gitea: %+v, %v; want one", prs, err)
	}
	pr := prs[0]
	if pr.State != "open" || pr.Head.Ref != branch || pr.Base.Ref != "main" || !strings.Contains(pr.Body, "```diff") ||
		!strings.Contains(pr.Body, "+++ b/apps/notes/deployment.yaml") {
		t.Errorf("the pull request: %+v; want open, %s -> main, the diff in its body", pr, branch)
	}
	if !strings.Contains(r.stdout, "gitops-pr: ") || !strings.Contains(r.stdout, "/pulls/") {
		t.Errorf("no pull request line in the output:\n%s", r.stdout)
	}
	if got := mainTip(); got != before {
		t.Errorf("main moved to %s: --gitops-pr must not push to it", got)
	}

	// A re-run of the same commit reuses the pull request; --auto-merge has
	// Gitea merge it (no checks are required here), and main then deploys
	// the release the pull request carried.
	r = release("--forge", "gitea", "--gitops-pr", "--auto-merge")
	mustSucceed(t, r)
	var merged giteaenv.PullRequest
	waitFor(t, 60*time.Second, "Gitea merges the pull request", func() (bool, string) {
		prs, err := gitea.PullRequests("gitops", "all")
		if err != nil || len(prs) != 1 {
			return false, fmt.Sprintf("pull requests: %+v, %v", prs, err)
		}
		merged = prs[0]
		return merged.Merged, merged.State
	})
	if merged.Number != pr.Number {
		t.Errorf("the re-run opened #%d, want #%d reused", merged.Number, pr.Number)
	}
	clone := t.TempDir()
	giteaenv.Git(t, clone, "clone", "-q", "--branch", "main", gitea.AuthURL("gitops"), ".")
	giteaenv.Git(t, clone, "fsck", "--strict")
	if d := deployedIn(t, clone, "main"); !strings.Contains(d, ":main-"+sha7+"-") || !strings.Contains(d, "@sha256:") {
		t.Errorf("after the merge main deploys %s, want the release of %s by digest", d, sha7)
	}
}
