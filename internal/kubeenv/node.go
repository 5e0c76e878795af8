package kubeenv

import (
	"context"
	"debug/elf"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/notesctl/notesctl/internal/testenv"
)

// A real node (Options.Node, Env.StartNode): kubelet v1.35.4 built by
// tools/kube/build.sh from the same wrapper module as kube-apiserver, with
// Debian's containerd 1.6 and runc as its runtime, the pods on a CNI bridge;
// kube-scheduler places the pods and kube-controller-manager runs the
// deployment, replicaset, serviceaccount, endpointslice and node-lifecycle
// controllers. A
// Deployment's pods really run, their probes really pass or fail, and a
// Service's endpoints are real.
//
// The node lives in a network namespace the test makes (kubelet,
// containerd, the CNI bridge cni0 with the node's address NodeIP, the pods'
// interfaces): nothing touches the host's interfaces. The host's loopback
// servers it needs (the API server, the pod images' registries) are
// forwarded into the namespace at the same 127.0.0.1 addresses; the test
// reaches pods through Node.Dial and Node.ServiceProxy.

// Binaries of a node: these three come from tools/kube/build.sh.
const (
	binKubelet           = "kubelet"
	binScheduler         = "kube-scheduler"
	binControllerManager = "kube-controller-manager"
)

// NodeInstall is how to get the node's Debian packages.
const NodeInstall = "apt-get install -y containerd runc containernetworking-plugins busybox-static util-linux iproute2"

// NodeName is the name the node registers under.
const NodeName = "notesctl-node"

// NodeOptions configures a node.
type NodeOptions struct {
	// Registries the pods' images are pulled from.
	Registries []NodeRegistry
}

// Node is a running node.
type Node struct {
	// Name is the Node object's name (NodeName).
	Name string
	// IP is the node's address inside its network namespace (NodeIP).
	IP string
	// PauseImage is the sandbox image in the node's own registry (a static
	// busybox: pods may run it too, e.g. `/busybox httpd`).
	PauseImage string

	env *Env
	// client also knows discovery/v1 (EndpointSlices).
	client client.Client
	ns     *netNS
	ctrd   *containerd
	tools  nodeTools
}

// nodeTools are the paths of what a node runs.
type nodeTools struct {
	kubelet, scheduler, controllerManager string
	containerd, nsenter, ip, busybox      string
}

// FindNodeTools locates what a node needs (kubelet, kube-scheduler and
// kube-controller-manager beside kube-apiserver; containerd, its runc shim,
// runc, the CNI bridge, host-local and loopback plugins, a static busybox,
// nsenter and ip on this machine) and says what is missing.
func FindNodeTools() error {
	_, err := findNodeTools()
	return err
}

func findNodeTools() (nodeTools, error) {
	var nt nodeTools
	tools, err := findTools([]string{binEtcd, binAPIServer, binKubelet, binScheduler, binControllerManager})
	var problems []string
	if err != nil {
		problems = append(problems, err.Error()+" (build them with `"+BuildCommand+"`)")
	}
	nt.kubelet, nt.scheduler, nt.controllerManager = tools.Path(binKubelet), tools.Path(binScheduler), tools.Path(binControllerManager)
	look := func(name string) string {
		p, err := exec.LookPath(name)
		if err != nil {
			problems = append(problems, name+" not found on PATH")
		}
		return p
	}
	nt.containerd = look("containerd")
	look("containerd-shim-runc-v2")
	look("runc")
	nt.nsenter = look("nsenter")
	nt.ip = look("ip")
	for _, plugin := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, plugin)); err != nil {
			problems = append(problems, "CNI plugin "+filepath.Join(cniBinDir, plugin)+" missing")
		}
	}
	nt.busybox = "/bin/busybox"
	if err := checkStatic(nt.busybox); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return nt, fmt.Errorf("a node cannot start: %s (%s)", strings.Join(problems, "; "), NodeInstall)
	}
	return nt, nil
}

// checkStatic checks that path is a statically linked executable (the
// pause image holds it alone).
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("the pause image's busybox: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: the pause image needs busybox-static", path)
		}
	}
	return nil
}

