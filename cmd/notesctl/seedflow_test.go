package main

// The seed's flow with every box real (issue #12 item 4): a site commit,
// the notesctl binary as a user runs it, a CNCF Distribution registry with
// htpasswd and TLS, the GitOps repository on a git server with basic auth,
// the real Flux source- and kustomize-controller applying what
// `manifests init` scaffolded, the image running, and headless Chromium
// reading the page.
//
// Where the image runs: on a real node when its tools are here (kubelet,
// kube-scheduler and kube-controller-manager built by tools/kube/build.sh at
// the API server's version; Debian's containerd, runc, CNI plugins and
// static busybox). The Deployment Flux applied gets its pods scheduled,
// pulled from the registry (the node holds the pull credentials), started
// under the scaffold's securityContext and probed by kubelet on 8080; the
// test and the browser read the site through the Service: kubenode's
// ServiceProxy follows the Service's EndpointSlices (ready pods only) as
// kube-proxy does and dials the pod IPs inside the node's network
// namespace. See internal/kubeenv/node.go.
//
// Without those tools (locally; with NOTESCTL_REQUIRE_TOOLS=1 that is a
// failure), runcNode stands in for kubelet and the deployment controller,
// and only for them: it reads the Deployment that kustomize-controller
// applied from the API server and runs its image with runc under that pod
// spec (image, securityContext, emptyDirs; the readiness probe's path and
// port decide when it serves), then moves the "Service" (a forwarder on
// loopback) to it and writes the Deployment status a finished rollout gets.
// Either way Flux's health check and `release --wait` pass only once the
// new image really answers its probe.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/fluxcd/pkg/apis/meta"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/notesctl/notesctl/internal/browser"
	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/internal/kubeenv"
	"github.com/notesctl/notesctl/internal/regserver"
	"github.com/notesctl/notesctl/internal/runcenv"
	"github.com/notesctl/notesctl/internal/sitegit"
	"github.com/notesctl/notesctl/internal/testenv"
)

// Credentials of the flow's servers; none may appear in any output.
const (
	seedRegistryUser     = "ci"
	seedRegistryPassword = "s3cret-seed-registry"
	seedGitUser          = "flux"
	seedGitPassword      = "s3cret-seed-git"
)

// seedTalk is the note the flow edits, and the page it is served at.
const (
	seedTalk     = "content/day1/02_gslb.md"
	seedTalkPage = "/day1/02_gslb/"
	seedTitle    = "Global server load balancing with DNS and anycast"
)

// seedFlow is the running flow.
type seedFlow struct {
	env       *kubeenv.Env
	reg       *regserver.DistributionServer
	gs        *gitserver.HTTPBackend
	node      seedNode
	image     string
	gitopsURL string
	site      string
	base      string
	// commits counts the GitOps commits seen so far.
	commits int
}

