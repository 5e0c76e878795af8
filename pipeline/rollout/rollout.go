// Package rollout follows a GitOps commit into the cluster: it asks Flux to
// reconcile now (reconcile.fluxcd.io/requestedAt on the GitRepository and
// the Kustomization), then waits until the Kustomization has applied the
// commit and the Deployment runs the new image. It is its own package so
// that only the commands that talk to a cluster link client-go.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// The resources the package reads. A dynamic client keeps the binary
// free of client-go's typed clients and informers (and controller-runtime's
// metrics): notesctl starts faster and smaller for the users who never wait.
var (
	kustomizationsGVR  = kustomizev1.GroupVersion.WithResource("kustomizations")
	gitRepositoriesGVR = sourcev1.GroupVersion.WithResource("gitrepositories")
	deploymentsGVR     = appsv1.SchemeGroupVersion.WithResource("deployments")
)

// Options say which cluster and which Flux objects to follow.
type Options struct {
	// Kubeconfig is a kubeconfig file; empty means $KUBECONFIG, then
	// ~/.kube/config, then the in-cluster service account.
	Kubeconfig string
	// KubeconfigData is a kubeconfig's content (e.g. from a CI secret); it
	// wins over Kubeconfig and is never written to disk.
	KubeconfigData []byte
	// Context is the kubeconfig context; empty means the current one.
	Context string
	// Namespace holds the Flux Kustomization; default "flux-system".
	Namespace string
	// Kustomization is the Flux Kustomization that applies the GitOps path;
	// default "notes".
	Kustomization string
	// Timeout bounds the whole wait; default 5 minutes.
	Timeout time.Duration
	// Poll is how often status is read; default 500ms.
	Poll time.Duration
}

func (o *Options) defaults() {
	if o.Namespace == "" {
		o.Namespace = "flux-system"
	}
	if o.Kustomization == "" {
		o.Kustomization = "notes"
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.Poll <= 0 {
		o.Poll = 500 * time.Millisecond
	}
}

// RESTConfig loads the cluster configuration as kubectl does.
func RESTConfig(kubeconfig, context string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err == nil {
		return cfg, nil
	}
	if kubeconfig == "" && context == "" {
		if in, ierr := rest.InClusterConfig(); ierr == nil {
			return in, nil
		}
	}
	where := kubeconfig
	if where == "" {
		where = "the default kubeconfig"
	}
	return nil, fmt.Errorf("cluster access: %s: %w", where, err)
}

// Client talks to one cluster.
type Client struct {
	dyn  dynamic.Interface
	opts Options
}

// get reads one object into out (a typed Flux or apps object).
func (c *Client) get(ctx context.Context, gvr schema.GroupVersionResource, key types.NamespacedName, out any) error {
	u, err := c.dyn.Resource(gvr).Namespace(key.Namespace).Get(ctx, key.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out)
}

// New connects to the cluster.
func New(opts Options) (*Client, error) {
	opts.defaults()
	var cfg *rest.Config
	var err error
	if len(opts.KubeconfigData) > 0 {
		cc, lerr := clientcmd.Load(opts.KubeconfigData)
		if lerr != nil {
			return nil, fmt.Errorf("cluster access: kubeconfig data: %w", lerr)
		}
		cfg, err = clientcmd.NewDefaultClientConfig(*cc, &clientcmd.ConfigOverrides{CurrentContext: opts.Context}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("cluster access: kubeconfig data: %w", err)
		}
	} else if cfg, err = RESTConfig(opts.Kubeconfig, opts.Context); err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster access: %w", err)
	}
	return &Client{dyn: dyn, opts: opts}, nil
}

// Target is what a release expects to see applied.
type Target struct {
	Branch string // GitOps branch
	Commit string // GitOps commit, full sha
	Image  string // the image reference written into the manifests
}

// Revision is how Flux names the commit: "<branch>@sha1:<sha>".
func (t Target) Revision() string { return t.Branch + "@sha1:" + t.Commit }

