package actiontest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/notesctl/notesctl/internal/giteaenv"
	"github.com/notesctl/notesctl/internal/kubeenv"
	"github.com/notesctl/notesctl/internal/regserver"
	"github.com/notesctl/notesctl/internal/sitegit"
	"github.com/notesctl/notesctl/internal/testenv"
	"github.com/notesctl/notesctl/render"
)

const (
	actionRepo  = "notesctl" // the action's repository on the test Gitea
	gitopsRepo  = "gitops"
	regUser     = "ci"
	regPassword = "Registry-s3cret-7781"
	release     = "v1.0.0" // a release with the prebuilt binary
	badRelease  = "v1.0.1" // a release whose archive does not match checksums.txt
	webRoot     = "usr/share/nginx/html"
)

// harness is one Gitea + runner, registry and GitOps repository that the
// scenarios share (starting them is most of a scenario's cost).
type harness struct {
	gitea    *giteaenv.Env
	reg      *regserver.DistributionServer
	image    string
	notesctl string // the release binary, for scaffolding the GitOps repository
	workflow string // testdata/workflows/gitea-release.yml
}

func newHarness(t *testing.T, opts giteaenv.Options) *harness {
	t.Helper()
	testenv.LookPath(t, "git", "apt-get install -y git")
	h := &harness{}
	h.gitea = giteaenv.Start(t, opts)
	h.reg = regserver.Distribution(t, regserver.DistributionOptions{User: regUser, Password: regPassword, TLS: true})
	h.image = h.reg.Host + "/notes/site"
	wf, err := os.ReadFile(filepath.Join(repoRoot(t), "testdata/workflows/gitea-release.yml"))
	if err != nil {
		t.Fatal(err)
	}
	h.workflow = string(wf)

	// The action: this checkout (with uncommitted changes) as a repository on
	// the Gitea, a release with the binary, and one with a corrupted archive.
	h.gitea.CreateRepo(t, actionRepo)
	h.gitea.Push(t, snapshotCheckout(t), actionRepo, "main")
	dist := t.TempDir()
	runRelease(t, release, dist)
	archive, err := os.ReadFile(filepath.Join(dist, hostArchive()))
	if err != nil {
		t.Fatal(err)
	}
	sums, err := os.ReadFile(filepath.Join(dist, "checksums.txt"))
	if err != nil {
		t.Fatal(err)
	}
	rel := h.gitea.CreateRelease(t, actionRepo, release, "main")
	h.gitea.UploadAsset(t, actionRepo, rel.ID, hostArchive(), archive)
	h.gitea.UploadAsset(t, actionRepo, rel.ID, "checksums.txt", sums)
	// The bad release lists a checksum no archive has, so that the runner's
	// tool cache (keyed by checksum) cannot hold a binary for it either.
	bad := h.gitea.CreateRelease(t, actionRepo, badRelease, "main")
	h.gitea.UploadAsset(t, actionRepo, bad.ID, hostArchive(), append(bytes.Clone(archive), 0))
	h.gitea.UploadAsset(t, actionRepo, bad.ID, "checksums.txt", []byte(sumLine(hostArchive(), append(bytes.Clone(archive), 1))))
	h.notesctl = extractBinary(t, archive, t.TempDir())

	// The GitOps repository, scaffolded by notesctl.
	h.gitea.CreateRepo(t, gitopsRepo)
	scaffold := t.TempDir()
	run(t, scaffold, h.notesctl, "manifests", "init", "--dir", ".", "--image", h.image, "--git-url", h.gitea.CloneURL(gitopsRepo))
	gitCommit(t, scaffold, "scaffold")
	h.gitea.Push(t, scaffold, gitopsRepo, "main")
	return h
}

// snapshotCheckout copies the files git would commit from this checkout
// (tracked and untracked, not ignored) into a new repository with one commit.
func snapshotCheckout(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dst := t.TempDir()
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(root, f)
		fi, err := os.Lstat(src)
		if err != nil {
			continue // deleted in the work tree
		}
		p := filepath.Join(dst, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(src)
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	gitCommit(t, dst, "notesctl snapshot")
	return dst
}

func run(t *testing.T, dir, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

func gitCommit(t *testing.T, dir, msg string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, ".git")); err != nil {
		run(t, dir, "git", "init", "-q", "-b", "main")
	}
	run(t, dir, "git", "add", "-A")
	run(t, dir, "git", "-c", "user.name=Test", "-c", "user.email=test@example.org", "-c", "commit.gpgsign=false", "commit", "-q", "-m", msg)
}

