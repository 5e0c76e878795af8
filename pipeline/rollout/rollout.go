// Package rollout follows a GitOps commit into the cluster: it asks Flux to
// reconcile now (reconcile.fluxcd.io/requestedAt on the GitRepository and
// the Kustomization), then waits the way flux and kubectl rollout status do:
// until the Kustomization has applied a revision that contains the commit
// and the Deployments it applied are rolled out as kstatus computes it. It
// is its own package so that only the commands that talk to a cluster link
// client-go.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/notesctl/notesctl/registry"
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
	// Contains reports whether a GitOps commit (full sha) is Commit or one
	// of its descendants, from the GitOps history: a revision Flux applied
	// that contains the release commit counts as applied (Flux's own
	// image-update commit, a concurrent release). Nil: only Commit itself
	// counts.
	Contains func(ctx context.Context, commit string) (bool, error)
	// Namespace, when set, limits the wait to the Deployments in it: a
	// preview's own namespace, in a Kustomization that applies every open
	// preview, each with its own tag of the same repository. Empty: every
	// Deployment of the image repository counts.
	Namespace string
}

// Revision is how Flux names the commit on a branch: "<branch>@sha1:<sha>".
func (t Target) Revision() string { return t.Branch + "@sha1:" + t.Commit }

// RevisionCommit reads the commit out of any revision string Flux writes:
// "main@sha1:<sha>", "refs/heads/main@sha1:<sha>", "sha1:<sha>",
// "<tag>@sha256:<sha>" for SHA-256 repositories, and the pre-v2 "main/<sha>".
// It returns "" when rev names no commit.
func RevisionCommit(rev string) string {
	if i := strings.LastIndex(rev, "@"); i >= 0 {
		rev = rev[i+1:]
	}
	if algo, hex, ok := strings.Cut(rev, ":"); ok {
		if algo != "sha1" && algo != "sha256" {
			return ""
		}
		rev = hex
	} else if i := strings.LastIndex(rev, "/"); i >= 0 {
		rev = rev[i+1:]
	}
	rev = strings.ToLower(rev)
	if (len(rev) != 40 && len(rev) != 64) || strings.Trim(rev, "0123456789abcdef") != "" {
		return ""
	}
	return rev
}

// Progress is one step of the wait, for the stage events.
type Progress func(msg string)

// Result is what was seen when the wait ended.
type Result struct {
	Requested   time.Time `json:"requestedAt"`
	Applied     string    `json:"lastAppliedRevision"`
	Deployments []string  `json:"deployments"`
	Note        string    `json:"note,omitempty"`
}

// FailedError is a Flux or rollout failure: the reason and message reported.
type FailedError struct {
	Object  string
	Reason  string
	Message string
}

