package registry

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// testTime is the fixed build timestamp of the tests (a commit time).
var testTime = time.Date(2025, 5, 7, 6, 11, 56, 0, time.UTC)

// testSite is a small rendered site with pages, assets, a nested section, a
// generated search index and an empty directory.
func testSite() fstest.MapFS {
	return fstest.MapFS{
		"index.html":               {Data: []byte("<!doctype html><title>Notes</title><h1>Notes</h1>\n")},
		"index.xml":                {Data: []byte("<rss><channel><title>Notes</title></channel></rss>\n")},
		"sitemap.xml":              {Data: []byte("<urlset></urlset>\n")},
		"index.search.js":          {Data: []byte("var index = [{\"title\":\"Notes\"}];\n")},
		"day1/index.html":          {Data: []byte("<h1>Day 1</h1>\n")},
		"day1/01_intro/index.html": {Data: []byte("<h1>Intro</h1><img src=\"../_imgs/arch.png\">\n")},
		"day1/_imgs/arch.png":      {Data: []byte("\x89PNG\r\n\x1a\nfake image bytes")},
		"css/theme.css":            {Data: []byte("body{font-family:sans-serif}\n")},
		"js/mermaid.min.js":        {Data: []byte("/* mermaid */\n")},
		"fonts/Inter.WOFF2":        {Data: []byte("wOF2 font bytes")},
		"empty":                    {Mode: fs.ModeDir | 0o700},
	}
}

// tarEntryInfo is what the listing test reads back from a layer.
type tarEntryInfo struct {
	hdr  *tar.Header
	body string
}

func readLayer(t *testing.T, l v1.Layer) []tarEntryInfo {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var out []tarEntryInfo
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntryInfo{hdr: hdr, body: string(body)})
	}
}

func mustLayers(t *testing.T, site fs.FS, webRoot string, created time.Time) []SiteLayer {
	t.Helper()
	ls, err := Layers(site, webRoot, created)
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func layerDigests(t *testing.T, ls []SiteLayer) map[string]v1.Hash {
	t.Helper()
	out := map[string]v1.Hash{}
	for _, l := range ls {
		d, err := l.Layer.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out[l.Name] = d
	}
	return out
}

// TestLayersListing checks every header field of both layers against a
// golden listing, and the invariants the listing must satisfy whatever the
// golden file says.
func TestLayersListing(t *testing.T) {
	ls := mustLayers(t, testSite(), "", testTime)
	var listing strings.Builder
	for _, l := range ls {
		fmt.Fprintf(&listing, "# %s layer, %d files\n", l.Name, l.Files)
		entries := readLayer(t, l.Layer)
		wantTime := testTime
		if l.Name != LayerPages {
			var files []string
			for _, e := range entries {
				if e.hdr.Typeflag == tar.TypeReg {
					files = append(files, strings.TrimPrefix(e.hdr.Name, "usr/share/nginx/html/"))
				}
			}
			at, err := AssetsTime(testSite(), files)
			if err != nil {
				t.Fatal(err)
			}
			if at.Equal(testTime) || at.After(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) {
				t.Errorf("%s layer time %s is not a synthetic pre-2000 time", l.Name, at)
			}
			wantTime = at
		}
		var names []string
		dirs := map[string]bool{}
		for _, e := range entries {
			h := e.hdr
			names = append(names, h.Name)
			fmt.Fprintf(&listing, "%c %04o %d:%d %q:%q %s %6d %s\n", h.Typeflag, h.Mode, h.Uid, h.Gid,
				h.Uname, h.Gname, h.ModTime.UTC().Format(time.RFC3339), h.Size, h.Name)
			if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
				t.Errorf("%s: owner %d:%d %q:%q, want 0:0 without names", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
			}
			// Directories carry the layer time, files the time of their
			// own content (see contentEpoch).
			want := wantTime
			if h.Typeflag == tar.TypeReg {
				want = FileTime([]byte(e.body))
			}
			if !h.ModTime.Equal(want) {
				t.Errorf("%s: mtime %s, want %s", h.Name, h.ModTime, want)
			}
			// Xattrs would show up as SCHILY.xattr.* records.
			if len(h.PAXRecords) != 0 {
				t.Errorf("%s: unexpected PAX records %v", h.Name, h.PAXRecords)
			}
			switch h.Typeflag {
			case tar.TypeDir:
				dirs[h.Name] = true
				if h.Mode != 0o755 || !strings.HasSuffix(h.Name, "/") {
					t.Errorf("%s: directory mode %o", h.Name, h.Mode)
				}
			case tar.TypeReg:
				if h.Mode != 0o644 {
					t.Errorf("%s: file mode %o", h.Name, h.Mode)
				}
				want, err := fs.ReadFile(testSite(), strings.TrimPrefix(h.Name, "usr/share/nginx/html/"))
				if err != nil || string(want) != e.body {
					t.Errorf("%s: content %q, want %q (%v)", h.Name, e.body, want, err)
				}
			default:
				t.Errorf("%s: unexpected type %c", h.Name, h.Typeflag)
			}
			if !strings.HasPrefix(h.Name, "usr/") {
				t.Errorf("%s: not under the web root", h.Name)
			}
		}
		if !slices.IsSorted(names) {
			t.Errorf("%s layer: entries not sorted: %v", l.Name, names)
		}
		for _, n := range names {
			for p := parentDir(n); p != ""; p = parentDir(p) {
				if !dirs[p] {
					t.Errorf("%s layer: %s has no entry for its parent %s", l.Name, n, p)
				}
			}
		}
	}
	checkGolden(t, "testdata/layers-listing.golden", []byte(listing.String()))
}

// parentDir returns the tar name of name's parent directory ("" at the top).
func parentDir(name string) string {
	name = strings.TrimSuffix(name, "/")
	i := strings.LastIndex(name, "/")
	if i < 0 {
		return ""
	}
	return name[:i+1]
}

// TestLayersGzipHeader checks the gzip header carries no name and no mtime.
func TestLayersGzipHeader(t *testing.T) {
	for _, l := range mustLayers(t, testSite(), "", testTime) {
		rc, err := l.Layer.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 10)
		if _, err := io.ReadFull(rc, head); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		// ID1 ID2 CM FLG MTIME(4) XFL OS: no FNAME flag, zero MTIME.
		if head[0] != 0x1f || head[1] != 0x8b || head[3] != 0 || !bytes.Equal(head[4:8], []byte{0, 0, 0, 0}) {
			t.Errorf("%s layer: gzip header % x has a name or mtime", l.Name, head)
		}
	}
}

