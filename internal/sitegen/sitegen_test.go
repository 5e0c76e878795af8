package sitegen

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestLayout(t *testing.T) {
	for _, tc := range []struct {
		pages    int
		days     int
		maxTalks int
	}{
		{0, 6, 0},
		{1, 6, 1},
		{25, 6, 5},
		{60, 6, 10},
		{61, 7, 9},
		{1000, 100, 10},
		{1001, 101, 10},
	} {
		days := Layout(tc.pages)
		if len(days) != tc.days {
			t.Errorf("Layout(%d): %d days, want %d", tc.pages, len(days), tc.days)
			continue
		}
		total, most, least := 0, 0, tc.pages
		for i, d := range days {
			if want := fmt.Sprintf("day%d", i-2); d.Name != want {
				t.Errorf("Layout(%d)[%d].Name = %q, want %q", tc.pages, i, d.Name, want)
			}
			if i > 0 && d.Weight <= days[i-1].Weight {
				t.Errorf("Layout(%d): weights not increasing at %d", tc.pages, i)
			}
			total += d.Talks
			most = max(most, d.Talks)
			least = min(least, d.Talks)
		}
		if total != tc.pages {
			t.Errorf("Layout(%d): %d talks in total", tc.pages, total)
		}
		if most != tc.maxTalks || most > MaxTalksPerDay || most-least > 1 {
			t.Errorf("Layout(%d): talks per day between %d and %d, want at most %d and even", tc.pages, least, most, tc.maxTalks)
		}
	}
	if Layout(-1) != nil {
		t.Error("Layout(-1) != nil")
	}
}

func TestAreaTagsInPool(t *testing.T) {
	for _, a := range areas {
		for _, tag := range a.tags {
			if !slices.Contains(Tags, tag) {
				t.Errorf("area tag %q is not in Tags", tag)
			}
		}
	}
}

// site is the parsed content of a notes site.
type site struct {
	days  map[string]frontMatter // day name -> _index.md front matter
	talks map[string]frontMatter // content-relative path -> front matter
	text  map[string]string      // content-relative path -> whole file, for every .md
}

type frontMatter struct {
	title  string
	weight int
	tags   []string
}

// readSite parses content/ of a notes site; it fails the test on anything
// that does not have the notes-site shape.
func readSite(t *testing.T, root string) site {
	t.Helper()
	s := site{days: map[string]frontMatter{}, talks: map[string]frontMatter{}, text: map[string]string{}}
	content := filepath.Join(root, "content")
	err := filepath.WalkDir(content, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".md" {
			return err
		}
		rel, _ := filepath.Rel(content, p)
		rel = filepath.ToSlash(rel)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s.text[rel] = string(data)
		dir, base := path.Split(rel)
		if dir == "" || dir == "tags/" {
			return nil // home and taxonomy pages
		}
		fm := parseFrontMatter(t, rel, string(data))
		if strings.Count(dir, "/") != 1 {
			t.Errorf("%s: content nested deeper than a day section", rel)
		}
		if base == "_index.md" {
			s.days[strings.TrimSuffix(dir, "/")] = fm
			return nil
		}
		if fm.weight <= 0 || len(fm.tags) == 0 {
			t.Errorf("%s: talk without weight or tags: %+v", rel, fm)
		}
		s.talks[rel] = fm
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var fmLine = regexp.MustCompile(`^(title|weight|tags):\s*(.*)$`)

// parseFrontMatter reads the fields of YAML front matter that notes sites
// use, in the forms this package and the fixture write them.
func parseFrontMatter(t *testing.T, name, text string) frontMatter {
	t.Helper()
	if !strings.HasPrefix(text, "---\n") {
		t.Fatalf("%s: no YAML front matter", name)
	}
	end := strings.Index(text[4:], "\n---\n")
	if end < 0 {
		t.Fatalf("%s: unterminated front matter", name)
	}
	var fm frontMatter
	for _, line := range strings.Split(text[4:4+end], "\n") {
		m := fmLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		switch m[1] {
		case "title":
			fm.title = strings.Trim(m[2], `"`)
		case "weight":
			w, err := strconv.Atoi(m[2])
			if err != nil {
				t.Errorf("%s: weight %q: %v", name, m[2], err)
			}
			fm.weight = w
		case "tags":
			list := strings.TrimSuffix(strings.TrimPrefix(m[2], "["), "]")
			for _, tag := range strings.Split(list, ",") {
				if tag = strings.TrimSpace(tag); tag != "" {
					fm.tags = append(fm.tags, tag)
				}
			}
		}
	}
	if fm.title == "" {
		t.Errorf("%s: no title", name)
	}
	return fm
}

var mdLink = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)

// checkSourceLinks checks that every relative Markdown link and image
// destination in the site's content names a file or page of the source
// tree, relative to the file that holds it.
func checkSourceLinks(t *testing.T, root string, s site) (links int) {
	t.Helper()
	content := filepath.Join(root, "content")
	exists := func(rel string) bool {
		_, err := os.Stat(filepath.Join(content, filepath.FromSlash(rel)))
		return err == nil
	}
	for name, text := range s.text {
		for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
			dest := m[1]
			if strings.Contains(dest, "://") || strings.HasPrefix(dest, "/") || strings.HasPrefix(dest, "#") {
				continue
			}
			dest, _, _ = strings.Cut(dest, "#")
			target := path.Clean(path.Join(path.Dir(name), dest))
			if strings.HasPrefix(target, "../") {
				t.Errorf("%s: link %q leaves the content directory", name, m[1])
				continue
			}
			ok := false
			switch path.Ext(target) {
			case ".md":
				ok = exists(target)
			case "":
				ok = exists(target+".md") || exists(path.Join(target, "_index.md")) || exists(path.Join(target, "index.md"))
			default:
				ok = exists(target)
			}
			if !ok {
				t.Errorf("%s: relative link %q does not resolve in the source tree", name, m[1])
			}
			links++
		}
	}
	return links
}

