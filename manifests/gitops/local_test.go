package gitops

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5"

	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/internal/repohash"
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

// TestReadOnly: a repository opened ReadOnly is read, never repaired or
// written, even when a killed run left a journal and its stale lock; a
// ReadOnly commit runs the edit and refuses to write what it changed.
func TestReadOnly(t *testing.T) {
	gitserver.RequireGit(t)
	tmp := t.TempDir()
	bare := filepath.Join(tmp, "origin.git")
	gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
	work := filepath.Join(tmp, "work")
	gitserver.CloneWorktree(t, bare, work, "main")
	if _, err := Commit(context.Background(), gitopsOptions(work), gitopsSetTag("main-1234567-1746598400-hugo0.145.0")); err != nil {
		t.Fatal(err)
	}
	head := gitserver.Git(t, work, "rev-parse", "HEAD")
	parent := gitserver.Git(t, work, "rev-parse", "HEAD^")
	// A commit killed after the branch moved: the journal, the dead run's
	// lock, and the worktree file still old.
	j := fmt.Sprintf(`{"old":%q,"new":%q,"paths":[%q]}`, parent, head, gitopsDeployPath)
	gitDir := filepath.Join(work, ".git")
	if err := os.WriteFile(filepath.Join(gitDir, journalFile), []byte(j), 0o644); err != nil {
		t.Fatal(err)
	}
	dead := deadOwnerLine(t)
	if err := os.WriteFile(filepath.Join(gitDir, "index.lock"), dead, 0o644); err != nil {
		t.Fatal(err)
	}
	old := gitserver.Git(t, work, "show", parent+":"+gitopsDeployPath)
	if err := os.WriteFile(filepath.Join(work, gitopsDeployPath), []byte(old+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := repohash.Tree(t, work)

	opts := gitopsOptions(work)
	opts.ReadOnly = true
	ws, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if ws.Head().Hash != head {
		t.Errorf("Open head = %s, want the branch tip %s", ws.Head().Hash, head)
	}
	if _, _, err := Checkout(context.Background(), gitopsOptions(work)); err != nil {
		t.Fatal(err)
	}
	res, err := ws.Commit(context.Background(), func(billy.Filesystem, CommitInfo) (string, bool, error) { return "", false, nil })
	if err != nil || res.Changed || res.Hash != head {
		t.Errorf("read-only commit without changes = %+v, %v", res, err)
	}
	_, err = Commit(context.Background(), opts, gitopsSetTag("main-7654321-1746598500-hugo0.145.0"))
	if !errors.Is(err, ErrReadOnly) {
		t.Errorf("read-only commit with changes: err = %v, want ErrReadOnly", err)
	}
	if after := repohash.Tree(t, work); after != before {
		t.Errorf("the repository changed:\nbefore %s\nafter  %s", before, after)
	}

	// A run that writes finishes the interrupted commit.
	if _, err := Commit(context.Background(), gitopsOptions(work), gitopsSetTag("main-1234567-1746598400-hugo0.145.0")); err != nil {
		t.Fatal(err)
	}
	if st := gitserver.Git(t, work, "status", "--porcelain"); st != "" {
		t.Errorf("git status after the repair = %q", st)
	}
}

// deadOwnerLine is an index.lock owner line of a notesctl of this host
// that is no longer running.
func deadOwnerLine(t *testing.T) []byte {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	return []byte(fmt.Sprintf("notesctl pid=%d host=%s started=%s\n", cmd.Process.Pid, host, time.Now().UTC().Format(time.RFC3339)))
}