// startSeedFlow starts every box, scaffolds the GitOps repository with
// notesctl, makes the first release (so the repository names a real image
// before Flux first applies it) and bootstraps Flux: the GitRepository
// (with the secret a `flux create secret git` would make) and the
// Kustomization of the scaffold. It returns once Flux applied the first
// release and the node serves it.
func startSeedFlow(t *testing.T) (*seedFlow, string) {
	t.Helper()
	runcenv.Require(t)
	nodeErr := kubeenv.FindNodeTools()
	if nodeErr != nil && testenv.ToolsRequired() {
		t.Fatalf("%v (%s=1)", nodeErr, testenv.EnvRequireTools)
	}
	env := kubeenv.Start(t, kubeenv.Options{Flux: true})
	reg := regserver.Distribution(t, regserver.DistributionOptions{User: seedRegistryUser, Password: seedRegistryPassword, TLS: true})
	gs := gitserver.StartHTTPBackend(t, seedGitUser, seedGitPassword)
	f := &seedFlow{
		env: env, reg: reg, gs: gs,
		image: reg.Host + "/acme/notes", gitopsURL: gs.RepoURL("gitops.git"),
		site: newSite(t), base: runcenv.NginxBase(t),
	}
	if nodeErr == nil {
		f.node = newKubeletNode(t, env, reg)
	} else {
		t.Logf("no real node (%v): the image runs with runc from the Deployment spec instead", nodeErr)
		f.node = newRuncNode(t, env, reg)
	}

	scaffold := t.TempDir()
	mustSucceed(t, notesctl(t, scaffold, nil, "", "manifests", "init", "--dir", ".", "--image", f.image, "--git-url", f.gitopsURL))
	gitserver.SeedBareRepo(t, gs.RepoPath("gitops.git"), "main", scaffold)
	f.commits = f.gitopsCount(t)

	// The first release, before Flux: the scaffold's placeholder tag
	// (:latest) never existed, and a Deployment that cannot pull it would
	// hold kustomize-controller's health check for its whole timeout.
	r := f.release(t, false)
	ref := f.checkRelease(t, r)

	ctx := context.Background()
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: kubeenv.FluxNamespace, Name: "notes-git-auth"},
		StringData: map[string]string{"username": seedGitUser, "password": seedGitPassword},
	}
	if err := env.Client.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	// The source first, as a bootstrap orders it: the Kustomization then
	// finds an artifact at once instead of retrying 5 s later.
	applyScaffold(t, env, filepath.Join(scaffold, "flux", "notes", "gitrepository.yaml"), func(u *unstructured.Unstructured) {
		if err := unstructured.SetNestedField(u.Object, secret.Name, "spec", "secretRef", "name"); err != nil {
			t.Fatal(err)
		}
	})
	head := gitOut(t, gs.RepoPath("gitops.git"), "rev-parse", "main")
	waitFor(t, 60*time.Second, "the GitRepository to fetch "+head, func() (bool, string) {
		var repo sourcev1.GitRepository
		getObj(t, env, "notes", &repo)
		if repo.Status.Artifact == nil {
			return false, fmt.Sprintf("no artifact yet: %+v", repo.Status.Conditions)
		}
		return repo.Status.Artifact.Revision == "main@sha1:"+head, repo.Status.Artifact.Revision
	})
	applyScaffold(t, env, filepath.Join(scaffold, "flux", "notes", "sync.yaml"), func(*unstructured.Unstructured) {})
	// Flux applies the first release on its own (the GitRepository's first
	// fetch); the Kustomization is healthy once the node serves the image.
	f.runNodeUntil(t, 120*time.Second, "Flux to apply the first release "+head, func() (bool, string) {
		ks := kustomization(t, env)
		ready := apimeta.FindStatusCondition(ks.Status.Conditions, meta.ReadyCondition)
		done := ready != nil && ready.Status == metav1.ConditionTrue && ks.Status.LastAppliedRevision == "main@sha1:"+head
		if done {
			return true, ""
		}
		return false, f.describeCluster(t)
	})
	f.checkApplied(t, ref)
	return f, ref
}

// release runs `notesctl release` on the site's HEAD as CI would: registry
// and git credentials from the environment, the registry's CA, the nginx
// base; with wait, also --wait on the cluster. While it runs, the node
// does its work.
func (f *seedFlow) release(t *testing.T, wait bool, extra ...string) result {
	t.Helper()
	args := []string{"release", "--image", f.image, "--base", "oci:" + f.base, "--ca-file", f.reg.CAFile,
		"--gitops", f.gitopsURL, "--gitops-username", seedGitUser}
	if wait {
		args = append(args, "--wait", "--kubeconfig", f.env.Kubeconfig, "--timeout", "120s")
	}
	args = append(args, extra...)
	env := []string{
		"NOTESCTL_REGISTRY_USERNAME=" + seedRegistryUser, "NOTESCTL_REGISTRY_PASSWORD=" + seedRegistryPassword,
		"NOTESCTL_GITOPS_PASSWORD=" + seedGitPassword,
	}
	return f.runWhileNode(t, nil, env, args...)
}

