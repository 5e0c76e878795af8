package actiontest

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/notesctl/notesctl/internal/giteaenv"
	"github.com/notesctl/notesctl/internal/sitegit"
)

// TestPreviewOnGitea runs the preview workflow (testdata/workflows/
// gitea-preview.yml) on a real Gitea and runner, with the action's wait
// input and the real Flux source- and kustomize-controller following the
// GitOps repository on that Gitea: opening a pull request on the site
// repository pushes the preview image, commits previews/pr-N/ to the GitOps
// repository, and the run ends when Flux has applied it and the preview's
// Deployment runs the image; it leaves one comment with the URL. A second
// push to the pull request updates the same comment; closing it removes the
// overlay, and the run ends when Flux has pruned the preview.
func TestPreviewOnGitea(t *testing.T) {
	h := newHarness(t, giteaenv.Options{})
	env := h.startFlux(t, "gitrepository.yaml", "previews.yaml")
	wf, err := os.ReadFile(filepath.Join(repoRoot(t), "testdata/workflows/gitea-preview.yml"))
	if err != nil {
		t.Fatal(err)
	}
	h.workflow = string(wf)
	const repo = "site-previews"
	site := h.siteRepo(t, repo, release, sitegit.Epoch.Add(time.Hour), nil)
	h.gitea.SetVariable(t, repo, "PREVIEW_DOMAIN", "preview.example.org")
	h.waitOnFlux(t, repo, env)
	h.gitea.Push(t, site, repo, "main")
	// deployed returns the image the preview's Deployment runs ("" when
	// there is none).
	deployed := func(n int) string {
		t.Helper()
		dep := &appsv1.Deployment{}
		key := types.NamespacedName{Namespace: "notes-pr-" + itoa(n), Name: "notes-pr-" + itoa(n)}
		if err := env.Client.Get(context.Background(), key, dep); apierrors.IsNotFound(err) {
			return ""
		} else if err != nil {
			t.Fatal(err)
		}
		return dep.Spec.Template.Spec.Containers[0].Image
	}

	g := h.gitea
	edit := func(n int) {
		t.Helper()
		p := filepath.Join(site, "content", "_index.md")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, append(b, []byte("\nA reviewed change, take "+itoa(n)+".\n")...), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := sitegit.CommitAll(site, "a change to review", sitegit.Epoch.Add(time.Duration(n+1)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	giteaenv.Git(t, site, "checkout", "-q", "-b", "fix")
	edit(1)
	g.Push(t, site, repo, "fix")
	after, err := g.LastRunID(repo)
	if err != nil {
		t.Fatal(err)
	}
	pr := g.OpenPR(t, repo, "fix", "main", "Fix a typo")
	r := h.wait(t, repo, after)
	r.mustConclude(t, "success")
	url := "https://pr-" + itoa(pr.Number) + ".preview.example.org/"
	if r.outputs["PREVIEW_URL"] != url || !strings.Contains(r.outputs["IMAGE"], ":pr-"+itoa(pr.Number)+"-") {
		t.Errorf("outputs %v: want preview-url %s and the pr- image", r.outputs, url)
	}
	if got := deployed(pr.Number); got != r.outputs["IMAGE"] {
		t.Errorf("when the run ended the preview ran %q, want %q (wait: true)", got, r.outputs["IMAGE"])
	}
	overlay := func() string {
		t.Helper()
		dir := t.TempDir()
		run(t, dir, "git", "clone", "--quiet", g.CloneURL(gitopsRepo), "g")
		b, _ := os.ReadFile(filepath.Join(dir, "g", "previews", "pr-"+itoa(pr.Number), "kustomization.yaml"))
		return string(b)
	}
	comments := func() []giteaenv.Comment {
		t.Helper()
		cs, err := g.Comments(repo, pr.Number)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	head := strings.TrimSpace(giteaenv.Git(t, site, "rev-parse", "--short=7", "HEAD"))
	if o := overlay(); !strings.Contains(o, "newTag: pr-"+itoa(pr.Number)+"-"+head+"-") {
		t.Fatalf("the GitOps repository has no overlay for %s:\n%s", head, o)
	}
	cs := comments()
	if len(cs) != 1 || !strings.Contains(cs[0].Body, url) || !strings.Contains(cs[0].Body, head) {
		t.Fatalf("comments after opening: %+v; want one with %s and %s", cs, url, head)
	}
	first := cs[0].ID

	// A second push to the pull request: the same comment, updated.
	edit(2)
	after, _ = g.LastRunID(repo)
	g.Push(t, site, repo, "fix")
	r = h.wait(t, repo, after)
	r.mustConclude(t, "success")
	if got := deployed(pr.Number); got != r.outputs["IMAGE"] || got == "" {
		t.Errorf("after the second push the preview runs %q, want %q", got, r.outputs["IMAGE"])
	}
	head = strings.TrimSpace(giteaenv.Git(t, site, "rev-parse", "--short=7", "HEAD"))
	cs = comments()
	if len(cs) != 1 || cs[0].ID != first || !strings.Contains(cs[0].Body, head) {
		t.Errorf("comments after the second push: %+v; want comment %d, naming %s", cs, first, head)
	}
	if o := overlay(); !strings.Contains(o, "-"+head+"-") {
		t.Errorf("the overlay does not deploy %s:\n%s", head, o)
	}

	// Closing the pull request closes the preview.
	after, _ = g.LastRunID(repo)
	g.ClosePR(t, repo, pr.Number)
	h.wait(t, repo, after).mustConclude(t, "success")
	if o := overlay(); o != "" {
		t.Errorf("the overlay is still there after the pull request closed:\n%s", o)
	}
	if got := deployed(pr.Number); got != "" {
		t.Errorf("when the closing run ended the preview still ran %s, want it pruned", got)
	}
	if cs := comments(); len(cs) != 1 || !strings.Contains(cs[0].Body, "closed") {
		t.Errorf("comments after closing: %+v", cs)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
