package main

// notesctl next to Flux's own image automation, against the real
// controllers: image-reflector-controller v1.2.0 scanning the test registry,
// image-automation-controller v1.2.0 pushing to the test git server, and
// notification-controller v1.9.0 serving the scaffolded Receiver, next to
// source- and kustomize-controller. The scaffold is applied as `manifests
// init` writes it, with short intervals and `insecure` for the plain-HTTP
// registry.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	imageautov1 "github.com/fluxcd/image-automation-controller/api/v1"
	imagev1 "github.com/fluxcd/image-reflector-controller/api/v1"
	notificationv1 "github.com/fluxcd/notification-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/internal/kubeenv"
	"github.com/notesctl/notesctl/internal/regserver"
	"github.com/notesctl/notesctl/manifests"
)

const receiverToken = "s3cr3t-receiver-token"

// automationInterval is the ImageRepository and ImageUpdateAutomation
// interval in these tests.
const automationInterval = 2 * time.Second

// imageFlux is a cluster running every Flux controller notesctl works with,
// on a GitOps repository scaffolded with a Receiver.
type imageFlux struct {
	fluxSetup
}

func key(name string) types.NamespacedName {
	return types.NamespacedName{Namespace: kubeenv.FluxNamespace, Name: name}
}

// fluxIntervals are the Flux intervals a setup runs with.
type fluxIntervals struct {
	git, imageRepository, automation time.Duration
}

// testIntervals: only a reconcile request (requestedAt, the Receiver)
// makes the GitRepository fetch within a test; the image automation runs
// often.
var testIntervals = fluxIntervals{git: 10 * time.Minute, imageRepository: automationInterval, automation: automationInterval}

func startImageFlux(t *testing.T, iv fluxIntervals) *imageFlux {
	t.Helper()
	env := kubeenv.Start(t, kubeenv.Options{Flux: true, ImageAutomation: true, Notification: true, SimulateRollouts: true})
	reg := regserver.InProcess(t, regserver.InProcessOptions{})
	gs := gitserver.StartHTTPBackend(t, "", "")
	f := &imageFlux{fluxSetup{env: env, reg: reg, gs: gs, image: reg.Host + "/acme/notes", gitopsURL: gs.RepoURL("gitops.git"), site: newSite(t)}}

	scaffold := t.TempDir()
	mustSucceed(t, notesctl(t, scaffold, nil, "", "manifests", "init", "--dir", ".", "--image", f.image, "--git-url", f.gitopsURL, "--receiver"))
	gitserver.SeedBareRepo(t, gs.RepoPath("gitops.git"), "main", scaffold)

	// A first image, so that the ImageRepository scans successfully from
	// the start (a failing scan backs off for longer than these tests wait).
	placeholder, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	placeholderRef, err := name.NewTag(f.image + ":placeholder")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(placeholderRef, placeholder); err != nil {
		t.Fatal(err)
	}

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: kubeenv.FluxNamespace, Name: "notes-receiver-token"},
		StringData: map[string]string{"token": receiverToken}}
	if err := env.Client.Create(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	// What a Flux bootstrap would install: every object of flux/notes.
	for _, file := range []string{"gitrepository.yaml", "sync.yaml", "imagerepository.yaml", "imagepolicy.yaml", "imageupdateautomation.yaml", "receiver.yaml"} {
		applyScaffold(t, env, filepath.Join(scaffold, "flux", "notes", file), func(u *unstructured.Unstructured) {
			switch u.GetKind() {
			case "GitRepository":
				_ = unstructured.SetNestedField(u.Object, iv.git.String(), "spec", "interval")
			case imagev1.ImageRepositoryKind:
				_ = unstructured.SetNestedField(u.Object, true, "spec", "insecure")
				_ = unstructured.SetNestedField(u.Object, iv.imageRepository.String(), "spec", "interval")
			case imageautov1.ImageUpdateAutomationKind:
				_ = unstructured.SetNestedField(u.Object, iv.automation.String(), "spec", "interval")
			}
		})
	}
	waitFor(t, 60*time.Second, "the scaffold applied", func() (bool, string) {
		ks := kustomization(t, env)
		ready := apimeta.FindStatusCondition(ks.Status.Conditions, meta.ReadyCondition)
		return ready != nil && ready.Status == "True" && ks.Status.LastAppliedRevision != "", describe(ks)
	})
	return f
}

