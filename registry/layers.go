package registry

import (
	"archive/tar"
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

// DefaultWebRoot is where the site goes when no web root is given: the
// document root of the nginx images the site is served by.
const DefaultWebRoot = "/usr/share/nginx/html"

// Layer names, in the order the layers are stacked.
const (
	// LayerAssets holds files that rarely change between releases, so that
	// a text edit leaves it, and its upload, alone. A file is an asset by
	// its extension, in any letter case:
	//   images   .apng .avif .bmp .gif .ico .jpeg .jpg .png .svg .tif .tiff .webp
	//   fonts    .eot .otf .ttf .woff .woff2
	//   code     .css .js .mjs .map .wasm
	//   media    .pdf .mp3 .mp4 .ogg .wav .webm .zip
	// except search indexes generated from the pages ("*.search.js").
	LayerAssets = "assets"
	// LayerPages holds the pages at the top of the site (index.html,
	// 404.html, feeds and sitemaps there): the files most edits change. It
	// is the top layer. Every other page (HTML, XML, JSON, text, empty
	// directories) goes into one of the page bucket layers "pages-00" to
	// "pages-47" (PageLayerName), see "Page layers" below.
	LayerPages = "pages"
)

// Page layers.
//
// A release uploads only the layers whose bytes changed, so a one-page
// edit should change as few bytes of the image as it can. One layer for
// every page would be best for uploads but is impossible (runtimes and
// registries handle tens of layers well, not thousands), one layer for all
// pages re-uploads the whole site for a typo. So the pages are spread over
// a fixed number of bucket layers by a rule that depends only on a file's
// path and the size of its section, never on the order or number of other
// files, so that a page stays in its layer from one release to the next:
//
//  1. A file directly in the site's root (index.html, 404.html,
//     sitemap.xml, index.xml, robots.txt) goes into LayerPages.
//  2. Otherwise its section is its first path element ("day3" of
//     "day3/talk/index.html"). A section of at most SectionSplitBytes of
//     pages is kept together: its key is the section ("day3"). A larger
//     section is split by its second path element: the key of
//     "tags/dns/index.html" is "tags/dns", of "tags/index.html"
//     "tags/index.html".
//  3. The file goes into bucket sha256(key) mod PageBuckets, the layer
//     PageLayerName(bucket). An empty bucket gives no layer.
//
// Keeping a small section together keeps a section's list page with its
// pages, so that adding or retitling a talk usually changes one bucket
// (plus the home page in LayerPages and the tag pages' buckets); splitting
// a large one keeps a single bucket from growing into most of the site.
// Hashing, not sorting, spreads sections evenly without a list of them:
// inserting a section does not move any other.
//
// Trade-offs and bounds:
//   - PageBuckets = 48. Every layer costs a registry round trip on push and
//     pull, a manifest entry, and an overlay lower directory when a
//     container starts. Docker's overlay2 driver refuses images of more than
//     128 layers; the kernel takes all lower directories in one mount
//     option of at most a page (4096 bytes), which containerd and Docker
//     can only meet with short relative paths; and registries cap manifest
//     sizes (4 MiB in Distribution, less elsewhere), while some older tools
//     and registries stop at 127 layers. So the site's layers stay at most
//     51 (serving, assets, 48 buckets, pages), which with a nginx base of
//     5-8 layers keeps an image under 64 layers: far from every limit.
//   - With 48 buckets a one-page edit of a large site uploads about 1/48
//     (2%) of its pages plus the top layer; a smaller site, with fewer
//     sections than buckets, gets one layer per section or so.
//   - A section that crosses SectionSplitBytes (in either direction) moves
//     its pages between buckets once: that release uploads the buckets
//     involved. Changing PageBuckets or the rule moves most pages: it is a
//     new LayerFormat.
//   - A page's bucket does not depend on its content, so a digest stays a
//     pure function of the files: the same commit and generator give the
//     same layers.
const (
	// PageBuckets is the number of page bucket layers.
	PageBuckets = 48
	// SectionSplitBytes is the size (uncompressed, before precompressed
	// copies) above which a section's pages are spread over buckets by
	// their second path element instead of staying together.
	SectionSplitBytes = 4 << 20
)

// PageLayerName is the name of page bucket layer i ("pages-07").
func PageLayerName(i int) string { return fmt.Sprintf("%s-%02d", LayerPages, i) }

// pageBucket returns the bucket of a page that is not in the site's root;
// split says which sections are spread by their second path element.
func pageBucket(name string, split map[string]bool) int {
	section, rest, _ := strings.Cut(name, "/")
	key := section
	if split[section] {
		second, _, _ := strings.Cut(rest, "/")
		key = section + "/" + second
	}
	sum := sha256.Sum256([]byte(key))
	return int(binary.BigEndian.Uint64(sum[:8]) % PageBuckets)
}

// Fixed parameters of the layer encoding. Changing any of them changes every
// digest, so they are constants and not options.
const (
	dirMode  = 0o755
	fileMode = 0o644
	// tar.FormatPAX always writes a ustar block and adds PAX records only
	// where ustar cannot hold a value (long or non-ASCII names), so short
	// names give plain ustar-compatible headers.
	tarFormat = tar.FormatPAX
	// gzip level 6 is zlib's default: a good ratio for HTML at a speed that
	// keeps large sites fast. The encoder is github.com/klauspost/compress's
	// gzip (about twice as fast as compress/gzip at this level). It runs on
	// one goroutine per layer, so its bytes depend only on the input, the
	// level and the module version pinned in go.mod, never on GOMAXPROCS
	// or the machine (unlike pgzip, whose output depends on its block
	// size). It writes no name and a zero mtime unless asked to, so the
	// gzip header is fixed. Upgrading klauspost/compress can change the
	// bytes: TestFixtureDigest (pipeline) catches that, and it then needs a
	// new LayerFormat.
	gzipLevel = 6
	// The assets layer is compressed at level 1: it is built on every
	// release but uploaded only when an asset changes, and it holds mostly
	// compressed images and fonts and minified scripts, where level 6 costs
	// several times the CPU for a few percent (a 2.5 MB script bundle took
	// most of a release's time at level 6).
	assetsGzipLevel = gzip.BestSpeed
)

// LayerFormat versions the way files become layers: the encoding above,
// the split into layers, modes, owners and times. Bump it with any change
// that gives the same files a different layer, so that a release of an
// already-deployed commit is built again (LabelLayerFormat).
//
//	1  assets and pages layers, compress/gzip
//	2  page bucket layers ("Page layers"), directories timed by content
//	   outside LayerPages, klauspost/compress gzip
const LayerFormat = "2"

// assetExtensions are the file extensions (lower case) of the assets layer,
// as listed on LayerAssets: files a site author adds or a theme ships, which
// change far less often than the pages generated from content.
var assetExtensions = map[string]bool{
	// images
	".apng": true, ".avif": true, ".bmp": true, ".gif": true, ".ico": true,
	".jpeg": true, ".jpg": true, ".png": true, ".svg": true, ".tif": true,
	".tiff": true, ".webp": true,
	// fonts
	".eot": true, ".otf": true, ".ttf": true, ".woff": true, ".woff2": true,
	// styles, scripts, source maps, WebAssembly
	".css": true, ".js": true, ".mjs": true, ".map": true, ".wasm": true,
	// documents, media and archives
	".pdf": true, ".mp3": true, ".mp4": true, ".ogg": true, ".wav": true,
	".webm": true, ".zip": true,
}

// generatedScriptSuffixes are script names that look like assets but are
// regenerated from page content on every build (search indexes written as
// an output format, e.g. "index.search.js"); they belong with the pages.
var generatedScriptSuffixes = []string{".search.js"}

// layerFor returns the name of the layer a site file belongs to.
func layerFor(name string) string {
	lower := strings.ToLower(name)
	for _, s := range generatedScriptSuffixes {
		if strings.HasSuffix(lower, s) {
			return LayerPages
		}
	}
	if assetExtensions[path.Ext(lower)] {
		return LayerAssets
	}
	return LayerPages
}

// SiteLayer is one layer made from the site.
type SiteLayer struct {
	// Name is LayerAssets or LayerPages.
	Name string
	// Layer is the gzip-compressed tar layer, media type
	// application/vnd.oci.image.layer.v1.tar+gzip.
	Layer v1.Layer
	// Files is the number of site files in the layer (precompressed
	// copies not counted).
	Files int
}

// Timestamps. nginx (like most static servers) derives its validators from
// the file system: Last-Modified is the file's mtime and the ETag is
// "<mtime hex>-<size hex>". A browser that revalidates a cached copy
// (Cache-Control: no-cache) gets 304 Not Modified when both still match. So
// for correct caching a file's mtime must change whenever its content does,
// and for reproducible layers it must not depend on the clock.
//
// A single time for every file (the commit time, or SOURCE_DATE_EPOCH) is
// reproducible but fails the first rule: two releases with the same commit
// second or the same fixed SOURCE_DATE_EPOCH, where a file changed but kept
// its size, give the same ETag, and clients keep the old content for ever.
// It also changes every validator on every release, so unchanged pages are
// downloaded again.
//
// So every regular file is stamped with a time derived from its own
// content: fileTime(sha256(content)), a second in the window 1990-2000.
// The same bytes always get the same time, on any machine; other bytes get
// another time (two contents collide with odds of 1 in 3*10^8, and the ETag
// also carries the size). A precompressed NAME.gz carries the time of NAME.
// The window lies clearly in the past: the times are synthetic, and they say
// nothing about freshness, because the serving config (nginx.go) sends an
// explicit Cache-Control with every response, so browsers never fall back to
// heuristic freshness (10% of the Last-Modified age, years here). A time can
// move backwards from one release to the next; nginx answers
// If-Modified-Since only on an exact match (if_modified_since exact), so
// that is still a change.
//
// Directories, which no validator is derived from, keep the layer time:
// the commit time in LayerPages, and in every other layer a time derived
// from that layer's file names and contents (AssetsTime), so that a layer
// whose files did not change stays the same blob.
var (
	contentEpoch  = time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)
	contentWindow = uint64(10 * 365 * 24 * 3600)
)

