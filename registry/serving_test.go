package registry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/notesctl/notesctl/internal/testimage"
)

// layerFiles reads a layer back as name -> header and body, for regular
// files, with names relative to prefix.
func layerFiles(t *testing.T, l v1.Layer, prefix string) map[string]tarEntryInfo {
	t.Helper()
	out := map[string]tarEntryInfo{}
	for _, e := range readLayer(t, l) {
		if e.hdr.Typeflag == tar.TypeReg {
			out[strings.TrimPrefix(e.hdr.Name, prefix)] = e
		}
	}
	return out
}

// siteFiles builds a site's layers and returns every file of them, with the
// layer it is in.
func siteFiles(t *testing.T, site fstest.MapFS, opts LayerOptions) (map[string]tarEntryInfo, map[string]string) {
	t.Helper()
	ls, err := BuildLayers(site, opts)
	if err != nil {
		t.Fatal(err)
	}
	files, layer := map[string]tarEntryInfo{}, map[string]string{}
	for _, l := range ls {
		for name, e := range layerFiles(t, l.Layer, "usr/share/nginx/html/") {
			files[name], layer[name] = e, l.Name
		}
	}
	return files, layer
}

// TestFileTimesFollowContent: nginx's validators are mtime and size, so a
// file's mtime must change whenever its content does, whatever the commit
// time, and stay when it does not. With the commit time as every file's
// mtime (the earlier scheme) a fixed SOURCE_DATE_EPOCH and a same-size edit
// gave the old ETag to new content.
func TestFileTimesFollowContent(t *testing.T) {
	v1site := fstest.MapFS{
		"index.html":    {Data: []byte("<p>colour: red</p>")},
		"about.html":    {Data: []byte("<p>about</p>")},
		"css/site.css":  {Data: []byte("body{color:red}")},
		"img/logo.png":  {Data: []byte("png-bytes")},
		"fonts/a.woff2": {Data: []byte("font-bytes")},
	}
	v2site := fstest.MapFS{}
	for k, v := range v1site {
		v2site[k] = v
	}
	// Same sizes, other bytes.
	v2site["index.html"] = &fstest.MapFile{Data: []byte("<p>colour: blu</p>")}
	v2site["css/site.css"] = &fstest.MapFile{Data: []byte("body{color:blu}")}

	for _, tc := range []struct {
		name        string
		c1, c2      time.Time
		precompress bool
	}{
		{"fixed SOURCE_DATE_EPOCH", testTime, testTime, false},
		{"two commits", testTime, testTime.Add(time.Hour), false},
		{"precompressed", testTime, testTime, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := siteFiles(t, v1site, LayerOptions{Created: tc.c1, Precompress: tc.precompress})
			b, _ := siteFiles(t, v2site, LayerOptions{Created: tc.c2, Precompress: tc.precompress})
			for name, ea := range a {
				eb, ok := b[name]
				if !ok {
					t.Fatalf("%s missing from the second build", name)
				}
				changed := ea.body != eb.body
				if strings.HasSuffix(name, ".gz") {
					changed = a[strings.TrimSuffix(name, ".gz")].body != b[strings.TrimSuffix(name, ".gz")].body
				}
				sameTime := ea.hdr.ModTime.Equal(eb.hdr.ModTime)
				if changed && sameTime {
					t.Errorf("%s changed but kept its mtime %s (a stale 304)", name, ea.hdr.ModTime)
				}
				if !changed && !sameTime {
					t.Errorf("%s did not change but its mtime moved %s -> %s (a needless download)", name, ea.hdr.ModTime, eb.hdr.ModTime)
				}
				if y := ea.hdr.ModTime.Year(); y < 1990 || y >= 2000 {
					t.Errorf("%s: mtime %s outside the synthetic window", name, ea.hdr.ModTime)
				}
			}
		})
	}
}

