package manifests_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	imagev1 "github.com/fluxcd/image-reflector-controller/api/v1"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/internal/kubeenv"
	"github.com/notesctl/notesctl/manifests"
	"github.com/notesctl/notesctl/manifests/gitops"
)

// kubeScaffoldCases are scaffolds applied to a real kube-apiserver. Their
// names and namespaces do not overlap, so they share one API server.
var kubeScaffoldCases = []struct {
	name string
	opts manifests.ScaffoldOptions
	// fluxNamespace is where the Flux objects go; Flux's installation (not
	// the scaffold) creates it.
	fluxNamespace string
}{
	{"receiver-and-ingress", manifests.ScaffoldOptions{
		Image:    "ghcr.io/acme/notes",
		GitURL:   "ssh://git@github.com/acme/gitops",
		Host:     "notes.example.com",
		Receiver: true,
	}, "flux-system"},
	{"every-option", manifests.ScaffoldOptions{
		Name:               "handbook",
		Namespace:          "docs",
		Image:              "registry.example.com:5000/team/handbook",
		InitialTag:         "release-0a1b2c3-1746598316-hugo0.145.0",
		Host:               "handbook.example.com",
		IngressClassName:   "nginx",
		Policy:             "flux-apps:handbook-release",
		Branch:             "release/2025",
		Receiver:           true,
		GitURL:             "https://git.example.com/team/gitops.git",
		GitBranch:          "production",
		GitSecretName:      "gitops-auth",
		RegistrySecretName: "registry-auth",
		Path:               "./clusters/prod/handbook",
	}, "flux-apps"},
}

