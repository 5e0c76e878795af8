package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/internal/regserver"
)

// fakeGitHubComments is GitHub's issue-comment API for one repository, in
// memory: enough to see that the preview keeps exactly one comment.
type fakeGitHubComments struct {
	mu       sync.Mutex
	comments map[int64]string
	next     int64
	tokens   []string
}

func (f *fakeGitHubComments) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens = append(f.tokens, r.Header.Get("Authorization"))
	body, _ := io.ReadAll(r.Body)
	var in struct {
		Body string `json:"body"`
	}
	_ = json.Unmarshal(body, &in)
	w.Header().Set("Content-Type", "application/json")
	type comment struct {
		ID   int64  `json:"id"`
		Body string `json:"body"`
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/repos/acme/site/issues/12/comments":
		var ids []int64
		for id := range f.comments {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		out := []comment{{ID: 1, Body: "a reviewer's comment"}}
		for _, id := range ids {
			out = append(out, comment{id, f.comments[id]})
		}
		_ = json.NewEncoder(w).Encode(out)
	case r.Method == http.MethodPost && r.URL.Path == "/repos/acme/site/issues/12/comments":
		f.next++
		id := 100 + f.next
		f.comments[id] = in.Body
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(comment{id, in.Body})
	case r.Method == http.MethodPatch && strings.HasPrefix(r.URL.Path, "/repos/acme/site/issues/comments/"):
		var id int64
		fmt.Sscan(strings.TrimPrefix(r.URL.Path, "/repos/acme/site/issues/comments/"), &id)
		if _, ok := f.comments[id]; !ok {
			http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
			return
		}
		f.comments[id] = in.Body
		_ = json.NewEncoder(w).Encode(comment{id, in.Body})
	default:
		http.Error(w, `{"message":"unexpected"}`, http.StatusTeapot)
	}
}

// TestPreviewUnderActions runs preview as the action does on pull_request
// events: the event payload says the number and head, the preview URL goes
// into one comment (created, then edited on the next push, never
// duplicated), the step outputs hold preview-url, and the closed event
// removes the overlay and says so in the same comment.
func TestPreviewUnderActions(t *testing.T) {
	reg := regserver.InProcess(t, regserver.InProcessOptions{})
	gs := gitserver.StartHTTPBackend(t, "", "")
	gitops := seedGitOps(t, gs, reg.Host+"/acme/notes")
	site := newSite(t)
	fake := &fakeGitHubComments{comments: map[int64]string{}}
	api := httptest.NewServer(fake)
	defer api.Close()

	const token = "ghs_previewT0ken"
	run := func(action string) (result, map[string]string) {
		t.Helper()
		dir := t.TempDir()
		head := gitOut(t, site, "rev-parse", "HEAD")
		event := fmt.Sprintf(`{"action": %q, "number": 12, "pull_request": {"number": 12, "state": %q, "head": {"sha": %q, "ref": "fix-typo"}}}`,
			action, map[bool]string{true: "closed", false: "open"}[action == "closed"], head)
		eventPath := filepath.Join(dir, "event.json")
		outPath := filepath.Join(dir, "output")
		if err := os.WriteFile(eventPath, []byte(event), 0o644); err != nil {
			t.Fatal(err)
		}
		r := notesctl(t, site, []string{
			"GITHUB_ACTIONS=true", "GITHUB_EVENT_NAME=pull_request", "GITHUB_EVENT_PATH=" + eventPath,
			"GITHUB_OUTPUT=" + outPath, "GITHUB_SERVER_URL=https://github.com", "GITHUB_REPOSITORY=acme/site",
			"GITHUB_API_URL=" + api.URL, "INPUT_GITHUB-TOKEN=" + token,
			"INPUT_IMAGES=" + reg.Host + "/acme/notes", "INPUT_GITOPS-REPO=" + gitops, "INPUT_BASE=scratch",
			"INPUT_PREVIEW-DOMAIN=preview.example.org",
		}, "", "preview")
		mustSucceed(t, r)
		// The runner hides the token once told to (::add-mask::); it must
		// appear nowhere else.
		if strings.Contains(strings.ReplaceAll(r.all(), "::add-mask::"+token, ""), token) {
			t.Errorf("the token shows in the output:\n%s", r.all())
		}
		raw, _ := os.ReadFile(outPath)
		outs := map[string]string{}
		lines := strings.Split(string(raw), "\n")
		for i := 0; i < len(lines); i++ {
			if k, delim, ok := strings.Cut(lines[i], "<<"); ok && i+2 < len(lines) && lines[i+2] == delim {
				outs[k] = lines[i+1]
				i += 2
			}
		}
		return r, outs
	}
	comments := func() []string {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		var out []string
		for _, c := range fake.comments {
			out = append(out, c)
		}
		return out
	}
	overlay := func() string {
		w := filepath.Join(t.TempDir(), "w")
		gitserver.CloneWorktree(t, gs.RepoPath("gitops.git"), w, "main")
		b, err := os.ReadFile(filepath.Join(w, "previews/pr-12/kustomization.yaml"))
		if err != nil {
			return ""
		}
		return string(b)
	}

	_, outs := run("opened")
	if outs["preview-url"] != "https://pr-12.preview.example.org/" || !strings.Contains(outs["image"], "/acme/notes:pr-12-") {
		t.Errorf("outputs %v: want preview-url and the pr-12 image", outs)
	}
	if cs := comments(); len(cs) != 1 || !strings.HasPrefix(cs[0], "<!-- notesctl:preview -->") || !strings.Contains(cs[0], "https://pr-12.preview.example.org/") {
		t.Fatalf("comments after the first push: %q", cs)
	}
	if !strings.Contains(overlay(), "newTag: pr-12-") {
		t.Fatal("no overlay for pr-12 in the GitOps repository")
	}

	// A second push to the pull request: the same comment, edited.
	editPage(t, site, 1)
	_, outs = run("synchronize")
	head := gitOut(t, site, "rev-parse", "--short=7", "HEAD")
	cs := comments()
	if len(cs) != 1 || !strings.Contains(cs[0], head) {
		t.Fatalf("comments after the second push: %q; want one, naming %s", cs, head)
	}
	if !strings.Contains(outs["tag"], "pr-12-"+head+"-") || !strings.Contains(overlay(), "pr-12-"+head+"-") {
		t.Errorf("the second push did not deploy %s: outputs %v", head, outs)
	}
	fake.mu.Lock()
	for _, a := range fake.tokens {
		if a != "Bearer "+token {
			t.Errorf("the forge got Authorization %q, want the github-token input", a)
		}
	}
	fake.mu.Unlock()

	run("closed")
	if o := overlay(); o != "" {
		t.Errorf("the overlay is still there after the pull request closed:\n%s", o)
	}
	if cs := comments(); len(cs) != 1 || !strings.Contains(cs[0], "closed") {
		t.Errorf("comments after closing: %q; want the one comment saying the preview is closed", cs)
	}
}

