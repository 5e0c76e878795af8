package main

// End-to-end tests: the notesctl binary, built once, run as a user runs it,
// against real registries and git servers on loopback. What a user would
// check is asserted: the image validates and holds the rendered site, the
// GitOps commit changes exactly the image line, git fsck is clean.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/x509"
	"errors"
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
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"sigs.k8s.io/yaml"

	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/internal/regserver"
	"github.com/notesctl/notesctl/internal/sitegit"
	"github.com/notesctl/notesctl/internal/testimage"
	"github.com/notesctl/notesctl/render"
)

var notesctlBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "notesctl-e2e-")
	if err != nil {
		panic(err)
	}
	notesctlBin = filepath.Join(dir, "notesctl")
	build := exec.Command("go", "build", "-o", notesctlBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		panic("building notesctl: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) all() string { return r.stdout + "\n" + r.stderr }

// notesctl runs the binary in dir with env (on top of a minimal, hermetic
// environment) and stdin.
func notesctl(t *testing.T, dir string, env []string, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(notesctlBin, args...)
	cmd.Dir = dir
	home := t.TempDir()
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker"), "TMPDIR=" + os.TempDir()}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running notesctl: %v", err)
	}
	t.Logf("notesctl %s → exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

func mustSucceed(t *testing.T, r result) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("notesctl failed with exit %d:\n%s", r.code, r.all())
	}
}

// newSite copies the fixture into a fresh repository.
func newSite(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := sitegit.Fixture(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// editPage changes the body of one talk and commits, an hour later.
func editPage(t *testing.T, site string, n int) {
	t.Helper()
	var talk string
	filepath.WalkDir(filepath.Join(site, "content"), func(p string, d fs.DirEntry, err error) error {
		if talk == "" && err == nil && !d.IsDir() && strings.HasSuffix(p, ".md") && !strings.HasSuffix(p, "_index.md") {
			talk = p
		}
		return nil
	})
	f, err := os.OpenFile(talk, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\nAn added paragraph, edit " + strconv.Itoa(n) + ".\n")
	f.Close()
	if _, err := sitegit.CommitAll(site, "edit a talk", sitegit.Epoch.Add(time.Duration(n)*time.Hour)); err != nil {
		t.Fatal(err)
	}
}

// renderedSite renders the site's HEAD in process: the reference the image
// content is compared with.
func renderedSite(t *testing.T, site string) map[string][]byte {
	t.Helper()
	src, err := render.ReadSource(render.SourceOptions{SiteDir: site})
	if err != nil {
		t.Fatal(err)
	}
	s, err := render.Render(context.Background(), src, render.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	fs.WalkDir(s.Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out[p], _ = fs.ReadFile(s.Files, p)
		}
		return err
	})
	return out
}

// imageFiles extracts the files under webRoot from an image's layers
// (later layers win, as in a container's file system).
func imageFiles(t *testing.T, img v1.Image, webRoot string) map[string][]byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	prefix := strings.TrimPrefix(webRoot, "/") + "/"
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			name := strings.TrimPrefix(h.Name, "./")
			if h.Typeflag != tar.TypeReg || !strings.HasPrefix(name, prefix) {
				continue
			}
			if h.Uid != 0 || h.Gid != 0 {
				t.Errorf("%s owned by %d:%d, want 0:0", h.Name, h.Uid, h.Gid)
			}
			b, _ := io.ReadAll(tr)
			out[strings.TrimPrefix(name, prefix)] = b
		}
		rc.Close()
	}
	return out
}

func assertSameFiles(t *testing.T, got, want map[string][]byte) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("image lacks %s", p)
			continue
		}
		if !bytes.Equal(g, w) {
			t.Errorf("image's %s differs from the rendered site", p)
		}
	}
	for p, g := range got {
		if _, ok := want[p]; ok {
			continue
		}
		// On an nginx base the image also holds a gzip_static copy of
		// each text file (registry.ServingNginx).
		if orig, ok := want[strings.TrimSuffix(p, ".gz")]; ok && strings.HasSuffix(p, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(g))
			if err == nil {
				plain, err := io.ReadAll(zr)
				if err == nil && bytes.Equal(plain, orig) {
					continue
				}
			}
			t.Errorf("image's %s is not the gzip of the rendered %s", p, strings.TrimSuffix(p, ".gz"))
			continue
		}
		t.Errorf("image holds %s, which the site did not render", p)
	}
}

func gitOut(t *testing.T, dir string, args ...string) string {
	t.Helper()
	return strings.TrimSpace(gitserver.Git(t, dir, args...))
}