// TestScaffoldAcceptedByKubeAPIServer creates every object a scaffold
// writes on a real kube-apiserver with the Flux CRDs installed, with strict
// field validation, and checks that what the server stored is what the
// files say.
func TestScaffoldAcceptedByKubeAPIServer(t *testing.T) {
	env := kubeenv.Start(t, kubeenv.Options{})
	for _, tc := range kubeScaffoldCases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			root := t.TempDir()
			if _, err := manifests.Scaffold(osfs.New(root), ".", tc.opts); err != nil {
				t.Fatal(err)
			}
			name := tc.opts.Name
			if name == "" {
				name = manifests.DefaultScaffoldName
			}
			appDir := tc.opts.Path
			if appDir == "" {
				appDir = "apps/" + name
			}
			objs := append(kustomizeObjects(t, root, appDir), kustomizeObjects(t, root, "flux/"+name)...)

			// Two Flux Kustomizations: the app's and the previews'.
			wantKinds := []string{"Deployment", "GitRepository", "ImagePolicy", "ImageRepository", "ImageUpdateAutomation",
				"Ingress", "Kustomization", "Kustomization", "Namespace", "Receiver", "Service"}
			if got := kindsOf(objs); !reflect.DeepEqual(got, wantKinds) {
				t.Fatalf("scaffold objects are %v, want %v", got, wantKinds)
			}

			env.CreateNamespace(t, tc.fluxNamespace)
			// Namespaces first, as kustomize and Flux order them.
			sort.SliceStable(objs, func(i, j int) bool {
				return objs[i].GetKind() == "Namespace" && objs[j].GetKind() != "Namespace"
			})
			for _, obj := range objs {
				submitted := obj.DeepCopy()
				if err := env.Client.Create(ctx, obj, client.FieldValidation(metav1.FieldValidationStrict), client.FieldOwner("notesctl-test")); err != nil {
					t.Fatalf("the API server rejected %s: %v", describe(submitted), err)
				}
				stored := &unstructured.Unstructured{}
				stored.SetGroupVersionKind(submitted.GroupVersionKind())
				if err := env.Client.Get(ctx, client.ObjectKeyFromObject(submitted), stored); err != nil {
					t.Fatalf("read back %s: %v", describe(submitted), err)
				}
				// Defaults may be added; nothing written may be dropped or changed.
				for _, field := range []string{"metadata", "spec"} {
					if _, ok := submitted.Object[field]; !ok {
						continue
					}
					if diff := subsetDiff(field, submitted.Object[field], stored.Object[field]); diff != "" {
						t.Errorf("%s: stored object differs from the file: %s", describe(submitted), diff)
					}
				}
			}

			// The stored objects mean what the scaffold intends.
			policyNS, policyName, _ := strings.Cut(defaultString(tc.opts.Policy, manifests.DefaultScaffoldPolicy), ":")
			var policy imagev1.ImagePolicy
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: policyNS, Name: policyName}, &policy); err != nil {
				t.Fatal(err)
			}
			branch := defaultString(tc.opts.Branch, manifests.DefaultSiteBranch)
			if policy.Spec.FilterTags == nil || policy.Spec.FilterTags.Pattern != manifests.TagPattern(branch) || policy.Spec.Policy.Numerical == nil {
				t.Errorf("stored ImagePolicy spec = %+v, want the numerical policy over %s", policy.Spec, manifests.TagPattern(branch))
			}
			ns := defaultString(tc.opts.Namespace, name)
			var dep appsv1.Deployment
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &dep); err != nil {
				t.Fatal(err)
			}
			wantImage := imageLine(t, filepath.Join(root, filepath.FromSlash(path.Clean(appDir)), "deployment.yaml"))
			if got := dep.Spec.Template.Spec.Containers[0].Image; got != wantImage {
				t.Errorf("stored Deployment image = %q, want the image line %q", got, wantImage)
			}
			var ks kustomizev1.Kustomization
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: policyNS, Name: name}, &ks); err != nil {
				t.Fatal(err)
			}
			if ks.Spec.SourceRef.Kind != sourcev1.GitRepositoryKind || ks.Spec.SourceRef.Name != name || path.Clean(ks.Spec.Path) != path.Clean(appDir) {
				t.Errorf("stored Kustomization applies %s %s path %s, want GitRepository %s path %s",
					ks.Spec.SourceRef.Kind, ks.Spec.SourceRef.Name, ks.Spec.Path, name, appDir)
			}
		})
	}

	// The test above can fail: the API server enforces the CRD schemas and
	// rejects unknown fields.
	t.Run("validation-is-enforced", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		root := t.TempDir()
		if _, err := manifests.Scaffold(osfs.New(root), ".", kubeScaffoldCases[0].opts); err != nil {
			t.Fatal(err)
		}
		var policy *unstructured.Unstructured
		for _, obj := range kustomizeObjects(t, root, "flux/notes") {
			if obj.GetKind() == "ImagePolicy" {
				policy = obj
			}
		}
		if policy == nil {
			t.Fatal("no ImagePolicy in the scaffold")
		}
		badOrder := policy.DeepCopy()
		badOrder.SetName("bad-order")
		if err := unstructured.SetNestedField(badOrder.Object, "sideways", "spec", "policy", "numerical", "order"); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Create(ctx, badOrder, client.FieldValidation(metav1.FieldValidationStrict)); !apierrors.IsInvalid(err) {
			t.Errorf("ImagePolicy with order: sideways: err = %v, want Invalid", err)
		}
		unknown := policy.DeepCopy()
		unknown.SetName("unknown-field")
		if err := unstructured.SetNestedField(unknown.Object, "x", "spec", "filterTags", "patern"); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Create(ctx, unknown, client.FieldValidation(metav1.FieldValidationStrict)); err == nil || !strings.Contains(err.Error(), "patern") {
			t.Errorf("ImagePolicy with an unknown field: err = %v, want a strict decoding error naming it", err)
		}
	})
}