// bucketOf is the name of the page bucket layer of a page in a site
// without split sections.
func bucketOf(name string) string { return PageLayerName(pageBucket(name, nil)) }

func TestLayersSplit(t *testing.T) {
	base := layerDigests(t, mustLayers(t, testSite(), "", testTime))
	day1, day2 := bucketOf("day1/index.html"), bucketOf("day2/index.html")
	if day1 == day2 {
		t.Fatalf("day1 and day2 share %s: pick other test names", day1)
	}
	for _, tc := range []struct {
		name        string
		edit        func(fstest.MapFS)
		wantChanged []string
	}{
		{"edit page", func(m fstest.MapFS) { m["day1/index.html"] = &fstest.MapFile{Data: []byte("<h1>Day one</h1>\n")} }, []string{day1}},
		{"edit nested page", func(m fstest.MapFS) { m["day1/01_intro/index.html"].Data = []byte("<h1>Intro!</h1>") }, []string{day1}},
		{"new page", func(m fstest.MapFS) { m["day2/index.html"] = &fstest.MapFile{Data: []byte("<h1>Day 2</h1>\n")} }, []string{day2}},
		{"home page", func(m fstest.MapFS) { m["index.html"] = &fstest.MapFile{Data: []byte("<h1>Home</h1>\n")} }, []string{LayerPages}},
		{"search index", func(m fstest.MapFS) { m["index.search.js"] = &fstest.MapFile{Data: []byte("var index=[];\n")} }, []string{LayerPages}},
		{"edit css", func(m fstest.MapFS) { m["css/theme.css"] = &fstest.MapFile{Data: []byte("body{color:red}\n")} }, []string{LayerAssets}},
		{"new image", func(m fstest.MapFS) { m["day1/_imgs/new.jpg"] = &fstest.MapFile{Data: []byte("jpeg")} }, []string{LayerAssets}},
		{"file mode only", func(m fstest.MapFS) { m["css/theme.css"].Mode = 0o600 }, nil},
		{"file mtime only", func(m fstest.MapFS) { m["index.html"].ModTime = time.Unix(1, 0) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site := testSite()
			tc.edit(site)
			got := layerDigests(t, mustLayers(t, site, "", testTime))
			var changed []string
			for _, n := range slices.Sorted(maps.Keys(got)) {
				if got[n] != base[n] {
					changed = append(changed, n)
				}
			}
			for n := range base {
				if _, ok := got[n]; !ok {
					changed = append(changed, n)
				}
			}
			slices.Sort(tc.wantChanged)
			if !slices.Equal(changed, tc.wantChanged) {
				t.Errorf("changed layers %v, want %v", changed, tc.wantChanged)
			}
		})
	}
}

