// Package kubeenv starts a real Kubernetes control plane for tests: etcd and
// kube-apiserver as local processes on random loopback ports, with the Flux
// CRDs installed, and optionally the real Flux source-controller and
// kustomize-controller, image-reflector- and image-automation-controller, and
// notification-controller (Options). Without Options.Node there is no kubelet
// and no kube-controller-manager: objects are stored, validated and served,
// but no pod runs (see Options.SimulateRollouts for Deployment status); with
// it, a real node runs the pods (node.go).
//
// The binaries and CRDs come from tools/kube/build.sh, found through
// NOTESCTL_KUBE_TOOLS and NOTESCTL_KUBE_CRDS or at the build script's default
// cache location. Without them, Start skips the test, or fails it when
// NOTESCTL_REQUIRE_TOOLS=1.
//
// Every process is stopped through t.Cleanup (SIGTERM, then SIGKILL after a
// grace period) and is killed by the kernel if the test binary dies first.
// When the test fails, the end of each process's log is written to the test
// log; NOTESCTL_KUBE_LOG_DIR=DIR keeps the full logs.
package kubeenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// FluxNamespace is the namespace the Flux controllers run for
// (RUNTIME_NAMESPACE); Start creates it when Options.Flux is set.
const FluxNamespace = "flux-system"

// EnvLogDir names a directory where the full process logs are written when
// the environment stops (one file per test and process).
const EnvLogDir = "NOTESCTL_KUBE_LOG_DIR"

// Options configures Start.
type Options struct {
	// Flux also starts the Flux source-controller and kustomize-controller
	// and creates the flux-system namespace.
	Flux bool
	// ImageAutomation (implies Flux) also starts image-reflector-controller
	// and image-automation-controller. They run on this host, so they reach
	// registries and git servers the test serves on 127.0.0.1 (an
	// ImageRepository of a plain-HTTP registry needs spec.insecure).
	ImageAutomation bool
	// Notification (implies Flux) also starts notification-controller,
	// whose Receiver webhooks are served at Env.ReceiverURL.
	Notification bool
	// SimulateRollouts stands in for kube-controller-manager and kubelets
	// for Deployments: every Deployment whose status does not describe a
	// finished rollout of its current generation gets one (all replicas
	// updated, ready and available; Available and Progressing conditions as
	// the deployment controller writes them). Health checks such as a Flux
	// Kustomization with wait: true then pass.
	SimulateRollouts bool
	// Node also starts a real node with these options (kubelet,
	// containerd, kube-scheduler, kube-controller-manager: see StartNode);
	// Env.Node is it.
	Node *NodeOptions
	// StartTimeout bounds each start step (a process becoming ready, the
	// CRDs becoming established); default 90s.
	StartTimeout time.Duration
	// StopGrace is how long a process gets between SIGTERM and SIGKILL;
	// default 5s.
	StopGrace time.Duration
}

// Env is a running control plane.
type Env struct {
	// Kubeconfig is the path of a kubeconfig file with cluster-admin
	// (system:masters) credentials for the API server.
	Kubeconfig string
	// RESTConfig is the same as a client-go configuration.
	RESTConfig *rest.Config
	// Client is a controller-runtime client whose scheme (Scheme) holds the
	// core, apps, networking, rbac and apiextensions types and the Flux v1
	// types (source, kustomize, image reflector/automation, notification).
	Client client.Client
	// APIServerURL is https://127.0.0.1:PORT.
	APIServerURL string
	// Token is the bearer token of the system:masters user.
	Token string
	// CACert is the PEM certificate the API server serves (self-signed).
	CACert []byte
	// EtcdURL is etcd's client URL.
	EtcdURL string
	// SourceControllerStorageURL is where source-controller serves
	// artifacts (http://127.0.0.1:PORT), set with Options.Flux.
	SourceControllerStorageURL string
	// ReceiverURL is notification-controller's webhook receiver
	// (http://127.0.0.1:PORT; a Receiver's status.webhookPath goes after
	// it), set with Options.Notification.
	ReceiverURL string
	// Tools are the binaries and CRDs the environment runs.
	Tools Tools
	// Node is the node started with Options.Node.
	Node *Node

	t     testing.TB
	opts  Options
	dir   string
	procs []*process
}

