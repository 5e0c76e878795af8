package manifests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/notesctl/notesctl/internal/gitserver"
)

// TestCommitBareInPlace: a bare repository on this machine is committed to
// in place only when a push would run none of its code; otherwise the push
// goes through git receive-pack and its hooks run. "In place" is proven by
// committing with no git on PATH; "through git" by the hook's own effect.
func TestCommitBareInPlace(t *testing.T) {
	gitserver.RequireGit(t)
	const tag = "main-b9060af-1746598316-hugo0.145.0"
	hookRan := func(marker string) string {
		return "#!/bin/sh\ncat >/dev/null\necho ran >" + marker + "\n"
	}
	tests := []struct {
		name    string
		setup   func(t *testing.T, bare, marker string)
		inPlace bool
		reject  string // the hook's message when the push must be refused
	}{
		{name: "no hooks", setup: func(*testing.T, string, string) {}, inPlace: true},
		{name: "sample hooks only", inPlace: true, setup: func(t *testing.T, bare, _ string) {
			gitserver.InstallHook(t, bare, "pre-receive.sample", "#!/bin/sh\nexit 1\n")
		}},
		{name: "hook not executable", inPlace: true, setup: func(t *testing.T, bare, _ string) {
			gitserver.InstallHook(t, bare, "pre-receive", "#!/bin/sh\nexit 1\n")
			if err := os.Chmod(filepath.Join(bare, "hooks", "pre-receive"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "post-receive hook", setup: func(t *testing.T, bare, marker string) {
			gitserver.InstallHook(t, bare, "post-receive", hookRan(marker))
		}},
		{name: "update hook", setup: func(t *testing.T, bare, marker string) {
			gitserver.InstallHook(t, bare, "update", hookRan(marker))
		}},
		{name: "core.hooksPath", setup: func(t *testing.T, bare, marker string) {
			dir := t.TempDir()
			gitserver.InstallHook(t, dir, "post-receive", hookRan(marker))
			gitserver.Git(t, bare, "config", "core.hooksPath", filepath.Join(dir, "hooks"))
		}},
		{name: "pre-receive refuses", reject: "policy: main is protected", setup: func(t *testing.T, bare, _ string) {
			gitserver.InstallHook(t, bare, "pre-receive", "#!/bin/sh\necho 'policy: main is protected' >&2\nexit 1\n")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bare := filepath.Join(t.TempDir(), "gitops.git")
			seed := gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
			marker := filepath.Join(t.TempDir(), "hook-ran")
			tc.setup(t, bare, marker)

			opts := gitopsOptions(bare)
			opts.MaxAttempts = 2
			var res *CommitResult
			var err error
			t.Run("commit", func(t *testing.T) {
				if tc.inPlace {
					t.Setenv("PATH", t.TempDir()) // no git to start
				}
				res, err = Commit(context.Background(), opts, gitopsSetTag(tag))
			})
			if tc.reject != "" {
				if !errors.Is(err, ErrPushRejected) || !strings.Contains(err.Error(), tc.reject) {
					t.Fatalf("Commit = %+v, %v; want ErrPushRejected with the hook's message", res, err)
				}
				if got := gitserver.Git(t, bare, "rev-parse", "main"); got != seed {
					t.Fatalf("main moved to %s despite the hook", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Commit: %v", err)
			}
			head := gitopsVerifyCommit(t, bare, seed, tag)
			if !res.Changed || res.Hash != head || strings.Join(res.Files, ",") != gitopsDeployPath {
				t.Errorf("result = %+v, want the commit %s changing %s", res, head, gitopsDeployPath)
			}
			_, statErr := os.Stat(marker)
			if ran := statErr == nil; ran == tc.inPlace {
				t.Errorf("hook ran = %v; want it to run exactly when the push goes through git", ran)
			}
			// The objects are readable by git like pushed ones, and a
			// second run finds nothing to do.
			if got := gitserver.Git(t, bare, "cat-file", "-t", head); got != "commit" {
				t.Errorf("cat-file -t = %q", got)
			}
			again, err := Commit(context.Background(), opts, gitopsSetTag(tag))
			if err != nil || again.Changed || again.Hash != head {
				t.Errorf("second Commit = %+v, %v; want no change at %s", again, err, head)
			}
		})
	}
}

// TestCommitBareInPlaceRace: writers committing in place and writers
// pushing through git http-backend (receive-pack) to the same bare
// repository all land, one after the other, with no merge and no loss:
// the in-place writer takes git's own ref lock.
func TestCommitBareInPlaceRace(t *testing.T) {
	gitserver.RequireGit(t)
	srv := gitserver.StartHTTPBackend(t, "bob", "race-pass")
	bare := srv.RepoPath("gitops.git")
	gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
	const writers = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	start := make(chan struct{})
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opts := gitopsOptions(bare)
			if i%2 == 1 {
				opts = gitopsOptions(srv.RepoURL("gitops.git"))
				opts.Username, opts.Password = "bob", "race-pass"
			}
			opts.MaxAttempts = 30
			tag := fmt.Sprintf("main-%07x-%d-hugo0.145.0", 0xdef000+i, 1746598316+i)
			<-start
			res, err := Commit(context.Background(), opts, gitopsSetTag(tag))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("writer %d: %w", i, err))
			case !res.Changed:
				errs = append(errs, fmt.Errorf("writer %d: no change", i))
			}
		}()
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	gitserver.Git(t, bare, "fsck", "--strict", "--no-progress")
	if got := gitserver.Git(t, bare, "rev-list", "--merges", "main"); got != "" {
		t.Errorf("history has merges: %s", got)
	}
	if got := gitserver.Git(t, bare, "rev-list", "--count", "main"); got != strconv.Itoa(writers+1) {
		t.Errorf("commits = %s, want %d", got, writers+1)
	}
	seen := map[string]bool{}
	for _, s := range strings.Split(gitserver.Git(t, bare, "log", "--format=%s", "main~"+strconv.Itoa(writers)+"..main"), "\n") {
		seen[s] = true
	}
	if len(seen) != writers {
		t.Errorf("distinct commits = %d, want %d", len(seen), writers)
	}
}

// TestCommitStaleRefLock: a ref lock nobody releases is retried as a
// writer that is moving the branch, then reported with what to remove;
// the branch stays where it was. In place, and through receive-pack.
func TestCommitStaleRefLock(t *testing.T) {
	gitserver.RequireGit(t)
	srv := gitserver.StartHTTPBackend(t, "bob", "lock-pass")
	for _, through := range []string{"in place", "http"} {
		t.Run(through, func(t *testing.T) {
			name := strings.ReplaceAll(through, " ", "-") + ".git"
			bare := srv.RepoPath(name)
			seed := gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
			lock := filepath.Join(bare, "refs", "heads", "main.lock")
			if err := os.MkdirAll(filepath.Dir(lock), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(lock, []byte(seed+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			opts, names := gitopsOptions(bare), "rm '"+lock+"'"
			if through == "http" {
				opts = gitopsOptions(srv.RepoURL(name))
				opts.Username, opts.Password = "bob", "lock-pass"
				names = "cannot lock ref"
			}
			opts.MaxAttempts = 3
			res, err := Commit(context.Background(), opts, gitopsSetTag("main-b9060af-1746598316-hugo0.145.0"))
			if !errors.Is(err, ErrConcurrentUpdates) || !strings.Contains(err.Error(), names) || !strings.Contains(err.Error(), "3 times") {
				t.Fatalf("Commit = %+v, %v; want ErrConcurrentUpdates after 3 attempts, saying %q", res, err, names)
			}
			if strings.Contains(err.Error(), "lock-pass") {
				t.Errorf("error leaks the password: %v", err)
			}
			if got := gitserver.Git(t, bare, "rev-parse", "main"); got != seed {
				t.Errorf("main moved to %s", got)
			}
			if _, err := os.Stat(lock); err != nil {
				t.Errorf("the lock someone else holds was touched: %v", err)
			}
		})
	}
}

// TestCommitBareInPlaceEmpty: the first commit into an empty bare
// repository creates the branch, in place, and git sees it as pushed.
func TestCommitBareInPlaceEmpty(t *testing.T) {
	gitserver.RequireGit(t)
	bare := filepath.Join(t.TempDir(), "gitops.git")
	gitserver.InitBareRepo(t, bare, "main")
	const tag = "main-b9060af-1746598316-hugo0.145.0"
	var res *CommitResult
	var err error
	t.Run("commit", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		res, err = Commit(context.Background(), gitopsOptions(bare), gitopsSetTag(tag))
	})
	if err != nil || !res.Changed {
		t.Fatalf("Commit = %+v, %v", res, err)
	}
	gitserver.Git(t, bare, "fsck", "--strict", "--no-progress")
	if got := gitserver.Git(t, bare, "rev-list", "--count", "main"); got != "1" {
		t.Errorf("commits = %s, want 1", got)
	}
	if got := gitserver.Git(t, bare, "rev-parse", "main"); got != res.Hash {
		t.Errorf("main = %s, result %s", got, res.Hash)
	}
	if got := gitopsTagIn(t, gitserver.Git(t, bare, "show", "main:"+gitopsDeployPath)); got != tag {
		t.Errorf("tag = %q", got)
	}
}