// TestScaffoldDeploysWithFlux serves a GitOps repository seeded with a
// scaffold over HTTP, creates the scaffold's GitRepository and Kustomization
// on a control plane running the real Flux source-controller and
// kustomize-controller, and waits until Flux has applied the app.
func TestScaffoldDeploysWithFlux(t *testing.T) {
	env := kubeenv.Start(t, kubeenv.Options{Flux: true, SimulateRollouts: true})
	srv := gitserver.StartHTTPBackend(t, "", "")
	const repoName = "gitops.git"
	opts := manifests.ScaffoldOptions{
		Image:      "registry.example.com/acme/notes",
		InitialTag: "main-b9060af-1746598316-hugo0.145.0",
		Host:       "notes.example.com",
		Receiver:   true,
		GitURL:     srv.RepoURL(repoName),
	}
	root := t.TempDir()
	if _, err := manifests.Scaffold(osfs.New(root), ".", opts); err != nil {
		t.Fatal(err)
	}
	seed := gitserver.SeedBareRepo(t, srv.RepoPath(repoName), "main", root)
	wantRevision := "main@sha1:" + seed
	wantImage := imageLine(t, filepath.Join(root, "apps", "notes", "deployment.yaml"))

	// The Flux objects exactly as scaffolded.
	var repo sourcev1.GitRepository
	decodeFile(t, filepath.Join(root, "flux", "notes", "gitrepository.yaml"), &repo)
	var ks kustomizev1.Kustomization
	decodeFile(t, filepath.Join(root, "flux", "notes", "sync.yaml"), &ks)
	if repo.Spec.URL != srv.RepoURL(repoName) || ks.Spec.SourceRef.Name != repo.Name || ks.Namespace != repo.Namespace {
		t.Fatalf("scaffold does not wire the Kustomization to the served repository: GitRepository %s/%s %s, Kustomization source %s",
			repo.Namespace, repo.Name, repo.Spec.URL, ks.Spec.SourceRef.Name)
	}

	// Bounds the API calls and the git push; the waits for Flux have their own limits.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, obj := range []client.Object{&repo, &ks} {
		if err := env.Client.Create(ctx, obj, client.FieldValidation(metav1.FieldValidationStrict)); err != nil {
			t.Fatalf("create %s %s/%s: %v", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetNamespace(), obj.GetName(), err)
		}
	}

	began := time.Now()
	waitForFlux(t, env.Client, repo.Namespace, repo.Name, wantRevision, wantImage, 60*time.Second)
	t.Logf("Flux applied %s %s after the objects were created", wantRevision, since(began))

	// Everything of the app is there, and Flux tracks it.
	var got kustomizev1.Kustomization
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(&ks), &got); err != nil {
		t.Fatal(err)
	}
	var ids []string
	if got.Status.Inventory != nil {
		for _, e := range got.Status.Inventory.Entries {
			ids = append(ids, e.ID)
		}
	}
	sort.Strings(ids)
	wantIDs := []string{"_notes__Namespace", "notes_notes__Service", "notes_notes_apps_Deployment", "notes_notes_networking.k8s.io_Ingress"}
	if !reflect.DeepEqual(ids, wantIDs) {
		t.Errorf("Kustomization inventory = %v, want %v", ids, wantIDs)
	}
	for _, obj := range []client.Object{&corev1.Service{}, &networkingv1.Ingress{}} {
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "notes", Name: "notes"}, obj); err != nil {
			t.Errorf("get %T notes/notes: %v", obj, err)
		}
	}
	if t.Failed() {
		return
	}

	// A release: the setter update committed to the GitOps repository is
	// applied by Flux once the GitRepository is asked to reconcile.
	newTag := "main-c0ffee1-1746600000-hugo0.145.0"
	policy := manifests.Policy{Namespace: "flux-system", Name: "notes", Image: opts.Image, Tag: newTag}
	res, err := gitops.Commit(ctx, gitops.Options{URL: srv.RepoURL(repoName), Branch: "main"},
		func(fs billy.Filesystem, _ gitops.CommitInfo) (string, bool, error) {
			r, err := manifests.Update(fs, ".", []manifests.Policy{policy}, manifests.UpdateOptions{})
			if err != nil {
				return "", false, err
			}
			return "notes: release " + newTag, len(r.Changes) > 0, nil
		})
	if err != nil {
		t.Fatalf("commit the image update: %v", err)
	}
	if !res.Changed || !reflect.DeepEqual(res.Files, []string{"apps/notes/deployment.yaml"}) {
		t.Fatalf("image update commit = %+v, want a change to apps/notes/deployment.yaml", res)
	}
	releaseRevision := "main@sha1:" + res.Hash
	releaseImage := opts.Image + ":" + newTag
	var current sourcev1.GitRepository
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(&repo), &current); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(current.DeepCopy())
	annotations := current.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[meta.ReconcileRequestAnnotation] = time.Now().Format(time.RFC3339Nano)
	current.SetAnnotations(annotations)
	released := time.Now()
	if err := env.Client.Patch(ctx, &current, patch); err != nil {
		t.Fatalf("annotate the GitRepository: %v", err)
	}
	waitForFlux(t, env.Client, repo.Namespace, repo.Name, releaseRevision, releaseImage, 60*time.Second)
	t.Logf("Flux applied the release %s %s after the reconcile request", releaseRevision, since(released))
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// waitForFlux waits until Flux has applied revision with the Deployment at
// image (see fluxState), and fails the test with what it saw last when that
// takes longer than limit.
func waitForFlux(t *testing.T, c client.Client, ns, name, revision, image string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		done, state := fluxState(ctx, c, ns, name, revision, image)
		cancel()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Flux did not apply %s (Deployment image %s) within %s; last seen:\n%s", revision, image, limit, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fluxState reports whether Flux has applied wantRevision (Kustomization
// Ready, lastAppliedRevision, Deployment image) and describes what it sees.
func fluxState(ctx context.Context, c client.Client, ns, name, wantRevision, wantImage string) (bool, string) {
	var b strings.Builder
	var repo sourcev1.GitRepository
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &repo); err != nil {
		fmt.Fprintf(&b, "GitRepository: %v\n", err)
	} else {
		rev := "<no artifact>"
		if repo.Status.Artifact != nil {
			rev = repo.Status.Artifact.Revision
		}
		fmt.Fprintf(&b, "GitRepository: artifact %s; %s\n", rev, conditions(repo.Status.Conditions))
	}
	ready := false
	applied := ""
	var ks kustomizev1.Kustomization
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &ks); err != nil {
		fmt.Fprintf(&b, "Kustomization: %v\n", err)
	} else {
		applied = ks.Status.LastAppliedRevision
		for _, cond := range ks.Status.Conditions {
			if cond.Type == meta.ReadyCondition && cond.Status == metav1.ConditionTrue && cond.ObservedGeneration == ks.Generation {
				ready = true
			}
		}
		fmt.Fprintf(&b, "Kustomization: lastAppliedRevision %q, lastAttemptedRevision %q; %s\n",
			applied, ks.Status.LastAttemptedRevision, conditions(ks.Status.Conditions))
	}
	image := ""
	var dep appsv1.Deployment
	if err := c.Get(ctx, client.ObjectKey{Namespace: "notes", Name: "notes"}, &dep); err != nil {
		fmt.Fprintf(&b, "Deployment notes/notes: %v\n", err)
	} else {
		if len(dep.Spec.Template.Spec.Containers) > 0 {
			image = dep.Spec.Template.Spec.Containers[0].Image
		}
		fmt.Fprintf(&b, "Deployment notes/notes: image %q, observedGeneration %d/%d, available %d\n",
			image, dep.Status.ObservedGeneration, dep.Generation, dep.Status.AvailableReplicas)
	}
	return ready && applied == wantRevision && image == wantImage, b.String()
}

