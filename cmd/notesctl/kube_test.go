package main

// The last leg against the real thing: etcd, kube-apiserver, the Flux CRDs
// and the real source-controller and kustomize-controller v1.9.6 reading
// the GitOps repository from a git server over HTTP. There is no kubelet,
// so kubeenv's rollout stand-in reports Deployments as rolled out once
// their spec changes (what kube-controller-manager and kubelets would do).

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	appsv1 "k8s.io/api/apps/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/internal/kubeenv"
	"github.com/notesctl/notesctl/internal/regserver"
)

// fluxSetup is a cluster with Flux following a GitOps repository that
// notesctl scaffolded, and the registry the images go to.
type fluxSetup struct {
	env       *kubeenv.Env
	reg       *regserver.Server
	gs        *gitserver.HTTPBackend
	image     string
	gitopsURL string
	site      string
}

func startFlux(t *testing.T) *fluxSetup {
	t.Helper()
	env := kubeenv.Start(t, kubeenv.Options{Flux: true, SimulateRollouts: true})
	reg := regserver.InProcess(t, regserver.InProcessOptions{})
	gs := gitserver.StartHTTPBackend(t, "", "")
	f := &fluxSetup{env: env, reg: reg, gs: gs, image: reg.Host + "/acme/notes", gitopsURL: gs.RepoURL("gitops.git"), site: newSite(t)}

	scaffold := t.TempDir()
	mustSucceed(t, notesctl(t, scaffold, nil, "", "manifests", "init", "--dir", ".", "--image", f.image, "--git-url", f.gitopsURL))
	gitserver.SeedBareRepo(t, gs.RepoPath("gitops.git"), "main", scaffold)
	f.follow(t, scaffold)
	return f
}

// follow installs what a Flux bootstrap would, the GitRepository and the
// Kustomization from the scaffold (already pushed to f.gitopsURL), and
// waits until Flux has applied the scaffold itself.
func (f *fluxSetup) follow(t *testing.T, scaffold string) {
	t.Helper()
	for _, name := range []string{"gitrepository.yaml", "sync.yaml"} {
		f.env.ApplyFile(t, filepath.Join(scaffold, "flux", "notes", name))
	}
	waitFor(t, 60*time.Second, "the scaffold applied", func() (bool, string) {
		ks := kustomization(t, f.env)
		ready := apimeta.FindStatusCondition(ks.Status.Conditions, meta.ReadyCondition)
		return ready != nil && ready.Status == "True" && ks.Status.LastAppliedRevision != "", describe(ks)
	})
}

func kustomization(t *testing.T, env *kubeenv.Env) *kustomizev1.Kustomization {
	t.Helper()
	ks := &kustomizev1.Kustomization{}
	if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: "flux-system", Name: "notes"}, ks); err != nil {
		t.Fatal(err)
	}
	return ks
}

func describe(ks *kustomizev1.Kustomization) string {
	b, _ := json.Marshal(ks.Status)
	return string(b)
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for time.Now().Before(deadline) {
		var done bool
		if done, last = ok(); done {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last seen: %s", what, last)
}

func (f *fluxSetup) release(t *testing.T, extra ...string) result {
	t.Helper()
	args := append([]string{"release", "--image", f.image, "--base", "scratch", "--gitops", f.gitopsURL,
		"--wait", "--kubeconfig", f.env.Kubeconfig, "--timeout", "90s"}, extra...)
	return notesctl(t, f.site, nil, "", args...)
}

func deploymentImage(t *testing.T, env *kubeenv.Env) string {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: "notes", Name: "notes"}, d); err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template.Spec.Containers[0].Image
}

