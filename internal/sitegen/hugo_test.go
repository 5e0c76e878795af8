package sitegen

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/notesctl/notesctl/internal/testenv"
)

// The hugo CLI is the reference renderer for the fixture: the sites must
// render with it with no error and no warning.

const hugoVersion = "0.145.0"

// hugoBinary returns the path of a hugo v0.145.0 binary on PATH, or ends
// the test (testenv.Missing).
func hugoBinary(t *testing.T) string {
	t.Helper()
	install := "go install github.com/gohugoio/hugo@v" + hugoVersion
	bin := testenv.LookPath(t, "hugo", install)
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("hugo version: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "v"+hugoVersion+" ") && !strings.Contains(string(out), "v"+hugoVersion+"-") {
		testenv.Missing(t, "hugo on PATH is not v%s (%s): %s", hugoVersion, install, out)
	}
	return bin
}

// runHugo renders the site in src into a new directory and returns it, with
// the combined output of hugo and its error.
func runHugo(t *testing.T, bin, src string) (string, string, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "public")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin,
		"--source", src,
		"--destination", out,
		"--cacheDir", filepath.Join(t.TempDir(), "cache"),
		"--noBuildLock",
		"--panicOnWarning",
		"--printPathWarnings",
		"--logLevel", "warn",
	)
	cmd.Env = append(os.Environ(), "HUGO_ENVIRONMENT=production")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return out, buf.String(), err
}

func renderClean(t *testing.T, bin, src string) string {
	t.Helper()
	out, log, err := runHugo(t, bin, src)
	if err != nil {
		t.Fatalf("hugo failed: %v\n%s", err, log)
	}
	for _, bad := range []string{"WARN", "ERROR"} {
		if strings.Contains(log, bad) {
			t.Fatalf("hugo logged %s:\n%s", bad, log)
		}
	}
	return out
}

var (
	htmlComment   = regexp.MustCompile(`(?s)<!--.*?-->`)
	htmlRef       = regexp.MustCompile(`(?:src|href)="([^"]*)"`)
	generatorMeta = `<meta name="generator" content="Hugo ` + hugoVersion + `">`
)

// checkOutput checks every HTML page of a rendered site: it carries the
// generator meta tag, has no omitted raw HTML, and every local src and href
// (outside HTML comments) names a file of the output. It returns the
// number of HTML pages and of local references checked, and the text of
// all pages.
func checkOutput(t *testing.T, out string) (pages, refs int, all string) {
	t.Helper()
	var text strings.Builder
	err := filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".html" {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		page := string(data)
		text.WriteString(page)
		pages++
		if !strings.Contains(page, generatorMeta) {
			t.Errorf("%s: no %s", rel, generatorMeta)
		}
		if strings.Contains(page, "raw HTML omitted") {
			t.Errorf("%s: raw HTML omitted", rel)
		}
		for _, m := range htmlRef.FindAllStringSubmatch(htmlComment.ReplaceAllString(page, ""), -1) {
			ref := m[1]
			if strings.HasPrefix(ref, "https://") || strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "mailto:") || strings.HasPrefix(ref, "#") {
				continue
			}
			if !strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "//") {
				t.Errorf("%s: reference %q is not root-relative", rel, ref)
				continue
			}
			target, _, _ := strings.Cut(ref, "#")
			target, _, _ = strings.Cut(target, "?")
			if strings.HasSuffix(target, "/") {
				target = path.Join(target, "index.html")
			}
			if _, err := os.Stat(filepath.Join(out, filepath.FromSlash(target))); err != nil {
				t.Errorf("%s: %q points to a missing file", rel, ref)
			}
			refs++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pages, refs, text.String()
}

