package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"
)

const (
	commit     = "0123456789abcdef0123456789abcdef01234567"
	descendant = "89abcdef0123456789abcdef0123456789abcdef"
	older      = "fedcba9876543210fedcba9876543210fedcba98"
	image      = "registry.example/notes:main-0123456-1746598316-hugo0.145.0@sha256:" + "aa"
	laterImage = "registry.example/notes:main-89abcde-1746599999-hugo0.145.0"
)

func TestRevisionCommit(t *testing.T) {
	sha256 := strings.Repeat("ab", 32)
	tests := []struct{ rev, want string }{
		{"main@sha1:" + commit, commit},
		{"refs/heads/main@sha1:" + commit, commit},
		{"sha1:" + commit, commit},
		{"main@sha1:" + strings.ToUpper(commit), commit},
		{"v1.0.0@sha256:" + sha256, sha256},
		{"main/" + commit, commit},
		{commit, commit},
		{"refs/heads/feature@x/y@sha1:" + commit, commit},
		{"main@sha1:" + commit[:7], ""},
		{"main@md5:" + commit, ""},
		{"main@sha1:" + commit + "z", ""},
		{"sha256:" + strings.Repeat("a", 40) + "digest", ""},
		{"", ""},
		{"main", ""},
	}
	for _, tt := range tests {
		if got := RevisionCommit(tt.rev); got != tt.want {
			t.Errorf("RevisionCommit(%q) = %q, want %q", tt.rev, got, tt.want)
		}
	}
}

// ks builds a Kustomization status for the tests.
type ksState struct {
	generation, observed int64
	applied, attempted   string
	conds                []metav1.Condition
}

func cond(typ string, status metav1.ConditionStatus, reason string, gen int64) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: typ + " " + reason, ObservedGeneration: gen}
}

func (s ksState) object() *kustomizev1.Kustomization {
	ks := &kustomizev1.Kustomization{
		TypeMeta:   metav1.TypeMeta{APIVersion: kustomizev1.GroupVersion.String(), Kind: kustomizev1.KustomizationKind},
		ObjectMeta: metav1.ObjectMeta{Namespace: "flux-system", Name: "notes", Generation: s.generation},
		Spec: kustomizev1.KustomizationSpec{
			SourceRef: kustomizev1.CrossNamespaceSourceReference{Kind: "GitRepository", Name: "notes"},
		},
	}
	ks.Status.ObservedGeneration = s.observed
	ks.Status.LastAppliedRevision = s.applied
	ks.Status.LastAttemptedRevision = s.attempted
	ks.Status.Conditions = s.conds
	ks.Status.Inventory = &kustomizev1.ResourceInventory{Entries: []kustomizev1.ResourceRef{
		{ID: "notes_notes_apps_Deployment", Version: "v1"},
		{ID: "notes_notes__Service", Version: "v1"},
	}}
	return ks
}

func main1(sha string) string { return "main@sha1:" + sha }