// contentTime maps a SHA-256 sum to a second in the synthetic window.
func contentTime(sum []byte) time.Time {
	offset := binary.BigEndian.Uint64(sum[:8]) % contentWindow
	return contentEpoch.Add(time.Duration(offset) * time.Second)
}

// FileTime is the modification time a file with this content gets in the
// image (see the comment on contentEpoch).
func FileTime(content []byte) time.Time {
	sum := sha256.Sum256(content)
	return contentTime(sum[:])
}

// AssetsTime is the modification time of the directories in the assets
// layer. Pages carry the commit time, but if the assets' directories did
// too, every commit (a text edit included) would change the assets layer
// and re-upload it. So they take a time derived from the assets' names and
// contents: the same assets always give the same time, and any change to
// them gives a different time, and a different layer digest.
func AssetsTime(site fs.FS, files []string) (time.Time, error) {
	sums := make([][sha256.Size]byte, len(files))
	for i, name := range files {
		data, err := fs.ReadFile(site, name)
		if err != nil {
			return time.Time{}, fmt.Errorf("%s: %w", name, err)
		}
		sums[i] = sha256.Sum256(data)
	}
	return assetsTime(files, sums), nil
}

func assetsTime(files []string, sums [][sha256.Size]byte) time.Time {
	h := sha256.New()
	for i, name := range files {
		fmt.Fprintf(h, "%s\x00", name)
		h.Write(sums[i][:])
	}
	return contentTime(h.Sum(nil))
}