func (e *FailedError) Error() string {
	if strings.HasPrefix(e.Object, "Deployment ") {
		return fmt.Sprintf("%s failed: %s: %s", e.Object, e.Reason, e.Message)
	}
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

// transient reports whether an apiserver error may go away by itself, as
// kubectl and flux retry them: timeouts, throttling, 5xx, dropped
// connections. NotFound, Forbidden, Unauthorized and invalid requests are
// answers, not hiccups.
func transient(err error) bool {
	if err == nil {
		return false
	}
	switch {
	case apierrors.IsServerTimeout(err), apierrors.IsTimeout(err), apierrors.IsTooManyRequests(err),
		apierrors.IsInternalError(err), apierrors.IsServiceUnavailable(err), apierrors.IsUnexpectedServerError(err),
		apierrors.IsConflict(err):
		return true
	case utilnet.IsConnectionRefused(err), utilnet.IsConnectionReset(err), utilnet.IsProbableEOF(err):
		return true
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Code >= 500 {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout() && !errors.Is(err, context.DeadlineExceeded)
}

// retryTransient calls fn until it succeeds, fails for good, or ctx ends;
// transient errors are retried every poll.
func (c *Client) retryTransient(ctx context.Context, what string, lastSeen *string, fn func() error) error {
	for {
		err := fn()
		if err == nil || !transient(err) {
			return err
		}
		*lastSeen = fmt.Sprintf("%s: %v (retrying)", what, err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.opts.Poll):
		}
	}
}

// RequestReconcile sets reconcile.fluxcd.io/requestedAt on the Kustomization
// and the GitRepository it applies from, so Flux fetches and applies now
// instead of at its next interval.
func (c *Client) RequestReconcile(ctx context.Context) (time.Time, *kustomizev1.Kustomization, error) {
	lastSeen := ""
	return c.requestReconcile(ctx, &lastSeen)
}

func (c *Client) requestReconcile(ctx context.Context, lastSeen *string) (time.Time, *kustomizev1.Kustomization, error) {
	now := time.Now()
	value := now.Format(time.RFC3339Nano)
	ks := &kustomizev1.Kustomization{}
	key := types.NamespacedName{Namespace: c.opts.Namespace, Name: c.opts.Kustomization}
	if err := c.retryTransient(ctx, "Flux Kustomization "+key.String(), lastSeen, func() error {
		return c.get(ctx, kustomizationsGVR, key, ks)
	}); err != nil {
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
	if err := c.retryTransient(ctx, "Flux GitRepository "+srcNS+"/"+src.Name, lastSeen, func() error {
		_, err := c.dyn.Resource(gitRepositoriesGVR).Namespace(srcNS).Patch(ctx, src.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	}); err != nil {
		return now, nil, fmt.Errorf("Flux GitRepository %s/%s: request reconcile: %w", srcNS, src.Name, err)
	}
	if err := c.retryTransient(ctx, "Flux Kustomization "+key.String(), lastSeen, func() error {
		_, err := c.dyn.Resource(kustomizationsGVR).Namespace(key.Namespace).Patch(ctx, key.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	}); err != nil {
		return now, nil, fmt.Errorf("Flux Kustomization %s: request reconcile: %w", key, err)
	}
	return now, ks, nil
}

// containment answers, once per commit, whether a commit Flux reports
// contains the target commit.
type containment struct {
	target Target
	known  map[string]bool
}

// contains reports whether revision names a commit that is the target
// commit or descends from it. An error (the history could not be read) is
// asked again next time.
func (h *containment) contains(ctx context.Context, revision string) (bool, error) {
	sha := RevisionCommit(revision)
	if sha == "" {
		return false, nil
	}
	if sha == strings.ToLower(h.target.Commit) {
		return true, nil
	}
	if h.target.Contains == nil {
		return false, nil
	}
	if v, ok := h.known[sha]; ok {
		return v, nil
	}
	v, err := h.target.Contains(ctx, sha)
	if err != nil {
		return false, fmt.Errorf("is %s a descendant of the release commit %s: %w", shortSHA(sha), shortSHA(h.target.Commit), err)
	}
	if h.known == nil {
		h.known = map[string]bool{}
	}
	h.known[sha] = v
	return v, nil
}

func shortSHA(s string) string {
	if len(s) > 7 {
		return s[:7]
	}
	return s
}

// ksVerdict is what one look at the Kustomization says.
type ksVerdict int

const (
	ksWaiting ksVerdict = iota
	ksApplied
	ksFailed
)

// judgeKustomization reads a Kustomization the way flux and kstatus do:
// only status for the current generation counts (a Ready=False or Stalled
// left from an earlier generation is stale), a failure only counts once
// Flux attempted a revision that contains the release (an older failure may
// be what the release fixes), and applied means Ready=True for the current
// generation with a lastAppliedRevision that contains the release commit.
func judgeKustomization(ks *kustomizev1.Kustomization, contains func(revision string) bool) (ksVerdict, *FailedError) {
	current := func(c *metav1.Condition) bool {
		if c == nil {
			return false
		}
		if c.ObservedGeneration != 0 {
			return c.ObservedGeneration == ks.Generation
		}
		return ks.Status.ObservedGeneration == ks.Generation
	}
	object := "Kustomization " + ks.Namespace + "/" + ks.Name
	ready := apimeta.FindStatusCondition(ks.Status.Conditions, meta.ReadyCondition)
	if ks.Status.ObservedGeneration == ks.Generation && current(ready) && ready.Status == metav1.ConditionTrue &&
		contains(ks.Status.LastAppliedRevision) {
		return ksApplied, nil
	}
	attempted := ks.Status.LastAttemptedRevision != "" && contains(ks.Status.LastAttemptedRevision)
	if !attempted {
		return ksWaiting, nil
	}
	// Reconciling=True means an attempt is under way, unless its reason is
	// ProgressingWithRetry: kustomize-controller's mark for "the last
	// attempt failed, retrying at the next interval".
	if reconciling := apimeta.FindStatusCondition(ks.Status.Conditions, meta.ReconcilingCondition); current(reconciling) &&
		reconciling.Status == metav1.ConditionTrue && reconciling.Reason != meta.ProgressingWithRetryReason {
		return ksWaiting, nil
	}
	if stalled := apimeta.FindStatusCondition(ks.Status.Conditions, meta.StalledCondition); current(stalled) && stalled.Status == metav1.ConditionTrue {
		return ksFailed, &FailedError{Object: object, Reason: stalled.Reason, Message: stalled.Message}
	}
	if current(ready) && ready.Status == metav1.ConditionFalse && !isProgressing(ready.Reason) {
		return ksFailed, &FailedError{Object: object, Reason: ready.Reason, Message: ready.Message}
	}
	return ksWaiting, nil
}

// Wait requests a reconcile and waits until the Kustomization has applied
// a revision that contains the target commit, then until every Deployment
// it applied that runs the image repository carries the image and is
// rolled out as kstatus sees it (Current). Transient apiserver errors are
// retried until the timeout.
func (c *Client) Wait(ctx context.Context, target Target, progress Progress) (*Result, error) {
	if progress == nil {
		progress = func(string) {}
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	res := &Result{}
	lastSeen := "nothing yet"
	requested, _, err := c.requestReconcile(ctx, &lastSeen)
	if err != nil {
		return nil, c.timeout(err, lastSeen)
	}
	res.Requested = requested
	progress(fmt.Sprintf("requested reconcile of Kustomization %s/%s and its GitRepository", c.opts.Namespace, c.opts.Kustomization))

	history := &containment{target: target}
	key := types.NamespacedName{Namespace: c.opts.Namespace, Name: c.opts.Kustomization}
	var ks *kustomizev1.Kustomization
	err = c.poll(ctx, &lastSeen, func() (bool, error) {
		ks = &kustomizev1.Kustomization{}
		if err := c.get(ctx, kustomizationsGVR, key, ks); err != nil {
			return false, fmt.Errorf("Flux Kustomization %s: %w", key, err)
		}
		ready := apimeta.FindStatusCondition(ks.Status.Conditions, meta.ReadyCondition)
		lastSeen = describeKustomization(ks, ready)
		var historyErr error
		verdict, failed := judgeKustomization(ks, func(rev string) bool {
			ok, err := history.contains(ctx, rev)
			if err != nil && historyErr == nil {
				historyErr = err
			}
			return ok
		})
		if historyErr != nil {
			lastSeen += "; " + historyErr.Error()
		}
		switch verdict {
		case ksFailed:
			return false, failed
		case ksApplied:
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return nil, c.timeout(err, lastSeen)
	}
	res.Applied = ks.Status.LastAppliedRevision
	exact := RevisionCommit(res.Applied) == strings.ToLower(target.Commit)
	if exact {
		progress("Flux applied " + res.Applied)
	} else {
		progress("Flux applied " + res.Applied + ", which contains " + shortSHA(target.Commit))
	}

	deployments := inventoryDeployments(ks, target.Namespace)
	if len(deployments) == 0 {
		res.Note = "the Kustomization applied no Deployment"
		if target.Namespace != "" {
			res.Note += " in namespace " + target.Namespace
		}
		return res, nil
	}
	repo := imageRepository(target.Image)
	err = c.poll(ctx, &lastSeen, func() (bool, error) {
		done := true
		var seen []string
		for _, key := range deployments {
			u, err := c.dyn.Resource(deploymentsGVR).Namespace(key.Namespace).Get(ctx, key.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				done = false
				seen = append(seen, fmt.Sprintf("Deployment %s: not found", key))
				continue
			}
			if err != nil {
				return false, fmt.Errorf("Deployment %s: %w", key, err)
			}
			st, runs, ok, err := deploymentState(u, repo)
			if err != nil {
				return false, fmt.Errorf("Deployment %s: %w", key, err)
			}
			if !ok {
				continue // a Deployment of something else
			}
			// A later commit may carry a later image of the repository;
			// then that is what rolls out.
			if exact && runs != target.Image {
				done = false
				seen = append(seen, fmt.Sprintf("Deployment %s runs %s", key, runs))
				continue
			}
			switch st.Status {
			case kstatus.CurrentStatus:
			case kstatus.FailedStatus:
				return false, &FailedError{Object: "Deployment " + key.String(), Reason: failedReason(st), Message: st.Message}
			default:
				done = false
			}
			seen = append(seen, fmt.Sprintf("Deployment %s runs %s: %s: %s", key, runs, st.Status, st.Message))
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
	progress("rolled out: " + lastSeen)
	return res, nil
}

// deploymentState computes a Deployment's rollout status with kstatus and
// returns the image of the repository it runs (ok false: it runs none).
func deploymentState(u *unstructured.Unstructured, repo string) (*kstatus.Result, string, bool, error) {
	d := &appsv1.Deployment{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, d); err != nil {
		return nil, "", false, err
	}
	runs, ok := runsImage(d, repo)
	if !ok {
		return nil, "", false, nil
	}
	st, err := kstatus.Compute(u)
	if err != nil {
		return nil, "", false, err
	}
	return st, runs, true, nil
}

func failedReason(st *kstatus.Result) string {
	for _, c := range st.Conditions {
		if c.Reason != "" {
			return c.Reason
		}
	}
	return string(st.Status)
}

func isProgressing(reason string) bool {
	return reason == meta.ProgressingReason || reason == meta.DependencyNotReadyReason || reason == "ArtifactFailed"
}

// poll calls check every Poll until it is done, fails for good, or ctx
// ends. Transient apiserver errors are noted in lastSeen and retried.
func (c *Client) poll(ctx context.Context, lastSeen *string, check func() (bool, error)) error {
	t := time.NewTicker(c.opts.Poll)
	defer t.Stop()
	for {
		done, err := check()
		if err != nil && !transient(err) {
			return err
		}
		if err != nil {
			*lastSeen = err.Error() + " (retrying)"
		} else if done {
			return nil
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
	if ks.Status.LastAttemptedRevision != "" && ks.Status.LastAttemptedRevision != ks.Status.LastAppliedRevision {
		s += fmt.Sprintf(" lastAttemptedRevision=%q", ks.Status.LastAttemptedRevision)
	}
	if ready != nil {
		s += fmt.Sprintf(" Ready=%s (%s: %s)", ready.Status, ready.Reason, ready.Message)
	}
	if ks.Status.ObservedGeneration != ks.Generation {
		s += fmt.Sprintf(" (generation %d not yet observed)", ks.Generation)
	}
	return s
}

// inventoryDeployments lists the Deployments the Kustomization applied,
// from its inventory ("<namespace>_<name>_apps_Deployment").
func inventoryDeployments(ks *kustomizev1.Kustomization, namespace string) []types.NamespacedName {
	if ks.Status.Inventory == nil {
		return nil
	}
	var out []types.NamespacedName
	for _, e := range ks.Status.Inventory.Entries {
		parts := strings.Split(e.ID, "_")
		if len(parts) != 4 || parts[2] != "apps" || parts[3] != "Deployment" {
			continue
		}
		if namespace != "" && parts[0] != namespace {
			continue
		}
		out = append(out, types.NamespacedName{Namespace: parts[0], Name: parts[1]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// imageRepository strips tag and digest from a reference, keeping the
// repository as written (registry.ParseRef). A string that is no image
// reference is returned as it is: it names no repository to match.
func imageRepository(ref string) string {
	r, err := registry.ParseRef(ref)
	if err != nil {
		return ref
	}
	return r.Repository
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
	for _, dk := range inventoryDeployments(ks, "") {
		u, err := c.dyn.Resource(deploymentsGVR).Namespace(dk.Namespace).Get(ctx, dk.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("Deployment %s: %w", dk, err)
		}
		ds, img, ok, err := deploymentState(u, imageRepository(imageRepo))
		if err != nil {
			return nil, fmt.Errorf("Deployment %s: %w", dk, err)
		}
		if !ok {
			continue
		}
		st.Deployments = append(st.Deployments, DeploymentStatus{Name: dk.String(), Image: img, Rollout: string(ds.Status) + ": " + ds.Message})
	}
	return st, nil
}