func TestJudgeKustomization(t *testing.T) {
	contains := func(rev string) bool {
		sha := RevisionCommit(rev)
		return sha == commit || sha == descendant
	}
	readyTrue := func(gen int64) metav1.Condition {
		return cond(meta.ReadyCondition, metav1.ConditionTrue, meta.ReconciliationSucceededReason, gen)
	}
	tests := []struct {
		name   string
		state  ksState
		want   ksVerdict
		reason string
	}{
		{"applied, branch revision", ksState{2, 2, main1(commit), main1(commit), []metav1.Condition{readyTrue(2)}}, ksApplied, ""},
		{"applied, ref.name revision", ksState{2, 2, "refs/heads/main@sha1:" + commit, "", []metav1.Condition{readyTrue(2)}}, ksApplied, ""},
		{"applied, bare sha1 revision", ksState{2, 2, "sha1:" + commit, "", []metav1.Condition{readyTrue(2)}}, ksApplied, ""},
		{"applied, a descendant", ksState{2, 2, main1(descendant), main1(descendant), []metav1.Condition{readyTrue(2)}}, ksApplied, ""},
		{"applied, condition without observedGeneration", ksState{2, 2, main1(commit), "", []metav1.Condition{readyTrue(0)}}, ksApplied, ""},
		{"older revision ready", ksState{2, 2, main1(older), main1(older), []metav1.Condition{readyTrue(2)}}, ksWaiting, ""},
		{"no status yet", ksState{1, 0, "", "", nil}, ksWaiting, ""},
		{"ready, generation not observed", ksState{3, 2, main1(commit), main1(commit), []metav1.Condition{readyTrue(2)}}, ksWaiting, ""},
		{"ready condition from an earlier generation", ksState{3, 3, main1(commit), main1(commit), []metav1.Condition{readyTrue(2)}}, ksWaiting, ""},
		{"ready unknown", ksState{2, 2, main1(older), main1(commit), []metav1.Condition{cond(meta.ReadyCondition, metav1.ConditionUnknown, meta.ProgressingReason, 2)}}, ksWaiting, ""},
		{"failed on the release", ksState{2, 2, main1(older), main1(commit), []metav1.Condition{cond(meta.ReadyCondition, metav1.ConditionFalse, "BuildFailed", 2)}}, ksFailed, "BuildFailed"},
		{"failed on a descendant", ksState{2, 2, main1(older), main1(descendant), []metav1.Condition{cond(meta.ReadyCondition, metav1.ConditionFalse, "HealthCheckFailed", 2)}}, ksFailed, "HealthCheckFailed"},
		{"failure of an older revision", ksState{2, 2, main1(older), main1(older), []metav1.Condition{cond(meta.ReadyCondition, metav1.ConditionFalse, "BuildFailed", 2)}}, ksWaiting, ""},
		{"failure from an earlier generation", ksState{3, 3, main1(older), main1(commit), []metav1.Condition{cond(meta.ReadyCondition, metav1.ConditionFalse, "BuildFailed", 2)}}, ksWaiting, ""},
		{"failure, generation not observed", ksState{3, 2, main1(older), main1(commit), []metav1.Condition{cond(meta.ReadyCondition, metav1.ConditionFalse, "BuildFailed", 0)}}, ksWaiting, ""},
		{"progressing on the release", ksState{2, 2, main1(older), main1(commit), []metav1.Condition{cond(meta.ReadyCondition, metav1.ConditionFalse, meta.ProgressingReason, 2)}}, ksWaiting, ""},
		// kustomize-controller's status after a failed attempt (v1.9.6).
		{"failed, retrying at the next interval", ksState{2, 2, main1(older), main1(commit), []metav1.Condition{
			cond(meta.ReconcilingCondition, metav1.ConditionTrue, meta.ProgressingWithRetryReason, 2),
			cond(meta.ReadyCondition, metav1.ConditionFalse, meta.ReconciliationFailedReason, 2)}}, ksFailed, meta.ReconciliationFailedReason},
		{"a new attempt under way after a failure", ksState{2, 2, main1(older), main1(commit), []metav1.Condition{
			cond(meta.ReconcilingCondition, metav1.ConditionTrue, meta.ProgressingReason, 2),
			cond(meta.ReadyCondition, metav1.ConditionFalse, meta.ReconciliationFailedReason, 2)}}, ksWaiting, ""},
		{"stalled on the release", ksState{2, 2, main1(older), main1(commit), []metav1.Condition{
			cond(meta.StalledCondition, metav1.ConditionTrue, meta.InvalidPathReason, 2),
			cond(meta.ReadyCondition, metav1.ConditionFalse, meta.InvalidPathReason, 2)}}, ksFailed, meta.InvalidPathReason},
		{"stalled from an earlier generation", ksState{3, 3, main1(older), main1(commit), []metav1.Condition{
			cond(meta.StalledCondition, metav1.ConditionTrue, meta.InvalidPathReason, 2)}}, ksWaiting, ""},
		{"stalled on an older revision", ksState{2, 2, main1(older), main1(older), []metav1.Condition{
			cond(meta.StalledCondition, metav1.ConditionTrue, meta.InvalidPathReason, 2)}}, ksWaiting, ""},
		{"applied wins over a stale stalled", ksState{3, 3, main1(commit), main1(commit), []metav1.Condition{
			cond(meta.StalledCondition, metav1.ConditionTrue, meta.InvalidPathReason, 2), readyTrue(3)}}, ksApplied, ""},
		{"unparseable revision", ksState{2, 2, "main@sha1:zz", "", []metav1.Condition{readyTrue(2)}}, ksWaiting, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, failed := judgeKustomization(tt.state.object(), contains)
			if got != tt.want {
				t.Fatalf("verdict %d, want %d (failure %v)", got, tt.want, failed)
			}
			if (failed != nil) != (tt.reason != "") || (failed != nil && failed.Reason != tt.reason) {
				t.Fatalf("failure %v, want reason %q", failed, tt.reason)
			}
		})
	}
}