// TestPrecompress checks the .gz copies gzip_static serves.
func TestPrecompress(t *testing.T) {
	page := strings.Repeat("<p>talk notes, talk notes, talk notes</p>\n", 40)
	site := fstest.MapFS{
		"index.html":           {Data: []byte(page)},
		"day1/talk/index.html": {Data: []byte(page + "<p>more</p>")},
		"css/notes.css":        {Data: []byte(strings.Repeat("body{margin:0;padding:0}\n", 30))},
		"js/app.A1B2.js":       {Data: []byte(strings.Repeat("console.log('x');\n", 30))},
		"img/map.svg":          {Data: []byte("<svg>" + strings.Repeat("<rect/>", 60) + "</svg>")},
		"index.xml":            {Data: []byte("<rss>" + strings.Repeat("<item/>", 60) + "</rss>")},
		"img/photo.png":        {Data: bytes.Repeat([]byte{0x89, 'P', 'N', 'G'}, 200)},
		"tiny.txt":             {Data: []byte("hi")},
		// The site ships its own compressed copy: it wins.
		"own.css":    {Data: []byte(strings.Repeat("a{b:c}\n", 50))},
		"own.css.gz": {Data: []byte("the site's own gzip bytes")},
	}
	files, layer := siteFiles(t, site, LayerOptions{Created: testTime, Precompress: true})
	for _, tc := range []struct {
		name   string
		wantGz bool
		layer  string
	}{
		{"index.html", true, LayerPages},
		{"day1/talk/index.html", true, PageLayerName(pageBucket("day1/talk/index.html", nil))},
		{"css/notes.css", true, LayerAssets},
		{"js/app.A1B2.js", true, LayerAssets},
		{"img/map.svg", true, LayerAssets},
		{"index.xml", true, LayerPages},
		{"img/photo.png", false, ""},
		{"tiny.txt", false, ""}, // gzip would make it bigger
		{"own.css", false, ""},  // own.css.gz is the site's file
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := files[tc.name]
			gz, ok := files[tc.name+".gz"]
			if tc.name == "own.css" {
				if gz.body != "the site's own gzip bytes" {
					t.Errorf("the site's own .gz was replaced: %q", gz.body)
				}
				return
			}
			if ok != tc.wantGz {
				t.Fatalf(".gz present = %v, want %v", ok, tc.wantGz)
			}
			if !ok {
				return
			}
			if layer[tc.name+".gz"] != tc.layer || layer[tc.name] != tc.layer {
				t.Errorf("layers %s / %s, want both in %s", layer[tc.name], layer[tc.name+".gz"], tc.layer)
			}
			zr, err := gzip.NewReader(strings.NewReader(gz.body))
			if err != nil {
				t.Fatal(err)
			}
			plain, err := io.ReadAll(zr)
			if err != nil || string(plain) != orig.body {
				t.Errorf("gunzip gives %d bytes (%v), want the original %d", len(plain), err, len(orig.body))
			}
			// No name, no mtime, the fixed level's XFL (2: best compression).
			h := []byte(gz.body[:10])
			if h[3] != 0 || !bytes.Equal(h[4:8], []byte{0, 0, 0, 0}) || h[8] != 2 {
				t.Errorf("gzip header % x: want no name, zero mtime, XFL 2", h)
			}
			if len(gz.body) >= len(orig.body) {
				t.Errorf("%d compressed bytes for %d", len(gz.body), len(orig.body))
			}
			if !gz.hdr.ModTime.Equal(orig.hdr.ModTime) {
				t.Errorf(".gz mtime %s, original %s: want the same", gz.hdr.ModTime, orig.hdr.ModTime)
			}
		})
	}

	// Deterministic, and off unless asked for.
	again, _ := siteFiles(t, site, LayerOptions{Created: testTime.Add(time.Minute), Precompress: true})
	for name, e := range files {
		if again[name].body != e.body {
			t.Errorf("%s differs between two builds", name)
		}
	}
	plain, _ := siteFiles(t, site, LayerOptions{Created: testTime})
	if _, ok := plain["index.html.gz"]; ok {
		t.Errorf("a .gz file without Precompress")
	}
}

func TestNginxConfig(t *testing.T) {
	for _, tc := range []struct {
		webRoot, want, wantErr string
	}{
		{"", "root         /usr/share/nginx/html;", ""},
		{"/srv/www-1.0_x", "root         /srv/www-1.0_x;", ""},
		{"/srv/my site", "", "cannot be written into nginx's config"},
		{"/srv/$host", "", "cannot be written into nginx's config"},
		{"/srv/a;b", "", "cannot be written into nginx's config"},
		{"srv", "", "clean absolute path"},
	} {
		t.Run(tc.webRoot, func(t *testing.T) {
			conf, err := NginxConfig(tc.webRoot)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), tc.webRoot) {
					t.Fatalf("err = %v, want one naming %q and saying %q", err, tc.webRoot, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{tc.want, "listen       8080;", "gzip_static       on;", "error_page 404 /404.html;",
				`add_header Cache-Control "no-cache" always;`, `"public, max-age=31536000, immutable"`, `X-Content-Type-Options "nosniff"`} {
				if !strings.Contains(string(conf), want) {
					t.Errorf("config lacks %q:\n%s", want, conf)
				}
			}
		})
	}
}

