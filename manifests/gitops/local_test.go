package gitops

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notesctl/notesctl/internal/gitserver"
)

func TestCommitLocalWorktree(t *testing.T) {
	gitserver.RequireGit(t)
	tmp := t.TempDir()
	bare := filepath.Join(tmp, "origin.git")
	seed := gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
	work := filepath.Join(tmp, "work")
	gitserver.CloneWorktree(t, bare, work, "main")
	// An untracked file elsewhere does not count as dirty.
	if err := os.WriteFile(filepath.Join(work, "notes.txt"), []byte("scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const tag = "main-1234567-1746598400-hugo0.145.0"
	res, err := Commit(context.Background(), gitopsOptions(work), gitopsSetTag(tag))
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	head := gitopsVerifyCommit(t, filepath.Join(work, ".git"), seed, tag)
	if !res.Changed || res.Hash != head || fmt.Sprint(res.Files) != "["+gitopsDeployPath+"]" {
		t.Errorf("result = %+v", *res)
	}
	// The worktree and index follow the commit, as after `git commit`.
	if got := gitserver.Git(t, work, "status", "--porcelain"); got != "?? notes.txt" {
		t.Errorf("git status after commit = %q, want only the untracked file", got)
	}
	b, err := os.ReadFile(filepath.Join(work, gitopsDeployPath))
	if err != nil {
		t.Fatal(err)
	}
	if got := gitopsTagIn(t, string(b)); got != tag {
		t.Errorf("worktree file has tag %q, want %q", got, tag)
	}
	if _, err := os.Stat(filepath.Join(work, ".git", "index.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("index.lock left behind: %v", err)
	}

	// A dirty worktree is refused and left alone.
	if err := os.WriteFile(filepath.Join(work, "README.md"), []byte("local edit\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Commit(context.Background(), gitopsOptions(work), gitopsSetTag("main-7654321-1746598500-hugo0.145.0"))
	if !errors.Is(err, ErrDirtyWorktree) || !strings.Contains(err.Error(), "README.md") {
		t.Fatalf("Commit on a dirty worktree: err = %v, want ErrDirtyWorktree naming README.md", err)
	}
	if got := gitserver.Git(t, work, "rev-parse", "main"); got != head {
		t.Errorf("branch moved to %s although the worktree was dirty", got)
	}
	if got := gitopsTagIn(t, gitserver.Git(t, work, "show", "main:"+gitopsDeployPath)); got != tag {
		t.Errorf("tag after refused commit = %q", got)
	}
}

func TestCommitLocalWorktreeLocked(t *testing.T) {
	gitserver.RequireGit(t)
	tmp := t.TempDir()
	bare := filepath.Join(tmp, "origin.git")
	gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
	work := filepath.Join(tmp, "work")
	gitserver.CloneWorktree(t, bare, work, "main")
	lock := filepath.Join(work, ".git", "index.lock")
	if err := os.WriteFile(lock, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	opts := gitopsOptions(work)
	opts.MaxAttempts = 2
	_, err := Commit(context.Background(), opts, gitopsSetTag("main-1234567-1746598400-hugo0.145.0"))
	if !errors.Is(err, ErrConcurrentUpdates) || !strings.Contains(err.Error(), lock) {
		t.Fatalf("err = %v, want ErrConcurrentUpdates naming %s", err, lock)
	}
	if _, err := os.Stat(lock); err != nil {
		t.Errorf("someone else's lock was removed: %v", err)
	}
}
