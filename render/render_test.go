package render

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"

	"github.com/notesctl/notesctl/internal/sitegit"
)

// newSiteRepo copies a fixture into a fresh repository, applies edits
// (path -> content; empty content deletes) and commits.
func newSiteRepo(t *testing.T, fixture string, edits map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(fixture)); err != nil {
		t.Fatal(err)
	}
	for p, content := range edits {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if content == "" {
			if err := os.Remove(full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sitegit.Init(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func renderDir(t *testing.T, dir string, opts Options) (*Site, error) {
	t.Helper()
	src, err := ReadSource(SourceOptions{SiteDir: dir})
	if err != nil {
		t.Fatalf("ReadSource: %v", err)
	}
	return Render(context.Background(), src, opts)
}

func readAll(t *testing.T, fsys fs.FS) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		out[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRenderMini(t *testing.T) {
	dir := newSiteRepo(t, "testdata/mini", nil)
	site, err := renderDir(t, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	files := readAll(t, site.Files)
	page, ok := files["day1/talk/index.html"]
	if !ok {
		t.Fatalf("talk page missing; have %v", keys(files))
	}
	if !strings.Contains(page, `<meta name="generator" content="Hugo `+HugoVersion()+`">`) {
		t.Errorf("generator meta missing:\n%s", page)
	}
	if site.FileCount != len(files) || site.Pages < 3 {
		t.Errorf("FileCount=%d (files %d) Pages=%d", site.FileCount, len(files), site.Pages)
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	a := readAll(t, mustRender(t, newSiteRepo(t, "testdata/mini", nil)).Files)
	b := readAll(t, mustRender(t, newSiteRepo(t, "testdata/mini", nil)).Files)
	if len(a) != len(b) {
		t.Fatalf("file count differs: %d vs %d", len(a), len(b))
	}
	for p, ca := range a {
		if b[p] != ca {
			t.Errorf("%s differs between two renders of the same commit", p)
		}
	}
}

func mustRender(t *testing.T, dir string) *Site {
	t.Helper()
	site, err := renderDir(t, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return site
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestRenderErrorsNamePlace(t *testing.T) {
	cases := []struct {
		name  string
		edits map[string]string
		want  string // regexp the error must match
	}{
		{
			name:  "broken front matter",
			edits: map[string]string{"content/day1/talk.md": "---\ntitle: [unclosed\n---\nbody\n"},
			want:  `content/day1/talk\.md:2: .*yaml`,
		},
		{
			name:  "unknown shortcode",
			edits: map[string]string{"content/day1/talk.md": "---\ntitle: T\n---\n\nline\n\n{{< nosuchshortcode >}}\n"},
			want:  `content/day1/talk\.md:7:\d+: .*nosuchshortcode`,
		},
		{
			name:  "template parse error",
			edits: map[string]string{"layouts/_default/single.html": "{{ define \"main\" }}{{ .Title }\n{{ end }}"},
			want:  `layouts/_default/single\.html:\d+:\d+: .*`,
		},
		{
			name:  "template execution error",
			edits: map[string]string{"layouts/_default/single.html": "{{ define \"main\" }}\n{{ .NoSuchField.Deeper }}{{ end }}"},
			want:  `layouts/_default/single\.html:\d+:\d+: .*`,
		},
		{
			name:  "error only logged by Hugo",
			edits: map[string]string{"layouts/_default/single.html": "{{ define \"main\" }}{{ errorf \"talk %q has no speaker\" .Title }}{{ end }}"},
			want:  `talk "A talk" has no speaker`,
		},
		{
			name:  "warning fails by default",
			edits: map[string]string{"layouts/_default/single.html": "{{ define \"main\" }}{{ warnf \"draft-ish page %s\" .Title }}{{ end }}"},
			want:  `warning: draft-ish page A talk`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := newSiteRepo(t, "testdata/mini", tc.edits)
			_, err := renderDir(t, dir, Options{})
			if err == nil {
				t.Fatal("render succeeded; want an error")
			}
			var rerr *Error
			if !errors.As(err, &rerr) {
				t.Fatalf("error is %T, want *render.Error: %v", err, err)
			}
			t.Logf("error: %v", err)
			if !regexp.MustCompile(tc.want).MatchString(err.Error()) {
				t.Errorf("error does not match %q:\n%v", tc.want, err)
			}
			if strings.Contains(err.Error(), siteRoot) || strings.Contains(err.Error(), dir) {
				t.Errorf("error leaks internal or absolute paths: %v", err)
			}
		})
	}
}

func TestWarningsAllowed(t *testing.T) {
	dir := newSiteRepo(t, "testdata/mini", map[string]string{
		"layouts/_default/single.html": "{{ define \"main\" }}{{ warnf \"note %s\" .Title }}{{ end }}",
	})
	site, err := renderDir(t, dir, Options{AllowWarnings: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(site.Warnings) != 1 || !strings.Contains(site.Warnings[0], "note A talk") {
		t.Errorf("warnings = %q", site.Warnings)
	}
}

func TestHugoVersionPin(t *testing.T) {
	// go test binaries carry no dependency list, so check go.mod directly;
	// the built binary runs PinCheck in `notesctl version`.
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^\s*github\.com/gohugoio/hugo v` + regexp.QuoteMeta(HugoVersion()) + `$`).Match(gomod) {
		t.Fatalf("go.mod does not pin github.com/gohugoio/hugo v%s", HugoVersion())
	}
	cases := []struct {
		name    string
		hugoCfg string
		require string
		want    string
	}{
		{"site min too new", "module:\n  hugoVersion:\n    min: \"0.200.0\"\n", "", `requires Hugo >= 0.200.0.*embeds Hugo 0\.145\.0`},
		{"site max too old", "module:\n  hugoVersion:\n    max: \"0.120.0\"\n", "", `requires Hugo <= 0.120.0.*embeds Hugo 0\.145\.0`},
		{"site needs extended", "module:\n  hugoVersion:\n    extended: true\n", "", `extended`},
		{"notesctl config exact", "", "0.144.2", `notesctl config hugoVersion requires Hugo 0.144.2, but notesctl embeds Hugo 0\.145\.0`},
		{"notesctl config range", "", ">=0.146.0", `requires Hugo >=0.146.0`},
		{"bad constraint", "", ">=zero", `invalid Hugo version constraint`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := "baseURL: https://notes.example.org/\ntitle: Mini\ndisableKinds: [RSS, sitemap, robotsTXT, taxonomy, term, 404]\n" + tc.hugoCfg
			dir := newSiteRepo(t, "testdata/mini", map[string]string{"hugo.yaml": cfg})
			_, err := renderDir(t, dir, Options{RequireHugo: tc.require})
			if err == nil || !regexp.MustCompile(tc.want).MatchString(err.Error()) {
				t.Fatalf("error = %v, want match %q", err, tc.want)
			}
		})
	}
	for _, ok := range []string{"0.145.0", "=0.145.0", ">=0.140.0, <0.150.0", "~0.145", "!=0.144.0"} {
		if err := CheckConstraint(ok, "x"); err != nil {
			t.Errorf("CheckConstraint(%q) = %v", ok, err)
		}
	}
}

func TestSourceReadsCommitNotWorkTree(t *testing.T) {
	dir := newSiteRepo(t, "testdata/mini", nil)
	first, err := ReadSource(SourceOptions{SiteDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if first.Dirty || first.Branch != "main" || !first.Time.Equal(sitegit.Epoch) || first.RemoteURL != "https://git.example.org/notes/site.git" {
		t.Errorf("source = dirty %v branch %q time %v remote %q", first.Dirty, first.Branch, first.Time, first.RemoteURL)
	}

	// An edit in the work tree is refused, with the way out named.
	talk := filepath.Join(dir, "content/day1/talk.md")
	if err := os.WriteFile(talk, []byte("---\ntitle: Edited\n---\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ReadSource(SourceOptions{SiteDir: dir})
	var dirty *DirtyError
	if !errors.As(err, &dirty) || !strings.Contains(err.Error(), "--allow-dirty") || !strings.Contains(err.Error(), "content/day1/talk.md") {
		t.Fatalf("dirty tree: err = %v", err)
	}

	// --allow-dirty renders the work tree and marks the revision.
	src, err := ReadSource(SourceOptions{SiteDir: dir, AllowDirty: true})
	if err != nil {
		t.Fatal(err)
	}
	if !src.Dirty || src.Revision() != first.Commit+"-dirty" {
		t.Errorf("revision = %q", src.Revision())
	}
	site, err := Render(context.Background(), src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if page := readAll(t, site.Files)["day1/talk/index.html"]; !strings.Contains(page, "Edited") {
		t.Errorf("dirty render did not use the work tree: %s", page)
	}

	// A second commit; the first stays renderable by revision.
	second, err := sitegit.CommitAll(dir, "edit", sitegit.Epoch.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	old, err := ReadSource(SourceOptions{SiteDir: dir, Revision: first.Commit})
	if err != nil {
		t.Fatal(err)
	}
	site, err = Render(context.Background(), old, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if page := readAll(t, site.Files)["day1/talk/index.html"]; !strings.Contains(page, "A talk") {
		t.Errorf("revision render used the wrong tree: %s", page)
	}
	head, err := ReadSource(SourceOptions{SiteDir: dir})
	if err != nil || head.Commit != second || !head.Time.Equal(sitegit.Epoch.Add(time.Hour)) {
		t.Fatalf("head = %+v, %v", head, err)
	}

	// SOURCE_DATE_EPOCH wins over the commit time.
	epoch := time.Unix(1700000000, 0)
	src, err = ReadSource(SourceOptions{SiteDir: dir, SourceDateEpoch: &epoch})
	if err != nil || !src.Time.Equal(epoch) {
		t.Fatalf("SOURCE_DATE_EPOCH: %v %v", src.Time, err)
	}
}

// TestOpenSourceDefersFiles: OpenSource knows the commit and refuses a
// dirty tree without reading a file; Load (or Render) reads them once, the
// same files ReadSource reads, and a bad file fails the Load, naming it.
func TestOpenSourceDefersFiles(t *testing.T) {
	dir := newSiteRepo(t, "testdata/mini", nil)
	full, err := ReadSource(SourceOptions{SiteDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	src, err := OpenSource(SourceOptions{SiteDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if src.Commit != full.Commit || src.Branch != full.Branch || !src.Time.Equal(full.Time) || src.Dirty {
		t.Errorf("opened %s@%s %v dirty=%v, read %s@%s %v", src.Branch, src.Commit, src.Time, src.Dirty, full.Branch, full.Commit, full.Time)
	}
	if src.FileCount != 0 {
		t.Fatalf("OpenSource read %d files", src.FileCount)
	}
	if _, err := src.Files.Stat("/hugo.yaml"); err == nil {
		t.Fatal("OpenSource wrote files")
	}
	for range 2 {
		if err := src.Load(); err != nil {
			t.Fatal(err)
		}
	}
	if src.FileCount != full.FileCount || src.Bytes != full.Bytes || src.FileCount == 0 {
		t.Errorf("loaded %d files, %d bytes; ReadSource read %d, %d", src.FileCount, src.Bytes, full.FileCount, full.Bytes)
	}

	// A bad file is only found by the Load, which names it.
	if err := os.Symlink("../../../../etc/passwd", filepath.Join(dir, "content/day1/leak.md")); err != nil {
		t.Fatal(err)
	}
	if _, err := sitegit.CommitAll(dir, "leak", sitegit.Epoch.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	bad, err := OpenSource(SourceOptions{SiteDir: dir})
	if err != nil {
		t.Fatalf("OpenSource: %v", err)
	}
	if _, err := Render(context.Background(), bad, Options{}); err == nil || !strings.Contains(err.Error(), "content/day1/leak.md") {
		t.Fatalf("Render of a source with an escaping symlink: err = %v", err)
	}

	// A dirty work tree is refused by OpenSource itself.
	if err := os.WriteFile(filepath.Join(dir, "content/day1/talk.md"), []byte("---\ntitle: Edited\n---\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var dirty *DirtyError
	if _, err := OpenSource(SourceOptions{SiteDir: dir}); !errors.As(err, &dirty) {
		t.Fatalf("OpenSource of a dirty tree: err = %v", err)
	}
}

func TestSourceRefusals(t *testing.T) {
	t.Run("not a repository", func(t *testing.T) {
		_, err := ReadSource(SourceOptions{SiteDir: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), "not in a git repository") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unknown revision", func(t *testing.T) {
		dir := newSiteRepo(t, "testdata/mini", nil)
		_, err := ReadSource(SourceOptions{SiteDir: dir, Revision: "no-such-branch"})
		if err == nil || !strings.Contains(err.Error(), `"no-such-branch"`) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("symlink escaping the site", func(t *testing.T) {
		dir := newSiteRepo(t, "testdata/mini", nil)
		if err := os.Symlink("../../../../etc/passwd", filepath.Join(dir, "content/day1/leak.md")); err != nil {
			t.Fatal(err)
		}
		if _, err := sitegit.CommitAll(dir, "leak", sitegit.Epoch.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		_, err := ReadSource(SourceOptions{SiteDir: dir})
		if err == nil || !strings.Contains(err.Error(), "content/day1/leak.md") || !strings.Contains(err.Error(), "outside the site") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("site in a subdirectory", func(t *testing.T) {
		root := t.TempDir()
		if err := os.CopyFS(filepath.Join(root, "site"), os.DirFS("testdata/mini")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "README.md"), []byte("outside the site\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := sitegit.Init(root); err != nil {
			t.Fatal(err)
		}
		src, err := ReadSource(SourceOptions{SiteDir: filepath.Join(root, "site")})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.Files.Stat("/README.md"); err == nil {
			t.Error("file outside the site directory was read")
		}
		if _, err := src.Files.Stat("/hugo.yaml"); err != nil {
			t.Error("site config not read from the subdirectory")
		}
	})
}

// TestRenderSameSourceTwice: Hugo publishes beside the source in one memory
// file system; a second render of the same Source starts from a clean
// output and gives the same files.
func TestRenderSameSourceTwice(t *testing.T) {
	src, err := ReadSource(SourceOptions{SiteDir: newSiteRepo(t, "testdata/mini", nil)})
	if err != nil {
		t.Fatal(err)
	}
	first, err := Render(context.Background(), src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := readAll(t, first.Files)
	second, err := Render(context.Background(), src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := readAll(t, second.Files)
	if len(a) != len(b) || second.FileCount != first.FileCount || second.Bytes != first.Bytes {
		t.Fatalf("second render: %d files, %d bytes; first: %d files, %d bytes", len(b), second.Bytes, len(a), first.Bytes)
	}
	for p, c := range a {
		if b[p] != c {
			t.Errorf("%s differs between two renders of one Source", p)
		}
	}
}

// TestRemoteURLHasNoCredentials: the origin URL goes into a public image
// label; its user info goes whatever form the URL has, including forms
// net/url rejects.
func TestRemoteURLHasNoCredentials(t *testing.T) {
	for origin, want := range map[string]string{
		"https://x-access-token:ghs_s3cret@github.com/o/r.git": "https://github.com/o/r.git",
		"https://u:p%zz@git.example.org/o/r":                   "https://git.example.org/o/r",
		"git@github.com:o/r.git":                               "git@github.com:o/r.git",
	} {
		dir := newSiteRepo(t, "testdata/mini", nil)
		repo, err := git.PlainOpen(dir)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := repo.Config()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Remotes["origin"].URLs = []string{origin}
		if err := repo.SetConfig(cfg); err != nil {
			t.Fatal(err)
		}
		src, err := OpenSource(SourceOptions{SiteDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if src.RemoteURL != want {
			t.Errorf("origin %q: RemoteURL = %q, want %q", origin, src.RemoteURL, want)
		}
	}
}

// TestCheckCleanOnLoad: with CheckCleanOnLoad, OpenSource of a dirty work
// tree succeeds without walking it (the commit, branch and time are all a
// no-op decision reads) and Load refuses the tree; with AllowDirty too,
// OpenSource walks it, since the tag then depends on it.
func TestCheckCleanOnLoad(t *testing.T) {
	dir := newSiteRepo(t, "testdata/mini", nil)
	if err := os.WriteFile(filepath.Join(dir, "content/day1/talk.md"), []byte("---\ntitle: Edited\n---\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := OpenSource(SourceOptions{SiteDir: dir, CheckCleanOnLoad: true})
	if err != nil || src.Dirty || src.Commit == "" {
		t.Fatalf("OpenSource with the check deferred: %+v, %v", src, err)
	}
	head := src.Commit
	var dirty *DirtyError
	if err := src.Load(); !errors.As(err, &dirty) || !strings.Contains(err.Error(), "content/day1/talk.md") {
		t.Fatalf("Load of a dirty tree: err = %v; want it refused", err)
	}
	src, err = OpenSource(SourceOptions{SiteDir: dir, CheckCleanOnLoad: true, AllowDirty: true})
	if err != nil || !src.Dirty {
		t.Fatalf("OpenSource with AllowDirty: dirty=%v, %v; want the work tree", src != nil && src.Dirty, err)
	}
	if err := src.Load(); err != nil {
		t.Fatal(err)
	}
	// An explicit revision is read from the object store: no check at all.
	src, err = OpenSource(SourceOptions{SiteDir: dir, Revision: head, CheckCleanOnLoad: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Load(); err != nil {
		t.Errorf("Load of an explicit revision with a dirty tree: %v", err)
	}
}

// TestRenderProgress: Progress counts the published files in order, from
// the first to the last Hugo writes.
func TestRenderProgress(t *testing.T) {
	src, err := ReadSource(SourceOptions{SiteDir: newSiteRepo(t, "testdata/mini", nil)})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []int
	site, err := Render(context.Background(), src, Options{Progress: func(n int) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, n)
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range seen {
		if n != i+1 {
			t.Fatalf("progress counts %v: not 1, 2, 3, ...", seen)
		}
	}
	if len(seen) != site.FileCount {
		t.Errorf("progress counted %d files, the site has %d", len(seen), site.FileCount)
	}
}

// TestRenderPublishDir: publishing to a directory on disk gives the same
// files, byte for byte, as publishing to memory; a directory that is not
// empty is refused, since a stale file would end up in the image.
func TestRenderPublishDir(t *testing.T) {
	src, err := ReadSource(SourceOptions{SiteDir: newSiteRepo(t, "testdata/mini", nil)})
	if err != nil {
		t.Fatal(err)
	}
	inMemory, err := Render(context.Background(), src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := readAll(t, inMemory.Files)
	dir := t.TempDir()
	onDisk, err := Render(context.Background(), src, Options{PublishDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, onDisk.Files)
	if len(got) != len(want) || onDisk.FileCount != inMemory.FileCount || onDisk.Bytes != inMemory.Bytes {
		t.Fatalf("on disk %d files (%d bytes), in memory %d (%d bytes)", len(got), onDisk.Bytes, len(want), inMemory.Bytes)
	}
	for p, data := range want {
		if got[p] != data {
			t.Errorf("%s differs between disk and memory", p)
		}
	}
	if disk := readAll(t, os.DirFS(dir)); len(disk) != len(want) {
		t.Errorf("the publish directory holds %d files, the site %d", len(disk), len(want))
	}
	if _, err := Render(context.Background(), src, Options{PublishDir: dir}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("a render into a used publish directory: err = %v; want it refused", err)
	}
}
