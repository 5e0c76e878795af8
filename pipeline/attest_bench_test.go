package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkReleaseAttest is the cost of the SBOM and the provenance on a
// whole release (as BenchmarkRelease: render, image into an empty OCI
// layout, verify, GitOps commit) of testdata/site and of a generated
// 1000-page site. Each iteration runs one release without them and one with
// them, in alternating order, so that the machine's load drifts over both
// alike; it reports the mean of each (off-ms/op, on-ms/op), the difference
// in percent (overhead-%), and the attest stage alone (attest-ms/op), which
// does not depend on that noise.
//
//	GOTOOLCHAIN=local go test ./pipeline -run '^$' -bench 'BenchmarkReleaseAttest$' -benchtime 6x
func BenchmarkReleaseAttest(b *testing.B) {
	for _, s := range []struct {
		name  string
		pages int
	}{{"site=fixture", -1}, {"site=pages-1000", 1000}} {
		b.Run(s.name, func(b *testing.B) {
			site := benchReleaseSite(b, s.pages)
			template := benchGitOpsTemplate(b)
			ctx := context.Background()
			var off, on, stage time.Duration
			run := func(i int, attest bool) {
				work := filepath.Join(b.TempDir(), fmt.Sprint(i, attest))
				gitops := filepath.Join(work, "gitops")
				if err := os.CopyFS(gitops, os.DirFS(template)); err != nil {
					b.Fatal(err)
				}
				opts := benchReleaseOptions(site, filepath.Join(work, "image"), gitops)
				opts.Build.SBOM, opts.Build.Provenance, opts.Build.NotesctlVersion = attest, attest, "bench"
				start := time.Now()
				res, err := Release(ctx, opts, Discard)
				took := time.Since(start)
				if err != nil {
					b.Fatalf("release: %v", err)
				}
				if !res.GitOps.Changed || (attest && (res.Build.SBOMDigest == "" || res.Build.ProvenanceDigest == "")) {
					b.Fatalf("release did not do the work: %+v", res.Build)
				}
				if attest {
					on += took
					stage += time.Duration(res.Durations[StageAttest])
				} else {
					off += took
				}
				if err := os.RemoveAll(work); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				first := i%2 == 0
				run(i, first)
				run(i, !first)
			}
			n := float64(b.N)
			b.ReportMetric(float64(off.Milliseconds())/n, "off-ms/op")
			b.ReportMetric(float64(on.Milliseconds())/n, "on-ms/op")
			b.ReportMetric(float64(stage.Microseconds())/1000/n, "attest-ms/op")
			if off > 0 {
				b.ReportMetric(100*(float64(on)-float64(off))/float64(off), "overhead-%")
			}
		})
	}
}