// siteRepo creates a site repository on the Gitea whose workflow uses the
// action at ref, with the variables and secrets the workflow reads, and
// returns its work tree (not yet pushed). modify, if set, changes the site
// before the commit.
func (h *harness) siteRepo(t *testing.T, repo, ref string, at time.Time, modify func(dir string)) string {
	t.Helper()
	g := h.gitea
	g.CreateRepo(t, repo)
	for k, v := range map[string]string{
		"IMAGE": h.image, "REGISTRY_USER": regUser, "REGISTRY_CA_FILE": h.reg.CAFile,
		"GITOPS_REPO": g.CloneURL(gitopsRepo), "GITOPS_USER": giteaenv.Owner,
	} {
		g.SetVariable(t, repo, k, v)
	}
	g.SetSecret(t, repo, "REGISTRY_PASSWORD", regPassword)
	g.SetSecret(t, repo, "GITOPS_TOKEN", g.Token)

	dir := t.TempDir()
	if _, err := sitegit.Fixture(dir); err != nil {
		t.Fatal(err)
	}
	wf := strings.Replace(h.workflow, "uses: notesbot/notesctl@main", "uses: "+giteaenv.Owner+"/"+actionRepo+"@"+ref, 1)
	if !strings.Contains(wf, "@"+ref) {
		t.Fatal("the workflow template no longer names notesbot/notesctl@main")
	}
	p := filepath.Join(dir, ".gitea/workflows/release.yml")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(wf), 0o644); err != nil {
		t.Fatal(err)
	}
	if modify != nil {
		modify(dir)
	}
	if _, err := sitegit.CommitAll(dir, "workflow using the action at "+ref, at); err != nil {
		t.Fatal(err)
	}
	return dir
}

// jobResult is a finished run with its one job's log and printed outputs.
type jobResult struct {
	run     giteaenv.Run
	log     string
	outputs map[string]string
}

var outputLine = regexp.MustCompile(`(?m)output ([A-Z_]+)=(.*)$`)

// push pushes the site and waits for the run it starts.
func (h *harness) push(t *testing.T, repo, dir string) jobResult {
	t.Helper()
	after, err := h.gitea.LastRunID(repo)
	if err != nil {
		t.Fatal(err)
	}
	h.gitea.Push(t, dir, repo, "main")
	return h.wait(t, repo, after)
}

func (h *harness) wait(t *testing.T, repo string, after int64) jobResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	r, err := h.gitea.WaitRun(ctx, repo, after)
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := h.gitea.Jobs(repo, r.ID)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("jobs of run %d: %v %+v", r.ID, err, jobs)
	}
	log, err := h.gitea.JobLog(repo, jobs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	res := jobResult{run: r, log: log, outputs: map[string]string{}}
	for _, m := range outputLine.FindAllStringSubmatch(log, -1) {
		res.outputs[m[1]] = strings.TrimRight(m[2], "\r")
	}
	t.Logf("%s run %d: %s in %s (install-method=%q)", repo, r.ID, r.Conclusion, time.Since(start).Round(time.Millisecond), res.outputs["INSTALL_METHOD"])
	if dir := os.Getenv("NOTESCTL_ACTIONTEST_LOGS"); dir != "" {
		// For a look at what a user sees in the job log.
		_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-run%d.log", repo, r.ID)), []byte(log), 0o644)
	}
	// No secret of any scenario may reach a job log.
	for _, secret := range []string{regPassword, h.gitea.Token, h.gitea.Password} {
		if strings.Contains(log, secret) {
			t.Errorf("a secret appears in the job log of run %d", r.ID)
		}
	}
	return res
}

func (r jobResult) mustConclude(t *testing.T, want string) {
	t.Helper()
	if r.run.Conclusion != want {
		t.Fatalf("run %d concluded %q, want %q; job log:\n%s", r.run.ID, r.run.Conclusion, want, r.log)
	}
}