// LayerOptions configures BuildLayers.
type LayerOptions struct {
	// WebRoot is where the site goes (DefaultWebRoot when empty).
	WebRoot string
	// Created is the commit time: the mtime of LayerPages' directories. The zero time means the Unix epoch.
	Created time.Time
	// Precompress adds NAME.gz beside each text file (see precompressible)
	// that gzip makes smaller, for nginx's gzip_static. A site file of that
	// name wins over the generated one.
	Precompress bool
	// Progress, when set, is called as each layer is done, one call at a
	// time, from the goroutine that built it.
	Progress func(LayerProgress)
}

// Layers turns a rendered site into its image layers without precompressed
// files: BuildLayers with only a web root and a commit time.
func Layers(site fs.FS, webRoot string, created time.Time) ([]SiteLayer, error) {
	return BuildLayers(site, LayerOptions{WebRoot: webRoot, Created: created})
}

// BuildLayers turns a rendered site into its image layers: the assets layer
// first, then the page bucket layers in bucket order, then LayerPages (see
// "Page layers"), each omitted when it would be empty. Every entry is
// placed under the web root, owned by 0:0 with no user or group names,
// mode 0755 for directories and 0644 for files. Files are modified at
// FileTime of their content. Directories are modified at the commit time
// (truncated to the second) in LayerPages, and at a time derived from the
// layer's file names and contents (AssetsTime) in the other layers, so that
// a commit leaves every layer whose files it did not change byte for byte
// the same. Entries are sorted by name and every parent directory has its
// own entry. The digests therefore depend only on the file names and
// contents, the commit time, the web root and Precompress.
//
// Layers are compressed concurrently, GOMAXPROCS at a time, largest first;
// each layer's bytes depend only on its files, never on the number of
// workers. So site must allow concurrent reads, as os.DirFS, fstest.MapFS
// and afero's file systems do.
//
// The site holds only directories and regular files; anything else, or a name
// that is not a valid io/fs path (such as one escaping the root with ".."),
// is an error naming it.
func BuildLayers(site fs.FS, opts LayerOptions) ([]SiteLayer, error) {
	root, err := cleanWebRoot(opts.WebRoot)
	if err != nil {
		return nil, err
	}
	mtime, err := layerTime(opts.Created)
	if err != nil {
		return nil, err
	}
	plan, err := planLayers(site)
	if err != nil {
		return nil, err
	}
	if len(plan) == 0 {
		return nil, errors.New("site is empty: nothing to put into the image")
	}
	var siteFiles map[string]bool
	if opts.Precompress {
		siteFiles = map[string]bool{}
		for _, p := range plan {
			for _, f := range p.files {
				siteFiles[f] = true
			}
		}
	}
	// Compression dominates the cost and the layers are independent: a pool
	// of workers takes them largest first, so that the last one to finish
	// is a small one.
	order := make([]int, len(plan))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(plan[b].bytes, plan[a].bytes) })
	layers := make([]*siteLayer, len(plan))
	errs := make([]error, len(plan))
	var next atomic.Int64
	var progress func(LayerProgress)
	if opts.Progress != nil {
		var mu sync.Mutex
		var done int
		var compressed int64
		progress = func(p LayerProgress) {
			mu.Lock()
			defer mu.Unlock()
			done++
			compressed += p.Compressed
			p.Done, p.Total, p.CompressedSoFar = done, len(plan), compressed
			opts.Progress(p)
		}
	}
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(plan)) {
		wg.Go(func() {
			for {
				n := int(next.Add(1)) - 1
				if n >= len(order) {
					return
				}
				i := order[n]
				layers[i], errs[i] = buildLayer(site, root, mtime, plan[i], siteFiles, progress)
				if errs[i] != nil {
					// The others would fail the build anyway.
					next.Store(int64(len(order)))
					return
				}
			}
		})
	}
	wg.Wait()
	out := make([]SiteLayer, 0, len(plan))
	for i, p := range plan {
		if errs[i] != nil {
			return nil, fmt.Errorf("%s layer: %w", p.name, errs[i])
		}
	}
	for i, p := range plan {
		if layers[i] == nil {
			return nil, fmt.Errorf("%s layer: not built", p.name)
		}
		out = append(out, SiteLayer{Name: p.name, Layer: layers[i], Files: len(p.files)})
	}
	return out, nil
}