// runWhileNode runs notesctl in the site repository and, until it exits,
// lets the node follow the Deployment and calls tick (when not nil).
func (f *seedFlow) runWhileNode(t *testing.T, tick func(), env []string, args ...string) result {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(notesctlBin, args...)
	cmd.Dir = f.site
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker"), "TMPDIR=" + os.TempDir()}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting notesctl: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	for running := true; running; {
		select {
		case err = <-done:
			running = false
		case <-time.After(50 * time.Millisecond):
			f.node.sync(t)
			if tick != nil {
				tick()
			}
		}
	}
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running notesctl: %v", err)
	}
	t.Logf("notesctl %s → exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	if r.code != 0 {
		t.Logf("cluster: %s", f.describeCluster(t))
	}
	return r
}

// describeCluster says what Flux and the Deployment report, for failures.
func (f *seedFlow) describeCluster(t *testing.T) string {
	t.Helper()
	var d appsv1.Deployment
	if err := f.env.Client.Get(context.Background(), types.NamespacedName{Namespace: "notes", Name: "notes"}, &d); err != nil {
		return "Deployment notes/notes: " + err.Error()
	}
	return fmt.Sprintf("Kustomization status %s; Deployment generation %d, status %+v; node: %s",
		describe(kustomization(t, f.env)), d.Generation, d.Status, f.node.describe(t))
}

// runNodeUntil lets the node follow the Deployment until ok holds.
func (f *seedFlow) runNodeUntil(t *testing.T, d time.Duration, what string, ok func() (bool, string)) {
	t.Helper()
	waitForFast(t, d, what, func() (bool, string) {
		f.node.sync(t)
		return ok()
	})
}

