package pipeline

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/memfs"
	"github.com/go-git/go-billy/v5/util"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/notesctl/notesctl/internal/runcenv"
	"github.com/notesctl/notesctl/internal/sitegit"
	"github.com/notesctl/notesctl/manifests"
	"github.com/notesctl/notesctl/registry"
)

// scaffoldDeployment is the Deployment `notesctl manifests init` writes:
// the security context, volumes and probes the image must run under.
func scaffoldDeployment(t testing.TB) *appsv1.Deployment {
	t.Helper()
	fsys := memfs.New()
	paths, err := manifests.Scaffold(fsys, ".", manifests.ScaffoldOptions{
		Image: "notes.example.org/notes", GitURL: "https://git.example.org/gitops.git",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if path.Base(p) != "deployment.yaml" {
			continue
		}
		data, err := util.ReadFile(fsys, p)
		if err != nil {
			t.Fatal(err)
		}
		var d appsv1.Deployment
		if err := yaml.UnmarshalStrict(data, &d); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return &d
	}
	t.Fatalf("the scaffold wrote no deployment.yaml: %v", paths)
	return nil
}

// servedSite is a released image running under the scaffold's security
// context.
type servedSite struct {
	res    *BuildResult
	c      *runcenv.Container
	client *http.Client
	webDir string // the web root in the unpacked root file system
}

// releaseAndServe builds the site commit onto the nginx base with the
// pipeline, into an OCI layout, and runs the image with runc under the
// Deployment's pod spec, waiting for nginx to answer.
func releaseAndServe(t testing.TB, siteDir, base string, dep *appsv1.Deployment, sourceDate *time.Time) *servedSite {
	t.Helper()
	out := filepath.Join(t.TempDir(), "layout")
	res, err := Build(context.Background(), BuildOptions{
		SiteDir: siteDir, Image: "notes.example.org/notes", Base: "oci:" + base,
		To: "oci:" + out, SourceDateEpoch: sourceDate,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.Layers); n < 4 || res.Layers[0].Name != registry.LayerServing || res.Layers[n-1].Name != registry.LayerPages {
		t.Fatalf("layers %+v: want serving, assets, page buckets and pages on the nginx base", res.Layers)
	}
	lp, err := layout.FromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	h, err := v1.NewHash(res.Digest)
	if err != nil {
		t.Fatal(err)
	}
	img, err := lp.Image(h)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := runcenv.FromPodSpec(&dep.Spec.Template.Spec, "")
	if err != nil {
		t.Fatal(err)
	}
	c := runcenv.Run(t, img, sec)
	c.WaitHTTP(t, "http://127.0.0.1:8080/", 15*time.Second)
	return &servedSite{res: res, c: c, client: c.HTTPClient(), webDir: filepath.Join(c.Dir, "rootfs", filepath.FromSlash(registry.DefaultWebRoot))}
}

func (s *servedSite) get(t *testing.T, urlPath string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:8080"+urlPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v\n%s", urlPath, err, s.c.Logs())
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// contentTypes are the Content-Types nginx must send for the fixture's
// files (charset from the serving config's charset_types).
var contentTypes = map[string]string{
	".html":  "text/html; charset=utf-8",
	".css":   "text/css; charset=utf-8",
	".js":    "application/javascript; charset=utf-8",
	".png":   "image/png",
	".svg":   "image/svg+xml; charset=utf-8",
	".woff2": "font/woff2",
	".xml":   "text/xml; charset=utf-8",
	".json":  "application/json; charset=utf-8",
}

var fingerprinted = regexp.MustCompile(`\.[0-9a-f]{64}\.(css|js)$`)

// TestReleasedImageServes runs the image a release publishes, on a real
// nginx (Debian's, packaged like nginx-unprivileged) under exactly the
// security context of the scaffolded Deployment, and checks what a reader's
// browser and the kubelet would see.
func TestReleasedImageServes(t *testing.T) {
	runcenv.Require(t)
	dep := scaffoldDeployment(t)
	base := runcenv.NginxBase(t)
	siteDir := fixtureRepo(t)
	s := releaseAndServe(t, siteDir, base, dep, nil)

	t.Run("security context", func(t *testing.T) {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.c.PID))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Uid:\t101\t101\t101\t101", "Gid:\t101\t101\t101\t101", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
			if !strings.Contains(string(status), want) {
				t.Errorf("nginx's status lacks %q:\n%s", want, status)
			}
		}
		mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", s.c.PID))
		if err != nil {
			t.Fatal(err)
		}
		var rootRO bool
		for _, line := range strings.Split(string(mounts), "\n") {
			f := strings.Fields(line)
			if len(f) > 5 && f[4] == "/" {
				rootRO = strings.HasPrefix(f[5], "ro")
			}
		}
		if !rootRO {
			t.Errorf("root file system is not read-only:\n%s", mounts)
		}
		for _, m := range dep.Spec.Template.Spec.Containers[0].VolumeMounts {
			if !strings.Contains(string(mounts), " "+m.MountPath+" ") {
				t.Errorf("emptyDir %s is not mounted", m.MountPath)
			}
		}
	})

	t.Run("probes", func(t *testing.T) {
		ctr := dep.Spec.Template.Spec.Containers[0]
		ports := map[string]int32{}
		for _, p := range ctr.Ports {
			ports[p.Name] = p.ContainerPort
		}
		for name, p := range map[string]*struct{ path, port string }{
			"readiness": {ctr.ReadinessProbe.HTTPGet.Path, ctr.ReadinessProbe.HTTPGet.Port.String()},
			"liveness":  {ctr.LivenessProbe.HTTPGet.Path, ctr.LivenessProbe.HTTPGet.Port.String()},
		} {
			if ports[p.port] != registry.NginxPort {
				t.Errorf("%s probe port %q is %d, nginx listens on %d", name, p.port, ports[p.port], registry.NginxPort)
			}
			// kubelet counts 200-399 as success.
			resp, _ := s.get(t, p.path)
			if resp.StatusCode < 200 || resp.StatusCode >= 400 {
				t.Errorf("%s probe GET %s: %s", name, p.path, resp.Status)
			}
		}
	})

	t.Run("every file", func(t *testing.T) {
		var pages, assets, immutable int
		err := filepath.WalkDir(s.webDir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasSuffix(p, ".gz") {
				return err
			}
			rel := filepath.ToSlash(strings.TrimPrefix(p, s.webDir))
			want, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			urlPath := rel
			if path.Base(rel) == "index.html" {
				urlPath = strings.TrimSuffix(rel, "index.html")
			}
			resp, body := s.get(t, urlPath)
			wantType, ok := contentTypes[path.Ext(rel)]
			if !ok {
				t.Errorf("%s: no expected Content-Type for %s files in this test", rel, path.Ext(rel))
			}
			// 404.html too: asked for by its name, it is a page like others.
			if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
				t.Errorf("GET %s: %s, %d bytes; want 200 and the file's %d bytes", urlPath, resp.Status, len(body), len(want))
			}
			if got := resp.Header.Get("Content-Type"); got != wantType {
				t.Errorf("GET %s: Content-Type %q, want %q", urlPath, got, wantType)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("GET %s: X-Content-Type-Options %q", urlPath, got)
			}
			cc := resp.Header.Get("Cache-Control")
			if fingerprinted.MatchString(rel) {
				immutable++
				if cc != "public, max-age=31536000, immutable" {
					t.Errorf("GET %s (fingerprinted): Cache-Control %q", urlPath, cc)
				}
			} else if cc != "no-cache" {
				t.Errorf("GET %s: Cache-Control %q, want no-cache", urlPath, cc)
			}
			etag := resp.Header.Get("ETag")
			if etag == "" || resp.Header.Get("Last-Modified") == "" {
				t.Errorf("GET %s: no validators (ETag %q, Last-Modified %q)", urlPath, etag, resp.Header.Get("Last-Modified"))
			} else if r2, _ := s.get(t, urlPath, "If-None-Match", etag); r2.StatusCode != http.StatusNotModified {
				t.Errorf("GET %s If-None-Match %s: %s, want 304", urlPath, etag, r2.Status)
			}
			if path.Ext(rel) == ".html" {
				pages++
			} else {
				assets++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if pages < s.res.Pages/2 || assets == 0 || immutable < 3 {
			t.Errorf("checked %d pages (%d rendered), %d assets, %d fingerprinted", pages, s.res.Pages, assets, immutable)
		}
		t.Logf("%d pages, %d assets (%d fingerprinted) answered", pages, assets, immutable)
	})

	t.Run("missing page", func(t *testing.T) {
		want, err := os.ReadFile(filepath.Join(s.webDir, "404.html"))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"/no/such/page/", "/day1/99_missing/", "/missing.css"} {
			resp, body := s.get(t, p)
			if resp.StatusCode != http.StatusNotFound || !bytes.Equal(body, want) {
				t.Errorf("GET %s: %s, %q; want 404 with the site's 404.html", p, resp.Status, body[:min(len(body), 80)])
			}
			if resp.Header.Get("Content-Type") != contentTypes[".html"] || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("GET %s: headers %v", p, resp.Header)
			}
		}
	})

	t.Run("gzip", func(t *testing.T) {
		for _, p := range []string{"/", "/day1/02_gslb/", "/css/notes.css"} {
			file := filepath.Join(s.webDir, filepath.FromSlash(p))
			if strings.HasSuffix(p, "/") {
				file = filepath.Join(file, "index.html")
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			resp, body := s.get(t, p, "Accept-Encoding", "gzip, deflate, br")
			if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Vary") != "Accept-Encoding" {
				t.Fatalf("GET %s accepting gzip: Content-Encoding %q, Vary %q", p, resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"))
			}
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			plain, err := io.ReadAll(zr)
			if err != nil || !bytes.Equal(plain, want) {
				t.Errorf("GET %s: gunzipped body differs from the file (%v)", p, err)
			}
			if len(body) >= len(want) {
				t.Errorf("GET %s: %d gzip bytes for %d", p, len(body), len(want))
			}
			if resp.Header.Get("Cache-Control") != "no-cache" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("GET %s (gzip): headers %v", p, resp.Header)
			}
			if plainResp, _ := s.get(t, p); plainResp.Header.Get("Content-Encoding") != "" {
				t.Errorf("GET %s without Accept-Encoding: Content-Encoding %q", p, plainResp.Header.Get("Content-Encoding"))
			}
		}
	})

	t.Run("directory redirect stays relative", func(t *testing.T) {
		resp, _ := s.get(t, "/day1")
		if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/day1/" {
			t.Errorf("GET /day1: %s Location %q; want 301 to /day1/", resp.Status, resp.Header.Get("Location"))
		}
	})

	// A second release in which one page changes but keeps its size, at the
	// same SOURCE_DATE_EPOCH: with one timestamp for every file, nginx gave
	// it the old ETag and a browser revalidating got 304 and the old text.
	t.Run("same-size edit gets a new validator", func(t *testing.T) {
		when := sitegit.Epoch
		page := "/day1/02_gslb/"
		before, oldBody := s.get(t, page)
		src := filepath.Join(siteDir, "content", "day1", "02_gslb.md")
		md, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		edited := bytes.Replace(md, []byte("six clusters"), []byte("ten clusters"), 1)
		if bytes.Equal(edited, md) {
			t.Fatal("fixture page changed: no \"six clusters\" to edit")
		}
		if err := os.WriteFile(src, edited, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := sitegit.CommitAll(siteDir, "Same-size edit", sitegit.Epoch.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		s2 := releaseAndServe(t, siteDir, base, dep, &when)
		after, newBody := s2.get(t, page, "If-None-Match", before.Header.Get("ETag"))
		if after.StatusCode == http.StatusOK && len(newBody) != len(oldBody) {
			t.Errorf("page size changed %d -> %d: the edit must keep the size to test the ETag", len(oldBody), len(newBody))
		}
		if after.StatusCode != http.StatusOK || !bytes.Contains(newBody, []byte("ten clusters")) {
			t.Errorf("revalidating %s with the old ETag %s: %s (ETag now %s); want 200 with the edit", page, before.Header.Get("ETag"), after.Status, after.Header.Get("ETag"))
		}
		// An unchanged stylesheet keeps its validator across the release.
		css1, _ := s.get(t, "/css/notes.css")
		css2, _ := s2.get(t, "/css/notes.css", "If-None-Match", css1.Header.Get("ETag"))
		if css2.StatusCode != http.StatusNotModified {
			t.Errorf("unchanged /css/notes.css: %s with its old ETag, want 304", css2.Status)
		}
	})
}