func TestLayersOrderAndOmission(t *testing.T) {
	for _, tc := range []struct {
		name      string
		site      fstest.MapFS
		wantNames []string
		wantFiles []int
	}{
		{"all kinds", testSite(), []string{LayerAssets, bucketOf("day1/x"), LayerPages}, []int{4, 2, 4}},
		{"pages only", fstest.MapFS{"index.html": {Data: []byte("x")}}, []string{LayerPages}, []int{1}},
		{"assets only", fstest.MapFS{"a.png": {Data: []byte("x")}, "b/c.css": {}}, []string{LayerAssets}, []int{2}},
		{"empty dir only", fstest.MapFS{"d": {Mode: fs.ModeDir}}, []string{LayerPages}, []int{0}},
		{"empty nested dir", fstest.MapFS{"d/e": {Mode: fs.ModeDir}}, []string{bucketOf("d/e")}, []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls := mustLayers(t, tc.site, "/srv", testTime)
			var names []string
			var files []int
			for _, l := range ls {
				names = append(names, l.Name)
				files = append(files, l.Files)
			}
			if !slices.Equal(names, tc.wantNames) || !slices.Equal(files, tc.wantFiles) {
				t.Errorf("layers %v with %v files, want %v with %v", names, files, tc.wantNames, tc.wantFiles)
			}
		})
	}
}

func TestLayerFor(t *testing.T) {
	for name, want := range map[string]string{
		"index.html":           LayerPages,
		"a/b/index.xml":        LayerPages,
		"data.json":            LayerPages,
		"robots.txt":           LayerPages,
		"noext":                LayerPages,
		"index.search.js":      LayerPages,
		"en/INDEX.SEARCH.JS":   LayerPages,
		"x.png":                LayerAssets,
		"X.JPG":                LayerAssets,
		"f/inter.woff2":        LayerAssets,
		"css/style.min.css":    LayerAssets,
		"js/app.js":            LayerAssets,
		"js/app.js.map":        LayerAssets,
		"mod.wasm":             LayerAssets,
		"slides/talk.pdf":      LayerAssets,
		"images/diagram.svg":   LayerAssets,
		"favicon.ico":          LayerAssets,
		"videos/demo.webm":     LayerAssets,
		"fonts/icons.ttf":      LayerAssets,
		"styles.css.html":      LayerPages,
		"archive.png.htm":      LayerPages,
		"weird.name.with.dots": LayerPages,
	} {
		if got := layerFor(name); got != want {
			t.Errorf("layerFor(%q) = %s, want %s", name, got, want)
		}
	}
}

// TestLayersSameFromDirFS writes the test site to disk in a shuffled order
// with random modes and mtimes and expects the same layers as from memory.
func TestLayersSameFromDirFS(t *testing.T) {
	want := layerDigests(t, mustLayers(t, testSite(), "", testTime))
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			dir := t.TempDir()
			writeShuffled(t, dir, testSite(), seed)
			got := layerDigests(t, mustLayers(t, os.DirFS(dir), "", testTime))
			if len(got) != len(want) {
				t.Fatalf("layers %v, want %v", got, want)
			}
			for n, d := range want {
				if got[n] != d {
					t.Errorf("%s layer from disk %s, from memory %s", n, got[n], d)
				}
			}
		})
	}
}

