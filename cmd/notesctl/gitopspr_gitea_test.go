package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/notesctl/notesctl/internal/giteaenv"
	"github.com/notesctl/notesctl/internal/kubeenv"
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

// TestGitOpsPRWaitsForFlux: with the GitOps branch protected on a real
// Gitea and the real Flux controllers following it, release --gitops-pr
// --auto-merge --wait returns only when Gitea has merged the pull request,
// Flux has applied the merge commit, and the Deployment runs the release.
func TestGitOpsPRWaitsForFlux(t *testing.T) {
	gitea := giteaenv.Start(t, giteaenv.Options{NoRunner: true})
	env := kubeenv.Start(t, kubeenv.Options{Flux: true, SimulateRollouts: true})
	reg := regserver.InProcess(t, regserver.InProcessOptions{})
	f := &fluxSetup{env: env, reg: reg, image: reg.Host + "/acme/notes", gitopsURL: gitea.CloneURL("gitops"), site: newSite(t)}

	gitea.CreateRepo(t, "gitops")
	dir := scaffold(t, f.image, f.gitopsURL)
	giteaenv.Git(t, dir, "init", "-q", "-b", "main")
	giteaenv.Commit(t, dir, "scaffold")
	gitea.Push(t, dir, "gitops", "main")
	gitea.ProtectBranch(t, "gitops", "main")
	f.follow(t, dir)

	sha7 := gitOut(t, f.site, "rev-parse", "--short=7", "HEAD")
	start := time.Now()
	r := notesctl(t, f.site, []string{"NOTESCTL_GITOPS_PASSWORD=" + gitea.Token, "NOTESCTL_FORGE_TOKEN=" + gitea.Token}, "",
		"release", "--image", f.image, "--base", "scratch", "--gitops", f.gitopsURL, "--gitops-username", giteaenv.Owner,
		"--forge", "gitea", "--gitops-pr", "--auto-merge", "--wait", "--kubeconfig", env.Kubeconfig, "--timeout", "120s")
	mustSucceed(t, r)
	t.Logf("release --gitops-pr --auto-merge --wait returned after %s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(r.stdout, "gitops-pr: ") || !strings.Contains(r.stdout, ", merged)") {
		t.Errorf("the output does not report the merged pull request:\n%s", r.stdout)
	}
	if strings.Contains(r.all(), gitea.Token) {
		t.Errorf("the token shows in the output:\n%s", r.all())
	}

	// When notesctl returns, Flux has applied main's tip, the merge commit,
	// and the Deployment runs the release by digest.
	tip := strings.Fields(giteaenv.Git(t, dir, "ls-remote", gitea.AuthURL("gitops"), "refs/heads/main"))[0]
	prs, err := gitea.PullRequests("gitops", "all")
	if err != nil || len(prs) != 1 || !prs[0].Merged {
		t.Fatalf("pull requests: %+v, %v; want one, merged", prs, err)
	}
	ks := kustomization(t, env)
	if !strings.Contains(ks.Status.LastAppliedRevision, tip) {
		t.Errorf("Flux applied %q, want main's tip %s (the merge)", ks.Status.LastAppliedRevision, tip)
	}
	dep := &appsv1.Deployment{}
	if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: "notes", Name: "notes"}, dep); err != nil {
		t.Fatal(err)
	}
	if img := dep.Spec.Template.Spec.Containers[0].Image; !strings.Contains(img, ":main-"+sha7+"-") || !strings.Contains(img, "@sha256:") {
		t.Errorf("the Deployment runs %s, want the release of %s by digest", img, sha7)
	}
	if dep.Status.ObservedGeneration != dep.Generation || dep.Status.UpdatedReplicas != *dep.Spec.Replicas {
		t.Errorf("the Deployment is not rolled out: %+v", dep.Status)
	}
}
