package main

// Hardening tests, part 1: registry faults during a whole `notesctl release`
// of the binary. The registry is CNCF Distribution with htpasswd behind a
// regserver.FaultProxy. The proxy serves plain HTTP and forwards with the
// default transport, so it cannot front Distribution's self-signed TLS: the
// registry here runs without TLS (TLS itself is covered by
// TestReleaseRegistryAndGitServer). The GitOps repository is on
// `git http-backend` with basic auth. Every scenario has its own image
// repository and GitOps repository, and the faults are scoped to the
// repository's paths, so the scenarios run in parallel against one registry.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/internal/regserver"
	"github.com/notesctl/notesctl/internal/testimage"
)

const (
	hardRegUser = "ci"
	hardRegPass = "s3cret-registry-pass"
	hardGitUser = "flux"
	hardGitPass = "s3cret-git-token"
)

// hardRig is a registry behind a fault proxy (behind a late-answer
// proxy), a git server, a site and a base image, shared by the scenarios of
// one test.
type hardRig struct {
	reg   *regserver.DistributionServer
	proxy *regserver.FaultProxy
	late  *lateProxy
	host  string // the registry as releases see it: the late proxy
	git   *gitserver.HTTPBackend
	base  string // --base of the releases
	site  string
}

func newHardRig(t *testing.T) *hardRig {
	t.Helper()
	reg := regserver.Distribution(t, regserver.DistributionOptions{User: hardRegUser, Password: hardRegPass})
	rig := &hardRig{
		reg:   reg,
		proxy: regserver.NewFaultProxy(t, "http://"+reg.Host),
		git:   gitserver.StartHTTPBackend(t, hardGitUser, hardGitPass),
		site:  newSite(t),
	}
	rig.late = newLateProxy(t, rig.proxy.URL)
	rig.host = rig.late.host
	layout, _ := testimage.SingleLayout(t)
	rig.base = "oci:" + layout
	return rig
}

// image is the repository name of a scenario, as the release sees it
// (through the proxies).
func (r *hardRig) image(name string) string { return r.host + "/acme/" + name }

// lateProxy passes requests on to the fault proxy, except that for a
// request matching an armed rule it lets the registry act on the request
// and then holds the answer back: the client gives up on a request that
// took effect. (The FaultProxy's stall holds a request back before
// forwarding it, so the registry never acts on it.)
type lateProxy struct {
	host  string
	mu    sync.Mutex
	rules []*lateRule
}

type lateRule struct {
	method string
	path   *regexp.Regexp
	delay  time.Duration
	times  int
}