// Progress is one step of the wait, for the stage events.
type Progress func(msg string)

// Result is what was seen when the wait ended.
type Result struct {
	Requested   time.Time `json:"requestedAt"`
	Applied     string    `json:"lastAppliedRevision"`
	Deployments []string  `json:"deployments"`
	Note        string    `json:"note,omitempty"`
}

// FailedError is a Flux failure: the reason and message Flux reported.
type FailedError struct {
	Object  string
	Reason  string
	Message string
}

func (e *FailedError) Error() string {
	return fmt.Sprintf("Flux %s failed: %s: %s", e.Object, e.Reason, e.Message)
}

// TimeoutError says what was last seen when the wait gave up.
type TimeoutError struct {
	After    time.Duration
	LastSeen string
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("timed out after %s waiting for the rollout; last seen: %s", e.After, e.LastSeen)
}

// RequestReconcile sets reconcile.fluxcd.io/requestedAt on the Kustomization
// and the GitRepository it applies from, so Flux fetches and applies now
// instead of at its next interval.
func (c *Client) RequestReconcile(ctx context.Context) (time.Time, *kustomizev1.Kustomization, error) {
	now := time.Now()
	value := now.Format(time.RFC3339Nano)
	ks := &kustomizev1.Kustomization{}
	key := types.NamespacedName{Namespace: c.opts.Namespace, Name: c.opts.Kustomization}
	if err := c.get(ctx, kustomizationsGVR, key, ks); err != nil {
		return now, nil, fmt.Errorf("Flux Kustomization %s: %w", key, err)
	}
	src := ks.Spec.SourceRef
	if src.Kind != sourcev1.GitRepositoryKind {
		return now, nil, fmt.Errorf("Flux Kustomization %s applies from a %s, not a GitRepository", key, src.Kind)
	}
	srcNS := src.Namespace
	if srcNS == "" {
		srcNS = ks.Namespace
	}
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, meta.ReconcileRequestAnnotation, value)
	if _, err := c.dyn.Resource(gitRepositoriesGVR).Namespace(srcNS).Patch(ctx, src.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return now, nil, fmt.Errorf("Flux GitRepository %s/%s: request reconcile: %w", srcNS, src.Name, err)
	}
	if _, err := c.dyn.Resource(kustomizationsGVR).Namespace(key.Namespace).Patch(ctx, key.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return now, nil, fmt.Errorf("Flux Kustomization %s: request reconcile: %w", key, err)
	}
	return now, ks, nil
}