// depState is a Deployment for the tests.
type depState struct {
	image                string
	generation, observed int64
	replicas, updated    int32
	available            int32
	conds                []appsv1.DeploymentCondition
}

func (s depState) object() *appsv1.Deployment {
	one := int32(1)
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "notes", Name: "notes", Generation: s.generation},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: s.image}}}},
		},
		Status: appsv1.DeploymentStatus{
			ObservedGeneration: s.observed, Replicas: s.replicas, UpdatedReplicas: s.updated,
			ReadyReplicas: s.available, AvailableReplicas: s.available, Conditions: s.conds,
		},
	}
}

var (
	available  = appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"}
	progressed = appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable"}
	deadline   = appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded", Message: "ReplicaSet notes-abc has timed out progressing."}
)

func rolledOut(img string, gen int64) depState {
	return depState{img, gen, gen, 1, 1, 1, []appsv1.DeploymentCondition{available, progressed}}
}

// step is what one GET returns: an object or an error.
type step struct {
	obj runtime.Object
	err error
}

// fakeCluster serves sequences of Kustomization and Deployment states,
// one per GET, repeating the last.
type fakeCluster struct {
	mu          sync.Mutex
	ks, deps    []step
	ksN, depN   int
	patches     int
	patchErrs   []error
	containsLog []string
}

func next(steps []step, n *int) step {
	s := steps[min(*n, len(steps)-1)]
	*n++
	return s
}

func toUnstructured(t *testing.T, obj runtime.Object) *unstructured.Unstructured {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}

func (f *fakeCluster) client(t *testing.T, timeout time.Duration) *Client {
	scheme := runtime.NewScheme()
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{
		kustomizationsGVR: "KustomizationList", gitRepositoriesGVR: "GitRepositoryList", deploymentsGVR: "DeploymentList",
	})
	dyn.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		switch {
		case a.GetVerb() == "patch":
			f.patches++
			if len(f.patchErrs) > 0 {
				err := f.patchErrs[0]
				f.patchErrs = f.patchErrs[1:]
				return true, nil, err
			}
			return true, &unstructured.Unstructured{Object: map[string]any{}}, nil
		case a.GetVerb() == "get" && a.GetResource() == kustomizationsGVR:
			s := next(f.ks, &f.ksN)
			if s.err != nil {
				return true, nil, s.err
			}
			return true, toUnstructured(t, s.obj), nil
		case a.GetVerb() == "get" && a.GetResource() == deploymentsGVR:
			s := next(f.deps, &f.depN)
			if s.err != nil {
				return true, nil, s.err
			}
			return true, toUnstructured(t, s.obj), nil
		}
		return true, nil, fmt.Errorf("unexpected %s %s", a.GetVerb(), a.GetResource())
	})
	return &Client{dyn: dyn, opts: Options{Namespace: "flux-system", Kustomization: "notes", Timeout: timeout, Poll: time.Millisecond}}
}

func ksStep(s ksState) step   { return step{obj: s.object()} }
func depStep(s depState) step { return step{obj: s.object()} }
func errStep(err error) step  { return step{err: err} }