func newLateProxy(t *testing.T, target string) *lateProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.Host = r.In.Host
	}}
	p := &lateProxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rule := p.take(r)
		if rule == nil {
			rp.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		select {
		case <-time.After(rule.delay):
		case <-r.Context().Done():
			return
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(srv.Close)
	p.host = srv.Listener.Addr().String()
	return p
}

// arm makes the next times requests with method whose path matches pathRe
// answer late, after delay.
func (p *lateProxy) arm(method, pathRe string, delay time.Duration, times int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = append(p.rules, &lateRule{method: method, path: regexp.MustCompile(pathRe), delay: delay, times: times})
}

func (p *lateProxy) take(r *http.Request) *lateRule {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, rule := range p.rules {
		if rule.times > 0 && rule.method == r.Method && rule.path.MatchString(r.URL.Path) {
			rule.times--
			return rule
		}
	}
	return nil
}

// paths is a regular expression for the registry paths of a scenario.
func (r *hardRig) paths(name, rest string) string {
	return "^/v2/acme/" + regexp.QuoteMeta(name) + "/" + rest
}

// gitops scaffolds a GitOps repository for the image of a scenario on the
// git server and returns its URL.
func (r *hardRig) gitops(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	url := r.git.RepoURL(name + ".git")
	mustSucceed(t, notesctl(t, dir, nil, "", "manifests", "init", "--dir", ".", "--image", r.image(name), "--git-url", url))
	gitserver.SeedBareRepo(t, r.git.RepoPath(name+".git"), "main", dir)
	return url
}

func (r *hardRig) env(extra ...string) []string {
	return append([]string{
		"NOTESCTL_REGISTRY_USERNAME=" + hardRegUser, "NOTESCTL_REGISTRY_PASSWORD=" + hardRegPass,
		"NOTESCTL_GITOPS_PASSWORD=" + hardGitPass,
	}, extra...)
}

func (r *hardRig) releaseArgs(name string, extra ...string) []string {
	return append([]string{"release", "--site", r.site, "--image", r.image(name), "--base", r.base,
		"--gitops", r.git.RepoURL(name + ".git"), "--gitops-username", hardGitUser}, extra...)
}

// release runs the binary for a scenario.
func (r *hardRig) release(t *testing.T, name string, env []string, extra ...string) result {
	t.Helper()
	return notesctl(t, r.site, r.env(env...), "", r.releaseArgs(name, extra...)...)
}

// tip is the commit the GitOps branch of a scenario points at.
func (r *hardRig) tip(t *testing.T, name string) string {
	t.Helper()
	return gitserver.Git(t, r.git.RepoPath(name+".git"), "rev-parse", "refs/heads/main")
}

// deployed is the image reference the GitOps branch of a scenario holds.
func (r *hardRig) deployed(t *testing.T, name string) string {
	t.Helper()
	return deployedIn(t, r.git.RepoPath(name+".git"), "main")
}

// deployedIn reads the image the marked line of a GitOps repository's
// branch holds.
func deployedIn(t *testing.T, repo, rev string) string {
	t.Helper()
	out := gitserver.Git(t, repo, "grep", "-h", "-e", `"$imagepolicy": "flux-system:notes"`, rev, "--", "apps/notes/deployment.yaml")
	m := regexp.MustCompile(`image:\s+(\S+)\s+#`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no marked image line in %s at %s:\n%s", repo, rev, out)
	}
	return m[1]
}

// pullVerify pulls ref (named through the proxy) straight from the
// registry and checks the manifest and every blob against their digests.
func (r *hardRig) pullVerify(t *testing.T, ref string) {
	t.Helper()
	pullVerifyAt(t, strings.Replace(ref, r.host, r.reg.Host, 1), &authn.Basic{Username: hardRegUser, Password: hardRegPass})
}

func pullVerifyAt(t *testing.T, ref string, auth authn.Authenticator) {
	t.Helper()
	if !strings.Contains(ref, "@sha256:") {
		t.Fatalf("deployed reference %q carries no digest", ref)
	}
	pr, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(pr, remote.WithAuth(auth))
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	// validate.Image downloads every layer and checks its digest and
	// diff ID, the config and the manifest.
	if err := validate.Image(img); err != nil {
		t.Fatalf("%s does not verify: %v", ref, err)
	}
}

// assertLinear checks that the branch history has no merges and that old
// is an ancestor of the tip: nothing was force-pushed.
func assertLinear(t *testing.T, repo, old string) {
	t.Helper()
	if merges := gitserver.Git(t, repo, "rev-list", "--merges", "refs/heads/main"); merges != "" {
		t.Errorf("GitOps history has merge commits: %s", merges)
	}
	if _, err := gitserver.GitE(repo, nil, "merge-base", "--is-ancestor", old, "refs/heads/main"); err != nil {
		t.Errorf("the previous tip %s is not an ancestor of the new tip: history was rewritten", old)
	}
	gitserver.Git(t, repo, "fsck", "--strict", "--no-dangling")
}

// countDeploys counts the commits on the branch whose message deploys tag.
func countDeploys(t *testing.T, repo, tag string) int {
	t.Helper()
	out := gitserver.Git(t, repo, "log", "--format=%s", "refs/heads/main")
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Deploy ") && strings.HasSuffix(l, ":"+tag) {
			n++
		}
	}
	return n
}

func tagOfRef(ref string) string {
	at := strings.LastIndex(ref, "@")
	if at < 0 {
		at = len(ref)
	}
	s := ref[:at]
	return s[strings.LastIndex(s, ":")+1:]
}

type registryFault struct {
	name   string
	faults func(r *hardRig, n string) []regserver.Fault
	// late, when set, arms the late-answer proxy for the scenario.
	late func(r *hardRig, n string)
	env  []string
	// ok: the release must succeed; else it must fail with an error
	// matching errRe.
	ok    bool
	errRe string
	check func(t *testing.T, r *hardRig, n string, res result, took time.Duration)
}