func conditions(conds []metav1.Condition) string {
	if len(conds) == 0 {
		return "no conditions"
	}
	var parts []string
	for _, c := range conds {
		parts = append(parts, fmt.Sprintf("%s=%s (%s: %s)", c.Type, c.Status, c.Reason, c.Message))
	}
	return strings.Join(parts, "; ")
}

// kustomizeObjects loads the objects of the kustomization in dir (relative
// to root) as `kustomize build` would for the scaffold's plain resource
// lists, and fails on files of dir the kustomization does not list.
func kustomizeObjects(t *testing.T, root, dir string) []*unstructured.Unstructured {
	t.Helper()
	abs := filepath.Join(root, filepath.FromSlash(path.Clean(dir)))
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	decodeFile(t, filepath.Join(abs, "kustomization.yaml"), &k)
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" || len(k.Resources) == 0 {
		t.Fatalf("%s/kustomization.yaml: apiVersion %q kind %q with %d resources", dir, k.APIVersion, k.Kind, len(k.Resources))
	}
	listed := map[string]bool{"kustomization.yaml": true}
	var objs []*unstructured.Unstructured
	for _, res := range k.Resources {
		listed[res] = true
		data, err := os.ReadFile(filepath.Join(abs, filepath.FromSlash(res)))
		if err != nil {
			t.Fatalf("%s/kustomization.yaml lists %s: %v", dir, res, err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var raw json.RawMessage
			if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s/%s: %v", dir, res, err)
			}
			if len(bytes.TrimSpace(raw)) == 0 || string(raw) == "null" {
				continue
			}
			// Through JSON, so that integers stay int64 as the API server
			// returns them.
			obj := &unstructured.Unstructured{}
			if err := obj.UnmarshalJSON(raw); err != nil {
				t.Fatalf("%s/%s: %v", dir, res, err)
			}
			objs = append(objs, obj)
		}
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !listed[e.Name()] {
			t.Errorf("%s/%s is not listed in %s/kustomization.yaml", dir, e.Name(), dir)
		}
	}
	return objs
}