// TestPreviewOnFlux: the real source- and kustomize-controller apply the
// preview overlay through the scaffolded previews Kustomization, into its
// own namespace next to the main site, and prune it after --close.
func TestPreviewOnFlux(t *testing.T) {
	f := startFlux(t)
	scaffold := t.TempDir()
	mustSucceed(t, notesctl(t, scaffold, nil, "", "manifests", "init", "--dir", ".", "--image", f.image, "--git-url", f.gitopsURL))
	f.env.ApplyFile(t, filepath.Join(scaffold, "flux", "notes", "previews.yaml"))
	ctx := context.Background()
	c := f.env.Client
	previewsReady := func(want string) func() (bool, string) {
		return func() (bool, string) {
			ks := &kustomizev1.Kustomization{}
			if err := c.Get(ctx, types.NamespacedName{Namespace: "flux-system", Name: "notes-previews"}, ks); err != nil {
				return false, err.Error()
			}
			ready := apimeta.FindStatusCondition(ks.Status.Conditions, meta.ReadyCondition)
			return ready != nil && ready.Status == "True" && strings.Contains(ks.Status.LastAppliedRevision, want), describe(ks)
		}
	}
	waitFor(t, 60*time.Second, "the empty previews list applied", previewsReady(""))

	// preview runs notesctl preview; with wait it passes --wait and
	// returns when notesctl does, else it asks Flux to reconcile itself.
	preview := func(wait bool, args ...string) (commit, image string) {
		t.Helper()
		args = append([]string{"--output", "json", "preview", "--image", f.image, "--base", "scratch", "--gitops", f.gitopsURL}, args...)
		if wait {
			args = append(args, "--wait", "--kubeconfig", f.env.Kubeconfig, "--timeout", "90s")
		}
		r := notesctl(t, f.site, nil, "", args...)
		mustSucceed(t, r)
		var res struct {
			Commit string `json:"gitopsCommit"`
			Build  struct {
				Image string `json:"image"`
			} `json:"build"`
			Rollout *struct {
				Applied string `json:"lastAppliedRevision"`
			} `json:"rollout"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Commit == "" {
			t.Fatalf("preview output %q: %v", r.stdout, err)
		}
		if wait && (res.Rollout == nil || !strings.Contains(res.Rollout.Applied, res.Commit)) {
			t.Errorf("preview --wait reports no rollout of %s: %s", res.Commit, r.stdout)
		}
		if !wait {
			requestReconcile(t, c)
		}
		return res.Commit, res.Build.Image
	}

	// Pull request 7's preview, waited for here: the previews Kustomization
	// then applies two Deployments of the same repository, with two tags.
	editPage(t, f.site, 7)
	commit, _ := preview(false, "--pr", "7", "--preview-domain", "preview.example.org")
	waitFor(t, 90*time.Second, "preview 7 applied", previewsReady(commit))

	// Pull request 12's, with --wait: when notesctl returns, Flux has
	// applied it and its Deployment runs the image; pull request 7's other
	// tag does not hold the wait up.
	editPage(t, f.site, 12)
	start := time.Now()
	commit, image := preview(true, "--pr", "12", "--preview-domain", "preview.example.org")
	t.Logf("preview --wait returned %s after it started (commit %s)", time.Since(start).Round(time.Millisecond), commit[:7])
	if ok, s := previewsReady(commit)(); !ok {
		t.Fatalf("preview --wait returned before Flux applied %s: %s", commit, s)
	}

	dep := &appsv1.Deployment{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "notes-pr-12", Name: "notes-pr-12"}, dep); err != nil {
		t.Fatalf("the preview Deployment: %v", err)
	}
	if img := dep.Spec.Template.Spec.Containers[0].Image; img != image || !strings.Contains(img, "/acme/notes:pr-12-") || !strings.Contains(img, "@sha256:") {
		t.Errorf("the preview runs %s, want %s, the pr-12 image by digest", img, image)
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 1 {
		t.Errorf("the preview has %v replicas, want 1", dep.Spec.Replicas)
	}
	ing := &networkingv1.IngressList{}
	if err := c.List(ctx, ing, client.InNamespace("notes-pr-12")); err != nil || len(ing.Items) != 1 || ing.Items[0].Spec.Rules[0].Host != "pr-12.preview.example.org" {
		t.Errorf("the preview Ingress: %+v, %v; want host pr-12.preview.example.org", ing.Items, err)
	}
	main := &appsv1.Deployment{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "notes", Name: "notes"}, main); err != nil {
		t.Fatalf("the main site's Deployment next to the preview: %v", err)
	}
	if strings.Contains(main.Spec.Template.Spec.Containers[0].Image, ":pr-") {
		t.Errorf("the main site runs %s, a preview image", main.Spec.Template.Spec.Containers[0].Image)
	}

	// --close --wait returns when Flux has pruned the preview.
	commit, _ = preview(true, "--close", "12")
	if ok, s := previewsReady(commit)(); !ok {
		t.Fatalf("preview --close --wait returned before Flux applied %s: %s", commit, s)
	}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "notes-pr-12", Name: "notes-pr-12"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Errorf("the preview Deployment is still there after --close --wait (%v)", err)
	}
	ns := &corev1.Namespace{}
	// Without kube-controller-manager a deleted namespace stays
	// Terminating: deleted is what Flux can do.
	if err := c.Get(ctx, types.NamespacedName{Name: "notes-pr-12"}, ns); !apierrors.IsNotFound(err) && ns.DeletionTimestamp == nil {
		t.Errorf("namespace notes-pr-12 is not deleted after --close --wait: %v", err)
	}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "notes-pr-7", Name: "notes-pr-7"}, &appsv1.Deployment{}); err != nil {
		t.Errorf("closing preview 12 touched preview 7: %v", err)
	}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "notes", Name: "notes"}, &appsv1.Deployment{}); err != nil {
		t.Errorf("closing the preview touched the main site: %v", err)
	}
}

// requestReconcile asks Flux to fetch the GitOps repository and apply the
// previews now (reconcile.fluxcd.io/requestedAt), as flux reconcile does.
func requestReconcile(t *testing.T, c client.Client) {
	t.Helper()
	now := time.Now().Format(time.RFC3339Nano)
	for _, obj := range []client.Object{&sourcev1.GitRepository{}, &kustomizev1.Kustomization{}} {
		name := "notes"
		if _, ok := obj.(*kustomizev1.Kustomization); ok {
			name = "notes-previews"
		}
		if err := c.Get(context.Background(), types.NamespacedName{Namespace: "flux-system", Name: name}, obj); err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
		ann := obj.GetAnnotations()
		if ann == nil {
			ann = map[string]string{}
		}
		ann[meta.ReconcileRequestAnnotation] = now
		obj.SetAnnotations(ann)
		if err := c.Patch(context.Background(), obj, patch); err != nil {
			t.Fatal(err)
		}
	}
}