// Wait requests a reconcile and waits until the Kustomization has applied
// the target commit with Ready=True, then until every Deployment it applied
// that runs the image repository carries the new image and has rolled out
// as far as the cluster reports.
func (c *Client) Wait(ctx context.Context, target Target, progress Progress) (*Result, error) {
	if progress == nil {
		progress = func(string) {}
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	res := &Result{}
	requested, _, err := c.RequestReconcile(ctx)
	if err != nil {
		return nil, err
	}
	res.Requested = requested
	progress(fmt.Sprintf("requested reconcile of Kustomization %s/%s and its GitRepository", c.opts.Namespace, c.opts.Kustomization))

	lastSeen := "nothing yet"
	want := target.Revision()
	var ks *kustomizev1.Kustomization
	err = c.poll(ctx, &lastSeen, func() (bool, error) {
		ks = &kustomizev1.Kustomization{}
		if err := c.get(ctx, kustomizationsGVR, types.NamespacedName{Namespace: c.opts.Namespace, Name: c.opts.Kustomization}, ks); err != nil {
			return false, fmt.Errorf("Flux Kustomization %s/%s: %w", c.opts.Namespace, c.opts.Kustomization, err)
		}
		ready := apimeta.FindStatusCondition(ks.Status.Conditions, meta.ReadyCondition)
		lastSeen = describeKustomization(ks, ready)
		if stalled := apimeta.FindStatusCondition(ks.Status.Conditions, meta.StalledCondition); stalled != nil && stalled.Status == metav1.ConditionTrue {
			return false, &FailedError{Object: "Kustomization " + ks.Namespace + "/" + ks.Name, Reason: stalled.Reason, Message: stalled.Message}
		}
		// A failure only counts once Flux has tried our revision; an older
		// failure may be what this release fixes.
		if ready != nil && ready.Status == metav1.ConditionFalse && ks.Status.LastAttemptedRevision == want && ready.ObservedGeneration == ks.Generation && !isProgressing(ready.Reason) {
			return false, &FailedError{Object: "Kustomization " + ks.Namespace + "/" + ks.Name, Reason: ready.Reason, Message: ready.Message}
		}
		return ks.Status.LastAppliedRevision == want && ready != nil && ready.Status == metav1.ConditionTrue, nil
	})
	if err != nil {
		return nil, c.timeout(err, lastSeen)
	}
	res.Applied = ks.Status.LastAppliedRevision
	progress("Flux applied " + want)

	deployments := inventoryDeployments(ks)
	if len(deployments) == 0 {
		res.Note = "the Kustomization applied no Deployment"
		return res, nil
	}
	repo := imageRepository(target.Image)
	noStatus := false
	err = c.poll(ctx, &lastSeen, func() (bool, error) {
		done := true
		noStatus = false
		var seen []string
		for _, key := range deployments {
			d := &appsv1.Deployment{}
			if err := c.get(ctx, deploymentsGVR, key, d); err != nil {
				return false, fmt.Errorf("Deployment %s: %w", key, err)
			}
			runs, ok := runsImage(d, repo)
			if !ok {
				continue // a Deployment of something else
			}
			if runs != target.Image {
				done = false
				seen = append(seen, fmt.Sprintf("Deployment %s runs %s", key, runs))
				continue
			}
			state, complete, err := rolloutState(d)
			if err != nil {
				return false, fmt.Errorf("Deployment %s: %w", key, err)
			}
			if state == "" {
				noStatus = true
			}
			if !complete {
				done = false
			}
			seen = append(seen, fmt.Sprintf("Deployment %s: %s", key, orDefault(state, "spec updated, no controller reports status")))
		}
		if len(seen) > 0 {
			lastSeen = strings.Join(seen, "; ")
		}
		return done, nil
	})
	if err != nil {
		return nil, c.timeout(err, lastSeen)
	}
	for _, key := range deployments {
		res.Deployments = append(res.Deployments, key.String())
	}
	if noStatus {
		res.Note = "the Deployment carries the new image; no deployment controller reports rollout status in this cluster"
	}
	progress("Deployment runs " + target.Image + ": " + lastSeen)
	return res, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func isProgressing(reason string) bool {
	return reason == meta.ProgressingReason || reason == meta.DependencyNotReadyReason
}

func (c *Client) poll(ctx context.Context, lastSeen *string, check func() (bool, error)) error {
	t := time.NewTicker(c.opts.Poll)
	defer t.Stop()
	for {
		done, err := check()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (c *Client) timeout(err error, lastSeen string) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &TimeoutError{After: c.opts.Timeout, LastSeen: lastSeen}
	}
	return err
}

func describeKustomization(ks *kustomizev1.Kustomization, ready *metav1.Condition) string {
	s := fmt.Sprintf("Kustomization %s/%s lastAppliedRevision=%q", ks.Namespace, ks.Name, ks.Status.LastAppliedRevision)
	if ready != nil {
		s += fmt.Sprintf(" Ready=%s (%s: %s)", ready.Status, ready.Reason, ready.Message)
	}
	return s
}

// inventoryDeployments lists the Deployments the Kustomization applied,
// from its inventory ("<namespace>_<name>_apps_Deployment").
func inventoryDeployments(ks *kustomizev1.Kustomization) []types.NamespacedName {
	if ks.Status.Inventory == nil {
		return nil
	}
	var out []types.NamespacedName
	for _, e := range ks.Status.Inventory.Entries {
		parts := strings.Split(e.ID, "_")
		if len(parts) != 4 || parts[2] != "apps" || parts[3] != "Deployment" {
			continue
		}
		out = append(out, types.NamespacedName{Namespace: parts[0], Name: parts[1]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// imageRepository strips tag and digest from a reference.
func imageRepository(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i >= 0 && !strings.Contains(ref[i:], "/") {
		ref = ref[:i]
	}
	return ref
}

// runsImage returns the image of the first container (or init container)
// of the repository, if any.
func runsImage(d *appsv1.Deployment, repo string) (string, bool) {
	spec := d.Spec.Template.Spec
	for _, cs := range [][]corev1.Container{spec.Containers, spec.InitContainers} {
		for _, c := range cs {
			if imageRepository(c.Image) == repo {
				return c.Image, true
			}
		}
	}
	return "", false
}

// rolloutState reads the Deployment status the way kubectl rollout status
// does. With no deployment controller (observedGeneration 0) there is no
// status to wait for: the state is "" and the rollout counts as complete.
func rolloutState(d *appsv1.Deployment) (string, bool, error) {
	st := d.Status
	if st.ObservedGeneration == 0 && len(st.Conditions) == 0 {
		return "", true, nil
	}
	for _, c := range st.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return "", false, fmt.Errorf("rollout failed: %s", c.Message)
		}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	state := fmt.Sprintf("generation %d observed %d, %d/%d updated, %d available", d.Generation, st.ObservedGeneration, st.UpdatedReplicas, want, st.AvailableReplicas)
	complete := st.ObservedGeneration >= d.Generation && st.UpdatedReplicas >= want && st.AvailableReplicas >= want && st.Replicas == st.UpdatedReplicas
	return state, complete, nil
}

// ClusterStatus is what the cluster says about the notes site.
type ClusterStatus struct {
	Kustomization       string             `json:"kustomization"`
	LastAppliedRevision string             `json:"lastAppliedRevision"`
	Ready               string             `json:"ready"`
	Message             string             `json:"message,omitempty"`
	Deployments         []DeploymentStatus `json:"deployments"`
}

// DeploymentStatus is one Deployment the Kustomization applied.
type DeploymentStatus struct {
	Name    string `json:"name"`
	Image   string `json:"image"`
	Rollout string `json:"rollout"`
}

// Status reads the Kustomization and the Deployments it applied that run
// the image repository.
func (c *Client) Status(ctx context.Context, imageRepo string) (*ClusterStatus, error) {
	ks := &kustomizev1.Kustomization{}
	key := types.NamespacedName{Namespace: c.opts.Namespace, Name: c.opts.Kustomization}
	if err := c.get(ctx, kustomizationsGVR, key, ks); err != nil {
		return nil, fmt.Errorf("Flux Kustomization %s: %w", key, err)
	}
	st := &ClusterStatus{Kustomization: key.String(), LastAppliedRevision: ks.Status.LastAppliedRevision, Ready: "Unknown"}
	if ready := apimeta.FindStatusCondition(ks.Status.Conditions, meta.ReadyCondition); ready != nil {
		st.Ready = string(ready.Status)
		if ready.Status != metav1.ConditionTrue {
			st.Message = ready.Reason + ": " + ready.Message
		}
	}
	for _, dk := range inventoryDeployments(ks) {
		d := &appsv1.Deployment{}
		if err := c.get(ctx, deploymentsGVR, dk, d); err != nil {
			return nil, fmt.Errorf("Deployment %s: %w", dk, err)
		}
		img, ok := runsImage(d, imageRepository(imageRepo))
		if !ok {
			continue
		}
		state, _, err := rolloutState(d)
		if err != nil {
			state = err.Error()
		}
		st.Deployments = append(st.Deployments, DeploymentStatus{Name: dk.String(), Image: img, Rollout: orDefault(state, "no controller reports status")})
	}
	return st, nil
}