func TestFaultRegistry(t *testing.T) {
	t.Parallel()
	rig := newHardRig(t)
	cases := []registryFault{
		{
			name: "500-on-blob-upload-start",
			faults: func(r *hardRig, n string) []regserver.Fault {
				return []regserver.Fault{{Method: http.MethodPost, Path: r.paths(n, "blobs/uploads/$"), Kind: regserver.FaultStatus, Status: 500, Times: 2}}
			},
			ok: true,
		},
		{
			name: "502-on-manifest-put",
			faults: func(r *hardRig, n string) []regserver.Fault {
				return []regserver.Fault{{Method: http.MethodPut, Path: r.paths(n, "manifests/"), Kind: regserver.FaultStatus, Status: 502, Times: 2}}
			},
			ok: true,
		},
		{
			name: "503-on-blob-head",
			faults: func(r *hardRig, n string) []regserver.Fault {
				return []regserver.Fault{{Method: http.MethodHead, Path: r.paths(n, "blobs/sha256:"), Kind: regserver.FaultStatus, Status: 503, Times: 3}}
			},
			ok: true,
		},
		{
			name: "500-on-blob-patch",
			faults: func(r *hardRig, n string) []regserver.Fault {
				return []regserver.Fault{{Method: http.MethodPatch, Path: r.paths(n, "blobs/uploads/."), Kind: regserver.FaultStatus, Status: 500, Times: 2}}
			},
			ok: true,
		},
		{
			name: "429-retry-after-on-manifest",
			faults: func(r *hardRig, n string) []regserver.Fault {
				return []regserver.Fault{{Method: http.MethodPut, Path: r.paths(n, "manifests/"), Kind: regserver.FaultStatus, Status: 429, RetryAfter: "2"}}
			},
			ok: true,
			check: func(t *testing.T, r *hardRig, n string, res result, took time.Duration) {
				assertRetryAfter(t, r.proxy.Matching(http.MethodPut, r.paths(n, "manifests/")), 2*time.Second)
			},
		},
		{
			// Retry-After on writes into an upload session, which ggcr
			// retries as a whole upload with its own backoff: every PATCH
			// after the first 429 must wait out the Retry-After.
			name: "429-retry-after-on-blob-patch",
			faults: func(r *hardRig, n string) []regserver.Fault {
				return []regserver.Fault{{Method: http.MethodPatch, Path: r.paths(n, "blobs/uploads/."), Kind: regserver.FaultStatus, Status: 429, RetryAfter: "2", Times: 4}}
			},
			ok: true,
			check: func(t *testing.T, r *hardRig, n string, res result, took time.Duration) {
				patches := r.proxy.Matching(http.MethodPatch, r.paths(n, "blobs/uploads/."))
				var first time.Time
				for _, rq := range patches {
					if rq.Status == http.StatusTooManyRequests && first.IsZero() {
						first = rq.Time
					}
				}
				if first.IsZero() {
					t.Fatal("the 429 was never sent")
				}
				for _, rq := range patches {
					if rq.Status != http.StatusTooManyRequests && rq.Time.Before(first.Add(2*time.Second)) {
						t.Errorf("PATCH %s sent %s after the first 429, before its Retry-After of 2s", rq.Path, rq.Time.Sub(first))
					}
				}
			},
		},
		{
			name: "reset-mid-blob-upload",
			faults: func(r *hardRig, n string) []regserver.Fault {
				return []regserver.Fault{{Method: http.MethodPatch, Path: r.paths(n, "blobs/uploads/."), Kind: regserver.FaultReset, ResetAfter: 4096}}
			},
			ok: true,
		},
		{
			name: "stall-once-blob-patch",
			faults: func(r *hardRig, n string) []regserver.Fault {
				return []regserver.Fault{{Method: http.MethodPatch, Path: r.paths(n, "blobs/uploads/."), Kind: regserver.FaultStall, Stall: time.Minute}}
			},
			env: []string{"NOTESCTL_REGISTRY_TIMEOUT=2s"},
			ok:  true,
			check: func(t *testing.T, r *hardRig, n string, res result, took time.Duration) {
				if took < 2*time.Second {
					t.Errorf("release took %s, less than the 2s timeout it had to wait out", took)
				}
			},
		},
		{
			// The registry commits a blob but its answer comes after the
			// client gave up: the replayed commit finds the session gone
			// (404 BLOB_UPLOAD_UNKNOWN) and the upload starts again, with
			// an existence check that finds the blob.
			name: "blob-commit-answer-lost",
			late: func(r *hardRig, n string) {
				r.late.arm(http.MethodPut, r.paths(n, "blobs/uploads/."), 3*time.Second, 1)
			},
			env: []string{"NOTESCTL_REGISTRY_TIMEOUT=1s"},
			ok:  true,
			check: func(t *testing.T, r *hardRig, n string, res result, took time.Duration) {
				gone := 0
				for _, rq := range r.proxy.Matching(http.MethodPut, r.paths(n, "blobs/uploads/.")) {
					if rq.Status == http.StatusNotFound {
						gone++
					}
				}
				if gone == 0 || !strings.Contains(res.stderr, "starting the blob upload again") {
					t.Errorf("the lost answer was not followed by a replay that found the session gone and a new upload")
				}
			},
		},
		{
			// An expired token or a registry-side credential cache: one
			// request mid-push is refused. The blob commit (PUT, no body)
			// is retried by our transport, the PATCH by a new upload, the
			// manifest (PUT with a body) by our transport.
			name: "401-once-on-blob-commit",
			faults: func(r *hardRig, n string) []regserver.Fault {
				return []regserver.Fault{{Method: http.MethodPut, Path: r.paths(n, "blobs/uploads/."), Kind: regserver.FaultStatus, Status: 401}}
			},
			ok: true,
		},
		{
			name: "401-once-on-blob-patch",
			faults: func(r *hardRig, n string) []regserver.Fault {
				return []regserver.Fault{{Method: http.MethodPatch, Path: r.paths(n, "blobs/uploads/."), Kind: regserver.FaultStatus, Status: 401}}
			},
			ok: true,
		},
		{
			name: "401-once-on-manifest",
			faults: func(r *hardRig, n string) []regserver.Fault {
				return []regserver.Fault{{Method: http.MethodPut, Path: r.paths(n, "manifests/"), Kind: regserver.FaultStatus, Status: 401}}
			},
			ok: true,
		},
		{
			// The registry loses the blobs after the push (every HEAD of a
			// blob answers 404): verify must refuse to commit.
			name: "blobs-missing-at-verify",
			faults: func(r *hardRig, n string) []regserver.Fault {
				return []regserver.Fault{{Method: http.MethodHead, Path: r.paths(n, "blobs/sha256:"), Kind: regserver.FaultStatus, Status: 404, Times: -1}}
			},
			errRe: `image {host}/acme/blobs-missing-at-verify:\S+ is not complete in {host}/acme/blobs-missing-at-verify; not committing`,
		},
		{
			name: "500-persistent",
			faults: func(r *hardRig, n string) []regserver.Fault {
				return []regserver.Fault{{Method: http.MethodPost, Path: r.paths(n, "blobs/uploads/$"), Kind: regserver.FaultStatus, Status: 500, Times: -1}}
			},
			errRe: `publish to {host}/acme/500-persistent: POST http://{host}/v2/acme/500-persistent/blobs/uploads/: .*HTTP 500; gave up after 5 attempts`,
		},
		{
			// Every manifest PUT stalls: the release must give up on the
			// manifest with the timeout named. The timeout applies to every
			// registry request, and the blob uploads before the manifest
			// must not time out too: under load (all these scenarios run
			// at once, next to other tests) a 1s timeout sometimes expired
			// on a blob request five times over, and the release failed on
			// the blob instead. 3s is far above any answer of the local
			// registry, and still 20 times below the stall.
			name: "stall-persistent-manifest",
			faults: func(r *hardRig, n string) []regserver.Fault {
				return []regserver.Fault{{Method: http.MethodPut, Path: r.paths(n, "manifests/"), Kind: regserver.FaultStall, Stall: time.Minute, Times: -1}}
			},
			env:   []string{"NOTESCTL_REGISTRY_TIMEOUT=3s"},
			errRe: `publish to {host}/acme/stall-persistent-manifest: .*PUT http://{host}/v2/acme/stall-persistent-manifest/manifests/\S+: giving up after 5 attempt\(s\): .*timeout awaiting response headers: the registry did not answer within 3s \(NOTESCTL_REGISTRY_TIMEOUT`,
			check: func(t *testing.T, r *hardRig, n string, res result, took time.Duration) {
				// Every attempt was a manifest PUT that got no answer.
				puts := 0
				for _, rq := range r.proxy.Matching(http.MethodPut, r.paths(n, "manifests/")) {
					if rq.Fault != "" {
						puts++
					}
				}
				if puts != 5 {
					t.Errorf("%d stalled manifest PUTs, want 5 (one per attempt)", puts)
				}
			},
		},
		{
			name:  "wrong-registry-password",
			env:   []string{"NOTESCTL_REGISTRY_PASSWORD=not-the-registry-password"},
			errRe: `{host}/acme/wrong-registry-password.*authentication failed; check the registry credentials`,
			check: func(t *testing.T, r *hardRig, n string, res result, took time.Duration) {
				if strings.Contains(res.all(), "not-the-registry-password") {
					t.Errorf("output shows the password")
				}
			},
		},
	}
	names := make([]string, len(cases))
	for i, c := range cases {
		names[i] = c.name
	}
	concurrently(t, names, func(t *testing.T, i int) {
		c := cases[i]
		n := c.name
		rig.gitops(t, n)
		before := rig.tip(t, n)
		if c.faults != nil {
			for _, f := range c.faults(rig, n) {
				rig.proxy.Inject(t, f)
			}
		}
		if c.late != nil {
			c.late(rig, n)
		}
		start := time.Now()
		res := rig.release(t, n, c.env)
		took := time.Since(start)
		if c.check != nil {
			c.check(t, rig, n, res, took)
		}
		for _, secret := range []string{hardRegPass, hardGitPass} {
			if strings.Contains(res.all(), secret) {
				t.Errorf("output shows the secret %q", secret)
			}
		}
		if !c.ok {
			re := regexp.MustCompile(strings.ReplaceAll(c.errRe, "{host}", regexp.QuoteMeta(rig.host)))
			if res.code == 0 {
				t.Fatalf("release succeeded, want a failure matching %s", re)
			}
			if !re.MatchString(res.stderr) {
				t.Errorf("error does not match %s:\n%s", re, res.stderr)
			}
			if tip := rig.tip(t, n); tip != before {
				t.Errorf("a failed release moved the GitOps branch: %s -> %s", before, tip)
			}
			return
		}
		mustSucceed(t, res)
		ref := rig.deployed(t, n)
		if m := imageLine.FindStringSubmatch(res.stdout); m == nil || m[1] != ref {
			t.Errorf("the GitOps branch deploys %s, the release reported %v", ref, m)
		}
		rig.pullVerify(t, ref)
		assertLinear(t, rig.git.RepoPath(n+".git"), before)
		if got := countDeploys(t, rig.git.RepoPath(n+".git"), tagOfRef(ref)); got != 1 {
			t.Errorf("%d commits deploy %s, want exactly 1", got, tagOfRef(ref))
		}
	})
	injected, seen := 0, rig.proxy.Requests()
	for _, rq := range seen {
		if rq.Fault != "" {
			injected++
		}
	}
	t.Logf("%d registry fault scenarios: %d faults injected into %d registry requests", len(cases), injected, len(seen))
}

