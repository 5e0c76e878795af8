package render

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/notesctl/notesctl/internal/sitegen"
	"github.com/notesctl/notesctl/internal/sitegit"
)

// benchSiteRepo generates a synthetic notes site of n talk pages (the shape
// of testdata/site, its config and theme) and commits it once. Generation and
// the commit happen outside the timer.
func benchSiteRepo(b *testing.B, n int) string {
	b.Helper()
	dir := filepath.Join(b.TempDir(), fmt.Sprintf("site-%d", n))
	if err := sitegen.Generate(dir, n); err != nil {
		b.Fatalf("generate %d pages: %v", n, err)
	}
	if _, err := sitegit.Init(dir); err != nil {
		b.Fatalf("commit site: %v", err)
	}
	return dir
}

// BenchmarkRender measures what the render stage of a release costs: reading
// the committed tree with go-git (ReadSource) and rendering it in memory with
// the embedded Hugo (Render). The custom metrics are per operation.
//
//	GOTOOLCHAIN=local go test ./render -run '^$' -bench BenchmarkRender -benchtime 10x -count 5
func BenchmarkRender(b *testing.B) {
	for _, n := range []int{60, 1000} {
		b.Run(fmt.Sprintf("pages=%d", n), func(b *testing.B) {
			dir := benchSiteRepo(b, n)
			ctx := context.Background()
			var site *Site
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				src, err := ReadSource(SourceOptions{SiteDir: dir})
				if err != nil {
					b.Fatalf("ReadSource: %v", err)
				}
				site, err = Render(ctx, src, Options{})
				if err != nil {
					b.Fatalf("Render: %v", err)
				}
			}
			b.StopTimer()
			if site == nil || site.FileCount == 0 {
				b.Fatal("rendered nothing")
			}
			b.ReportMetric(float64(site.Pages), "hugo-pages")
			b.ReportMetric(float64(site.FileCount), "files")
			b.ReportMetric(float64(site.Bytes), "site-bytes")
		})
	}
}

// BenchmarkReadSource isolates the go-git half of BenchmarkRender.
func BenchmarkReadSource(b *testing.B) {
	for _, n := range []int{60, 1000} {
		b.Run(fmt.Sprintf("pages=%d", n), func(b *testing.B) {
			dir := benchSiteRepo(b, n)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := ReadSource(SourceOptions{SiteDir: dir}); err != nil {
					b.Fatalf("ReadSource: %v", err)
				}
			}
		})
	}
}
