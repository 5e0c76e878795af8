package pipeline

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/notesctl/notesctl/internal/browser"
	"github.com/notesctl/notesctl/internal/runcenv"
	"github.com/notesctl/notesctl/internal/sitegit"
	"github.com/notesctl/notesctl/registry"
)

// BenchmarkEditToBrowser measures the last mile of issue 12's target, from
// a committed page edit to a reader's browser showing it: the build
// (render, image, OCI layout), unpacking and starting the image with runc
// under the scaffold's security context until nginx answers, switching the
// site's address to the new container (as a Service follows a rollout),
// and Chromium, which has the page open, loading it again until the edit
// shows. The GitOps commit and Flux applying it (item 4) are not in it yet.
// Metrics: ms/op for the whole, build+start-ms and browser-ms for the parts.
func BenchmarkEditToBrowser(b *testing.B) {
	runcenv.Require(b)
	br := browser.New(b)
	dep := scaffoldDeployment(b)
	base := runcenv.NginxBase(b)
	siteDir := fixtureRepo(b)
	cur := releaseAndServe(b, siteDir, base, dep, nil)
	fw := runcenv.NewForwarder(b, registry.NginxPort)
	fw.Switch(cur.c)
	page := "http://" + fw.Addr() + "/day1/02_gslb/"
	br.Open(b, page)
	src := filepath.Join(siteDir, "content", "day1", "02_gslb.md")

	var buildStart, shown time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		edit := fmt.Sprintf("Benchmark edit %d.", i)
		b.StopTimer()
		md, err := os.ReadFile(src)
		if err != nil {
			b.Fatal(err)
		}
		md = bytes.Replace(md, []byte("## Weighted answers"), []byte(edit+"\n\n## Weighted answers"), 1)
		if err := os.WriteFile(src, md, 0o644); err != nil {
			b.Fatal(err)
		}
		if _, err := sitegit.CommitAll(siteDir, edit, sitegit.Epoch.Add(time.Duration(i+1)*time.Hour)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()

		t0 := time.Now()
		next := releaseAndServe(b, siteDir, base, dep, nil)
		t1 := time.Now()
		fw.Switch(next.c)
		br.Open(b, page)
		for !browser.Eval[bool](b, br, `document.body.innerText.includes(`+jsString(edit)+`)`) {
			if time.Since(t1) > 30*time.Second {
				b.Fatalf("the browser does not show %q", edit)
			}
			time.Sleep(20 * time.Millisecond)
			br.Open(b, page)
		}
		t2 := time.Now()
		buildStart += t1.Sub(t0)
		shown += t2.Sub(t1)

		b.StopTimer()
		cur.c.Stop(b) // the old pod goes away
		cur = next
		b.StartTimer()
	}
	b.ReportMetric(float64(buildStart.Milliseconds())/float64(b.N), "build+start-ms")
	b.ReportMetric(float64(shown.Milliseconds())/float64(b.N), "browser-ms")
}