// assertImageLineCommit checks that the last commit of a GitOps work tree
// changed exactly one line, the marked image line, to ref.
func assertImageLineCommit(t *testing.T, repo, ref string) {
	t.Helper()
	gitOut(t, repo, "fsck", "--strict")
	diff := gitOut(t, repo, "show", "--format=", "--unified=0", "HEAD")
	var minus, plus []string
	for _, l := range strings.Split(diff, "\n") {
		switch {
		case strings.HasPrefix(l, "---"), strings.HasPrefix(l, "+++"):
		case strings.HasPrefix(l, "-"):
			minus = append(minus, l)
		case strings.HasPrefix(l, "+"):
			plus = append(plus, l)
		}
	}
	if len(minus) != 1 || len(plus) != 1 {
		t.Fatalf("GitOps commit changed %d/%d lines, want exactly the image line:\n%s", len(minus), len(plus), diff)
	}
	want := "image: " + ref + ` # {"$imagepolicy": "flux-system:notes"}`
	if !strings.HasSuffix(plus[0], want) {
		t.Errorf("new image line = %q, want suffix %q", plus[0], want)
	}
	if strings.SplitN(minus[0][1:], "image:", 2)[0] != strings.SplitN(plus[0][1:], "image:", 2)[0] {
		t.Errorf("indentation or key changed: %q -> %q", minus[0], plus[0])
	}
	msg := gitOut(t, repo, "log", "-1", "--format=%B")
	if !strings.Contains(msg, "Image: "+ref) || !strings.Contains(msg, "Source-Commit: ") {
		t.Errorf("commit message lacks the trailers:\n%s", msg)
	}
	if merges := gitOut(t, repo, "rev-list", "--merges", "HEAD"); merges != "" {
		t.Errorf("history has merges: %s", merges)
	}
}

var imageLine = regexp.MustCompile(`(?m)^image:\s+(\S+)$`)

func TestReleaseLocal(t *testing.T) {
	site := newSite(t)
	r := notesctl(t, site, nil, "", "release", "--local")
	mustSucceed(t, r)
	m := imageLine.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no image line in stdout")
	}
	ref := m[1]
	if !regexp.MustCompile(`^notes\.local/notes:main-[0-9a-f]{7}-1746598316-hugo` + regexp.QuoteMeta(render.HugoVersion()) + `@sha256:[0-9a-f]{64}$`).MatchString(ref) {
		t.Fatalf("image ref %q does not follow the tag scheme", ref)
	}
	tag := strings.SplitN(strings.SplitN(ref, ":", 2)[1], "@", 2)[0]

	// The image in the OCI layout validates and holds the rendered site.
	img := layoutImage(t, filepath.Join(site, ".notesctl/image"), tag)
	if err := validate.Image(img); err != nil {
		t.Fatalf("image does not validate: %v", err)
	}
	want := renderedSite(t, site)
	assertSameFiles(t, imageFiles(t, img, "/usr/share/nginx/html"), want)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Config.Labels["io.notesctl.generator.version"]; got != render.HugoVersion() {
		t.Errorf("generator label = %q", got)
	}

	gitops := filepath.Join(site, ".notesctl/gitops")
	assertImageLineCommit(t, gitops, ref)
	if n := gitOut(t, gitops, "rev-list", "--count", "HEAD"); n != "2" {
		t.Errorf("GitOps history has %s commits, want scaffold + release", n)
	}

	// The same commit again: nothing rendered, pushed or committed.
	r = notesctl(t, site, nil, "", "release", "--local")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "no-op") {
		t.Errorf("second release is not a no-op")
	}
	if n := gitOut(t, gitops, "rev-list", "--count", "HEAD"); n != "2" {
		t.Errorf("second release committed: %s commits", n)
	}
	if status := gitOut(t, site, "status", "--porcelain"); status != "" {
		t.Errorf("release left the site work tree dirty:\n%s", status)
	}

	// An edited page: a new release, only the layers holding it change.
	editPage(t, site, 1)
	r = notesctl(t, site, nil, "", "release", "--local", "--output", "json")
	mustSucceed(t, r)
	var res struct {
		Build struct {
			Image, Tag string
			Layers     []struct{ Name, Digest string }
		}
		GitOps struct{ Changed bool }
	}
	if err := jsonUnmarshal(r.stdout, &res); err != nil {
		t.Fatalf("--output json: %v\n%s", err, r.stdout)
	}
	if !res.GitOps.Changed {
		t.Fatal("edited page did not change the GitOps repo")
	}
	assertImageLineCommit(t, gitops, res.Build.Image)
	layers1, _ := img.Layers()
	first := map[string]string{}
	for i, l := range layers1 {
		d, _ := l.Digest()
		first[strconv.Itoa(i)] = d.String()
	}
	// assets, the page bucket layers, pages (registry "Page layers"): the
	// edit changes its talk's bucket and the top pages layer (its
	// directories carry the commit time), nothing else.
	n := len(res.Build.Layers)
	if n < 3 || res.Build.Layers[0].Name != "assets" || res.Build.Layers[n-1].Name != "pages" {
		t.Fatalf("layers = %+v", res.Build.Layers)
	}
	var changed []string
	for _, l := range res.Build.Layers {
		if !containsValue(first, l.Digest) {
			changed = append(changed, l.Name)
		}
	}
	if len(changed) != 2 || !strings.HasPrefix(changed[0], "pages-") || changed[1] != "pages" {
		t.Errorf("layers changed by a text edit: %v, want one page bucket and pages", changed)
	}
}

