package pipeline

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/notesctl/notesctl/internal/browser"
	"github.com/notesctl/notesctl/internal/runcenv"
	"github.com/notesctl/notesctl/internal/sitegit"
	"github.com/notesctl/notesctl/registry"
)

// TestBrowserReadsRelease opens a talk page of the released, running image
// in headless Chromium, as a reader would: the mermaid diagram is drawn as
// SVG, the $..$ math is typeset by KaTeX, the relearn-style button is there,
// and nothing fails (console errors, exceptions, failed or 4xx requests:
// every script, stylesheet and font comes from the image). After a second
// release with an edited page, behind the same address, the same browser
// shows the new text.
func TestBrowserReadsRelease(t *testing.T) {
	runcenv.Require(t)
	b := browser.New(t)
	dep := scaffoldDeployment(t)
	base := runcenv.NginxBase(t)
	siteDir := fixtureRepo(t)
	s1 := releaseAndServe(t, siteDir, base, dep, nil)
	fw := runcenv.NewForwarder(t, registry.NginxPort)
	fw.Switch(s1.c)
	page := "http://" + fw.Addr() + "/day1/02_gslb/"

	b.Open(t, page)
	b.Wait(t, "the mermaid diagram is drawn", 30*time.Second, chromedp.WaitVisible(chromedp.CSS("pre.mermaid svg")))
	// KaTeX's fonts load after the math is typeset.
	browser.Eval[bool](t, b, `document.fonts.ready.then(() => true)`)
	checks := []struct{ what, expr string }{
		{"the diagram's SVG holds its node labels", `document.querySelector("pre.mermaid svg").textContent.includes("GSLB DNS")`},
		{"inline math is typeset", `document.querySelectorAll(".math-inline .katex").length >= 2`},
		{"display math is typeset", `document.querySelectorAll(".math-display .katex-display").length >= 1`},
		{"no TeX error", `document.querySelectorAll(".katex-error").length === 0`},
		{"KaTeX's own font is in use", `document.fonts.check("16px KaTeX_Main")`},
		{"every image decoded", `[...document.images].every(i => i.complete && i.naturalWidth > 0)`},
		{"the button is shown", `(() => { const a = document.querySelector("a.btn.btn-warning"); return !!a && a.textContent.trim() === "Recording" && a.getBoundingClientRect().width > 0 })()`},
	}
	for _, c := range checks {
		if !browser.Eval[bool](t, b, c.expr) {
			t.Errorf("%s: false (%s)", c.what, c.expr)
		}
	}
	if p := b.Problems(); len(p) > 0 {
		t.Errorf("the page had problems:\n%s", strings.Join(p, "\n"))
	}
	var vendored int
	for _, r := range b.Requests() {
		if !strings.HasPrefix(r.URL, "http://"+fw.Addr()+"/") {
			t.Errorf("a request left the site: %s", r.URL)
		}
		if strings.Contains(r.URL, "/vendor/") {
			vendored++
		}
	}
	if vendored < 4 {
		t.Errorf("%d vendored files loaded (mermaid, katex css+js+auto-render, fonts): %v", vendored, b.Requests())
	}
	shot := b.Screenshot(t, "gslb-first-release.png")
	if st, err := os.Stat(shot); err != nil || st.Size() < 10_000 {
		t.Errorf("screenshot %s: %v", shot, err)
	}

	// The second release: the page gets a new paragraph. The browser keeps
	// its cache (same origin); HTML revalidates, so the edit shows.
	const edit = "Update after the talk: failover now completes in 40 seconds."
	src := filepath.Join(siteDir, "content", "day1", "02_gslb.md")
	md, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	md = bytes.Replace(md, []byte("## Weighted answers"), []byte(edit+"\n\n## Weighted answers"), 1)
	if err := os.WriteFile(src, md, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sitegit.CommitAll(siteDir, "Note the new failover time", sitegit.Epoch.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	s2 := releaseAndServe(t, siteDir, base, dep, nil)
	fw.Switch(s2.c)
	b.Reset()
	b.Open(t, "http://"+fw.Addr()+"/")
	b.Open(t, page)
	b.Wait(t, "the diagram is drawn again", 30*time.Second, chromedp.WaitVisible(chromedp.CSS("pre.mermaid svg")))
	if !browser.Eval[bool](t, b, `document.body.innerText.includes(`+jsString(edit)+`)`) {
		t.Errorf("after the second release the page does not show %q", edit)
	}
	if p := b.Problems(); len(p) > 0 {
		t.Errorf("the page had problems after the second release:\n%s", strings.Join(p, "\n"))
	}
	// The fingerprinted libraries are immutable: the browser does not ask
	// the new release for them.
	if log := s2.c.Logs(); strings.Contains(log, "GET /vendor/mermaid/") || strings.Contains(log, "GET /vendor/katex/katex.min.") {
		t.Errorf("the browser fetched an immutable library again:\n%s", log)
	}
	b.Screenshot(t, "gslb-second-release.png")
}

func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