func kindsOf(objs []*unstructured.Unstructured) []string {
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetKind())
	}
	sort.Strings(kinds)
	return kinds
}

func describe(o *unstructured.Unstructured) string {
	if o.GetNamespace() == "" {
		return fmt.Sprintf("%s %s (%s)", o.GetKind(), o.GetName(), o.GetAPIVersion())
	}
	return fmt.Sprintf("%s %s/%s (%s)", o.GetKind(), o.GetNamespace(), o.GetName(), o.GetAPIVersion())
}

// subsetDiff describes the first place where want is not contained in got
// (maps: every key of want, recursively; lists: same length, element-wise),
// or returns "".
func subsetDiff(at string, want, got any) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: stored %T, file has a map", at, got)
		}
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			gv, ok := g[k]
			if !ok {
				return fmt.Sprintf("%s.%s: missing from the stored object", at, k)
			}
			if d := subsetDiff(at+"."+k, w[k], gv); d != "" {
				return d
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("%s: stored %v, file has %v", at, got, want)
		}
		for i := range w {
			if d := subsetDiff(fmt.Sprintf("%s[%d]", at, i), w[i], g[i]); d != "" {
				return d
			}
		}
		return ""
	default:
		if !reflect.DeepEqual(want, got) {
			return fmt.Sprintf("%s: stored %v (%T), file has %v (%T)", at, got, got, want, want)
		}
		return ""
	}
}

// imageLineRE finds the value of the image line that carries the setter marker.
var imageLineRE = regexp.MustCompile(`(?m)^\s*(?:- )?image: (\S+) # \{"\$imagepolicy": "[^"]+"\}$`)

// imageLine returns the image reference on the marked image line of file.
func imageLine(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m := imageLineRE.FindAllSubmatch(data, -1)
	if len(m) != 1 {
		t.Fatalf("%s: %d image lines with a setter marker, want 1", file, len(m))
	}
	return string(m[0][1])
}

// decodeFile decodes the YAML file into obj, strictly.
func decodeFile(t *testing.T, file string, obj any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, obj); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if o, ok := obj.(runtime.Object); ok && o.GetObjectKind().GroupVersionKind().Kind == "" {
		t.Fatalf("%s: no kind", file)
	}
}

func defaultString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