// features counts occurrences of the notes-site features in the content.
func features(s site) map[string]int {
	patterns := map[string]*regexp.Regexp{
		"button":            regexp.MustCompile(`\{\{% button [^%]*%\}\}`),
		"button in comment": regexp.MustCompile(`(?s)<!--[^>]*?\{\{% button`),
		"notice":            regexp.MustCompile(`\{\{% notice`),
		"mermaid":           regexp.MustCompile("(?m)^```mermaid$"),
		"block math":        regexp.MustCompile(`(?m)^\$\$`),
		"inline math":       regexp.MustCompile(`[^$]\$[^$\s][^$\n]*\$`),
		"day image":         regexp.MustCompile(`!\[[^\]]*\]\(_img/`),
		"shared image":      regexp.MustCompile(`!\[[^\]]*\]\(\.\./_imgs/`),
		"page link":         regexp.MustCompile(`[^!]\[[^\]]*\]\(\./[0-9]`),
		"cross-day link":    regexp.MustCompile(`[^!]\[[^\]]*\]\(\.\./day`),
	}
	got := map[string]int{}
	for _, text := range s.text {
		for name, re := range patterns {
			got[name] += len(re.FindAllStringIndex(text, -1))
		}
	}
	return got
}

func checkFeatures(t *testing.T, s site) {
	t.Helper()
	for name, n := range features(s) {
		if n == 0 {
			t.Errorf("no %s in the content", name)
		}
	}
}

func TestFixtureShape(t *testing.T) {
	root := FixtureDir()
	s := readSite(t, root)
	wantDays := []string{"day-2", "day-1", "day0", "day1", "day2", "day3"}
	var names []string
	for name := range s.days {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return s.days[a].weight - s.days[b].weight })
	if !slices.Equal(names, wantDays) {
		t.Errorf("day sections by weight = %v, want %v", names, wantDays)
	}
	if len(s.talks) < 25 {
		t.Errorf("%d talk pages, want at least 25", len(s.talks))
	}
	for name := range s.talks {
		if _, ok := s.days[path.Dir(name)]; !ok {
			t.Errorf("%s is not in a day section", name)
		}
	}
	checkFeatures(t, s)
	if n := checkSourceLinks(t, root, s); n < 40 {
		t.Errorf("only %d relative links in the fixture", n)
	}
	for _, f := range []string{"hugo.yaml", "themes/notes/layouts/_default/_markup/render-codeblock-mermaid.html", "content/_imgs/conference-logo.svg"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Error(err)
		}
	}
}

func TestGenerate(t *testing.T) {
	const pages = 60
	dir := filepath.Join(t.TempDir(), "site")
	if err := Generate(dir, pages); err != nil {
		t.Fatal(err)
	}
	s := readSite(t, dir)
	if len(s.talks) != pages {
		t.Errorf("%d talk pages, want %d", len(s.talks), pages)
	}
	wantDays := []string{"day-2", "day-1", "day0", "day1", "day2", "day3"}
	if len(s.days) != len(wantDays) {
		t.Errorf("%d day sections, want %d", len(s.days), len(wantDays))
	}
	for i, name := range wantDays {
		fm, ok := s.days[name]
		if !ok {
			t.Errorf("no day section %s", name)
			continue
		}
		if fm.weight != (i+1)*10 {
			t.Errorf("%s: weight %d, want %d", name, fm.weight, (i+1)*10)
		}
	}
	perDay := map[string]int{}
	for name, fm := range s.talks {
		perDay[path.Dir(name)]++
		for _, tag := range fm.tags {
			if !slices.Contains(Tags, tag) {
				t.Errorf("%s: tag %q not in the pool", name, tag)
			}
		}
		if !regexp.MustCompile(`^day-?\d+/\d\d_[a-z0-9-]+\.md$`).MatchString(name) {
			t.Errorf("unexpected talk file name %s", name)
		}
	}
	for _, name := range wantDays {
		if perDay[name] != pages/len(wantDays) {
			t.Errorf("%s has %d talks, want %d", name, perDay[name], pages/len(wantDays))
		}
	}
	checkFeatures(t, s)
	if n := checkSourceLinks(t, dir, s); n < pages*2 {
		t.Errorf("only %d relative links for %d pages", n, pages)
	}

	// The configuration, theme and shared images are the fixture's.
	fixture := FixtureDir()
	for _, sub := range []string{"themes", filepath.Join("content", "_imgs")} {
		a, b := tree(t, filepath.Join(fixture, sub)), tree(t, filepath.Join(dir, sub))
		if diff := diffTrees(a, b); diff != "" {
			t.Errorf("%s differs from the fixture:\n%s", sub, diff)
		}
	}
	want, _ := os.ReadFile(filepath.Join(fixture, "hugo.yaml"))
	got, err := os.ReadFile(filepath.Join(dir, "hugo.yaml"))
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("hugo.yaml not copied from the fixture (err %v)", err)
	}
	// Day images are real PNGs.
	for _, name := range wantDays {
		data, err := os.ReadFile(filepath.Join(dir, "content", name, "_img", "diagram-1.png"))
		if err != nil || !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("%s/_img/diagram-1.png is not a PNG (err %v)", name, err)
		}
	}
}