func TestReleaseWaitRollout(t *testing.T) {
	f := startFlux(t)

	r := f.release(t)
	mustSucceed(t, r)
	ref := imageLine.FindStringSubmatch(r.stdout)[1]
	commit := gitOut(t, f.gs.RepoPath("gitops.git"), "rev-parse", "main")

	// The command returned only once Flux applied the commit and the
	// Deployment in the apiserver runs the new image.
	if got := deploymentImage(t, f.env); got != ref {
		t.Errorf("Deployment runs %s, want %s", got, ref)
	}
	ks := kustomization(t, f.env)
	if ks.Status.LastAppliedRevision != "main@sha1:"+commit {
		t.Errorf("lastAppliedRevision = %q, want main@sha1:%s", ks.Status.LastAppliedRevision, commit)
	}
	// The annotation path: both objects carry the reconcile request.
	repo := &sourcev1.GitRepository{}
	if err := f.env.Client.Get(context.Background(), types.NamespacedName{Namespace: "flux-system", Name: "notes"}, repo); err != nil {
		t.Fatal(err)
	}
	for _, obj := range []client.Object{repo, ks} {
		if obj.GetAnnotations()[meta.ReconcileRequestAnnotation] == "" {
			t.Errorf("%T has no %s annotation", obj, meta.ReconcileRequestAnnotation)
		}
	}
	if !strings.Contains(r.stdout, "rollout: Flux applied main@sha1:"+commit) {
		t.Errorf("release output does not report the rollout:\n%s", r.stdout)
	}

	// A second release: status then agrees with the cluster; a rollback to
	// the first, then status again.
	editPage(t, f.site, 1)
	r = f.release(t)
	mustSucceed(t, r)
	second := imageLine.FindStringSubmatch(r.stdout)[1]
	if got := deploymentImage(t, f.env); got != second {
		t.Fatalf("after the second release the Deployment runs %s", got)
	}
	first := gitOut(t, f.site, "rev-parse", "HEAD~1")
	r = notesctl(t, f.site, nil, "", "rollback", "--gitops", f.gitopsURL, "--to", first[:7], "--wait", "--kubeconfig", f.env.Kubeconfig, "--timeout", "90s")
	mustSucceed(t, r)
	if got := deploymentImage(t, f.env); got != ref {
		t.Errorf("after rollback the Deployment runs %s, want %s", got, ref)
	}
	r = notesctl(t, f.site, nil, "", "status", "--gitops", f.gitopsURL, "--kubeconfig", f.env.Kubeconfig, "-o", "json")
	mustSucceed(t, r)
	var st struct {
		GitOps  struct{ Image, Commit string }
		Image   struct{ SiteCommit string }
		Cluster struct {
			LastAppliedRevision string
			Deployments         []struct{ Image string }
		}
		InSync *bool
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.GitOps.Image != ref || st.Image.SiteCommit != first || st.InSync == nil || !*st.InSync ||
		st.Cluster.LastAppliedRevision != "main@sha1:"+st.GitOps.Commit || len(st.Cluster.Deployments) != 1 || st.Cluster.Deployments[0].Image != ref {
		t.Errorf("status disagrees with the cluster: %+v", st)
	}
}

func TestReleaseWaitFailures(t *testing.T) {
	f := startFlux(t)

	// A manifest the apiserver rejects, committed with the next release:
	// --wait fails with Flux's message.
	clone := t.TempDir()
	gitserver.CloneWorktree(t, f.gs.RepoPath("gitops.git"), clone, "main")
	os.WriteFile(filepath.Join(clone, "apps/notes/broken.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_A_Valid_Name\n  namespace: notes\ndata:\n  a: b\n"), 0o644)
	kfile := filepath.Join(clone, "apps/notes/kustomization.yaml")
	k, _ := os.ReadFile(kfile)
	os.WriteFile(kfile, []byte(strings.Replace(string(k), "resources:\n", "resources:\n- broken.yaml\n", 1)), 0o644)
	gitOut(t, clone, "add", "-A")
	gitOut(t, clone, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "broken")
	gitOut(t, clone, "push", "-q", "origin", "main")

	r := f.release(t)
	if r.code == 0 {
		t.Fatal("--wait succeeded on a Kustomization that cannot apply")
	}
	if !strings.Contains(r.stderr, "Flux Kustomization flux-system/notes failed") || !strings.Contains(r.stderr, "Not_A_Valid_Name") {
		t.Errorf("error does not carry Flux's reason and message:\n%s", r.stderr)
	}

	// Fix it, suspend Flux: the wait times out and says what it saw last.
	gitOut(t, clone, "pull", "-q", "--ff-only")
	os.Remove(filepath.Join(clone, "apps/notes/broken.yaml"))
	os.WriteFile(kfile, k, 0o644)
	gitOut(t, clone, "add", "-A")
	gitOut(t, clone, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "fix")
	gitOut(t, clone, "push", "-q", "origin", "main")
	ks := kustomization(t, f.env)
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"suspend":true}}`))
	if err := f.env.Client.Patch(context.Background(), ks, patch); err != nil {
		t.Fatal(err)
	}
	editPage(t, f.site, 2)
	// The kubeconfig comes as content this time, as a CI secret gives it;
	// the credentials in it must not show in any output.
	kubeconfig, err := os.ReadFile(f.env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	r = notesctl(t, f.site, []string{"NOTESCTL_KUBECONFIG_DATA=" + string(kubeconfig)}, "", "release", "--image", f.image, "--base", "scratch", "--gitops", f.gitopsURL,
		"--wait", "--timeout", "4s")
	if strings.Contains(r.all(), f.env.Token) {
		t.Error("the cluster token appears in the output")
	}
	if r.code == 0 || !strings.Contains(r.stderr, "timed out after 4s") || !strings.Contains(r.stderr, "last seen: Kustomization flux-system/notes") {
		t.Errorf("suspended Flux: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}