// TestFingerprintPattern: the names Hugo's fingerprint writes are immutable,
// other CSS and JS are not.
func TestFingerprintPattern(t *testing.T) {
	re := regexp.MustCompile("(?i)" + FingerprintPattern)
	sha256hex := strings.Repeat("0123456789abcdef", 4)
	for name, want := range map[string]bool{
		"/css/main.min." + sha256hex + ".css":      true,
		"/vendor/mermaid.min." + sha256hex + ".js": true,
		"/js/app." + sha256hex[:32] + ".js":        true, // md5
		"/js/app." + sha256hex + sha256hex + ".js": true, // sha512
		"/css/notes.css":                           false,
		"/js/notes.js":                             false,
		"/js/app.1234abcd.js":                      false, // too short to be Hugo's
		"/img/x." + sha256hex + ".png":             false,
		"/index.search.js":                         false,
		"/css/main." + sha256hex + ".css.map":      false,
	} {
		if got := re.MatchString(name); got != want {
			t.Errorf("%s: immutable = %v, want %v", name, got, want)
		}
	}
}

func TestResolveServing(t *testing.T) {
	nginxBase, err := testimage.Image(v1.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	withCmd := func(entrypoint, cmd []string) v1.Image {
		img, err := mutate.Config(empty.Image, v1.Config{Entrypoint: entrypoint, Cmd: cmd})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	for _, tc := range []struct {
		name    string
		mode    string
		scratch bool
		base    v1.Image
		want    string
		wantErr bool
	}{
		{"auto on the nginx base", "", false, nginxBase, ServingNginx, false},
		{"auto spelled out", ServingAuto, false, nginxBase, ServingNginx, false},
		{"auto on scratch", ServingAuto, true, nil, ServingNone, false},
		{"auto on nginx by path", "", false, withCmd([]string{"/usr/sbin/nginx"}, []string{"-g", "daemon off;"}), ServingNginx, false},
		{"auto on another server", "", false, withCmd([]string{"caddy"}, []string{"file-server"}), ServingNone, false},
		{"auto on a base without a command", "", false, withCmd(nil, nil), ServingNone, false},
		{"off on the nginx base", ServingNone, false, nginxBase, ServingNone, false},
		{"forced on scratch", ServingNginx, true, nil, ServingNginx, false},
		{"unknown", "apache", false, nginxBase, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var bases []baseImage
			if tc.base != nil {
				bases = []baseImage{{image: tc.base}}
			}
			got, err := resolveServing(tc.mode, tc.scratch, bases)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("resolveServing(%q) = %q, %v; want %q (error %v)", tc.mode, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestBuildServingLayer: on an nginx base the image gets the config layer
// and .gz files; the config layer depends on the web root only, so a new
// commit does not re-upload it.
func TestBuildServingLayer(t *testing.T) {
	base := "oci:"
	dir, _ := testimage.SingleLayout(t)
	base += dir
	site := testSite()
	site["about/index.html"] = &fstest.MapFile{Data: []byte(strings.Repeat("<p>about the notes</p>\n", 20))}

	_, rep := mustBuild(t, site, BuildOptions{Base: base})
	art2, rep2 := mustBuild(t, site, BuildOptions{Base: base, Created: testTime.Add(24 * time.Hour)})
	if rep.Serving != ServingNginx || rep.Layers[0].Name != LayerServing {
		t.Fatalf("report %+v: want the serving layer", rep)
	}
	// Only the top pages layer carries the commit time.
	for i, l := range rep.Layers {
		if changed := l.Digest != rep2.Layers[i].Digest; changed != (l.Name == LayerPages) {
			t.Errorf("%s layer changed with the commit time: %v", l.Name, changed)
		}
	}
	layers, err := art2.Image.Layers()
	if err != nil {
		t.Fatal(err)
	}
	conf := layerFiles(t, layers[1], "")
	want, _ := NginxConfig(DefaultWebRoot)
	if len(conf) != 1 || conf["etc/nginx/conf.d/default.conf"].body != string(want) {
		t.Errorf("serving layer files %v, want only %s", conf, NginxConfigPath)
	}
	about := PageLayerName(pageBucket("about/index.html", nil))
	i := slices.IndexFunc(rep2.Layers, func(l LayerReport) bool { return l.Name == about })
	if i < 0 {
		t.Fatalf("no %s layer in %+v", about, rep2.Layers)
	}
	pages := layerFiles(t, layers[1+i], "usr/share/nginx/html/")
	if _, ok := pages["about/index.html.gz"]; !ok {
		t.Errorf("no about/index.html.gz in the %s layer", about)
	}

	// --serving none: the base's config stays, no .gz files.
	_, none := mustBuild(t, site, BuildOptions{Base: base, Serving: ServingNone})
	if none.Serving != ServingNone || len(none.Layers) != len(rep.Layers)-1 || none.Layers[0].Name != LayerAssets {
		t.Errorf("--serving none: %+v", none)
	}
	// A web root nginx's config cannot hold fails the build, naming it.
	if _, _, err := Build(t.Context(), site, BuildOptions{Base: base, WebRoot: "/srv/my site", Created: testTime}); err == nil || !strings.Contains(err.Error(), "/srv/my site") {
		t.Errorf("web root with a space: err = %v", err)
	}
}