var (
	gr          = schema.GroupResource{Group: "kustomize.toolkit.fluxcd.io", Resource: "kustomizations"}
	unavailable = apierrors.NewServiceUnavailable("etcd leader changed")
	throttled   = apierrors.NewTooManyRequests("slow down", 1)
	srvTimeout  = apierrors.NewServerTimeout(gr, "get", 1)
	refused     = &netOpError{syscall.ECONNREFUSED}
	forbidden   = apierrors.NewForbidden(gr, "notes", errors.New("no access"))
)

// netOpError is a dropped connection as client-go sees one.
type netOpError struct{ errno syscall.Errno }

func (e *netOpError) Error() string { return "dial tcp 127.0.0.1:6443: " + e.errno.Error() }
func (e *netOpError) Unwrap() error { return e.errno }

func TestWait(t *testing.T) {
	readyAt := func(rev string, gen int64) ksState {
		return ksState{gen, gen, rev, rev, []metav1.Condition{cond(meta.ReadyCondition, metav1.ConditionTrue, meta.ReconciliationSucceededReason, gen)}}
	}
	pending := ksState{1, 1, main1(older), main1(older), []metav1.Condition{cond(meta.ReadyCondition, metav1.ConditionTrue, meta.ReconciliationSucceededReason, 1)}}
	tests := []struct {
		name      string
		ks, deps  []step
		patchErrs []error
		contains  map[string]bool // nil: no history
		timeout   time.Duration
		wantErr   string // substring; "" = success
		wantType  any
		wantApply string
		wantAsked []string
	}{
		{
			name:      "applied and rolled out",
			ks:        []step{ksStep(pending), ksStep(pending), ksStep(readyAt(main1(commit), 1))},
			deps:      []step{depStep(rolledOut(image, 2))},
			wantApply: main1(commit),
		},
		{
			name:      "ref.name revision",
			ks:        []step{ksStep(readyAt("refs/heads/main@sha1:"+commit, 1))},
			deps:      []step{depStep(rolledOut(image, 2))},
			wantApply: "refs/heads/main@sha1:" + commit,
		},
		{
			name:      "descendant revision with a later image",
			ks:        []step{ksStep(pending), ksStep(pending), ksStep(pending), ksStep(pending), ksStep(readyAt(main1(descendant), 1))},
			deps:      []step{depStep(rolledOut(laterImage, 3))},
			contains:  map[string]bool{descendant: true, older: false},
			wantApply: main1(descendant),
			wantAsked: []string{older, descendant},
		},
		{
			name:     "descendant without history is not enough",
			ks:       []step{ksStep(readyAt(main1(descendant), 1))},
			deps:     []step{depStep(rolledOut(image, 2))},
			timeout:  50 * time.Millisecond,
			wantType: &TimeoutError{},
			wantErr:  "lastAppliedRevision=\"main@sha1:" + descendant,
		},
		{
			name:      "unrelated later commit is not ours",
			ks:        []step{ksStep(readyAt(main1(descendant), 1))},
			deps:      []step{depStep(rolledOut(image, 2))},
			contains:  map[string]bool{descendant: false},
			timeout:   50 * time.Millisecond,
			wantType:  &TimeoutError{},
			wantAsked: []string{descendant},
		},
		{
			name: "transient errors are retried",
			ks: []step{errStep(unavailable), ksStep(pending), errStep(throttled), errStep(srvTimeout),
				errStep(refused), ksStep(readyAt(main1(commit), 1))},
			deps:      []step{errStep(unavailable), depStep(rolledOut(image, 2))},
			patchErrs: []error{refused, unavailable},
			wantApply: main1(commit),
		},
		{
			name:    "forbidden is final",
			ks:      []step{ksStep(pending), errStep(forbidden)},
			wantErr: "forbidden",
		},
		{
			name:     "transient errors until the timeout",
			ks:       []step{ksStep(pending), errStep(unavailable)},
			timeout:  50 * time.Millisecond,
			wantType: &TimeoutError{},
			wantErr:  "etcd leader changed (retrying)",
		},
		{
			name: "stale failure then applied",
			ks: []step{
				ksStep(ksState{2, 2, main1(older), main1(commit), []metav1.Condition{cond(meta.ReadyCondition, metav1.ConditionFalse, "BuildFailed", 1)}}),
				ksStep(readyAt(main1(commit), 2)),
			},
			deps:      []step{depStep(rolledOut(image, 2))},
			wantApply: main1(commit),
		},
		{
			name:     "failure on the release",
			ks:       []step{ksStep(pending), ksStep(ksState{1, 1, main1(older), main1(commit), []metav1.Condition{cond(meta.ReadyCondition, metav1.ConditionFalse, "BuildFailed", 1)}})},
			wantType: &FailedError{},
			wantErr:  "BuildFailed",
		},
		{
			name: "brand-new Deployment waits for its controller",
			ks:   []step{ksStep(readyAt(main1(commit), 1))},
			deps: []step{
				depStep(depState{image: image, generation: 1}),
				depStep(depState{image, 1, 1, 1, 0, 0, nil}),
				depStep(rolledOut(image, 1)),
			},
			wantApply: main1(commit),
		},
		{
			name:     "brand-new Deployment never rolled out",
			ks:       []step{ksStep(readyAt(main1(commit), 1))},
			deps:     []step{depStep(depState{image: image, generation: 1})},
			timeout:  50 * time.Millisecond,
			wantType: &TimeoutError{},
			wantErr:  "InProgress",
		},
		{
			name:      "old image then new image",
			ks:        []step{ksStep(readyAt(main1(commit), 1))},
			deps:      []step{depStep(rolledOut(laterImage, 1)), depStep(depState{image, 2, 1, 1, 1, 1, []appsv1.DeploymentCondition{available, progressed}}), depStep(rolledOut(image, 2))},
			wantApply: main1(commit),
		},
		{
			name: "stale progress deadline is ignored",
			ks:   []step{ksStep(readyAt(main1(commit), 1))},
			deps: []step{
				depStep(depState{image, 3, 2, 1, 0, 0, []appsv1.DeploymentCondition{deadline}}),
				depStep(rolledOut(image, 3)),
			},
			wantApply: main1(commit),
		},
		{
			name:     "progress deadline of the new generation",
			ks:       []step{ksStep(readyAt(main1(commit), 1))},
			deps:     []step{depStep(depState{image, 3, 3, 2, 1, 0, []appsv1.DeploymentCondition{deadline}})},
			wantType: &FailedError{},
			wantErr:  "ProgressDeadlineExceeded",
		},
		{
			name:      "deleted Deployment is waited for",
			ks:        []step{ksStep(readyAt(main1(commit), 1))},
			deps:      []step{errStep(apierrors.NewNotFound(schema.GroupResource{Group: "apps", Resource: "deployments"}, "notes")), depStep(rolledOut(image, 1))},
			wantApply: main1(commit),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeCluster{ks: tt.ks, deps: tt.deps, patchErrs: tt.patchErrs}
			if f.deps == nil {
				f.deps = []step{errStep(errors.New("no Deployment expected"))}
			}
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			c := f.client(t, timeout)
			target := Target{Branch: "main", Commit: commit, Image: image}
			if tt.contains != nil {
				target.Contains = func(_ context.Context, sha string) (bool, error) {
					f.mu.Lock()
					defer f.mu.Unlock()
					f.containsLog = append(f.containsLog, sha)
					v, ok := tt.contains[sha]
					if !ok {
						return false, fmt.Errorf("unknown commit %s", sha)
					}
					return v, nil
				}
			}
			res, err := c.Wait(context.Background(), target, nil)
			if tt.wantErr == "" && tt.wantType == nil {
				if err != nil {
					t.Fatalf("Wait: %v", err)
				}
				if res.Applied != tt.wantApply {
					t.Errorf("applied %q, want %q", res.Applied, tt.wantApply)
				}
				if len(res.Deployments) != 1 || res.Deployments[0] != "notes/notes" {
					t.Errorf("deployments %v", res.Deployments)
				}
			} else {
				if err == nil {
					t.Fatalf("Wait succeeded (%+v), want an error", res)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not contain %q", err, tt.wantErr)
				}
				switch tt.wantType.(type) {
				case *TimeoutError:
					var te *TimeoutError
					if !errors.As(err, &te) {
						t.Errorf("error %T %v, want a TimeoutError", err, err)
					}
				case *FailedError:
					var fe *FailedError
					if !errors.As(err, &fe) {
						t.Errorf("error %T %v, want a FailedError", err, err)
					}
				}
			}
			if tt.wantAsked != nil && strings.Join(f.containsLog, ",") != strings.Join(tt.wantAsked, ",") {
				t.Errorf("history asked about %v, want %v (once per commit)", f.containsLog, tt.wantAsked)
			}
			if f.patches < 2 {
				t.Errorf("%d reconcile patches, want the GitRepository and the Kustomization", f.patches)
			}
		})
	}
}