func containsValue(m map[string]string, v string) bool {
	for _, x := range m {
		if x == v {
			return true
		}
	}
	return false
}

func layoutImage(t *testing.T, dir, tag string) v1.Image {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == tag {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no image tagged %s in %s", tag, dir)
	return nil
}

// TestReleaseRegistryAndGitServer is the release a CI job runs: a CNCF
// Distribution registry with htpasswd and TLS, and a GitOps repository on a
// git server over HTTP with basic auth.
func TestReleaseRegistryAndGitServer(t *testing.T) {
	reg := regserver.Distribution(t, regserver.DistributionOptions{User: "ci", Password: "s3cret-registry-pass", TLS: true})
	gs := gitserver.StartHTTPBackend(t, "flux", "s3cret-git-token")

	// The GitOps repository, scaffolded by notesctl itself.
	scaffold := t.TempDir()
	image := reg.Host + "/acme/notes"
	mustSucceed(t, notesctl(t, scaffold, nil, "", "manifests", "init", "--dir", ".", "--image", image, "--git-url", gs.RepoURL("gitops.git")))
	gitserver.SeedBareRepo(t, gs.RepoPath("gitops.git"), "main", scaffold)

	base, _ := testimage.SingleLayout(t)
	site := newSite(t)
	env := []string{
		"NOTESCTL_REGISTRY_USERNAME=ci", "NOTESCTL_REGISTRY_PASSWORD=s3cret-registry-pass",
		"NOTESCTL_GITOPS_PASSWORD=s3cret-git-token",
	}
	args := []string{"release", "--image", image, "--base", "oci:" + base, "--ca-file", reg.CAFile,
		"--gitops", gs.RepoURL("gitops.git"), "--gitops-username", "flux"}
	r := notesctl(t, site, env, "", args...)
	mustSucceed(t, r)
	for _, secret := range []string{"s3cret-registry-pass", "s3cret-git-token"} {
		if strings.Contains(r.all(), secret) {
			t.Errorf("output contains the secret %q", secret)
		}
	}
	ref := imageLine.FindStringSubmatch(r.stdout)[1]

	// The image in the registry validates and holds the site, on the base.
	img := pullImage(t, reg, ref)
	if err := validate.Image(img); err != nil {
		t.Fatalf("pushed image does not validate: %v", err)
	}
	assertSameFiles(t, imageFiles(t, img, "/usr/share/nginx/html"), renderedSite(t, site))
	cfg, _ := img.ConfigFile()
	if cfg.Config.User != "101" {
		t.Errorf("base user not preserved: %q", cfg.Config.User)
	}

	clone := t.TempDir()
	gitserver.CloneWorktree(t, gs.RepoPath("gitops.git"), clone, "main")
	assertImageLineCommit(t, clone, ref)

	// The scaffolded ImagePolicy picks this tag over earlier releases.
	tag := strings.SplitN(strings.SplitN(ref, ":", 3)[2], "@", 2)[0]
	older := []string{"main-0123abc-1600000000-hugo0.145.0", "main-fedcba9-1746598315-hugo0.144.0"}
	if got := fluxPick(t, clone, append(older, tag)); got != tag {
		t.Errorf("ImagePolicy picks %q, want %q", got, tag)
	}

	// Again: a no-op that uploads nothing.
	reg.Uploads.Reset()
	r = notesctl(t, site, env, "", args...)
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "no-op") || reg.Uploads.Bytes() != 0 {
		t.Errorf("second release: no-op=%v, uploaded %d bytes", strings.Contains(r.stdout, "no-op"), reg.Uploads.Bytes())
	}

	// After a page edit only the changed layers are uploaded.
	editPage(t, site, 2)
	reg.Uploads.Reset()
	r = notesctl(t, site, env, "", append(args, "--output", "json")...)
	mustSucceed(t, r)
	var res struct {
		Build struct {
			Image                        string
			SBOMDigest, ProvenanceDigest string
			Layers                       []struct {
				Name, Digest string
				Size         int64
			}
		}
	}
	if err := jsonUnmarshal(r.stdout, &res); err != nil {
		t.Fatal(err)
	}
	// The new image's SBOM and provenance are new documents, uploaded too.
	var attested int64
	repo := strings.SplitN(res.Build.Image, "@", 2)[0]
	repo = repo[:strings.LastIndex(repo, ":")]
	for _, d := range []string{res.Build.SBOMDigest, res.Build.ProvenanceDigest} {
		m, err := pullImage(t, reg, repo+"@"+d).Manifest()
		if err != nil || len(m.Layers) != 1 {
			t.Fatalf("referrer %s: %v", d, err)
		}
		attested += m.Layers[0].Size
	}
	// The layers the first release did not have: the edited talk's page
	// bucket and the top pages layer.
	had := map[string]bool{}
	firstLayers, _ := img.Layers()
	for _, l := range firstLayers {
		d, _ := l.Digest()
		had[d.String()] = true
	}
	var newSize int64
	var changed []string
	for _, l := range res.Build.Layers {
		if !had[l.Digest] {
			newSize += l.Size
			changed = append(changed, l.Name)
		}
	}
	if len(changed) != 2 || changed[1] != "pages" {
		t.Errorf("layers changed by a page edit: %v, want the talk's page bucket and pages", changed)
	}
	// The config blob is uploaded too; it is small and changes with every
	// release, so allow for it but no more.
	img2 := pullImage(t, reg, res.Build.Image)
	cfgSize, _ := img2.RawConfigFile()
	if got := reg.Uploads.Bytes(); got != newSize+int64(len(cfgSize))+attested {
		t.Errorf("uploaded %d bytes after a page edit, want the changed layers %v (%d) + config (%d) + SBOM and provenance (%d)", got, changed, newSize, len(cfgSize), attested)
	}
	gitserver.Git(t, clone, "pull", "-q", "--ff-only")
	assertImageLineCommit(t, clone, res.Build.Image)
}