// concurrently runs subtests side by side. Unlike t.Parallel, they do not
// wait for a -parallel slot (GOMAXPROCS by default): these subtests mostly
// wait on servers, backoffs and stalls, not on the CPU.
func concurrently(t *testing.T, names []string, run func(t *testing.T, i int)) {
	t.Helper()
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(name, func(t *testing.T) { run(t, i) })
		}()
	}
	wg.Wait()
}

// assertRetryAfter checks that the request after the 429 arrived no sooner
// than the Retry-After the 429 named.
func assertRetryAfter(t *testing.T, reqs []regserver.RecordedRequest, ra time.Duration) {
	t.Helper()
	for i, rq := range reqs {
		if rq.Status != http.StatusTooManyRequests {
			continue
		}
		if i+1 >= len(reqs) {
			t.Fatalf("no request after the 429")
		}
		if gap := reqs[i+1].Time.Sub(rq.Time); gap < ra {
			t.Errorf("retried %s after %s, before the Retry-After of %s", rq.Path, gap, ra)
		}
		return
	}
	t.Fatalf("the 429 was never sent")
}

// dropProxy is a small proxy in front of git http-backend that drops the
// client connection (TCP RST) of the next receive-pack request: before
// forwarding it (the server never sees the push) or after the server
// answered (the push landed, the client never hears so).
type dropProxy struct {
	URL   string
	mu    sync.Mutex
	armed string // "", "before", "after"
	drops int
}

