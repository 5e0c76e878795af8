package manifests

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
		reflog  bool   // git must have logged the update (no hook to show it ran)
	}{
		{name: "no hooks", setup: func(*testing.T, string, string) {}, inPlace: true},
		{name: "sample hooks only", inPlace: true, setup: func(t *testing.T, bare, _ string) {
			gitserver.InstallHook(t, bare, "pre-receive.sample", "#!/bin/sh\nexit 1\n")
		}},
		{name: "packed by git gc", inPlace: true, setup: func(t *testing.T, bare, _ string) {
			// Objects in a pack, the branch only in packed-refs.
			gitserver.Git(t, bare, "gc", "--quiet")
			if _, err := os.Stat(filepath.Join(bare, "refs", "heads", "main")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("git gc left a loose ref: %v", err)
			}
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
		{name: "reflogs on", setup: func(t *testing.T, bare, _ string) {
			// No hook runs; only the reflog shows that git wrote the ref.
			gitserver.Git(t, bare, "config", "core.logAllRefUpdates", "always")
		}, reflog: true},
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
			if ran := statErr == nil; !tc.reflog && ran == tc.inPlace {
				t.Errorf("hook ran = %v; want it to run exactly when the push goes through git", ran)
			}
			if tc.reflog {
				if got := gitserver.Git(t, bare, "reflog", "show", "--format=%H", "refs/heads/main"); !strings.Contains(got, head) {
					t.Errorf("reflog of main = %q, want the update to %s (pushed through git)", got, head)
				}
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

// TestCommitBareInPlaceAbandonedRefLock: a run killed between taking the
// branch's ref lock and renaming it leaves the lock and its own guard
// behind; the next run removes exactly that lock and commits. A ref lock
// with another commit in it, or a guard whose notesctl still runs, is
// waited for and then reported.
func TestCommitBareInPlaceAbandonedRefLock(t *testing.T) {
	gitserver.RequireGit(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	const abandoned = "0123456789abcdef0123456789abcdef01234567"
	guard := func(pid int) string {
		return fmt.Sprintf("notesctl pid=%d host=%s started=%s new=%s\n", pid, host, time.Now().Add(-time.Minute).UTC().Format(time.RFC3339), abandoned)
	}
	tests := []struct {
		name    string
		guard   string // content of notesctl-ref.lock, "" for none
		refLock string // content of refs/heads/main.lock, "" for none
		wantErr string // "" when the commit must land
	}{
		{name: "dead run's guard and lock", guard: guard(dead.Process.Pid), refLock: abandoned + "\n"},
		{name: "dead run's guard only", guard: guard(dead.Process.Pid)},
		{name: "another writer's ref lock", guard: guard(dead.Process.Pid), refLock: strings.Repeat("f", 40) + "\n", wantErr: "main.lock exists"},
		{name: "guard of a running notesctl", guard: guard(os.Getpid()), wantErr: "which is still running"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bare := filepath.Join(t.TempDir(), "gitops.git")
			seed := gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
			guardFile := filepath.Join(bare, refGuardFile)
			refLock := filepath.Join(bare, "refs", "heads", "main.lock")
			if tc.guard != "" {
				if err := os.WriteFile(guardFile, []byte(tc.guard), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.refLock != "" {
				if err := os.WriteFile(refLock, []byte(tc.refLock), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var logs strings.Builder
			opts := gitopsOptions(bare)
			opts.MaxAttempts = 2
			opts.Logger = func(format string, args ...any) { fmt.Fprintf(&logs, format+"\n", args...) }
			const tag = "main-b9060af-1746598316-hugo0.145.0"
			res, err := Commit(context.Background(), opts, gitopsSetTag(tag))
			if tc.wantErr != "" {
				if !errors.Is(err, ErrConcurrentUpdates) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Commit = %+v, %v; want ErrConcurrentUpdates saying %q", res, err, tc.wantErr)
				}
				if got := gitserver.Git(t, bare, "rev-parse", "main"); got != seed {
					t.Errorf("main moved to %s", got)
				}
				if tc.refLock != "" {
					if b, err := os.ReadFile(refLock); err != nil || string(b) != tc.refLock {
						t.Errorf("another writer's ref lock was touched: %q, %v", b, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Commit: %v\nlog:\n%s", err, logs.String())
			}
			gitopsVerifyCommit(t, bare, seed, tag)
			for _, f := range []string{guardFile, refLock} {
				if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s left behind", f)
				}
			}
			if tc.refLock != "" && !strings.Contains(logs.String(), "removed "+refLock) {
				t.Errorf("the removal of the abandoned ref lock is not reported:\n%s", logs.String())
			}
		})
	}
}