func (f *seedFlow) gitopsCount(t *testing.T) int {
	t.Helper()
	n, err := strconv.Atoi(gitOut(t, f.gs.RepoPath("gitops.git"), "rev-list", "--count", "main"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkRelease checks what a user checks after a release: it succeeded
// without printing a secret, the image in the registry validates and holds
// the rendered site, and the GitOps repository got exactly one commit,
// which changes exactly the image line to the released reference.
func (f *seedFlow) checkRelease(t *testing.T, r result) string {
	t.Helper()
	mustSucceed(t, r)
	for _, secret := range []string{seedRegistryPassword, seedGitPassword} {
		if strings.Contains(r.all(), secret) {
			t.Errorf("notesctl output contains the secret %q", secret)
		}
	}
	m := imageLine.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no image line in the release output:\n%s", r.stdout)
	}
	ref := m[1]
	img := pullImage(t, f.reg, ref)
	if err := validate.Image(img); err != nil {
		t.Fatalf("the released image does not validate: %v", err)
	}
	files := imageFiles(t, img, "/usr/share/nginx/html")
	for p, want := range renderedSite(t, f.site) {
		if got, ok := files[p]; !ok || !bytes.Equal(got, want) {
			t.Errorf("the image's %s is not the rendered site's (present: %v)", p, ok)
		}
	}
	n := f.gitopsCount(t)
	if n != f.commits+1 {
		t.Errorf("the release made %d GitOps commits, want exactly 1", n-f.commits)
	}
	f.commits = n
	clone := t.TempDir()
	gitserver.CloneWorktree(t, f.gs.RepoPath("gitops.git"), clone, "main")
	assertImageLineCommit(t, clone, ref)
	return ref
}

// checkApplied checks the cluster and the node after Flux applied the
// release ref: lastAppliedRevision is the GitOps head, the Deployment spec
// names ref, and the running container answers the probe and the pages.
func (f *seedFlow) checkApplied(t *testing.T, ref string) {
	t.Helper()
	head := gitOut(t, f.gs.RepoPath("gitops.git"), "rev-parse", "main")
	ks := kustomization(t, f.env)
	if ks.Status.LastAppliedRevision != "main@sha1:"+head {
		t.Errorf("lastAppliedRevision = %q, want main@sha1:%s", ks.Status.LastAppliedRevision, head)
	}
	if got := deploymentImage(t, f.env); got != ref {
		t.Errorf("the Deployment spec runs %s, want the released %s", got, ref)
	}
	f.node.checkServes(t, ref)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true, Proxy: nil}}
	for _, c := range []struct{ path, want string }{
		{"/", "<title>"},
		{seedTalkPage, seedTitle},
	} {
		resp, err := hc.Get("http://" + f.node.serviceAddr() + c.path)
		if err != nil {
			t.Fatalf("GET %s: %v", c.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" || !strings.Contains(string(body), c.want) {
			t.Errorf("GET %s: %s %q, body has %q: %v", c.path, resp.Status, resp.Header.Get("Content-Type"), c.want, strings.Contains(string(body), c.want))
		}
	}
}

// editTalk puts text before a heading of the talk and commits it at the
// given hour after the fixture's commit.
func (f *seedFlow) editTalk(t *testing.T, text string, hour int) {
	t.Helper()
	p := filepath.Join(f.site, filepath.FromSlash(seedTalk))
	md, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	edited := bytes.Replace(md, []byte("## Weighted answers"), []byte(text+"\n\n## Weighted answers"), 1)
	if bytes.Equal(edited, md) {
		t.Fatalf("%s has no heading to edit before", seedTalk)
	}
	if err := os.WriteFile(p, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sitegit.CommitAll(f.site, "Edit the GSLB talk", sitegit.Epoch.Add(time.Duration(hour)*time.Hour)); err != nil {
		t.Fatal(err)
	}
}

// pageShows reports whether the browser, opening the talk through the
// Service stand-in, reads text in the page.
func pageShows(t *testing.T, b *browser.Browser, url, text string) bool {
	t.Helper()
	b.Open(t, url)
	return browser.Eval[bool](t, b, `document.body.innerText.includes(`+jsQuote(text)+`)`)
}

func jsQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// TestSeedFlow: commit → notesctl release → registry → GitOps → Flux →
// the image runs → the browser reads the note; then an edited note, and
// the browser reads the edit.
func TestSeedFlow(t *testing.T) {
	f, first := startSeedFlow(t)
	b := browser.New(t)
	url := "http://" + f.node.serviceAddr() + seedTalkPage

	b.Open(t, url)
	b.Wait(t, "the talk's diagram is drawn", 30*time.Second, chromedp.WaitVisible(chromedp.CSS("pre.mermaid svg")))
	if got := browser.Eval[string](t, b, `document.querySelector("h1") ? document.querySelector("h1").innerText : ""`); !strings.Contains(got, seedTitle) {
		t.Errorf("the browser reads the heading %q, want %q", got, seedTitle)
	}
	const edit = "Update after the talk: failover now completes in 40 seconds."
	if pageShows(t, b, url, edit) {
		t.Fatalf("the page shows the edit before it was made")
	}
	if p := b.Problems(); len(p) > 0 {
		t.Errorf("the first release's page had problems:\n%s", strings.Join(p, "\n"))
	}
	b.Screenshot(t, "seed-first-release.png")

	// The edit, released with --wait: notesctl returns once Flux applied it
	// and the Deployment rolled out, which here means the node serves it.
	f.editTalk(t, edit, 1)
	r := f.release(t, true)
	second := f.checkRelease(t, r)
	if second == first {
		t.Fatalf("the edit released the same image %s", first)
	}
	f.checkApplied(t, second)
	head := gitOut(t, f.gs.RepoPath("gitops.git"), "rev-parse", "main")
	if !strings.Contains(r.stdout, "rollout: Flux applied main@sha1:"+head) {
		t.Errorf("release --wait does not report the rollout of %s:\n%s", head, r.stdout)
	}
	b.Reset()
	if !pageShows(t, b, url, edit) {
		t.Errorf("after the second release the browser does not read %q", edit)
	}
	b.Wait(t, "the diagram is drawn again", 30*time.Second, chromedp.WaitVisible(chromedp.CSS("pre.mermaid svg")))
	if p := b.Problems(); len(p) > 0 {
		t.Errorf("the second release's page had problems:\n%s", strings.Join(p, "\n"))
	}
	b.Screenshot(t, "seed-second-release.png")
}

// EnvBenchLive turns TestSeedFlowLive on: the number of rounds.
const EnvBenchLive = "NOTESCTL_BENCH_LIVE"

// TestSeedFlowLive is the harness of bench/live.sh (skipped unless
// NOTESCTL_BENCH_LIVE=N): on the flow of TestSeedFlow, the time from the
// `git commit` of an edited note in the site repository to the browser
// reading the edit, with `notesctl release --wait` started right after the
// commit. Each round prints "LIVEBENCH round total gitops deployment
// serving browser", the seconds from the commit to: the release's GitOps
// commit on the git server, the Deployment spec naming the new image, the
// node serving it (probe passed, Service moved), the browser reading it.
func TestSeedFlowLive(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv(EnvBenchLive))
	if rounds <= 0 {
		t.Skipf("set %s=N to run the live benchmark (bench/live.sh)", EnvBenchLive)
	}
	f, _ := startSeedFlow(t)
	b := browser.New(t)
	url := "http://" + f.node.serviceAddr() + seedTalkPage
	b.Open(t, url)
	var totals []float64
	for round := 1; round <= rounds; round++ {
		text := fmt.Sprintf("Live edit %d: the failover drill passed.", round)
		gitopsHead := gitOut(t, f.gs.RepoPath("gitops.git"), "rev-parse", "main")
		oldImage := f.node.view().image
		var gitopsAt, deployAt, servingAt, seenAt time.Duration
		start := time.Now()
		f.editTalk(t, text, 1+round)
		tick := func() {
			since := time.Since(start)
			if gitopsAt == 0 {
				if h, err := gitserver.GitE(f.gs.RepoPath("gitops.git"), nil, "rev-parse", "main"); err == nil && strings.TrimSpace(h) != gitopsHead {
					gitopsAt = since
				}
			}
			if v := f.node.view(); deployAt == 0 && v.seen != oldImage {
				deployAt = v.seenAt.Sub(start)
			}
			if v := f.node.view(); servingAt == 0 && v.image != oldImage {
				servingAt = v.servingAt.Sub(start)
			}
			if servingAt != 0 && seenAt == 0 && pageShows(t, b, url, text) {
				seenAt = time.Since(start)
			}
		}
		r := f.runWhileNode(t, tick, []string{
			"NOTESCTL_REGISTRY_USERNAME=" + seedRegistryUser, "NOTESCTL_REGISTRY_PASSWORD=" + seedRegistryPassword,
			"NOTESCTL_GITOPS_PASSWORD=" + seedGitPassword,
		}, "release", "--image", f.image, "--base", "oci:"+f.base, "--ca-file", f.reg.CAFile,
			"--gitops", f.gitopsURL, "--gitops-username", seedGitUser, "--wait", "--kubeconfig", f.env.Kubeconfig, "--timeout", "120s")
		mustSucceed(t, r)
		for seenAt == 0 && time.Since(start) < 60*time.Second {
			tick()
			time.Sleep(50 * time.Millisecond)
		}
		if seenAt == 0 {
			t.Fatalf("round %d: the browser did not read the edit within 60 s", round)
		}
		f.commits = f.gitopsCount(t)
		totals = append(totals, seenAt.Seconds())
		fmt.Printf("LIVEBENCH %d %.3f %.3f %.3f %.3f %.3f\n", round, seenAt.Seconds(), gitopsAt.Seconds(), deployAt.Seconds(), servingAt.Seconds(), seenAt.Seconds())
	}
	sort.Float64s(totals)
	fmt.Printf("LIVEBENCH-MEDIAN %.3f (min %.3f, max %.3f, n=%d)\n", totals[len(totals)/2], totals[0], totals[len(totals)-1], len(totals))
}

// seedNode is where the Deployment notes/notes runs: a real node
// (kubeletNode) or runc standing in for one (runcNode).
type seedNode interface {
	// sync does one round of the node's work (runcNode) or observes the
	// real node's (kubeletNode), updating view.
	sync(t *testing.T)
	view() *nodeView
	// serviceAddr is the host address (127.0.0.1:PORT) of the Service.
	serviceAddr() string
	// checkServes checks that the Service sends every request to ref's
	// pods (waiting for a rollout's end) and that they run as the
	// scaffold says.
	checkServes(t *testing.T, ref string)
	describe(t *testing.T) string
}

// nodeView is what the flow knows of the node.
type nodeView struct {
	// image is what the serving pods (all the Service's endpoints) run.
	image string
	// seen is the image of the last Deployment spec read, seenAt when it
	// was first read; servingAt is when the Service served only image.
	seen              string
	seenAt, servingAt time.Time
}

// kubeletNode is a real node (kubeenv.StartNode) running the Deployment's
// pods; sync only watches the Deployment spec and the Service's endpoints.
type kubeletNode struct {
	nodeView
	env     *kubeenv.Env
	node    *kubeenv.Node
	service *kubeenv.ServiceProxy
}

func newKubeletNode(t *testing.T, env *kubeenv.Env, reg *regserver.DistributionServer) *kubeletNode {
	node := env.StartNode(t, kubeenv.NodeOptions{Registries: []kubeenv.NodeRegistry{{
		Host: reg.Host, CAFile: reg.CAFile, Username: reg.User, Password: reg.Password,
	}}})
	return &kubeletNode{env: env, node: node, service: node.ServiceProxy(t, "notes", "notes", "http")}
}

func (n *kubeletNode) view() *nodeView     { return &n.nodeView }
func (n *kubeletNode) serviceAddr() string { return n.service.Addr() }

func (n *kubeletNode) sync(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d appsv1.Deployment
	if err := n.env.Client.Get(ctx, types.NamespacedName{Namespace: "notes", Name: "notes"}, &d); err != nil {
		if apierrors.IsNotFound(err) {
			return
		}
		t.Fatalf("node: reading the Deployment: %v", err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != n.seen {
		n.seen, n.seenAt = img, time.Now()
	}
	img, _ := n.servedImage(ctx)
	if img != "" && img != n.image {
		n.image, n.servingAt = img, time.Now()
	}
}

// servedImage is the image of every endpoint the Service's proxy sends
// connections to (its ready endpoints), or "" with a description when there
// is none or they differ.
func (n *kubeletNode) servedImage(ctx context.Context) (string, string) {
	eps := n.service.Endpoints()
	images := map[string][]string{}
	for _, ep := range eps {
		ns, name, _ := strings.Cut(ep.Pod, "/")
		var pod corev1.Pod
		if err := n.env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &pod); err != nil {
			return "", err.Error()
		}
		images[pod.Spec.Containers[0].Image] = append(images[pod.Spec.Containers[0].Image], ep.IP)
	}
	if len(images) != 1 {
		return "", fmt.Sprintf("Service endpoints by image: %v", images)
	}
	for img := range images {
		return img, ""
	}
	return "", ""
}

func (n *kubeletNode) checkServes(t *testing.T, ref string) {
	t.Helper()
	// release --wait (kstatus) ends when the old ReplicaSet is scaled
	// down; its pods may still be terminating and leaving the endpoints.
	waitForFast(t, 30*time.Second, "the Service to serve only "+ref, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		img, why := n.servedImage(ctx)
		return img == ref, why
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d appsv1.Deployment
	if err := n.env.Client.Get(ctx, types.NamespacedName{Namespace: "notes", Name: "notes"}, &d); err != nil {
		t.Fatal(err)
	}
	want := *d.Spec.Replicas
	if st := d.Status; st.ObservedGeneration != d.Generation || st.UpdatedReplicas != want || st.ReadyReplicas != want || st.AvailableReplicas != want {
		t.Errorf("the Deployment's status is not a finished rollout of %d replicas: %+v", want, st)
	}
	pods, err := n.node.PodsOf(ctx, "notes", d.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	running := map[string]bool{}
	for _, p := range pods {
		if p.DeletionTimestamp != nil || p.Spec.Containers[0].Image != ref {
			continue
		}
		running[p.Namespace+"/"+p.Name] = true
		ready := false
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				ready = c.Status == corev1.ConditionTrue
			}
		}
		if !ready || p.Spec.NodeName != n.node.Name || p.Status.PodIP == "" {
			t.Errorf("pod %s: Ready %v on node %q with IP %q", p.Name, ready, p.Spec.NodeName, p.Status.PodIP)
		}
		for _, cs := range p.Status.ContainerStatuses {
			// The liveness probe (10 s in, every 10 s) never failed three
			// times in a row: kubelet would have restarted the container.
			if cs.RestartCount != 0 || cs.State.Running == nil {
				t.Errorf("pod %s container %s: %d restarts, state %+v", p.Name, cs.Name, cs.RestartCount, cs.State)
			}
		}
	}
	if len(running) != int(want) {
		t.Errorf("%d pods run %s, want %d", len(running), ref, want)
	}
	// The containers' processes run as the scaffold's securityContext says.
	cs, err := n.node.Containers()
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, c := range cs {
		if c.Sandbox || c.Name != "notes" || !running[c.Pod] {
			continue
		}
		checked++
		checkContainerProcess(t, c)
	}
	if checked != int(want) {
		t.Errorf("found %d running notes containers of %s on the node, want %d (%+v)", checked, ref, want, cs)
	}
}

// checkContainerProcess reads a container's process from /proc: uid and
// gid 101, no capabilities, no new privileges, the root file system
// read-only and the emptyDirs writable.
func checkContainerProcess(t *testing.T, c kubeenv.Container) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.PID))
	if err != nil {
		t.Fatalf("container %s: %v", c.ID, err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	for k, want := range map[string]string{
		"Uid": "101 101 101 101", "Gid": "101 101 101 101",
		"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapBnd": "0000000000000000",
		"NoNewPrivs": "1",
	} {
		if fields[k] != want {
			t.Errorf("pod %s container %s (pid %d): %s is %q, want %q", c.Pod, c.Name, c.PID, k, fields[k], want)
		}
	}
	mountinfo, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", c.PID))
	if err != nil {
		t.Fatalf("container %s: %v", c.ID, err)
	}
	opts := map[string]string{}
	for _, line := range strings.Split(string(mountinfo), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 {
			opts[f[4]] = f[5]
		}
	}
	for mp, want := range map[string]string{"/": "ro", "/tmp": "rw", "/var/cache/nginx": "rw", "/var/run": "rw"} {
		o, ok := opts[mp]
		if !ok || !slices.Contains(strings.Split(o, ","), want) {
			t.Errorf("pod %s container %s: mount %s has options %q (present %v), want %s", c.Pod, c.Name, mp, o, ok, want)
		}
	}
}

func (n *kubeletNode) describe(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b strings.Builder
	fmt.Fprintf(&b, "serving %s", n.image)
	var pods corev1.PodList
	if err := n.env.Client.List(ctx, &pods, client.InNamespace("notes")); err != nil {
		return b.String() + "; pods: " + err.Error()
	}
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "; pod %s node=%q phase=%s ip=%s deleting=%v image=%s", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.PodIP, p.DeletionTimestamp != nil, p.Spec.Containers[0].Image)
		for _, c := range p.Status.Conditions {
			if c.Status != corev1.ConditionTrue {
				fmt.Fprintf(&b, " %s=%s(%s)", c.Type, c.Status, c.Message)
			}
		}
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil {
				fmt.Fprintf(&b, " waiting %s: %s", w.Reason, w.Message)
			}
			if cs.RestartCount > 0 {
				fmt.Fprintf(&b, " restarts=%d", cs.RestartCount)
			}
		}
	}
	return b.String()
}