// buildLayer reads, tars and compresses one planned layer.
func buildLayer(site fs.FS, root string, mtime time.Time, p *layerPlan, siteFiles map[string]bool, progress func(LayerProgress)) (*siteLayer, error) {
	files, err := readSiteFiles(site, p.files, siteFiles)
	if err != nil {
		return nil, err
	}
	dirTime, level := mtime, gzipLevel
	if p.name != LayerPages {
		// See AssetsTime: a commit that leaves this layer's files alone
		// must leave the layer alone.
		sums := make([][sha256.Size]byte, len(files))
		for j := range files {
			sums[j] = files[j].sum
		}
		dirTime = assetsTime(p.files, sums)
	}
	if p.name == LayerAssets {
		level = assetsGzipLevel
	}
	l, err := writeLayer(site, root, dirTime, p, files, level)
	if err == nil && progress != nil {
		progress(LayerProgress{Layer: p.name, Files: len(p.files), Bytes: l.diffSize, Compressed: int64(len(l.compressed))})
	}
	return l, err
}

// LayerProgress reports one finished layer to LayerOptions.Progress.
type LayerProgress struct {
	Layer      string
	Files      int
	Bytes      int64 // tar bytes
	Compressed int64 // gzip bytes
	// Done of Total layers are finished, CompressedSoFar bytes in all.
	Done, Total     int
	CompressedSoFar int64
}