// gitopsCommits clones the GitOps repository and returns its commit count
// and the file that holds the image line.
func (h *harness) gitopsCommits(t *testing.T) (int, string) {
	t.Helper()
	dir := t.TempDir()
	run(t, dir, "git", "clone", "--quiet", h.gitea.CloneURL(gitopsRepo), "g")
	n, err := strconv.Atoi(strings.TrimSpace(run(t, filepath.Join(dir, "g"), "git", "rev-list", "--count", "HEAD")))
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	_ = filepath.WalkDir(filepath.Join(dir, "g"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".yaml") {
			b, _ := os.ReadFile(p)
			all.Write(b)
		}
		return err
	})
	return n, all.String()
}

func TestActionOnGitea(t *testing.T) {
	h := newHarness(t, giteaenv.Options{})
	base := sitegit.Epoch

	// The prebuilt path: a release of the action's ref exists.
	var released jobResult
	siteA := h.siteRepo(t, "site", release, base.Add(time.Hour), nil)
	t.Run("release binary", func(t *testing.T) {
		before, _ := h.gitopsCommits(t)
		r := h.push(t, "site", siteA)
		released = r
		r.mustConclude(t, "success")
		out := r.outputs
		if !strings.Contains(r.log, "notesctl install: install-method=release") || strings.Contains(r.log, "go build") {
			t.Errorf("the job did not use the release binary (or ran go build):\n%s", r.log)
		}
		want := map[string]string{"INSTALL_METHOD": "release", "NOTESCTL_VERSION": release, "CHANGED": "true", "SKIPPED": "false"}
		for k, v := range want {
			if out[k] != v {
				t.Errorf("output %s = %q, want %q", k, out[k], v)
			}
		}
		if !strings.HasPrefix(out["IMAGE"], h.image+":"+out["TAG"]+"@"+out["DIGEST"]) || out["DIGEST"] == "" || out["TAG"] == "" {
			t.Errorf("outputs image %q, tag %q, digest %q do not agree", out["IMAGE"], out["TAG"], out["DIGEST"])
		}
		if n, _ := strconv.Atoi(out["PAGES"]); n < 5 {
			t.Errorf("output pages = %q", out["PAGES"])
		}
		var meta map[string]any
		if err := json.Unmarshal([]byte(out["METADATA"]), &meta); err != nil || meta["containerimage.digest"] != out["DIGEST"] ||
			meta["image.name"] != h.image+":"+out["TAG"] {
			t.Errorf("output metadata %q (%v)", out["METADATA"], err)
		}
		for _, want := range []string{"### notesctl release: released", "| Digest | `" + out["DIGEST"] + "` |", "| GitOps commit | `" + out["GITOPS_COMMIT"] + "` |"} {
			if !strings.Contains(r.log, want) {
				t.Errorf("the summary in the job log lacks %q", want)
			}
		}

		// The image validates and holds the rendered site.
		img := h.pull(t, out["IMAGE"])
		if err := validate.Image(img); err != nil {
			t.Errorf("the pushed image does not validate: %v", err)
		}
		assertSameFiles(t, imageFiles(t, img), renderedSite(t, siteA))

		// Exactly one GitOps commit, which deploys the image.
		after, manifests := h.gitopsCommits(t)
		if after != before+1 {
			t.Errorf("GitOps repository has %d commits after the release, %d before; want one more", after, before)
		}
		if !strings.Contains(manifests, out["IMAGE"]) {
			t.Errorf("the GitOps manifests do not name %s", out["IMAGE"])
		}
	})

	t.Run("same commit again is a no-op", func(t *testing.T) {
		if released.run.ID == 0 {
			t.Fatal("the first release did not run, so there is nothing to repeat")
		}
		before, _ := h.gitopsCommits(t)
		h.gitea.Dispatch(t, "site", "release.yml", "main")
		r := h.wait(t, "site", released.run.ID)
		r.mustConclude(t, "success")
		if !strings.Contains(r.log, "from the runner's tool cache") {
			t.Errorf("the second job on the runner downloaded the release binary again:\n%s", r.log)
		}
		if r.outputs["CHANGED"] != "false" || r.outputs["SKIPPED"] != "true" {
			t.Errorf("second run: changed=%q skipped=%q, want false/true", r.outputs["CHANGED"], r.outputs["SKIPPED"])
		}
		if after, _ := h.gitopsCommits(t); after != before {
			t.Errorf("a no-op release made %d GitOps commits", after-before)
		}
	})

	t.Run("checksum mismatch", func(t *testing.T) {
		dir := h.siteRepo(t, "site-badsum", badRelease, base.Add(2*time.Hour), nil)
		r := h.push(t, "site-badsum", dir)
		r.mustConclude(t, "failure")
		if !regexp.MustCompile(`checksum mismatch for \S+/` + regexp.QuoteMeta(badRelease+"/"+hostArchive())).MatchString(r.log) {
			t.Errorf("the log does not name the checksum mismatch:\n%s", r.log)
		}
		if strings.Contains(r.log, "go build") || strings.Contains(r.log, "install-method=") {
			t.Errorf("a checksum mismatch must not fall back to building or install anything:\n%s", r.log)
		}
	})

	t.Run("broken page", func(t *testing.T) {
		dir := h.siteRepo(t, "site-broken", release, base.Add(3*time.Hour), func(dir string) {
			src := filepath.Join(repoRoot(t), "testdata/bad/front-matter-broken/site/content/day1/01_keynote.md")
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "content/day1/01_keynote.md"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		})
		r := h.push(t, "site-broken", dir)
		r.mustConclude(t, "failure")
		if !regexp.MustCompile(`content/day1/01_keynote\.md:\d+:\d+`).MatchString(r.log) {
			t.Errorf("the job log lacks file:line:col of the broken page:\n%s", r.log)
		}
	})

	// The build path: no release for @main.
	t.Run("no release builds from source", func(t *testing.T) {
		dir := h.siteRepo(t, "site-main", "main", base.Add(4*time.Hour), nil)
		r := h.push(t, "site-main", dir)
		r.mustConclude(t, "success")
		if r.outputs["INSTALL_METHOD"] != "source" || !strings.Contains(r.log, "(go build)") {
			t.Errorf("install-method = %q, want source, with go build in the log:\n%s", r.outputs["INSTALL_METHOD"], r.log)
		}
		if !strings.Contains(r.log, "no release at ") {
			t.Errorf("the log does not say why it built:\n%s", r.log)
		}
	})
}