// writeShuffled writes m under dir in a random order with random file modes
// and mtimes, which must not show in the layers.
func writeShuffled(t *testing.T, dir string, m fstest.MapFS, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 42))
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	r.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	modes := []os.FileMode{0o600, 0o644, 0o664, 0o755, 0o777}
	for _, n := range names {
		p := filepath.Join(dir, filepath.FromSlash(n))
		f := m[n]
		if f.Mode.IsDir() {
			if err := os.MkdirAll(p, 0o700); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Data, modes[r.IntN(len(modes))]); err != nil {
			t.Fatal(err)
		}
		mt := time.Unix(r.Int64N(2_000_000_000), r.Int64N(1e9))
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLayersWebRoot(t *testing.T) {
	for _, tc := range []struct {
		webRoot   string
		wantFirst []string
	}{
		{"", []string{"usr/", "usr/share/", "usr/share/nginx/", "usr/share/nginx/html/", "usr/share/nginx/html/index.html"}},
		{"/srv/www", []string{"srv/", "srv/www/", "srv/www/index.html"}},
		{"/", []string{"index.html"}},
	} {
		t.Run(tc.webRoot, func(t *testing.T) {
			ls := mustLayers(t, fstest.MapFS{"index.html": {Data: []byte("hi")}}, tc.webRoot, testTime)
			var names []string
			for _, e := range readLayer(t, ls[0].Layer) {
				names = append(names, e.hdr.Name)
			}
			if !slices.Equal(names, tc.wantFirst) {
				t.Errorf("entries %q, want %q", names, tc.wantFirst)
			}
		})
	}
}

// TestLayersLongAndUnicodeNames checks names ustar cannot hold survive, via
// PAX records, and read back unchanged.
func TestLayersLongAndUnicodeNames(t *testing.T) {
	long := strings.Repeat("section-with-a-long-name/", 8) + "index.html"
	uni := "tags/größe/index.html"
	ls := mustLayers(t, fstest.MapFS{long: {Data: []byte("l")}, uni: {Data: []byte("u")}}, "", testTime)
	got := map[string]string{}
	for _, l := range ls {
		for _, e := range readLayer(t, l.Layer) {
			got[e.hdr.Name] = e.body
		}
	}
	for name, body := range map[string]string{long: "l", uni: "u"} {
		if got[DefaultWebRoot[1:]+"/"+name] != body {
			t.Errorf("%q not read back from the layer; have %v", name, slices.Sorted(maps.Keys(got)))
		}
	}
}

func TestLayersErrors(t *testing.T) {
	symlinkDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(symlinkDir, "index.html"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("index.html", filepath.Join(symlinkDir, "link.html")); err != nil {
		t.Fatal(err)
	}
	ok := fstest.MapFS{"index.html": {Data: []byte("x")}}
	for _, tc := range []struct {
		name    string
		site    fs.FS
		webRoot string
		created time.Time
		want    string
	}{
		{"escaping key", fstest.MapFS{"../escape.html": {Data: []byte("x")}}, "", testTime, `site path ".."`},
		{"escaping nested key", fstest.MapFS{"a/../../b.html": {Data: []byte("x")}}, "", testTime, `site path "a/.."`},
		{"backslash", fstest.MapFS{`a\b.html`: {Data: []byte("x")}}, "", testTime, `site path "a\\b.html"`},
		{"control character", fstest.MapFS{"a\nb.html": {Data: []byte("x")}}, "", testTime, `site path "a\nb.html"`},
		{"invalid utf-8", fstest.MapFS{"a\xffb.html": {Data: []byte("x")}}, "", testTime, `site path "a\xffb.html"`},
		{"whiteout file", fstest.MapFS{"a/.wh.index.html": {Data: []byte("x")}}, "", testTime, `site path "a/.wh.index.html"`},
		{"opaque whiteout", fstest.MapFS{"a/.wh..wh..opq": {}}, "", testTime, `site path "a/.wh..wh..opq"`},
		{"symlink", os.DirFS(symlinkDir), "", testTime, `site path "link.html" is a symbolic link`},
		{"empty site", fstest.MapFS{}, "", testTime, "site is empty"},
		{"relative web root", ok, "srv/www", testTime, `web root "srv/www"`},
		{"unclean web root", ok, "/srv/../www", testTime, `web root "/srv/../www"`},
		{"trailing slash web root", ok, "/srv/", testTime, `web root "/srv/"`},
		{"before epoch", ok, "", time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC), "before 1970"},
		{"missing root", os.DirFS(filepath.Join(symlinkDir, "nope")), "", testTime, `reading site directory "."`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Layers(tc.site, tc.webRoot, tc.created)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %s", err, tc.want)
			}
		})
	}
}

