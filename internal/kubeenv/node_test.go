package kubeenv_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/notesctl/notesctl/internal/kubeenv"
)

// TestNode runs a Deployment and a Service on a real node: busybox's httpd
// from the node's own pause image, as uid 101 on a read-only root, probed
// by kubelet, reached through the Service's proxy; then a rollout to
// another command replaces the pods and the proxy follows.
func TestNode(t *testing.T) {
	if err := kubeenv.FindNodeTools(); err != nil {
		// StartNode skips or fails with the same message.
		t.Log(err)
	}
	env := kubeenv.Start(t, kubeenv.Options{})
	node := env.StartNode(t, kubeenv.NodeOptions{})
	ctx := context.Background()
	env.CreateNamespace(t, "web")
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptrTo[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken: ptrTo(false),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsUser: ptrTo[int64](101), RunAsGroup: ptrTo[int64](101), RunAsNonRoot: ptrTo(true),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:    "web",
						Image:   node.PauseImage,
						Command: []string{"/busybox", "sh", "-c", "mkdir -p /www && echo one > /www/index.html && exec /busybox httpd -f -p 8080 -h /www"},
						Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("http")}},
							PeriodSeconds: 1,
						},
						SecurityContext: &corev1.SecurityContext{
							ReadOnlyRootFilesystem:   ptrTo(true),
							AllowPrivilegeEscalation: ptrTo(false),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "www", MountPath: "/www"}},
					}},
					Volumes: []corev1.Volume{{Name: "www", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "web"},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}
	if err := env.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	proxy := node.ServiceProxy(t, "web", "web", "http")
	waitServes(t, env, proxy.Addr(), "one\n", 2, node)

	// A rollout: the pods are replaced and the proxy only reaches new ones.
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: "web", Name: "web"}, d); err != nil {
		t.Fatal(err)
	}
	c := &d.Spec.Template.Spec.Containers[0]
	c.Command[3] = strings.Replace(c.Command[3], "echo one", "echo two", 1)
	if err := env.Client.Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	waitServes(t, env, proxy.Addr(), "two\n", 2, node)

	cs, err := node.Containers()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range cs {
		if !c.Sandbox && c.Name == "web" {
			n++
		}
	}
	if n < 2 {
		t.Errorf("runc lists %d web containers, want at least 2: %+v", n, cs)
	}
}

// waitServes waits until the proxy answers want on every one of several
// requests and the Service has endpoints ready endpoints.
func waitServes(t *testing.T, env *kubeenv.Env, addr, want string, endpoints int, node *kubeenv.Node) {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(120 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok := true
		for range 4 {
			resp, err := hc.Get("http://" + addr + "/")
			if err != nil {
				last, ok = err.Error(), false
				break
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != want {
				last, ok = fmt.Sprintf("%s %q", resp.Status, body), false
				break
			}
		}
		if ok {
			eps, err := node.ServiceEndpoints(context.Background(), "web", "web", "http")
			if err == nil && len(eps) == endpoints {
				return
			}
			last = fmt.Sprintf("endpoints %v (%v)", eps, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var rs appsv1.ReplicaSetList
	_ = env.Client.List(context.Background(), &rs)
	var pods corev1.PodList
	_ = env.Client.List(context.Background(), &pods)
	var b strings.Builder
	for _, r := range rs.Items {
		fmt.Fprintf(&b, "\nReplicaSet %s: spec %d status %+v", r.Name, *r.Spec.Replicas, r.Status)
	}
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "\nPod %s node %q phase %s conditions %+v", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Conditions)
	}
	var d appsv1.Deployment
	_ = env.Client.Get(context.Background(), types.NamespacedName{Namespace: "web", Name: "web"}, &d)
	t.Fatalf("the Service does not serve %q: %s\nDeployment generation %d status %+v%s", want, last, d.Generation, d.Status, b.String())
}

func ptrTo[T any](v T) *T { return &v }