func pullImage(t *testing.T, reg *regserver.DistributionServer, ref string) v1.Image {
	t.Helper()
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	pem, _ := os.ReadFile(reg.CAFile)
	pool.AppendCertsFromPEM(pem)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig.RootCAs = pool
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: reg.User, Password: reg.Password}))
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	return img
}

// fluxPick applies the scaffolded ImagePolicy the way Flux documents it:
// tags matching filterTags.pattern, the named group from extract, parsed as
// numbers, the largest wins (numerical, order asc).
func fluxPick(t *testing.T, repo string, tags []string) string {
	t.Helper()
	var policy struct {
		Spec struct {
			FilterTags struct{ Pattern, Extract string }
			Policy     struct{ Numerical struct{ Order string } }
		}
	}
	found := false
	filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") {
			return err
		}
		data, _ := os.ReadFile(p)
		for _, doc := range strings.Split(string(data), "\n---") {
			if strings.Contains(doc, "kind: ImagePolicy") {
				if err := yaml.Unmarshal([]byte(doc), &policy); err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				found = true
			}
		}
		return nil
	})
	if !found || policy.Spec.FilterTags.Pattern == "" || policy.Spec.Policy.Numerical.Order != "asc" {
		t.Fatalf("no numerical ImagePolicy with filterTags in the scaffold: %+v", policy)
	}
	re := regexp.MustCompile(policy.Spec.FilterTags.Pattern)
	best, bestN := "", int64(-1)
	for _, tag := range tags {
		m := re.FindStringSubmatchIndex(tag)
		if m == nil {
			continue
		}
		v := string(re.ExpandString(nil, policy.Spec.FilterTags.Extract, tag, m))
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("extract %q of %q is not a number", v, tag)
		}
		if n > bestN {
			best, bestN = tag, n
		}
	}
	return best
}

func jsonUnmarshal(s string, v any) error {
	return yaml.Unmarshal([]byte(s), v)
}