// StartNode starts a node against the environment's API server (see the
// comment above) and waits until it is Ready. Everything is stopped when
// the test ends: kubelet, the scheduler and controller manager, the pods'
// containers and containerd's shims (by their IDs and PIDs), containerd;
// then what they mounted is unmounted and the namespace removed.
func (e *Env) StartNode(t testing.TB, opts NodeOptions) *Node {
	t.Helper()
	nt, err := findNodeTools()
	if err != nil {
		testenv.Missing(t, "kubeenv: %v", err)
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "kubeenv: a node runs containers and makes network namespaces: run the test as root")
	}
	began := time.Now()
	n := &Node{Name: NodeName, IP: NodeIP, env: e, tools: nt}
	scheme := Scheme()
	utilruntime.Must(discoveryv1.AddToScheme(scheme))
	if n.client, err = client.New(e.RESTConfig, client.Options{Scheme: scheme}); err != nil {
		t.Fatalf("kubeenv: node: %v", err)
	}
	dir := filepath.Join(e.dir, "node")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-registered first: the namespace goes last.
	ns, err := newNetNS(filepath.Join(dir, "netns"))
	if err != nil {
		t.Fatalf("kubeenv: node: %v", err)
	}
	n.ns = ns
	t.Cleanup(func() {
		if err := ns.remove(); err != nil {
			t.Errorf("kubeenv: node: %v", err)
		}
	})
	if err := n.setUpNetwork(); err != nil {
		t.Fatalf("kubeenv: node: %v", err)
	}
	// The API server and the registries, at the same addresses inside.
	forwards := []string{strings.TrimPrefix(e.APIServerURL, "https://")}
	for _, r := range opts.Registries {
		forwards = append(forwards, r.Host)
	}
	for _, addr := range forwards {
		p, err := n.forwardIn(addr)
		if err != nil {
			t.Fatalf("kubeenv: node: forward %s into the node's namespace: %v", addr, err)
		}
		t.Cleanup(p.close)
	}
	pause, err := startPauseRegistry(ns, nt.busybox)
	if err != nil {
		t.Fatalf("kubeenv: node: %v", err)
	}
	t.Cleanup(pause.close)
	n.PauseImage = pause.image

	ctx, cancel := context.WithTimeout(context.Background(), e.opts.StartTimeout)
	defer cancel()
	c := &containerd{dir: filepath.Join(dir, "containerd")}
	c.root, c.state = filepath.Join(c.dir, "root"), filepath.Join(c.dir, "state")
	c.socket, c.runcRoot = filepath.Join(c.state, "containerd.sock"), filepath.Join(c.state, "runc")
	n.ctrd = c
	if err := c.writeConfig(pause.image, pause.host, opts.Registries); err != nil {
		t.Fatalf("kubeenv: node: containerd configuration: %v", err)
	}
	t.Cleanup(func() {
		for _, err := range c.stop(e.opts.StopGrace) {
			t.Errorf("kubeenv: node: %v", err)
		}
	})
	err = c.start(ctx, ns, nt.containerd, nt.nsenter)
	if c.proc != nil {
		e.procs = append(e.procs, c.proc)
	}
	if err != nil {
		t.Fatalf("kubeenv: node: %v", err)
	}
	ctrdReady := time.Now()
	kubeletDir := filepath.Join(dir, "kubelet")
	t.Cleanup(func() {
		if err := unmountUnder(kubeletDir); err != nil {
			t.Errorf("kubeenv: node: %v", err)
		}
	})
	if err := n.startKubelet(kubeletDir); err != nil {
		t.Fatalf("kubeenv: node: %v", err)
	}
	if err := n.startControlPlane(dir); err != nil {
		t.Fatalf("kubeenv: node: %v", err)
	}
	if err := n.waitReady(ctx); err != nil {
		t.Fatalf("kubeenv: node: %v", err)
	}
	t.Logf("kubeenv: node %s (%s) Ready in %s (containerd %s, kubelet until Ready %s)",
		n.Name, n.IP, since(began), ctrdReady.Sub(began).Round(time.Millisecond), since(ctrdReady))
	return n
}