// Start starts etcd and kube-apiserver, installs the CRDs and, with
// opts.Flux, starts the Flux controllers. It fails the test when anything
// does not come up within opts.StartTimeout and stops everything in
// t.Cleanup.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 90 * time.Second
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 5 * time.Second
	}
	tools := requireTools(t, opts)
	e := &Env{Tools: tools, t: t, opts: opts, dir: t.TempDir()}
	// Registered first, so it runs last: after every process has stopped
	// and its log is complete.
	t.Cleanup(e.reportLogs)

	began := time.Now()
	if err := e.startEtcd(); err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	etcdReady := time.Now()
	if err := e.startAPIServer(); err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	apiReady := time.Now()
	if err := e.connect(); err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.StartTimeout)
	defer cancel()
	n, err := e.installCRDs(ctx)
	if err != nil {
		t.Fatalf("kubeenv: install CRDs from %s: %v", tools.CRDDir, err)
	}
	t.Logf("kubeenv: kube-apiserver %s ready with %d CRDs in %s (etcd %s, kube-apiserver %s, CRDs %s)",
		e.APIServerURL, n, since(began), etcdReady.Sub(began).Round(time.Millisecond),
		apiReady.Sub(etcdReady).Round(time.Millisecond), since(apiReady))
	if opts.Flux || opts.ImageAutomation || opts.Notification {
		fluxBegan := time.Now()
		names, err := e.startFlux()
		if err != nil {
			t.Fatalf("kubeenv: %v", err)
		}
		t.Logf("kubeenv: Flux %s started in %s", strings.Join(names, ", "), since(fluxBegan))
	}
	if opts.Node != nil {
		e.Node = e.StartNode(t, *opts.Node)
	}
	if opts.SimulateRollouts {
		e.simulateRollouts()
	}
	return e
}

// startEtcd starts etcd with its data in memory (/dev/shm) when possible.
func (e *Env) startEtcd() error {
	dataDir, err := memTempDir("kubeenv-etcd-")
	if err != nil {
		return err
	}
	e.t.Cleanup(func() { _ = os.RemoveAll(dataDir) })
	return e.startWithRetry("etcd", 2, func(ports []int) (*process, error) {
		// A fresh data directory per attempt: etcd records its peer URLs.
		_ = os.RemoveAll(dataDir)
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, err
		}
		client := "http://" + loopback(ports[0])
		peer := "http://" + loopback(ports[1])
		p, err := startProcess("etcd", e.Tools.Path(binEtcd), []string{
			"--name=kubeenv",
			"--data-dir=" + dataDir,
			"--listen-client-urls=" + client,
			"--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=kubeenv=" + peer,
			"--initial-cluster-state=new",
			"--logger=zap",
			"--log-outputs=stderr",
		}, nil)
		if err != nil {
			return nil, err
		}
		e.EtcdURL = client
		return p, e.waitHTTP(p, client+"/health", nil, func(status int, body []byte) bool {
			return status == http.StatusOK && strings.Contains(string(body), `"health":"true"`)
		})
	})
}