func newDropProxy(t *testing.T, target string) *dropProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &dropProxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mode := ""
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-receive-pack") {
			p.mu.Lock()
			mode, p.armed = p.armed, ""
			if mode != "" {
				p.drops++
			}
			p.mu.Unlock()
		}
		switch mode {
		case "":
			rp.ServeHTTP(w, r)
			return
		case "before":
			_, _ = io.CopyN(io.Discard, r.Body, 64)
		case "after":
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r)
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(err)
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		conn.Close()
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

func (p *dropProxy) arm(mode string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = mode
}

func (p *dropProxy) dropped() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.drops
}

// concurrentCommitHook is a pre-receive hook that, the first time it runs,
// pushes a commit prepared in work (another writer's change) to the branch
// before letting the push it guards go on: that push then loses the race
// exactly between notesctl's clone and push.
func concurrentCommitHook(work, bare, marker string) string {
	return fmt.Sprintf(`#!/bin/sh
cat >/dev/null
if [ -e %[3]q ]; then exit 0; fi
touch %[3]q
cd %[1]q && env -u GIT_DIR -u GIT_QUARANTINE_PATH -u GIT_OBJECT_DIRECTORY -u GIT_ALTERNATE_OBJECT_DIRECTORIES \
	git push -q %[2]q HEAD:refs/heads/main >&2
exit 0
`, work, bare, marker)
}