// cleanWebRoot checks that webRoot is an absolute, clean path and returns it
// in tar form: without the leading slash ("" for "/").
func cleanWebRoot(webRoot string) (string, error) {
	if webRoot == "" {
		webRoot = DefaultWebRoot
	}
	if webRoot == "/" {
		return "", nil
	}
	rel := strings.TrimPrefix(webRoot, "/")
	if !strings.HasPrefix(webRoot, "/") || path.Clean(webRoot) != webRoot || !validName(rel) {
		return "", fmt.Errorf("web root %q: want a clean absolute path such as %s", webRoot, DefaultWebRoot)
	}
	return rel, nil
}

// layerTime normalizes the layer timestamp: whole seconds in UTC, the zero
// time meaning the Unix epoch. Times before the epoch are refused because
// tar headers cannot hold them without extensions other tools disagree on.
func layerTime(t time.Time) (time.Time, error) {
	if t.IsZero() {
		return time.Unix(0, 0).UTC(), nil
	}
	if t.Unix() < 0 {
		return time.Time{}, fmt.Errorf("build timestamp %s is before 1970-01-01", t.UTC().Format(time.RFC3339))
	}
	return time.Unix(t.Unix(), 0).UTC(), nil
}

// validName reports whether name is a usable relative path inside the site:
// a valid io/fs path (no "..", ".", empty elements, or leading slash) that
// is valid UTF-8 and holds no backslash or control characters, which other
// tools would read as separators or mangle.
func validName(name string) bool {
	if !fs.ValidPath(name) || name == "." || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r == '\\' || r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// layerPlan lists what goes into one layer, as site-relative names.
type layerPlan struct {
	name  string
	files []string
	dirs  map[string]bool
	bytes int64 // of the files, for scheduling
}

func newPlan(name string) *layerPlan {
	return &layerPlan{name: name, dirs: map[string]bool{}}
}

func (p *layerPlan) addFile(name string, size int64) {
	p.files = append(p.files, name)
	p.bytes += size
	p.addDirs(path.Dir(name))
}

func (p *layerPlan) addDirs(dir string) {
	for dir != "." && dir != "" && !p.dirs[dir] {
		p.dirs[dir] = true
		dir = path.Dir(dir)
	}
}

// planLayers walks the site and sorts its files into layers (see "Page
// layers"), returned in stacking order without empty ones. A directory
// that ends up in no layer (it holds no files) goes where a page of that
// name would, so it still exists in the image.
func planLayers(site fs.FS) ([]*layerPlan, error) {
	type page struct {
		name string
		size int64
	}
	assets := newPlan(LayerAssets)
	var pages []page
	var dirs []string
	sectionBytes := map[string]int64{}
	err := walkSite(site, ".", func(name string, d fs.DirEntry) error {
		switch {
		case d.IsDir():
			dirs = append(dirs, name)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return fmt.Errorf("site file %q: %w", name, err)
			}
			if layerFor(name) == LayerAssets {
				assets.addFile(name, info.Size())
				return nil
			}
			pages = append(pages, page{name, info.Size()})
			if section, _, ok := strings.Cut(name, "/"); ok {
				sectionBytes[section] += info.Size()
			}
		default:
			return fmt.Errorf("site path %q is a %s, not a regular file or directory", name, typeName(d.Type()))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	split := map[string]bool{}
	for section, n := range sectionBytes {
		if n > SectionSplitBytes {
			split[section] = true
		}
	}
	top := newPlan(LayerPages)
	buckets := make([]*layerPlan, PageBuckets)
	planFor := func(name string) *layerPlan {
		if !strings.Contains(name, "/") {
			return top
		}
		b := pageBucket(name, split)
		if buckets[b] == nil {
			buckets[b] = newPlan(PageLayerName(b))
		}
		return buckets[b]
	}
	for _, pg := range pages {
		planFor(pg.name).addFile(pg.name, pg.size)
	}
	all := append([]*layerPlan{assets}, buckets...)
	all = append(all, top)
	// Deepest first (the walk lists parents before children), so that a
	// parent of an empty directory goes where the directory goes.
	for _, dir := range slices.Backward(dirs) {
		if !slices.ContainsFunc(all, func(p *layerPlan) bool { return p != nil && p.dirs[dir] }) {
			planFor(dir).addDirs(dir)
			copy(all[1:], buckets)
		}
	}
	out := all[:0]
	for _, p := range all {
		if p != nil && (len(p.files) > 0 || len(p.dirs) > 0) {
			out = append(out, p)
		}
	}
	return out, nil
}

// maxPathLen bounds site paths (Linux's PATH_MAX), which also ends the walk
// of a file system whose directories contain themselves.
const maxPathLen = 4096

// walkSite calls visit for every entry under dir, depth first in name order.
// Unlike fs.WalkDir it checks each entry's own name before joining it: an
// entry named ".." would otherwise be cleaned away by path.Join, and a
// malformed fs.FS (fstest.MapFS with a key like "a/../../x") walks forever.
func walkSite(site fs.FS, dir string, visit func(name string, d fs.DirEntry) error) error {
	entries, err := fs.ReadDir(site, dir)
	if err != nil {
		return fmt.Errorf("reading site directory %q: %w", dir, err)
	}
	for i, d := range entries {
		elem := d.Name()
		name := elem
		if dir != "." {
			name = dir + "/" + elem
		}
		if elem == "" || elem == "." || elem == ".." || strings.Contains(elem, "/") || !validName(name) {
			return fmt.Errorf("site path %q is not a valid relative path inside the site", name)
		}
		// Container runtimes read ".wh.<name>" entries as deletions of <name>
		// from the layers below, so such a file would delete base files.
		if strings.HasPrefix(elem, ".wh.") {
			return fmt.Errorf("site path %q: names starting with .wh. are OCI layer whiteouts and cannot be shipped", name)
		}
		if len(name) > maxPathLen {
			return fmt.Errorf("site path %.64q... is longer than %d bytes", name, maxPathLen)
		}
		if i > 0 && entries[i-1].Name() == elem {
			return fmt.Errorf("site path %q is listed twice", name)
		}
		if err := visit(name, d); err != nil {
			return err
		}
		if d.IsDir() {
			if err := walkSite(site, name, visit); err != nil {
				return err
			}
		}
	}
	return nil
}

func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	default:
		return "file of type " + m.Type().String()
	}
}

// precompressedTypes are the extensions (lower case) of text files that get
// a NAME.gz beside them with Precompress: what a Hugo site serves as text.
var precompressedTypes = map[string]bool{
	".html": true, ".htm": true, ".css": true, ".js": true, ".mjs": true,
	".json": true, ".xml": true, ".svg": true, ".txt": true, ".map": true,
	".webmanifest": true, ".ics": true, ".csv": true, ".md": true,
}

// precompressLevel is the gzip level of the precompressed files: fixed, so
// the bytes are too (compress/gzip writes no name and a zero mtime).
const precompressLevel = gzip.BestCompression

func precompressible(name string) bool {
	return precompressedTypes[strings.ToLower(path.Ext(name))]
}

// newGzip returns a gzip writer with a fixed header: no name and a zero
// mtime. (klauspost/compress writes the Unix time of a zero ModTime, which
// is not 0, so the epoch is set explicitly.)
func newGzip(w io.Writer, level int) (*gzip.Writer, error) {
	zw, err := gzip.NewWriterLevel(w, level)
	if err != nil {
		return nil, err
	}
	zw.ModTime = time.Unix(0, 0)
	return zw, nil
}

// gzipFile compresses data for gzip_static.
func gzipFile(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := newGzip(&buf, precompressLevel)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// siteFile is what is known of a site file before it is written: the sum
// its mtime comes from, and its precompressed copy, if it gets one.
type siteFile struct {
	sum [sha256.Size]byte
	gz  []byte
}

// readSiteFiles reads each file once for its sum and, when siteFiles is not
// nil (Precompress), compresses the text files whose NAME.gz the site does
// not hold itself. A copy that gzip does not make smaller is left out.
func readSiteFiles(site fs.FS, names []string, siteFiles map[string]bool) ([]siteFile, error) {
	out := make([]siteFile, len(names))
	buf := make([]byte, 32<<10)
	for i, name := range names {
		if siteFiles != nil && precompressible(name) && !siteFiles[name+".gz"] {
			data, err := fs.ReadFile(site, name)
			if err != nil {
				return nil, fmt.Errorf("reading site file %q: %w", name, err)
			}
			out[i].sum = sha256.Sum256(data)
			gz, err := gzipFile(data)
			if err != nil {
				return nil, fmt.Errorf("compressing site file %q: %w", name, err)
			}
			if len(gz) < len(data) {
				out[i].gz = gz
			}
			continue
		}
		f, err := site.Open(name)
		if err != nil {
			return nil, fmt.Errorf("reading site file %q: %w", name, err)
		}
		h := sha256.New()
		_, err = io.CopyBuffer(h, f, buf)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading site file %q: %w", name, err)
		}
		h.Sum(out[i].sum[:0])
	}
	return out, nil
}

// tarEntry is one entry to write: its full name in the archive and, for a
// file, its index in the layer's files (-1 for a directory) and whether it
// is the precompressed copy.
type tarEntry struct {
	name string // archive name; directories end in "/"
	file int
	gz   bool
}

func writeLayer(site fs.FS, root string, dirTime time.Time, p *layerPlan, files []siteFile, level int) (*siteLayer, error) {
	entries := make([]tarEntry, 0, 2*len(p.files)+len(p.dirs)+8)
	// The web root and each of its parents get an entry in every layer, so
	// each layer extracts correctly on its own.
	for dir := root; dir != "." && dir != ""; dir = path.Dir(dir) {
		entries = append(entries, tarEntry{name: dir + "/", file: -1})
	}
	join := func(name string) string {
		if root == "" {
			return name
		}
		return root + "/" + name
	}
	for dir := range p.dirs {
		entries = append(entries, tarEntry{name: join(dir) + "/", file: -1})
	}
	for i, f := range p.files {
		entries = append(entries, tarEntry{name: join(f), file: i})
		if files[i].gz != nil {
			entries = append(entries, tarEntry{name: join(f) + ".gz", file: i, gz: true})
		}
	}
	// A directory name ends in "/", so it sorts before everything inside it.
	slices.SortFunc(entries, func(a, b tarEntry) int { return strings.Compare(a.name, b.name) })

	var compressed bytes.Buffer
	digest := sha256.New()
	gz, err := newGzip(io.MultiWriter(&compressed, digest), level)
	if err != nil {
		return nil, err
	}
	diffID := sha256.New()
	counter := &countWriter{}
	tw := tar.NewWriter(io.MultiWriter(gz, diffID, counter))
	buf := make([]byte, 32<<10)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:     e.name,
			ModTime:  dirTime,
			Format:   tarFormat,
			Typeflag: tar.TypeDir,
			Mode:     dirMode,
		}
		if e.file < 0 {
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, fmt.Errorf("writing tar header for %q: %w", e.name, err)
			}
			continue
		}
		f := files[e.file]
		hdr.Typeflag, hdr.Mode = tar.TypeReg, fileMode
		hdr.ModTime = contentTime(f.sum[:])
		if e.gz {
			hdr.Size = int64(len(f.gz))
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, fmt.Errorf("writing tar header for %q: %w", e.name, err)
			}
			if _, err := tw.Write(f.gz); err != nil {
				return nil, fmt.Errorf("writing %q: %w", e.name, err)
			}
			continue
		}
		if err := copyFile(tw, site, p.files[e.file], hdr, f.sum, buf); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return &siteLayer{
		compressed: compressed.Bytes(),
		digest:     sumHash(digest),
		diffID:     sumHash(diffID),
		diffSize:   counter.n,
		mediaType:  types.OCILayer,
	}, nil
}