// checkRendered checks the features of a rendered notes site.
func checkRendered(t *testing.T, out string, talks int) {
	t.Helper()
	pages, refs, all := checkOutput(t, out)
	if pages < talks+7 {
		t.Errorf("%d HTML pages for %d talks", pages, talks)
	}
	if refs < pages*5 {
		t.Errorf("only %d local references in %d pages", refs, pages)
	}
	for _, want := range []string{
		`<pre class="mermaid">`,
		`<span class="math math-inline">\(`,
		`<div class="math math-display">\[`,
		`class="btn btn-warning"><span class="icon icon-video" aria-hidden="true"></span> Recording</a>`,
		`<!-- <a href="https://media.example.org/`, // button rendered inside the comment
		`<div class="notice notice-`,
		`<nav class="neighbours"`,
		`/js/notes.js`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no %s in the rendered site", want)
		}
	}
	for _, bad := range []string{"{{%", "ZgotmplZ", "HAHAHUGOSHORTCODE", "$$"} {
		if strings.Contains(htmlComment.ReplaceAllString(all, ""), bad) {
			t.Errorf("rendered site contains %q", bad)
		}
	}
	talkFiles, _ := filepath.Glob(filepath.Join(out, "day*", "[0-9][0-9]_*", "index.html"))
	if len(talkFiles) != talks {
		t.Errorf("%d rendered talk pages, want %d", len(talkFiles), talks)
	}
}

func TestHugoRendersFixture(t *testing.T) {
	bin := hugoBinary(t)
	src := filepath.Join(t.TempDir(), "site")
	if err := CopyFixture(src); err != nil {
		t.Fatal(err)
	}
	talks := len(readSite(t, src).talks)
	out := renderClean(t, bin, src)
	checkRendered(t, out, talks)

	// The output is deterministic: a second build is byte-identical.
	if diff := diffTrees(tree(t, out), tree(t, renderClean(t, bin, src))); diff != "" {
		t.Errorf("two builds of the fixture differ:\n%s", diff)
	}

	// Relative destinations resolve against the content file.
	gslb, err := os.ReadFile(filepath.Join(out, "day1", "02_gslb", "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`<img src="/day1/_img/gslb-topology.png"`,
		`<a href="/day1/_img/gslb-topology.png">Full-size diagram</a>`,
		`<a href="/day1/01_keynote/">keynote</a>`,
		`<a href="/day0/05_internal-dns/">`,
	} {
		if !bytes.Contains(gslb, []byte(want)) {
			t.Errorf("day1/02_gslb: no %s", want)
		}
	}
	closing, err := os.ReadFile(filepath.Join(out, "day3", "04_closing", "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<img src="/_imgs/conference-logo.svg"`, `<a href="/day-1/03_gitops-con/">`, `<a href="/">overview</a>`} {
		if !bytes.Contains(closing, []byte(want)) {
			t.Errorf("day3/04_closing: no %s", want)
		}
	}
}

func TestHugoRendersGeneratedSite(t *testing.T) {
	bin := hugoBinary(t)
	src := filepath.Join(t.TempDir(), "site")
	if err := Generate(src, 60); err != nil {
		t.Fatal(err)
	}
	out := renderClean(t, bin, src)
	checkRendered(t, out, 60)
	days, _ := filepath.Glob(filepath.Join(out, "day*", "index.html"))
	if len(days) != 6 {
		t.Errorf("%d rendered day pages, want 6", len(days))
	}
}

// A relative link to nothing must fail the build, so that the checks above
// mean something.
func TestHugoFailsOnBrokenRelativeLink(t *testing.T) {
	bin := hugoBinary(t)
	for _, tc := range []struct{ name, md string }{
		{"link", "[gone](./99_missing)"},
		{"image", "![gone](_img/missing.png)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "site")
			if err := CopyFixture(src); err != nil {
				t.Fatal(err)
			}
			page := filepath.Join(src, "content", "day1", "01_keynote.md")
			f, err := os.OpenFile(page, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString("\n" + tc.md + "\n"); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			_, log, err := runHugo(t, bin, src)
			if err == nil {
				t.Fatalf("hugo accepted %s\n%s", tc.md, log)
			}
			if !strings.Contains(log, "cannot resolve "+tc.name+" destination") || !strings.Contains(log, "content/day1/01_keynote.md") {
				t.Errorf("unexpected hugo output:\n%s", log)
			}
		})
	}
}