func TestGenerateLarge(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "site")
	if err := Generate(dir, 95); err != nil {
		t.Fatal(err)
	}
	s := readSite(t, dir)
	if len(s.talks) != 95 || len(s.days) != 10 {
		t.Errorf("%d talks in %d days, want 95 in 10", len(s.talks), len(s.days))
	}
	if _, ok := s.days["day7"]; !ok {
		t.Error("no day7 section")
	}
	checkSourceLinks(t, dir, s)
}

func TestGenerateDeterministic(t *testing.T) {
	base := t.TempDir()
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
	if err := Generate(a, 60); err != nil {
		t.Fatal(err)
	}
	if err := Generate(b, 60); err != nil {
		t.Fatal(err)
	}
	ta, tb := tree(t, a), tree(t, b)
	if diff := diffTrees(ta, tb); diff != "" {
		t.Fatalf("two runs differ:\n%s", diff)
	}
	// A different size gives a different site: the comparison can fail.
	c := filepath.Join(base, "c")
	if err := Generate(c, 59); err != nil {
		t.Fatal(err)
	}
	if diffTrees(ta, tree(t, c)) == "" {
		t.Fatal("sites of 60 and 59 pages are identical")
	}
}

func TestGenerateErrors(t *testing.T) {
	base := t.TempDir()
	if err := Generate(filepath.Join(base, "neg"), -1); err == nil {
		t.Error("negative page count accepted")
	}
	busy := filepath.Join(base, "busy")
	if err := os.MkdirAll(busy, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(busy, "keep.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Generate(busy, 3); err == nil {
		t.Error("non-empty destination accepted")
	}
	if err := CopyFixture(busy); err == nil {
		t.Error("CopyFixture: non-empty destination accepted")
	}
	if err := GenerateFrom(filepath.Join(base, "nosite"), filepath.Join(base, "out"), 3); err == nil {
		t.Error("fixture without content accepted")
	}
	// An existing empty directory is fine.
	empty := filepath.Join(base, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Generate(empty, 0); err != nil {
		t.Errorf("empty destination: %v", err)
	}
}

func TestCopyFixture(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "site")
	if err := CopyFixture(dst); err != nil {
		t.Fatal(err)
	}
	src := tree(t, FixtureDir())
	for rel := range src {
		if skipped(strings.SplitN(rel, "/", 2)[0]) {
			delete(src, rel)
		}
	}
	got := tree(t, dst)
	if len(got) < 50 {
		t.Fatalf("only %d files copied", len(got))
	}
	if diff := diffTrees(src, got); diff != "" {
		t.Fatalf("copy differs from the fixture:\n%s", diff)
	}
}

type fileSum struct {
	mode fs.FileMode
	sum  [sha256.Size]byte
}

// tree returns every file and directory under root with its mode and, for
// files, the SHA-256 of its content.
func tree(t *testing.T, root string) map[string]fileSum {
	t.Helper()
	out := map[string]fileSum{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fsum := fileSum{mode: info.Mode()}
		if d.Type().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fsum.sum = sha256.Sum256(data)
		}
		out[filepath.ToSlash(rel)] = fsum
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// diffTrees describes the differences between two trees, "" if none.
func diffTrees(a, b map[string]fileSum) string {
	var lines []string
	for name, fa := range a {
		fb, ok := b[name]
		switch {
		case !ok:
			lines = append(lines, "only in first: "+name)
		case fa.mode != fb.mode:
			lines = append(lines, fmt.Sprintf("mode of %s: %v != %v", name, fa.mode, fb.mode))
		case fa.sum != fb.sum:
			lines = append(lines, "content of "+name)
		}
	}
	for name := range b {
		if _, ok := a[name]; !ok {
			lines = append(lines, "only in second: "+name)
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