func TestFaultGit(t *testing.T) {
	t.Parallel()
	rig := newHardRig(t)
	type gitFault struct {
		name  string
		setup func(t *testing.T, n string) (env []string, gitopsURL string)
		ok    bool
		errRe string
		// after checks a success; retry, when set, is run after a failure
		// (e.g. removes the hook) and the release must then succeed.
		after func(t *testing.T, n string, res result)
		retry func(t *testing.T, n string)
	}
	drop := newDropProxy(t, rig.git.URL)
	cases := []gitFault{
		{
			name: "non-fast-forward",
			setup: func(t *testing.T, n string) ([]string, string) {
				bare := rig.git.RepoPath(n + ".git")
				work := filepath.Join(t.TempDir(), "other")
				gitserver.CloneWorktree(t, bare, work, "main")
				if err := os.WriteFile(filepath.Join(work, "README.md"), []byte("another writer's change\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				gitserver.Git(t, work, "add", "README.md")
				gitserver.Git(t, work, "-c", "user.name=Other", "-c", "user.email=other@example.com", "commit", "-q", "-m", "another writer")
				gitserver.InstallHook(t, bare, "pre-receive", concurrentCommitHook(work, bare, filepath.Join(t.TempDir(), "fired")))
				return nil, ""
			},
			ok: true,
			after: func(t *testing.T, n string, res result) {
				bare := rig.git.RepoPath(n + ".git")
				if !strings.Contains(res.stderr, "lost a race") {
					t.Errorf("no retry on the new tip was reported")
				}
				if got := gitserver.Git(t, bare, "show", "main:README.md"); got != "another writer's change" {
					t.Errorf("the other writer's change is lost: README.md = %q", got)
				}
				if parent := gitserver.Git(t, bare, "log", "-1", "--format=%s", "main^"); parent != "another writer" {
					t.Errorf("the release commit is not on top of the other writer's: parent %q", parent)
				}
			},
		},
		{
			name: "pre-receive-rejects",
			setup: func(t *testing.T, n string) ([]string, string) {
				gitserver.InstallHook(t, rig.git.RepoPath(n+".git"), "pre-receive", "#!/bin/sh\necho 'deployments are frozen until Monday (CHG-1234)' >&2\nexit 1\n")
				return nil, ""
			},
			errRe: `push rejected by http://127\.0\.0\.1:\d+/pre-receive-rejects\.git \(branch main\).*\n(.*\n)*remote: deployments are frozen until Monday \(CHG-1234\)`,
			retry: func(t *testing.T, n string) {
				if err := os.Remove(filepath.Join(rig.git.RepoPath(n+".git"), "hooks", "pre-receive")); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "protected-branch",
			setup: func(t *testing.T, n string) ([]string, string) {
				gitserver.InstallHook(t, rig.git.RepoPath(n+".git"), "pre-receive", `#!/bin/sh
while read old new ref; do
	if [ "$ref" = refs/heads/main ]; then
		echo "error: GH006: Protected branch update failed for refs/heads/main." >&2
		echo "error: Changes must be made through a pull request." >&2
		exit 1
	fi
done
`)
				return nil, ""
			},
			errRe: `push rejected by \S+/protected-branch\.git \(branch main\)(.*\n)*remote: error: GH006: Protected branch update failed for refs/heads/main\.\n(.*\n)*remote: error: Changes must be made through a pull request\.`,
		},
		{
			name: "wrong-credentials",
			setup: func(t *testing.T, n string) ([]string, string) {
				return []string{"NOTESCTL_GITOPS_PASSWORD=wrong-git-token"}, ""
			},
			errRe: `authentication failed for http://127\.0\.0\.1:\d+/wrong-credentials\.git`,
			after: func(t *testing.T, n string, res result) {
				if strings.Contains(res.all(), "wrong-git-token") {
					t.Errorf("output shows the password")
				}
			},
		},
		{
			name: "connection-dropped-before-update",
			setup: func(t *testing.T, n string) ([]string, string) {
				drop.arm("before")
				return nil, drop.URL + "/" + n + ".git"
			},
			ok: true,
		},
		{
			name: "connection-dropped-after-update",
			setup: func(t *testing.T, n string) ([]string, string) {
				drop.arm("after")
				return nil, drop.URL + "/" + n + ".git"
			},
			ok: true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := c.name
			rig.gitops(t, n)
			bare := rig.git.RepoPath(n + ".git")
			before := rig.tip(t, n)
			env, url := c.setup(t, n)
			var extra []string
			if url != "" {
				extra = []string{"--gitops", url}
			}
			res := rig.release(t, n, env, extra...)
			for _, secret := range []string{hardRegPass, hardGitPass} {
				if strings.Contains(res.all(), secret) {
					t.Errorf("output shows the secret %q", secret)
				}
			}
			if c.after != nil && !c.ok {
				c.after(t, n, res)
			}
			if !c.ok {
				if res.code == 0 {
					t.Fatalf("release succeeded, want a failure matching %s", c.errRe)
				}
				if re := regexp.MustCompile(c.errRe); !re.MatchString(res.stderr) {
					t.Errorf("error does not match %s:\n%s", re, res.stderr)
				}
				if tip := rig.tip(t, n); tip != before {
					t.Fatalf("a failed release moved the GitOps branch: %s -> %s", before, tip)
				}
				if c.retry == nil {
					return
				}
				// The image is complete in the registry; after the cause
				// is removed the next run commits it and uploads nothing.
				c.retry(t, n)
				uploads := len(rig.proxy.Matching("", rig.paths(n, "blobs/uploads/")))
				res = rig.release(t, n, env, extra...)
				mustSucceed(t, res)
				if !strings.Contains(res.stdout, "nothing uploaded") {
					t.Errorf("the second run did not find the image already pushed")
				}
				if again := len(rig.proxy.Matching("", rig.paths(n, "blobs/uploads/"))); again != uploads {
					t.Errorf("the second run re-uploaded blobs: %d upload requests", again-uploads)
				}
			}
			mustSucceed(t, res)
			ref := rig.deployed(t, n)
			if m := imageLine.FindStringSubmatch(res.stdout); m == nil || m[1] != ref {
				t.Errorf("the GitOps branch deploys %s, the release reported %v", ref, m)
			}
			rig.pullVerify(t, ref)
			assertLinear(t, bare, before)
			if got := countDeploys(t, bare, tagOfRef(ref)); got != 1 {
				t.Errorf("%d commits deploy %s, want exactly 1", got, tagOfRef(ref))
			}
			if c.after != nil {
				c.after(t, n, res)
			}
		})
	}
	if got := drop.dropped(); got != 2 {
		t.Errorf("the proxy dropped %d connections, want 2", got)
	}
}