// startAPIServer starts kube-apiserver against the etcd.
func (e *Env) startAPIServer() error {
	certDir := filepath.Join(e.dir, "apiserver")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return err
	}
	certFile, keyFile, certPEM, err := servingCert(certDir)
	if err != nil {
		return err
	}
	saPub, saKey, err := serviceAccountKeys(certDir)
	if err != nil {
		return err
	}
	token, err := randomToken()
	if err != nil {
		return err
	}
	tokenFile := filepath.Join(certDir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(token+`,kubeenv-admin,kubeenv-admin,"system:masters"`+"\n"), 0o600); err != nil {
		return err
	}
	e.Token, e.CACert = token, certPEM
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		return errors.New("parse the generated serving certificate")
	}
	httpClient := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}
	return e.startWithRetry("kube-apiserver", 1, func(ports []int) (*process, error) {
		e.APIServerURL = "https://" + loopback(ports[0])
		p, err := startProcess("kube-apiserver", e.Tools.Path(binAPIServer), []string{
			"--etcd-servers=" + e.EtcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			fmt.Sprintf("--secure-port=%d", ports[0]),
			"--cert-dir=" + certDir,
			"--tls-cert-file=" + certFile,
			"--tls-private-key-file=" + keyFile,
			"--token-auth-file=" + tokenFile,
			"--authorization-mode=RBAC",
			"--service-account-key-file=" + saPub,
			"--service-account-signing-key-file=" + saKey,
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-cluster-ip-range=10.0.0.0/24",
			"--allow-privileged=true",
			// Without it, after about a minute of uptime, the API server
			// ignores SIGTERM for over 10 s.
			"--feature-gates=SizeBasedListCostEstimate=false",
			// 127.0.0.1 is not a valid endpoint for the kubernetes
			// Service; the default reconciler logs an error every 10 s.
			"--endpoint-reconciler-type=none",
			"--profiling=false",
		}, nil)
		if err != nil {
			return nil, err
		}
		header := http.Header{"Authorization": []string{"Bearer " + token}}
		return p, e.waitHTTPClient(p, httpClient, e.APIServerURL+"/readyz", header, func(status int, _ []byte) bool {
			return status == http.StatusOK
		})
	})
}

// connect writes the kubeconfig and builds the clients.
func (e *Env) connect() error {
	e.Kubeconfig = filepath.Join(e.dir, "kubeconfig")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubeenv"] = &clientcmdapi.Cluster{Server: e.APIServerURL, CertificateAuthorityData: e.CACert}
	cfg.AuthInfos["kubeenv-admin"] = &clientcmdapi.AuthInfo{Token: e.Token}
	cfg.Contexts["kubeenv"] = &clientcmdapi.Context{Cluster: "kubeenv", AuthInfo: "kubeenv-admin", Namespace: corev1.NamespaceDefault}
	cfg.CurrentContext = "kubeenv"
	if err := clientcmd.WriteToFile(*cfg, e.Kubeconfig); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", e.Kubeconfig)
	if err != nil {
		return fmt.Errorf("load the written kubeconfig: %w", err)
	}
	rc.QPS, rc.Burst = 100, 200
	rc.UserAgent = "notesctl-kubeenv"
	e.RESTConfig = rc
	c, err := client.New(rc, client.Options{Scheme: Scheme()})
	if err != nil {
		return fmt.Errorf("create client: %w", err)
	}
	e.Client = c
	return nil
}

// startWithRetry picks nports free ports and runs start, again on other
// ports (up to three times) when a port was taken in between.
func (e *Env) startWithRetry(name string, nports int, start func(ports []int) (*process, error)) error {
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		ports, err := freePorts(nports)
		if err != nil {
			return err
		}
		p, err := start(ports)
		if p != nil {
			e.track(p)
		}
		if err == nil {
			return nil
		}
		lastErr = err
		if p == nil || !p.addrInUse() {
			return err
		}
		_ = p.stop(e.opts.StopGrace)
		e.t.Logf("kubeenv: %s: a port was taken (attempt %d), retrying on other ports", name, attempt)
	}
	return fmt.Errorf("%s: %w: %v", name, errAddrInUse, lastErr)
}

// track registers p for stopping at cleanup and for log reports.
func (e *Env) track(p *process) {
	e.procs = append(e.procs, p)
	e.t.Cleanup(func() {
		start := time.Now()
		if err := p.stop(e.opts.StopGrace); err != nil {
			e.t.Logf("kubeenv: %v", err)
			return
		}
		if d := time.Since(start); d > time.Second {
			e.t.Logf("kubeenv: %s took %s to stop", p.name, d.Round(time.Millisecond))
		}
	})
}

