package gitops

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/notesctl/notesctl/internal/gitserver"
)

// BenchmarkCommitLocalBare: one image-tag commit into a bare repository on
// this machine, written in place (no hooks) and, for comparison, through
// git upload-pack/receive-pack (core.hooksPath set to an empty folder sends
// it that way without running anything). Each iteration commits a new tag on
// top of the last, so the repository grows as a real one does.
func BenchmarkCommitLocalBare(b *testing.B) {
	gitserver.RequireGit(b)
	seed := gitopsSeed(b)
	for _, way := range []string{"in-place", "receive-pack"} {
		b.Run(way, func(b *testing.B) {
			bare := filepath.Join(b.TempDir(), "gitops.git")
			gitserver.SeedBareRepo(b, bare, "main", seed)
			if way == "receive-pack" {
				gitserver.Git(b, bare, "config", "core.hooksPath", b.TempDir())
			}
			opts := gitopsOptions(bare)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				tag := fmt.Sprintf("main-%07x-%d-hugo0.145.0", i, 1746598316+i)
				ws, err := Open(context.Background(), opts)
				if err != nil {
					b.Fatal(err)
				}
				res, err := ws.Commit(context.Background(), gitopsSetTag(tag))
				if err != nil || !res.Changed {
					b.Fatalf("commit %d: %+v, %v", i, res, err)
				}
			}
		})
	}
}