func TestTransient(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{unavailable, true}, {throttled, true}, {srvTimeout, true}, {refused, true},
		{apierrors.NewInternalError(errors.New("boom")), true},
		{&netOpError{syscall.ECONNRESET}, true},
		{fmt.Errorf("get: %w", refused), true},
		{forbidden, false},
		{apierrors.NewUnauthorized("who"), false},
		{apierrors.NewNotFound(gr, "notes"), false},
		{apierrors.NewBadRequest("bad"), false},
		{context.DeadlineExceeded, false},
		{errors.New("something"), false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := transient(tt.err); got != tt.want {
			t.Errorf("transient(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestImageRepository: the repository part of a reference, spelled as
// written, for every reference form a Deployment or a release carries.
func TestImageRepository(t *testing.T) {
	for _, tc := range []struct{ ref, want string }{
		{"registry.example/notes:main-0123456-1746598316-hugo0.145.0", "registry.example/notes"},
		{"registry.example/notes:tag@sha256:" + strings.Repeat("a", 64), "registry.example/notes"},
		{"registry.example/notes@sha256:" + strings.Repeat("a", 64), "registry.example/notes"},
		{"registry.example:5000/acme/notes:1.0", "registry.example:5000/acme/notes"},
		{"registry.example:5000/acme/notes", "registry.example:5000/acme/notes"},
		{"127.0.0.1:5000/notes:v1", "127.0.0.1:5000/notes"},
		{"docker.io/acme/notes:v1", "docker.io/acme/notes"}, // not index.docker.io
		{"nginx:1.27", "nginx"},
		{"nginx", "nginx"},
		{"not a reference", "not a reference"},
	} {
		if got := imageRepository(tc.ref); got != tc.want {
			t.Errorf("imageRepository(%q) = %q, want %q", tc.ref, got, tc.want)
		}
	}
}

// TestInventoryDeployments: a preview's wait looks only at the Deployments
// in its own namespace; the previews Kustomization applies every open
// preview, each running its own tag of the same repository.
func TestInventoryDeployments(t *testing.T) {
	ks := &kustomizev1.Kustomization{Status: kustomizev1.KustomizationStatus{Inventory: &kustomizev1.ResourceInventory{Entries: []kustomizev1.ResourceRef{
		{ID: "notes-pr-7_notes-pr-7_apps_Deployment", Version: "v1"},
		{ID: "notes-pr-12_notes-pr-12_apps_Deployment", Version: "v1"},
		{ID: "notes-pr-12_notes-pr-12__Service", Version: "v1"},
		{ID: "_notes-pr-12__Namespace", Version: "v1"},
	}}}}
	tests := []struct {
		namespace string
		want      string
	}{
		{"", "notes-pr-12/notes-pr-12 notes-pr-7/notes-pr-7"},
		{"notes-pr-12", "notes-pr-12/notes-pr-12"},
		{"notes-pr-3", ""},
	}
	for _, tt := range tests {
		var got []string
		for _, d := range inventoryDeployments(ks, tt.namespace) {
			got = append(got, d.String())
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("namespace %q: %v, want %q", tt.namespace, got, tt.want)
		}
	}
}