// runcNode stands in for a kubelet and the deployment controller on the
// Deployment notes/notes where no real node can run.
type runcNode struct {
	nodeView
	env *kubeenv.Env
	reg *regserver.DistributionServer
	// service forwards the host's loopback to the serving container, as
	// the Service does to the ready pod.
	service *runcenv.Forwarder

	// container is the serving container.
	container *runcenv.Container
	// generation is the Deployment generation whose rollout was written.
	generation int64
}

func (n *runcNode) view() *nodeView     { return &n.nodeView }
func (n *runcNode) serviceAddr() string { return n.service.Addr() }

func (n *runcNode) checkServes(t *testing.T, ref string) {
	t.Helper()
	if n.image != ref {
		t.Fatalf("the node runs %s, want %s", n.image, ref)
	}
}

func (n *runcNode) describe(*testing.T) string {
	return fmt.Sprintf("runc runs %s (rolled out generation %d)", n.image, n.generation)
}

func newRuncNode(t *testing.T, env *kubeenv.Env, reg *regserver.DistributionServer) *runcNode {
	return &runcNode{env: env, reg: reg, service: runcenv.NewForwarder(t, 8080)}
}

// sync does one round of the node's work: when the Deployment's spec names
// another image, pull it with the registry credentials (an imagePullSecret
// would carry them), run it under the pod spec, wait for the readiness
// probe, move the Service to it; then write the status of a finished
// rollout of the spec's generation. The old container is left running
// until the test ends (its connections are closed by the move).
func (n *runcNode) sync(t *testing.T) {
	t.Helper()
	var d appsv1.Deployment
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.env.Client.Get(ctx, types.NamespacedName{Namespace: "notes", Name: "notes"}, &d); err != nil {
		if apierrors.IsNotFound(err) {
			return
		}
		t.Fatalf("node: reading the Deployment: %v", err)
	}
	if d.Generation == n.generation {
		return
	}
	spec := &d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("node: the Deployment has %d containers, want 1", len(spec.Containers))
	}
	ctr := spec.Containers[0]
	if ctr.Image != n.seen {
		n.seen, n.seenAt = ctr.Image, time.Now()
	}
	if ctr.Image != n.image {
		sec, err := runcenv.FromPodSpec(spec, ctr.Name)
		if err != nil {
			t.Fatalf("node: %v", err)
		}
		c := runcenv.Run(t, pullImage(t, n.reg, ctr.Image), sec)
		probe := ctr.ReadinessProbe
		if probe == nil || probe.HTTPGet == nil {
			t.Fatalf("node: container %s has no HTTP readiness probe", ctr.Name)
		}
		port := probe.HTTPGet.Port.IntValue()
		for _, p := range ctr.Ports {
			if probe.HTTPGet.Port.String() == p.Name {
				port = int(p.ContainerPort)
			}
		}
		if port != 8080 {
			t.Fatalf("node: readiness probe port %s is %d; the Service stand-in forwards 8080", probe.HTTPGet.Port.String(), port)
		}
		waitReady(t, c, fmt.Sprintf("http://127.0.0.1:%d%s", port, probe.HTTPGet.Path))
		n.service.Switch(c)
		n.image, n.container, n.servingAt = ctr.Image, c, time.Now()
	}
	d.Status = kubeenv.RolledOutStatus(&d, metav1.Now())
	// A deadline of its own: pulling and starting the image may take long.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.env.Client.Status().Update(ctx, &d); err != nil {
		if apierrors.IsConflict(err) {
			return // a newer spec: the next round
		}
		t.Fatalf("node: writing the Deployment status: %v", err)
	}
	t.Logf("node: Deployment notes/notes generation %d rolled out: %s", d.Generation, ctr.Image)
	n.generation = d.Generation
}

// waitReady probes url in the container as kubelet does (a 2xx or 3xx is
// success), every 50 ms for up to 15 s.
func waitReady(t *testing.T, c *runcenv.Container, url string) {
	t.Helper()
	client := c.HTTPClient()
	client.Timeout = 2 * time.Second
	deadline := time.Now().Add(15 * time.Second)
	last := "no answer"
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode >= 200 && resp.StatusCode < 400 {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("node: readiness probe %s failed for 15 s: %s\n%s", url, last, c.Logs())
}