func (h *harness) pull(t *testing.T, ref string) v1.Image {
	t.Helper()
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(h.reg.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig.RootCAs = pool
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: regUser, Password: regPassword}))
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return img
}

// imageFiles returns the regular files under the web root of an image
// (later layers win).
func imageFiles(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			hd, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			n := strings.TrimPrefix(hd.Name, "./")
			if hd.Typeflag != tar.TypeReg || !strings.HasPrefix(n, webRoot+"/") {
				continue
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out[strings.TrimPrefix(n, webRoot+"/")] = b
		}
		rc.Close()
	}
	return out
}

// renderedSite renders the site's HEAD in process, as notesctl does.
func renderedSite(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	src, err := render.ReadSource(render.SourceOptions{SiteDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s, err := render.Render(context.Background(), src, render.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	_ = fs.WalkDir(s.Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out[p], _ = fs.ReadFile(s.Files, p)
		}
		return err
	})
	return out
}

func assertSameFiles(t *testing.T, got, want map[string][]byte) {
	t.Helper()
	if len(want) == 0 {
		t.Fatal("the site rendered no files")
	}
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("image lacks %s", p)
		} else if !bytes.Equal(g, w) {
			t.Errorf("image's %s differs from the rendered site (sha256 %s vs %s)", p, short(g), short(w))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("image holds %s, which the site did not render", p)
		}
	}
}

func short(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:6])
}

// startFlux starts a cluster with the Flux source- and kustomize-controller
// and creates the scaffold's Flux objects named (files of flux/notes/ in the
// GitOps repository on the Gitea), so that Flux follows that repository.
func (h *harness) startFlux(t *testing.T, files ...string) *kubeenv.Env {
	t.Helper()
	env := kubeenv.Start(t, kubeenv.Options{Flux: true, SimulateRollouts: true})
	dir := t.TempDir()
	run(t, dir, "git", "clone", "--quiet", h.gitea.CloneURL(gitopsRepo), "g")
	for _, name := range files {
		env.ApplyFile(t, filepath.Join(dir, "g", "flux", "notes", name))
	}
	return env
}

// waitOnFlux has repo's workflows run the action with wait: true and the
// cluster's kubeconfig as a secret (the workflows read vars.WAIT and
// secrets.KUBECONFIG).
func (h *harness) waitOnFlux(t *testing.T, repo string, env *kubeenv.Env) {
	t.Helper()
	kubeconfig, err := os.ReadFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	h.gitea.SetVariable(t, repo, "WAIT", "true")
	h.gitea.SetSecret(t, repo, "KUBECONFIG", string(kubeconfig))
}
