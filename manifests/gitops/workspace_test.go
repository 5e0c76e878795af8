package gitops

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notesctl/notesctl/internal/gitserver"
)

// TestWorkspaceCommit: a commit from an Open checkout reuses its clone
// (one attempt), and one whose checkout went stale (another commit landed
// after Open) is redone on the new tip instead of overwriting it.
func TestWorkspaceCommit(t *testing.T) {
	gitserver.RequireGit(t)
	srv := gitserver.StartHTTPBackend(t, "bob", "pw-1234")
	bare := srv.RepoPath("gitops.git")
	seed := gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
	opts := gitopsOptions(srv.RepoURL("gitops.git"))
	opts.Username, opts.Password = "bob", "pw-1234"

	ws, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if ws.Head().Hash != seed {
		t.Fatalf("Open head = %s, want %s", ws.Head().Hash, seed)
	}
	res, err := ws.Commit(context.Background(), gitopsSetTag("main-aaaaaaa-1746598316-hugo0.145.0"))
	if err != nil || !res.Changed || res.Attempts != 1 {
		t.Fatalf("fresh workspace commit = %+v, %v", res, err)
	}

	// Stale: open, then another writer commits, then commit from the
	// stale checkout.
	ws, err = Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	gitserver.CloneWorktree(t, bare, other, "main")
	if err := os.WriteFile(filepath.Join(other, "NOTES.txt"), []byte("another writer\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitserver.Git(t, other, "add", "NOTES.txt")
	gitserver.Git(t, other, "-c", "user.name=o", "-c", "user.email=o@example.org", "commit", "-qm", "other writer")
	gitserver.Git(t, other, "push", "-q", "origin", "main")
	otherTip := strings.TrimSpace(gitserver.Git(t, other, "rev-parse", "HEAD"))

	res, err = ws.Commit(context.Background(), gitopsSetTag("main-bbbbbbb-1746598317-hugo0.145.0"))
	if err != nil || !res.Changed || res.Attempts != 2 {
		t.Fatalf("stale workspace commit = %+v, %v; want a second attempt on the new tip", res, err)
	}
	if parent := strings.TrimSpace(gitserver.Git(t, bare, "rev-parse", "main~1")); parent != otherTip {
		t.Errorf("the commit's parent is %s, want the other writer's %s", parent, otherTip)
	}
	gitserver.Git(t, bare, "fsck", "--strict")
}