// copyFile writes one site file into the tar, streaming it so large media
// files are never held in memory twice.
func copyFile(tw *tar.Writer, site fs.FS, name string, hdr *tar.Header, sum [sha256.Size]byte, buf []byte) error {
	f, err := site.Open(name)
	if err != nil {
		return fmt.Errorf("reading site file %q: %w", name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("reading site file %q: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("site path %q is not a regular file", name)
	}
	hdr.Size = st.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing tar header for %q: %w", hdr.Name, err)
	}
	// The tar writer refuses more bytes than the header announced; fewer
	// are caught here, and other bytes than those the mtime was derived
	// from by the sum. Either way the file changed while it was read.
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(tw, h), f, buf)
	if err == nil && n != hdr.Size {
		err = fmt.Errorf("read %d bytes, expected %d", n, hdr.Size)
	}
	if err == nil && !bytes.Equal(h.Sum(nil), sum[:]) {
		err = errors.New("content differs from the first read")
	}
	if err != nil {
		return fmt.Errorf("reading site file %q (did it change during the build?): %w", name, err)
	}
	return nil
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

func sumHash(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

// siteLayer is a v1.Layer held compressed in memory, with its digests
// computed while it was written, so no consumer compresses it again.
type siteLayer struct {
	compressed []byte
	digest     v1.Hash
	diffID     v1.Hash
	diffSize   int64
	mediaType  types.MediaType
}

var _ v1.Layer = (*siteLayer)(nil)

func (l *siteLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *siteLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *siteLayer) Size() (int64, error)     { return int64(len(l.compressed)), nil }

func (l *siteLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }

func (l *siteLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.compressed)), nil
}

func (l *siteLayer) Uncompressed() (io.ReadCloser, error) {
	zr, err := gzip.NewReader(bytes.NewReader(l.compressed))
	if err != nil {
		return nil, err
	}
	return zr, nil
}

// withMediaType returns the same bytes under another layer media type, for
// bases whose manifests use Docker media types. The blob is identical; only
// the manifest descriptor differs.
func (l *siteLayer) withMediaType(mt types.MediaType) *siteLayer {
	c := *l
	c.mediaType = mt
	return &c
}