// applyScaffold creates the objects of a scaffolded file after edit.
func applyScaffold(t *testing.T, env *kubeenv.Env, path string, edit func(*unstructured.Unstructured)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(string(data)), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			break
		}
		if len(u.Object) == 0 {
			continue
		}
		edit(u)
		if err := env.Client.Create(context.Background(), u); err != nil {
			t.Fatalf("create %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
}

func getObj(t *testing.T, env *kubeenv.Env, name string, obj client.Object) {
	t.Helper()
	if err := env.Client.Get(context.Background(), key(name), obj); err != nil {
		t.Fatal(err)
	}
}

func (f *imageFlux) gitopsHead(t *testing.T) string {
	return gitOut(t, f.gs.RepoPath("gitops.git"), "rev-parse", "main")
}

// waitPolicy waits until the ImagePolicy selects tag (and digest, if set).
func waitPolicy(t *testing.T, env *kubeenv.Env, policy, tag, digest string) *imagev1.ImagePolicy {
	t.Helper()
	var pol imagev1.ImagePolicy
	waitFor(t, 60*time.Second, "ImagePolicy "+policy+" to select "+tag, func() (bool, string) {
		getObj(t, env, policy, &pol)
		st := fmt.Sprintf("%+v conditions %+v", pol.Status.LatestRef, pol.Status.Conditions)
		return pol.Status.LatestRef != nil && pol.Status.LatestRef.Tag == tag && (digest == "" || pol.Status.LatestRef.Digest == digest), st
	})
	return &pol
}

func splitRef(t *testing.T, ref string) (repo, tag, digest string) {
	t.Helper()
	d, err := name.NewDigest(ref)
	if err != nil {
		t.Fatalf("image %q is not name:tag@digest: %v", ref, err)
	}
	rest, _, _ := strings.Cut(ref, "@")
	i := strings.LastIndex(rest, ":")
	return rest[:i], rest[i+1:], d.DigestStr()
}

// receiverURL waits for the scaffolded Receiver and returns its webhook.
func (f *imageFlux) receiverURL(t *testing.T) string {
	t.Helper()
	var rcv notificationv1.Receiver
	waitFor(t, 30*time.Second, "the Receiver ready", func() (bool, string) {
		getObj(t, f.env, "notes", &rcv)
		ready := apimeta.FindStatusCondition(rcv.Status.Conditions, meta.ReadyCondition)
		return ready != nil && ready.Status == "True" && rcv.Status.WebhookPath != "", fmt.Sprintf("%+v", rcv.Status)
	})
	return f.env.ReceiverURL + rcv.Status.WebhookPath
}

// TestFluxImageAutomation runs notesctl and Flux's image automation on one
// cluster, in the order a site lives through them.
func TestFluxImageAutomation(t *testing.T) {
	f := startImageFlux(t, testIntervals)
	ctx := context.Background()

	t.Run("policy picks only clean release builds", func(t *testing.T) {
		// A registry holding every kind of tag notesctl and CI push.
		repo := f.reg.Host + "/acme/tags"
		tags := map[string]string{
			"main-aaaaaaa-1700000000-hugo0.145.0":       "older clean release",
			"main-bbbbbbb-1700000500-hugo0.145.0":       "newest clean release",
			"main-bbbbbbb-1700000500-hugo0.145.0-dirty": "dirty, same commit",
			"main-ccccccc-1700000900-hugo0.145.0-dirty": "dirty, newer",
			"feature-x-ddddddd-1800000000-hugo0.145.0":  "other branch",
			"main-x-ddddddd-1800000001-hugo0.145.0":     "branch main-x",
			"mainline-ddddddd-1800000002-hugo0.145.0":   "branch mainline",
			"pr-12-eeeeeee-1900000000-hugo0.145.0":      "pull-request preview",
			"pr-12-main-eeeeeee-1900000001-hugo0.145.0": "preview of main",
			"main-fffffff-1900000002-hugo0.145.0-rc.1":  "suffixed",
			"latest": "moving tag",
		}
		digests := map[string]string{}
		for tag := range tags {
			img, err := random.Image(256, 1)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := name.NewTag(repo + ":" + tag)
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.Write(ref, img); err != nil {
				t.Fatal(err)
			}
			d, _ := img.Digest()
			digests[tag] = d.String()
		}
		ir := &imagev1.ImageRepository{
			ObjectMeta: metav1.ObjectMeta{Namespace: kubeenv.FluxNamespace, Name: "tags"},
			Spec:       imagev1.ImageRepositorySpec{Image: repo, Insecure: true, Interval: metav1.Duration{Duration: time.Minute}},
		}
		pol := &imagev1.ImagePolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: kubeenv.FluxNamespace, Name: "tags"},
			Spec: imagev1.ImagePolicySpec{
				ImageRepositoryRef:     meta.NamespacedObjectReference{Name: "tags"},
				FilterTags:             &imagev1.TagFilter{Pattern: manifests.TagPattern("main"), Extract: "$ts"},
				Policy:                 imagev1.ImagePolicyChoice{Numerical: &imagev1.NumericalPolicy{Order: "asc"}},
				DigestReflectionPolicy: imagev1.ReflectIfNotPresent,
			},
		}
		for _, obj := range []client.Object{ir, pol} {
			if err := f.env.Client.Create(ctx, obj); err != nil {
				t.Fatal(err)
			}
		}
		want := "main-bbbbbbb-1700000500-hugo0.145.0"
		got := waitPolicy(t, f.env, "tags", want, digests[want])
		getObj(t, f.env, "tags", ir)
		if ir.Status.LastScanResult == nil || ir.Status.LastScanResult.TagCount != len(tags) {
			t.Errorf("image-reflector-controller scanned %+v, want all %d tags", ir.Status.LastScanResult, len(tags))
		}
		if got.Status.LatestRef.Name != repo {
			t.Errorf("policy names the image %q, want %q as written", got.Status.LatestRef.Name, repo)
		}
	})

	var releaseCommit string
	t.Run("no Flux commit after a release", func(t *testing.T) {
		r := notesctl(t, f.site, nil, "", "release", "--image", f.image, "--base", "scratch", "--gitops", f.gitopsURL,
			"--wait", "--kubeconfig", f.env.Kubeconfig, "--timeout", "90s")
		mustSucceed(t, r)
		ref := imageLine.FindStringSubmatch(r.stdout)[1]
		releaseCommit = f.gitopsHead(t)
		_, tag, _ := splitRef(t, ref)
		pol := waitPolicy(t, f.env, "notes", tag, "")
		since := time.Now()
		// With the scaffold's digestReflectionPolicy, Flux writes exactly
		// notesctl's name:tag@digest (without it, name:tag, and commits).
		if got := pol.Status.LatestRef.String(); got != ref {
			t.Errorf("Flux would write %q, notesctl wrote %q", got, ref)
		}
		// The automation now sees the policy's ref; let it run several
		// times: it must find nothing to change.
		seen := map[string]bool{}
		var iua imageautov1.ImageUpdateAutomation
		waitFor(t, 20*automationInterval+30*time.Second, "three automation runs after the policy update", func() (bool, string) {
			getObj(t, f.env, "notes", &iua)
			// Run times have whole seconds: a run strictly after since
			// began after the policy held the release.
			if run := iua.Status.LastAutomationRunTime; run != nil && run.After(since) {
				seen[run.String()] = true
			}
			return len(seen) >= 3, fmt.Sprintf("runs %v, status %+v", seen, iua.Status)
		})
		if head := f.gitopsHead(t); head != releaseCommit {
			t.Errorf("image-automation-controller committed %s over notesctl's %s:\n%s", head, releaseCommit,
				gitOut(t, f.gs.RepoPath("gitops.git"), "log", "-p", "-1", head))
		}
		if iua.Status.LastPushCommit != "" {
			t.Errorf("image-automation-controller pushed %s", iua.Status.LastPushCommit)
		}
		if ready := apimeta.FindStatusCondition(iua.Status.Conditions, meta.ReadyCondition); ready == nil || ready.Status != metav1.ConditionTrue {
			t.Errorf("ImageUpdateAutomation not ready: %+v", iua.Status.Conditions)
		}
	})

	t.Run("flux-webhook through the real Receiver", func(t *testing.T) {
		url := f.receiverURL(t)

		// A wrong token is refused by the Receiver, and notesctl says so.
		editPage(t, f.site, 1)
		r := notesctl(t, f.site, []string{"NOTESCTL_FLUX_WEBHOOK_TOKEN=wrong"}, "", "release", "--image", f.image, "--base", "scratch",
			"--gitops", f.gitopsURL, "--flux-webhook", url)
		if r.code == 0 || !strings.Contains(r.stderr, "Flux receiver") {
			t.Errorf("a wrongly signed webhook was not reported: exit %d\n%s", r.code, r.stderr)
		}
		var repo sourcev1.GitRepository
		getObj(t, f.env, "notes", &repo)
		before := repo.Status.Artifact.Revision

		editPage(t, f.site, 2)
		r = notesctl(t, f.site, []string{"NOTESCTL_FLUX_WEBHOOK_TOKEN=" + receiverToken}, "", "release", "--image", f.image, "--base", "scratch",
			"--gitops", f.gitopsURL, "--flux-webhook", url)
		mustSucceed(t, r)
		commit := f.gitopsHead(t)
		// The GitRepository interval is 10m: only the Receiver makes it
		// fetch the commit now.
		waitFor(t, 30*time.Second, "the GitRepository to fetch "+commit, func() (bool, string) {
			getObj(t, f.env, "notes", &repo)
			if repo.Status.Artifact == nil {
				return false, "no artifact"
			}
			return repo.Status.Artifact.Revision == "main@sha1:"+commit, repo.Status.Artifact.Revision + " (before: " + before + ")"
		})
		if repo.Annotations[meta.ReconcileRequestAnnotation] == "" {
			t.Errorf("notification-controller did not annotate the GitRepository: %v", repo.Annotations)
		}
	})

	t.Run("Flux deploys a build on its own", func(t *testing.T) {
		editPage(t, f.site, 3)
		before := f.gitopsHead(t)
		r := notesctl(t, f.site, nil, "", "build", "--image", f.image, "--base", "scratch")
		mustSucceed(t, r)
		ref := strings.TrimSpace(r.stdout) // repo:tag@digest
		_, tag, digest := splitRef(t, ref)
		waitPolicy(t, f.env, "notes", tag, digest)
		// The automation may first commit an image the policy chose
		// before (its own interval): wait for the commit of this build.
		var head string
		var deploy []byte
		waitFor(t, 60*time.Second, "image-automation-controller to commit the build", func() (bool, string) {
			head = f.gitopsHead(t)
			if head == before {
				return false, "GitOps head " + head
			}
			clone := t.TempDir()
			gitserver.CloneWorktree(t, f.gs.RepoPath("gitops.git"), clone, "main")
			var err error
			if deploy, err = os.ReadFile(filepath.Join(clone, "apps", "notes", "deployment.yaml")); err != nil {
				t.Fatal(err)
			}
			return strings.Contains(string(deploy), "image: "+ref+" "), "GitOps head " + head + " does not deploy " + ref
		})
		var pol imagev1.ImagePolicy
		getObj(t, f.env, "notes", &pol)
		want := pol.Status.LatestRef.String()
		if want != ref {
			t.Errorf("Flux selected %s, notesctl built %s", want, ref)
		}
		if !strings.Contains(string(deploy), "image: "+want+" ") {
			t.Errorf("Flux's commit does not carry %s:\n%s", want, deploy)
		}
		// Poke Flux as the Receiver would; kustomize-controller applies it.
		now := time.Now().Format(time.RFC3339Nano)
		for _, obj := range []client.Object{&sourcev1.GitRepository{}, kustomization(t, f.env)} {
			getObj(t, f.env, "notes", obj)
			patch := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, meta.ReconcileRequestAnnotation, now)))
			if err := f.env.Client.Patch(ctx, obj, patch); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 60*time.Second, "the Deployment to run "+want, func() (bool, string) {
			got := deploymentImage(t, f.env)
			return got == want, got
		})
	})
}