// waitHTTP polls url until ok accepts the answer, the process exits or
// StartTimeout passes.
func (e *Env) waitHTTP(p *process, url string, header http.Header, ok func(int, []byte) bool) error {
	return e.waitHTTPClient(p, &http.Client{Timeout: 5 * time.Second}, url, header, ok)
}

func (e *Env) waitHTTPClient(p *process, hc *http.Client, url string, header http.Header, ok func(int, []byte) bool) error {
	deadline := time.Now().Add(e.opts.StartTimeout)
	last := "no answer yet"
	for {
		if p.exited() {
			return p.exitError()
		}
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := hc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close()
			if ok(resp.StatusCode, body) {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(lastLines(string(body), 15)))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready at %s after %s (last: %s); last output:\n%s", p.name, url, e.opts.StartTimeout, last, p.log.tail(40))
		}
		select {
		case <-p.done:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// memTempDir makes a temporary directory on /dev/shm when it is a writable
// directory (etcd fsyncs a lot), else under the default temp directory. The
// name carries the test binary's pid: directories left by test binaries
// that died without cleanup (a test timeout) are removed here.
func memTempDir(prefix string) (string, error) {
	pattern := fmt.Sprintf("%s%d-", prefix, os.Getpid())
	if fi, err := os.Stat(shmDir); err == nil && fi.IsDir() {
		removeOrphans(shmDir, prefix)
		if d, err := os.MkdirTemp(shmDir, pattern); err == nil {
			return d, nil
		}
	}
	return os.MkdirTemp("", pattern)
}

const shmDir = "/dev/shm"

// removeOrphans removes dir/PREFIX<pid>-* entries whose process is gone.
func removeOrphans(dir, prefix string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// Logs returns the output of the named process so far ("etcd",
// "kube-apiserver", "source-controller", "kustomize-controller").
func (e *Env) Logs(name string) string {
	var b strings.Builder
	for _, p := range e.procs {
		if p.name == name {
			s, _ := p.log.snapshot()
			b.WriteString(s)
		}
	}
	return b.String()
}

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// reportLogs writes the end of every process's log to the test log when the
// test failed, and the full logs to NOTESCTL_KUBE_LOG_DIR when set.
func (e *Env) reportLogs() {
	if dir := os.Getenv(EnvLogDir); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			e.t.Logf("kubeenv: %s: %v", EnvLogDir, err)
		} else {
			for i, p := range e.procs {
				s, _ := p.log.snapshot()
				name := fmt.Sprintf("%s-%d-%s.log", unsafeFileChars.ReplaceAllString(e.t.Name(), "_"), i, p.name)
				if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
					e.t.Logf("kubeenv: write log: %v", err)
				}
			}
		}
	}
	if !e.t.Failed() {
		return
	}
	for _, p := range e.procs {
		e.t.Logf("kubeenv: ---- %s log (end) ----\n%s", p.name, p.log.tail(60))
	}
}

// CreateNamespace creates the namespace name (it may exist already).
func (e *Env) CreateNamespace(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := createNamespace(ctx, e.Client, name); err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
}

func createNamespace(ctx context.Context, c client.Client, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// crdEstablished reports whether a CRD is served.
func crdEstablished(crd *apiextensionsv1.CustomResourceDefinition) (bool, string) {
	established, accepted := false, false
	var msgs []string
	for _, c := range crd.Status.Conditions {
		switch c.Type {
		case apiextensionsv1.Established:
			established = c.Status == apiextensionsv1.ConditionTrue
		case apiextensionsv1.NamesAccepted:
			accepted = c.Status == apiextensionsv1.ConditionTrue
		}
		if c.Status != apiextensionsv1.ConditionTrue && c.Message != "" {
			msgs = append(msgs, fmt.Sprintf("%s=%s: %s", c.Type, c.Status, c.Message))
		}
	}
	if len(crd.Status.Conditions) == 0 {
		msgs = append(msgs, "no conditions yet")
	}
	return established && accepted, strings.Join(msgs, "; ")
}
