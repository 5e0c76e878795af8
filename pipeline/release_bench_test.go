package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/notesctl/notesctl/internal/sitegen"
	"github.com/notesctl/notesctl/internal/sitegit"
	"github.com/notesctl/notesctl/manifests"
	"github.com/notesctl/notesctl/manifests/gitops"
	"github.com/notesctl/notesctl/registry"
)

// The sites the release benchmarks run on: the fixture (testdata/site, the
// site the targets name) and a generated site of 60 talk pages.
var releaseBenchSites = []struct {
	name  string
	pages int // < 0: the fixture itself
}{
	{"site=fixture", -1},
	{"site=pages-60", 60},
}

// benchReleaseSite writes the site into a fresh repository with one commit.
func benchReleaseSite(b *testing.B, pages int) string {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "site")
	if pages < 0 {
		if err := os.CopyFS(dir, os.DirFS(sitegen.FixtureDir())); err != nil {
			b.Fatal(err)
		}
	} else if err := sitegen.Generate(dir, pages); err != nil {
		b.Fatal(err)
	}
	if _, err := sitegit.Init(dir); err != nil {
		b.Fatal(err)
	}
	return dir
}

const benchImage = "bench.local/notes"

// benchGitOpsTemplate is a local GitOps repository as `manifests init`
// leaves it: the scaffold, committed, before any release.
func benchGitOpsTemplate(b *testing.B) string {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "gitops-template")
	if err := initScaffold(dir, manifests.ScaffoldOptions{Image: benchImage, GitURL: "file://" + dir}); err != nil {
		b.Fatalf("scaffold GitOps repository: %v", err)
	}
	return dir
}

// benchReleaseOptions releases siteDir into the OCI layout at layout and the
// local GitOps repository at gitopsDir, as `release --local` does.
func benchReleaseOptions(siteDir, layout, gitopsDir string) ReleaseOptions {
	return ReleaseOptions{
		Build: BuildOptions{
			SiteDir: siteDir,
			Image:   benchImage,
			To:      "oci:" + layout,
			Base:    "scratch",
			WebRoot: registry.DefaultWebRoot,
		},
		GitOps: gitops.Options{URL: gitopsDir, Branch: "main"},
	}
}

// BenchmarkRelease is a whole release of a site commit that is not deployed
// yet: read the commit, render, build the image, write it into an empty OCI
// layout, verify it, and commit the update into a GitOps repository that
// still holds the scaffolded placeholder. Each iteration starts from a fresh
// copy of the GitOps repository and an empty layout (prepared with the timer
// stopped), so every iteration renders, writes every blob and commits.
//
//	GOTOOLCHAIN=local go test ./pipeline -run '^$' -bench 'BenchmarkRelease$' -benchtime 10x -count 5
func BenchmarkRelease(b *testing.B) {
	for _, s := range releaseBenchSites {
		b.Run(s.name, func(b *testing.B) {
			site := benchReleaseSite(b, s.pages)
			template := benchGitOpsTemplate(b)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				work := filepath.Join(b.TempDir(), fmt.Sprint(i))
				gitops := filepath.Join(work, "gitops")
				if err := os.CopyFS(gitops, os.DirFS(template)); err != nil {
					b.Fatal(err)
				}
				opts := benchReleaseOptions(site, filepath.Join(work, "image"), gitops)
				b.StartTimer()

				res, err := Release(ctx, opts, Discard)
				if err != nil {
					b.Fatalf("release: %v", err)
				}

				b.StopTimer()
				if res.Skipped || !res.GitOps.Changed || res.Build == nil || res.Build.Files == 0 {
					b.Fatalf("release did no work: skipped=%v changed=%v", res.Skipped, res.GitOps.Changed)
				}
				// Keep the disk use of a long run flat.
				if err := os.RemoveAll(work); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkReleaseNoop is a re-release of a commit the GitOps repository
// already deploys: it must read the commit and the GitOps tip, check the
// deployed image's labels, and stop without rendering, pushing or
// committing.
//
//	GOTOOLCHAIN=local go test ./pipeline -run '^$' -bench 'BenchmarkReleaseNoop$' -count 5
func BenchmarkReleaseNoop(b *testing.B) {
	for _, s := range releaseBenchSites {
		b.Run(s.name, func(b *testing.B) {
			site := benchReleaseSite(b, s.pages)
			work := b.TempDir()
			gitops := filepath.Join(work, "gitops")
			if err := os.CopyFS(gitops, os.DirFS(benchGitOpsTemplate(b))); err != nil {
				b.Fatal(err)
			}
			opts := benchReleaseOptions(site, filepath.Join(work, "image"), gitops)
			ctx := context.Background()
			first, err := Release(ctx, opts, Discard)
			if err != nil {
				b.Fatalf("first release: %v", err)
			}
			if first.Skipped || !first.GitOps.Changed {
				b.Fatalf("first release did not deploy: skipped=%v changed=%v", first.Skipped, first.GitOps.Changed)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				res, err := Release(ctx, opts, Discard)
				if err != nil {
					b.Fatalf("re-release: %v", err)
				}
				if !res.Skipped {
					b.Fatalf("re-release of a deployed commit was not a no-op: %+v", res.GitOps)
				}
			}
		})
	}
}
