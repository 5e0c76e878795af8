package kubeenv

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The Go side and the build script must agree on the default cache
// directory, or tests skip although the tools were built.
func TestVersionKeyMatchesBuildScript(t *testing.T) {
	script, err := os.ReadFile(filepath.Join("..", "..", "tools", "kube", "build.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^VERSION_KEY=(\S+)$`).FindSubmatch(script)
	if m == nil {
		t.Fatal("no VERSION_KEY= line in tools/kube/build.sh")
	}
	if got := string(m[1]); got != DefaultVersionKey {
		t.Errorf("tools/kube/build.sh VERSION_KEY=%s, kubeenv.DefaultVersionKey=%s", got, DefaultVersionKey)
	}
}

func TestFindToolsReportsWhatIsMissing(t *testing.T) {
	bin, crds := t.TempDir(), t.TempDir()
	t.Setenv(EnvTools, bin)
	t.Setenv(EnvCRDs, crds)
	if err := os.WriteFile(filepath.Join(bin, "etcd"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Present but not executable.
	if err := os.WriteFile(filepath.Join(bin, "kube-apiserver"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := FindTools(true)
	if err == nil {
		t.Fatal("FindTools succeeded with an incomplete tools directory")
	}
	msg := err.Error()
	for _, want := range []string{
		filepath.Join(bin, "kube-apiserver") + ": not an executable file",
		filepath.Join(bin, "source-controller") + ": no such file or directory",
		filepath.Join(bin, "kustomize-controller") + ": no such file or directory",
		"no CRD manifests (*.yaml) in " + crds,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, filepath.Join(bin, "etcd")+":") {
		t.Errorf("error blames etcd, which is present:\n%s", msg)
	}

	// Without Flux, the controllers are not needed.
	if err := os.Chmod(filepath.Join(bin, "kube-apiserver"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(crds, "x.yaml"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	tools, err := FindTools(false)
	if err != nil {
		t.Fatalf("FindTools(false): %v", err)
	}
	if tools.BinDir != bin || tools.CRDDir != crds {
		t.Errorf("FindTools = %+v, want the directories from %s and %s", tools, EnvTools, EnvCRDs)
	}
}

func TestFindToolsDefaultsToTheCache(t *testing.T) {
	root := t.TempDir()
	t.Setenv(EnvTools, "")
	t.Setenv(EnvCRDs, "")
	t.Setenv(EnvToolsCache, root)
	tools, err := FindTools(false)
	if err == nil {
		t.Fatal("FindTools succeeded on an empty cache")
	}
	want := filepath.Join(root, DefaultVersionKey)
	if tools.BinDir != filepath.Join(want, "bin") || tools.CRDDir != filepath.Join(want, "crds") {
		t.Errorf("FindTools looked in %+v, want %s/{bin,crds}", tools, want)
	}
}

const testCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, listKind: WidgetList, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
`

func TestReadCRDs(t *testing.T) {
	dir := t.TempDir()
	two := "---\n" + testCRD + "---\n" + strings.ReplaceAll(strings.ReplaceAll(testCRD, "widgets", "gadgets"), "Widget", "Gadget") + "---\n"
	if err := os.WriteFile(filepath.Join(dir, "b.yaml"), []byte(two), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.yml"), []byte(strings.ReplaceAll(testCRD, "widgets", "sprockets")), 0o644); err != nil {
		t.Fatal(err)
	}
	crds, err := ReadCRDs(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range crds {
		names = append(names, c.Name)
	}
	if got, want := strings.Join(names, ","), "sprockets.example.com,widgets.example.com,gadgets.example.com"; got != want {
		t.Errorf("ReadCRDs names = %s, want %s", got, want)
	}
	if crds[1].Spec.Names.Kind != "Widget" || crds[1].Spec.Versions[0].Schema == nil {
		t.Errorf("widgets CRD not decoded: %+v", crds[1].Spec)
	}

	if err := os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCRDs(dir); err == nil || !strings.Contains(err.Error(), "c.yaml: document 1 is a v1 ConfigMap") {
		t.Errorf("ReadCRDs with a ConfigMap: err = %v", err)
	}
}

// The CRDs the build script collected are the ones the tests install.
func TestReadCRDsFromTheCache(t *testing.T) {
	tools := requireTools(t, Options{})
	crds, err := ReadCRDs(tools.CRDDir)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, c := range crds {
		have[c.Name] = true
	}
	for _, want := range []string{
		"gitrepositories.source.toolkit.fluxcd.io",
		"ocirepositories.source.toolkit.fluxcd.io",
		"buckets.source.toolkit.fluxcd.io",
		"externalartifacts.source.toolkit.fluxcd.io",
		"kustomizations.kustomize.toolkit.fluxcd.io",
		"imagerepositories.image.toolkit.fluxcd.io",
		"imagepolicies.image.toolkit.fluxcd.io",
		"imageupdateautomations.image.toolkit.fluxcd.io",
		"receivers.notification.toolkit.fluxcd.io",
	} {
		if !have[want] {
			t.Errorf("CRD %s missing from %s", want, tools.CRDDir)
		}
	}
}

func TestRolledOutStatus(t *testing.T) {
	three := int32(3)
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Generation: 4}, Spec: appsv1.DeploymentSpec{Replicas: &three}}
	st := RolledOutStatus(d, metav1.Now())
	if st.ObservedGeneration != 4 || st.Replicas != 3 || st.UpdatedReplicas != 3 || st.ReadyReplicas != 3 || st.AvailableReplicas != 3 {
		t.Errorf("RolledOutStatus = %+v", st)
	}
	if !statusDone(st, RolledOutStatus(d, metav1.Now())) {
		t.Error("statusDone(rolled out) = false")
	}
	d.Generation = 5
	if statusDone(st, RolledOutStatus(d, metav1.Now())) {
		t.Error("statusDone ignores a new generation")
	}
	partial := st
	partial.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"}}
	if statusDone(partial, st) {
		t.Error("statusDone ignores a missing Progressing condition")
	}
	d.Spec.Replicas = nil
	if got := RolledOutStatus(d, metav1.Now()).Replicas; got != 1 {
		t.Errorf("default replicas = %d, want 1", got)
	}
}

func TestRemoveOrphans(t *testing.T) {
	dir := t.TempDir()
	// A pid that is not running: above the kernel's pid_max default range.
	const deadPID = 1<<22 + 12345
	mine := filepath.Join(dir, fmt.Sprintf("kubeenv-etcd-%d-1", os.Getpid()))
	dead := filepath.Join(dir, fmt.Sprintf("kubeenv-etcd-%d-2", deadPID))
	other := filepath.Join(dir, "unrelated-1-2")
	for _, d := range []string{mine, dead, other} {
		if err := os.MkdirAll(filepath.Join(d, "member"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	removeOrphans(dir, "kubeenv-etcd-")
	for _, c := range []struct {
		path string
		keep bool
	}{{mine, true}, {dead, false}, {other, true}} {
		_, err := os.Stat(c.path)
		if kept := err == nil; kept != c.keep {
			t.Errorf("%s: kept=%v, want %v", filepath.Base(c.path), kept, c.keep)
		}
	}
}