// setUpNetwork makes the bridge with the node's address before kubelet
// starts (kubelet needs a non-loopback node IP); the CNI bridge plugin
// finds it with the gateway address it would give it.
func (n *Node) setUpNetwork() error {
	for _, args := range [][]string{
		{"link", "add", nodeBridge, "type", "bridge"},
		{"addr", "add", NodeIP + "/16", "dev", nodeBridge},
		{"link", "set", nodeBridge, "up"},
		{"link", "set", "lo", "up"},
	} {
		cmd := exec.Command(n.tools.nsenter, append([]string{"--net=" + n.ns.path, "--", n.tools.ip}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s in the node's namespace: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// forwardIn listens at addr (127.0.0.1:PORT) inside the node's namespace
// and forwards to the same address on the host.
func (n *Node) forwardIn(addr string) (*proxy, error) {
	ln, err := n.ns.listen(addr)
	if err != nil {
		return nil, err
	}
	return startProxy(ln, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}), nil
}

// startKubelet writes the KubeletConfiguration and starts kubelet in the
// node's namespace.
func (n *Node) startKubelet(dir string) error {
	for _, d := range []string{dir, filepath.Join(dir, "pod-logs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	endpoint := "unix://" + n.ctrd.socket
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroups v1 (hybrid) here, driven directly rather than through systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
localStorageCapacityIsolation: false
containerRuntimeEndpoint: %[1]q
imageServiceEndpoint: %[1]q
podLogsDir: %[2]q
address: %[3]q
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
serializeImagePulls: false
# Pods start and their status is written without waiting for the defaults'
# periods.
syncFrequency: 5s
nodeStatusUpdateFrequency: 2s
fileCheckFrequency: 5s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  imagefs.available: "1%%"
  nodefs.inodesFree: "1%%"
resolvConf: ""
`, endpoint, filepath.Join(dir, "pod-logs"), NodeIP)
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		return err
	}
	p, err := startProcess("kubelet", n.tools.nsenter, []string{
		"--net=" + n.ns.path, "--", n.tools.kubelet,
		"--config=" + cfgFile,
		"--kubeconfig=" + n.env.Kubeconfig,
		"--root-dir=" + dir,
		"--cert-dir=" + filepath.Join(dir, "pki"),
		"--hostname-override=" + n.Name,
		"--node-ip=" + NodeIP,
		"--v=1",
	}, nil)
	if err != nil {
		return err
	}
	n.env.track(p)
	return nil
}

// startControlPlane starts kube-scheduler and kube-controller-manager (on
// the host's loopback, no serving ports, no leader election).
func (n *Node) startControlPlane(dir string) error {
	k := "--kubeconfig=" + n.env.Kubeconfig
	sched, err := startProcess("kube-scheduler", n.tools.scheduler, []string{k, "--leader-elect=false", "--secure-port=0", "--v=1"}, nil)
	if err != nil {
		return err
	}
	n.env.track(sched)
	kcm, err := startProcess("kube-controller-manager", n.tools.controllerManager, []string{
		k, "--leader-elect=false", "--secure-port=0", "--v=1",
		// node-lifecycle-controller takes off the not-ready taint kubelet
		// registers the node with, once it is Ready.
		"--controllers=deployment-controller,replicaset-controller,serviceaccount-controller,endpointslice-controller,node-lifecycle-controller",
		"--node-monitor-period=1s",
		"--use-service-account-credentials=false",
		"--concurrent-deployment-syncs=2", "--concurrent-replicaset-syncs=2",
	}, nil)
	if err != nil {
		return err
	}
	n.env.track(kcm)
	return nil
}

// waitReady waits for the Node object to be Ready and schedulable.
func (n *Node) waitReady(ctx context.Context) error {
	last := "not registered yet"
	for {
		for _, p := range n.env.procs {
			if p.exited() && (p.name == "kubelet" || p.name == "containerd" || p.name == "kube-scheduler" || p.name == "kube-controller-manager") {
				return p.exitError()
			}
		}
		var node corev1.Node
		getCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := n.env.Client.Get(getCtx, types.NamespacedName{Name: n.Name}, &node)
		cancel()
		switch {
		case err == nil:
			ready := false
			var conds []string
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady {
					ready = c.Status == corev1.ConditionTrue
					conds = append(conds, fmt.Sprintf("Ready=%s (%s: %s)", c.Status, c.Reason, c.Message))
				}
			}
			if ready && len(node.Spec.Taints) == 0 && !node.Spec.Unschedulable {
				return nil
			}
			last = fmt.Sprintf("%s; taints %v", strings.Join(conds, ", "), node.Spec.Taints)
		default:
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not Ready: %s (see the kubelet log)", n.Name, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Dial connects to addr from inside the node's network namespace: a pod
// IP and port, as the node's kubelet probes it.
func (n *Node) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return n.ns.dial(ctx, network, addr)
}

// HTTPClient is a client whose connections start inside the node's
// network namespace (http://POD_IP:PORT/ reaches a pod). It does not
// decompress responses or follow redirects.
func (n *Node) HTTPClient() *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		Transport:     &http.Transport{DialContext: n.Dial, DisableCompression: true, Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Endpoint is a ready endpoint of a Service.
type Endpoint struct {
	IP   string
	Port int32
	Pod  string // namespace/name of the pod it is
}

// ServiceEndpoints returns the ready endpoints of the Service's port
// named portName (the only port when empty) from its EndpointSlices, as
// the endpointslice controller wrote them: the pods whose readiness probe
// passed and that are not terminating.
func (n *Node) ServiceEndpoints(ctx context.Context, namespace, service, portName string) ([]Endpoint, error) {
	var slices discoveryv1.EndpointSliceList
	if err := n.client.List(ctx, &slices, client.InNamespace(namespace), client.MatchingLabels{discoveryv1.LabelServiceName: service}); err != nil {
		return nil, fmt.Errorf("EndpointSlices of Service %s/%s: %w", namespace, service, err)
	}
	var eps []Endpoint
	for _, s := range slices.Items {
		var port *int32
		for _, p := range s.Ports {
			if p.Port != nil && (portName == "" || (p.Name != nil && *p.Name == portName)) {
				port = p.Port
				break
			}
		}
		if port == nil {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			if ep.Conditions.Terminating != nil && *ep.Conditions.Terminating {
				continue
			}
			pod := ""
			if ep.TargetRef != nil {
				pod = ep.TargetRef.Namespace + "/" + ep.TargetRef.Name
			}
			for _, a := range ep.Addresses {
				eps = append(eps, Endpoint{IP: a, Port: *port, Pod: pod})
			}
		}
	}
	return eps, nil
}

// ServiceProxy is the kube-proxy of a test: a listener on the host's
// loopback whose connections go to a ready endpoint of a Service, dialed
// inside the node's namespace. It follows the EndpointSlices (every
// 100 ms), and when an endpoint stops being ready its open connections
// are closed (as conntrack entries of a removed endpoint are), so a
// browser's kept-alive connection does not keep reading an old pod.
type ServiceProxy struct {
	p   *proxy
	eps chan []Endpoint
}

// ServiceProxy starts a proxy to the Service's port named portName (the
// only port when empty); it stops when the test ends.
func (n *Node) ServiceProxy(t testing.TB, namespace, service, portName string) *ServiceProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sp := &ServiceProxy{eps: make(chan []Endpoint, 1)}
	sp.eps <- nil
	var next atomic.Int64
	sp.p = startProxy(ln, func(ctx context.Context) (net.Conn, error) {
		eps := sp.Endpoints()
		if len(eps) == 0 {
			// The first connection may come before the first poll.
			ctx2, cancel := context.WithTimeout(ctx, 5*time.Second)
			eps, _ = n.ServiceEndpoints(ctx2, namespace, service, portName)
			cancel()
		}
		if len(eps) == 0 {
			return nil, fmt.Errorf("Service %s/%s has no ready endpoints", namespace, service)
		}
		ep := eps[int(next.Add(1))%len(eps)]
		return n.Dial(ctx, "tcp", net.JoinHostPort(ep.IP, fmt.Sprint(ep.Port)))
	})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			eps, err := n.ServiceEndpoints(ctx, namespace, service, portName)
			cancel()
			if err == nil {
				old := <-sp.eps
				sp.eps <- eps
				if removed(old, eps) {
					sp.p.closeConns()
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		sp.p.close()
	})
	return sp
}

// removed reports whether an endpoint of old is not in now.
func removed(old, now []Endpoint) bool {
	in := map[Endpoint]bool{}
	for _, e := range now {
		in[e] = true
	}
	for _, e := range old {
		if !in[e] {
			return true
		}
	}
	return false
}

// Endpoints are the endpoints the proxy sends new connections to now (as
// of its last look at the EndpointSlices).
func (sp *ServiceProxy) Endpoints() []Endpoint {
	e := <-sp.eps
	sp.eps <- e
	return append([]Endpoint(nil), e...)
}

// Addr is the proxy's host address (127.0.0.1:PORT).
func (sp *ServiceProxy) Addr() string { return sp.p.ln.Addr().String() }

// PodsOf lists the pods of a Deployment's selector in namespace.
func (n *Node) PodsOf(ctx context.Context, namespace string, selector *metav1.LabelSelector) ([]corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return nil, err
	}
	var pods corev1.PodList
	if err := n.env.Client.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, err
	}
	return pods.Items, nil
}
