package kubeenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestStartServesAndStops starts a control plane in a subtest, uses it, and
// checks after the subtest that every process is gone.
func TestStartServesAndStops(t *testing.T) {
	requireTools(t, Options{})
	var env *Env
	var etcdData []string
	t.Run("serve", func(t *testing.T) {
		env = Start(t, Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()

		// The kubeconfig works for a plain client-go clientset.
		rc, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			t.Fatal(err)
		}
		v, err := cs.Discovery().ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		if v.GitVersion != "v1.35.4" {
			t.Errorf("server version %s, want v1.35.4", v.GitVersion)
		}

		// RBAC is on: a request without the token is not cluster-admin.
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, env.APIServerURL+"/api/v1/namespaces", nil)
		hc, err := newTLSClient(env.CACert)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous list of namespaces: %s, want 401 or 403", resp.Status)
		}

		env.CreateNamespace(t, "kubeenv-test")
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "kubeenv-test"}, Data: map[string]string{"k": "v"}}
		if err := env.Client.Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
		var got corev1.ConfigMap
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(cm), &got); err != nil || got.Data["k"] != "v" {
			t.Fatalf("read back ConfigMap: %v %v", err, got.Data)
		}

		// The Flux CRDs are installed with their OpenAPI schemas: a valid
		// GitRepository is stored, an invalid one rejected.
		good := &sourcev1.GitRepository{
			ObjectMeta: metav1.ObjectMeta{Name: "good", Namespace: "kubeenv-test"},
			Spec: sourcev1.GitRepositorySpec{
				URL:      "https://example.com/repo.git",
				Interval: metav1.Duration{Duration: time.Minute},
			},
		}
		if err := env.Client.Create(ctx, good); err != nil {
			t.Fatalf("create a valid GitRepository: %v", err)
		}
		bad := good.DeepCopy()
		bad.ResourceVersion = ""
		bad.Name = "bad"
		bad.Spec.URL = "ftp://example.com/repo.git" // the CRD allows http, https, ssh
		err = env.Client.Create(ctx, bad)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.url") {
			t.Errorf("create a GitRepository with an ftp URL: err = %v, want Invalid on spec.url", err)
		}

		for _, p := range env.procs {
			if p.name == "etcd" {
				for _, a := range p.cmd.Args {
					if d, ok := strings.CutPrefix(a, "--data-dir="); ok {
						etcdData = append(etcdData, d)
					}
				}
			}
		}
	})
	if env == nil || len(env.procs) < 2 {
		t.Fatal("environment did not start")
	}
	for _, p := range env.procs {
		if !p.exited() {
			t.Errorf("%s (pid %d) still running after the test's cleanup", p.name, p.cmd.Process.Pid)
			continue
		}
		if err := syscall.Kill(p.cmd.Process.Pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d): kill -0 = %v, want ESRCH", p.name, p.cmd.Process.Pid, err)
		}
	}
	for _, d := range etcdData {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("etcd data directory %s left behind (%v)", d, err)
		}
	}
}

func TestSimulateRollouts(t *testing.T) {
	env := Start(t, Options{SimulateRollouts: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	two := int32(2)
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: corev1.NamespaceDefault},
		Spec: appsv1.DeploymentSpec{
			Replicas: &two,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1"}}},
			},
		},
	}
	if err := env.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	waitRolledOut := func(generation int64) {
		t.Helper()
		var got appsv1.Deployment
		for {
			err := env.Client.Get(ctx, client.ObjectKeyFromObject(d), &got)
			if err == nil && got.Status.ObservedGeneration == generation && got.Status.AvailableReplicas == 2 && got.Status.UpdatedReplicas == 2 {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("Deployment not rolled out at generation %d; last seen: %v %+v", generation, err, got.Status)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitRolledOut(1)
	// A spec change is a new generation, rolled out again.
	var cur appsv1.Deployment
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(d), &cur); err != nil {
		t.Fatal(err)
	}
	cur.Spec.Template.Spec.Containers[0].Image = "nginx:2"
	if err := env.Client.Update(ctx, &cur); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(2)
}

func TestFluxControllersReconcile(t *testing.T) {
	env := Start(t, Options{Flux: true})
	if env.SourceControllerStorageURL == "" {
		t.Fatal("SourceControllerStorageURL not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// A GitRepository nobody serves: source-controller must notice and say so.
	repo := &sourcev1.GitRepository{
		ObjectMeta: metav1.ObjectMeta{Name: "nowhere", Namespace: FluxNamespace},
		Spec: sourcev1.GitRepositorySpec{
			URL:      "http://127.0.0.1:1/nowhere.git",
			Interval: metav1.Duration{Duration: time.Minute},
		},
	}
	if err := env.Client.Create(ctx, repo); err != nil {
		t.Fatal(err)
	}
	var got sourcev1.GitRepository
	for {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(repo), &got)
		if err == nil {
			if c := findCondition(got.Status.Conditions, meta.ReadyCondition); c != nil && c.Status == metav1.ConditionFalse && c.Reason == sourcev1.GitOperationFailedReason {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("source-controller did not report the failed clone; last seen: err=%v conditions=%+v", err, got.Status.Conditions)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if logs := env.Logs("kustomize-controller"); !strings.Contains(logs, `"Starting workers"`) {
		t.Errorf("kustomize-controller log has no Starting workers line:\n%s", logs)
	}
}

func findCondition(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}

func newTLSClient(caPEM []byte) (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no certificate in Env.CACert")
	}
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}, nil
}