func TestLayersZeroTimeIsEpoch(t *testing.T) {
	site := fstest.MapFS{"index.html": {Data: []byte("x")}}
	a := layerDigests(t, mustLayers(t, site, "", time.Time{}))
	b := layerDigests(t, mustLayers(t, site, "", time.Unix(0, 0)))
	c := layerDigests(t, mustLayers(t, site, "", time.Unix(0, 999).In(time.FixedZone("X", 3600))))
	if a[LayerPages] != b[LayerPages] || b[LayerPages] != c[LayerPages] {
		t.Fatalf("zero time %s, epoch %s, epoch+ns in another zone %s: want all equal", a, b, c)
	}
}

// TestSiteLayerReadsBack checks the layer's reported digests and sizes match
// its bytes, as a registry will check on upload.
func TestSiteLayerReadsBack(t *testing.T) {
	for _, l := range mustLayers(t, testSite(), "", testTime) {
		rc, _ := l.Layer.Compressed()
		digest, size, err := v1.SHA256(rc)
		if err != nil {
			t.Fatal(err)
		}
		rc, _ = l.Layer.Uncompressed()
		diffID, _, err := v1.SHA256(rc)
		if err != nil {
			t.Fatal(err)
		}
		wantDigest, _ := l.Layer.Digest()
		wantDiffID, _ := l.Layer.DiffID()
		wantSize, _ := l.Layer.Size()
		if digest != wantDigest || diffID != wantDiffID || size != wantSize {
			t.Errorf("%s layer: computed %s %s %d, reported %s %s %d", l.Name, digest, diffID, size, wantDigest, wantDiffID, wantSize)
		}
	}
}

// TestAssetsTime: the assets' timestamp follows their content, not the
// commit time, so a new commit that leaves them alone keeps the layer.
func TestAssetsTime(t *testing.T) {
	site := fstest.MapFS{
		"a.css": {Data: []byte("body{color:red}")},
		"b.png": {Data: []byte("png-bytes")},
	}
	t1, err := AssetsTime(site, []string{"a.css", "b.png"})
	if err != nil {
		t.Fatal(err)
	}
	t2, _ := AssetsTime(site, []string{"a.css", "b.png"})
	if !t1.Equal(t2) {
		t.Fatalf("not deterministic: %s vs %s", t1, t2)
	}
	// Same size, other content (a colour change): another time, so web
	// server validators (mtime+size ETags) change too.
	site["a.css"] = &fstest.MapFile{Data: []byte("body{color:blu}")}
	t3, _ := AssetsTime(site, []string{"a.css", "b.png"})
	if t3.Equal(t1) {
		t.Errorf("same-size content change kept the time %s", t1)
	}
	// A renamed asset changes it too.
	site["c.png"] = site["b.png"]
	t4, _ := AssetsTime(site, []string{"a.css", "c.png"})
	if t4.Equal(t3) {
		t.Errorf("rename kept the time")
	}
	if _, err := AssetsTime(site, []string{"missing.js"}); err == nil || !strings.Contains(err.Error(), "missing.js") {
		t.Errorf("missing file: err = %v", err)
	}

	// End to end through Layers: two commit times, same assets layer.
	pages := fstest.MapFS{"index.html": {Data: []byte("<p>hi</p>")}, "a.css": site["a.css"]}
	l1 := layerDigests(t, mustLayers(t, pages, "", testTime))
	l2 := layerDigests(t, mustLayers(t, pages, "", testTime.Add(time.Hour)))
	if l1[LayerAssets] != l2[LayerAssets] {
		t.Errorf("assets layer changed with the commit time")
	}
	if l1[LayerPages] == l2[LayerPages] {
		t.Errorf("pages layer did not take the commit time")
	}
}
