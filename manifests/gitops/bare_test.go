package gitops

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/notesctl/notesctl/internal/gitserver"
)

// TestPushThroughGit: the configuration git reads decides, file by file,
// and what notesctl cannot evaluate (includes, configuration in the
// environment) sends the push through git.
func TestPushThroughGit(t *testing.T) {
	gitserver.RequireGit(t)
	write := func(t *testing.T, file, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const hooks = "[core]\n\thooksPath = /srv/hooks\n"
	tests := []struct {
		name  string
		setup func(t *testing.T, bare, home string)
		want  string // part of the reason; "" for in place
	}{
		{name: "nothing set", setup: func(*testing.T, string, string) {}},
		{name: "hooksPath in the repository", want: "core.hooksPath", setup: func(t *testing.T, bare, _ string) {
			gitserver.Git(t, bare, "config", "core.hooksPath", "/srv/hooks")
		}},
		{name: "hooksPath in ~/.gitconfig", want: "core.hooksPath", setup: func(t *testing.T, _, home string) {
			write(t, filepath.Join(home, ".gitconfig"), hooks)
		}},
		{name: "hooksPath in the XDG config, beside a ~/.gitconfig", want: "core.hooksPath", setup: func(t *testing.T, _, home string) {
			write(t, filepath.Join(home, ".gitconfig"), "[user]\n\tname = x\n")
			write(t, filepath.Join(home, ".config", "git", "config"), hooks)
		}},
		{name: "hooksPath in GIT_CONFIG_GLOBAL", want: "core.hooksPath", setup: func(t *testing.T, _, home string) {
			write(t, filepath.Join(home, "other.gitconfig"), hooks)
			t.Setenv("GIT_CONFIG_GLOBAL", filepath.Join(home, "other.gitconfig"))
		}},
		{name: "hooksPath in GIT_CONFIG_SYSTEM", want: "core.hooksPath", setup: func(t *testing.T, _, home string) {
			write(t, filepath.Join(home, "system.gitconfig"), hooks)
			t.Setenv("GIT_CONFIG_NOSYSTEM", "")
			t.Setenv("GIT_CONFIG_SYSTEM", filepath.Join(home, "system.gitconfig"))
		}},
		{name: "an include", want: "includes other files", setup: func(t *testing.T, bare, home string) {
			gitserver.Git(t, bare, "config", "include.path", filepath.Join(home, "more.gitconfig"))
		}},
		{name: "an includeIf", want: "includes other files", setup: func(t *testing.T, _, home string) {
			write(t, filepath.Join(home, ".gitconfig"), "[includeIf \"gitdir:/srv/\"]\n\tpath = more\n")
		}},
		{name: "configuration in the environment", want: "environment", setup: func(t *testing.T, _, _ string) {
			t.Setenv("GIT_CONFIG_COUNT", "1")
			t.Setenv("GIT_CONFIG_KEY_0", "core.hooksPath")
			t.Setenv("GIT_CONFIG_VALUE_0", "/srv/hooks")
		}},
		{name: "shared repository", want: "core.sharedRepository", setup: func(t *testing.T, bare, _ string) {
			gitserver.Git(t, bare, "config", "core.sharedRepository", "group")
		}},
		{name: "a reflog of the branch", want: "has a reflog", setup: func(t *testing.T, bare, _ string) {
			write(t, filepath.Join(bare, "logs", "refs", "heads", "main"), "")
		}},
		{name: "a post-receive hook", want: "post-receive hook", setup: func(t *testing.T, bare, _ string) {
			gitserver.InstallHook(t, bare, "post-receive", "#!/bin/sh\n")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bare := filepath.Join(t.TempDir(), "gitops.git")
			gitserver.InitBareRepo(t, bare, "main")
			home := t.TempDir()
			t.Setenv("HOME", home)
			t.Setenv("XDG_CONFIG_HOME", "")
			t.Setenv("GIT_CONFIG_GLOBAL", "")
			if err := os.Unsetenv("GIT_CONFIG_GLOBAL"); err != nil {
				t.Fatal(err)
			}
			tc.setup(t, bare, home)
			got := pushThroughGit(bare, "main")
			if (got == "") != (tc.want == "") || !strings.Contains(got, tc.want) {
				t.Errorf("pushThroughGit = %q, want %q", got, tc.want)
			}
		})
	}
}

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
			var logs strings.Builder
			opts.Logger = func(format string, args ...any) { fmt.Fprintf(&logs, format+"\n", args...) }
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
			// A push through git says why.
			if said := strings.Contains(logs.String(), "through git receive-pack: "); said == tc.inPlace {
				t.Errorf("log says it went through git = %v, want %v:\n%s", said, !tc.inPlace, logs.String())
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
	guard := func(pid int, branch string) string {
		return fmt.Sprintf("notesctl pid=%d host=%s started=%s ref=refs/heads/%s new=%s\n",
			pid, host, time.Now().Add(-time.Minute).UTC().Format(time.RFC3339), branch, abandoned)
	}
	tests := []struct {
		name      string
		guard     string // content of notesctl-ref.lock, "" for none
		branch    string // the branch whose ref lock the test leaves (default main)
		refLock   string // content of that ref lock
		noRefLock bool   // leave no ref lock
		wantErr   string // "" when the commit must land
	}{
		{name: "dead run's guard and lock", guard: guard(dead.Process.Pid, "main"), refLock: abandoned + "\n"},
		{name: "dead run's guard only", guard: guard(dead.Process.Pid, "main"), noRefLock: true},
		{name: "dead run on another branch", guard: guard(dead.Process.Pid, "staging"), branch: "staging", refLock: abandoned + "\n"},
		{name: "another writer's ref lock", guard: guard(dead.Process.Pid, "main"), refLock: strings.Repeat("f", 40) + "\n", wantErr: "main.lock exists"},
		{name: "an empty ref lock (not notesctl's)", guard: guard(dead.Process.Pid, "main"), refLock: "", wantErr: "main.lock exists"},
		{name: "guard of a running notesctl", guard: guard(os.Getpid(), "main"), noRefLock: true, wantErr: "which is still running"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bare := filepath.Join(t.TempDir(), "gitops.git")
			seed := gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
			guardFile := filepath.Join(bare, refGuardFile)
			branch := tc.branch
			if branch == "" {
				branch = "main"
			}
			refLock := filepath.Join(bare, "refs", "heads", branch+".lock")
			if tc.guard != "" {
				if err := os.WriteFile(guardFile, []byte(tc.guard), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if !tc.noRefLock {
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
				if !tc.noRefLock {
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
			if !tc.noRefLock && !strings.Contains(logs.String(), "removed "+refLock) {
				t.Errorf("the removal of the abandoned ref lock is not reported:\n%s", logs.String())
			}
		})
	}
}

// TestCommitBareInPlaceNoopClearsDeadGuard: a run killed after its ref
// update landed, before it removed its guard, leaves the guard naming the
// commit that is now the tip. The next run has nothing to commit (a no-op)
// and must still clear that guard, and a ref lock of the dead run's commit
// with it; a guard of a running notesctl stays.
func TestCommitBareInPlaceNoopClearsDeadGuard(t *testing.T) {
	gitserver.RequireGit(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	const tag = "main-b9060af-1746598316-hugo0.145.0"
	for _, tc := range []struct {
		name      string
		pid       int
		refLock   bool // the dead run also left the branch's ref lock, holding its commit
		openOnly  bool // Open the repository instead of committing (a release that skips)
		readOnly  bool
		wantGuard bool
	}{
		{name: "dead run's guard", pid: dead.Process.Pid},
		{name: "dead run's guard and ref lock", pid: dead.Process.Pid, refLock: true},
		{name: "running notesctl's guard", pid: os.Getpid(), wantGuard: true},
		// A release that finds its image deployed only opens the repository.
		{name: "dead run's guard, open only", pid: dead.Process.Pid, refLock: true, openOnly: true},
		{name: "dead run's guard, read-only open", pid: dead.Process.Pid, openOnly: true, readOnly: true, wantGuard: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bare := filepath.Join(t.TempDir(), "gitops.git")
			seed := gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
			opts := gitopsOptions(bare)
			opts.MaxAttempts = 2
			first, err := Commit(context.Background(), opts, gitopsSetTag(tag))
			if err != nil || !first.Changed {
				t.Fatalf("first Commit = %+v, %v", first, err)
			}
			gitopsVerifyCommit(t, bare, seed, tag)
			// What the killed run left: its guard, naming the commit that landed.
			guard := fmt.Sprintf("notesctl pid=%d host=%s started=%s ref=refs/heads/main new=%s\n",
				tc.pid, host, time.Now().Add(-time.Minute).UTC().Format(time.RFC3339), first.Hash)
			guardFile := filepath.Join(bare, refGuardFile)
			if err := os.WriteFile(guardFile, []byte(guard), 0o644); err != nil {
				t.Fatal(err)
			}
			refLock := filepath.Join(bare, "refs", "heads", "main.lock")
			if tc.refLock {
				if err := os.WriteFile(refLock, []byte(first.Hash+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var logs strings.Builder
			opts.Logger = func(format string, args ...any) { fmt.Fprintf(&logs, format+"\n", args...) }
			opts.ReadOnly = tc.readOnly
			if tc.openOnly {
				ws, err := Open(context.Background(), opts)
				if err != nil {
					t.Fatalf("Open: %v\nlog:\n%s", err, logs.String())
				}
				if ws.Head().Hash != first.Hash {
					t.Fatalf("Open read %s, want %s", ws.Head().Hash, first.Hash)
				}
			} else {
				res, err := Commit(context.Background(), opts, gitopsSetTag(tag))
				if err != nil {
					t.Fatalf("no-op Commit: %v\nlog:\n%s", err, logs.String())
				}
				if res.Changed || res.Hash != first.Hash {
					t.Fatalf("no-op Commit = %+v, want no change at %s", res, first.Hash)
				}
			}
			opts.ReadOnly = false
			_, gerr := os.Stat(guardFile)
			if tc.wantGuard {
				if gerr != nil {
					t.Fatalf("the guard of a running notesctl was removed: %v", gerr)
				}
				return
			}
			if !errors.Is(gerr, os.ErrNotExist) {
				t.Errorf("the dead run's guard is left behind after a no-op run\nlog:\n%s", logs.String())
			}
			if _, err := os.Stat(refLock); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the dead run's ref lock is left behind")
			}
			if !strings.Contains(logs.String(), "removed the stale lock "+guardFile) {
				t.Errorf("the removal is not reported:\n%s", logs.String())
			}
			// And the branch moves again.
			if _, err := Commit(context.Background(), opts, gitopsSetTag("main-c9060af-1746598400-hugo0.145.0")); err != nil {
				t.Fatalf("next Commit: %v", err)
			}
		})
	}
}

// TestCommitBareInPlaceKilled: a child process commits in place in a loop
// and is killed with SIGKILL at a random moment, 40 times; after every
// kill the next commit must land (nothing the dead run left may block it),
// and at the end git fsck is clean and the history linear.
func TestCommitBareInPlaceKilled(t *testing.T) {
	if bare := os.Getenv("NOTESCTL_TEST_KILL_BARE"); bare != "" {
		// The child: commit until killed.
		opts := gitopsOptions(bare)
		opts.MaxAttempts = 50
		for i := 0; ; i++ {
			tag := fmt.Sprintf("main-%07x-%d-hugo0.145.0", os.Getpid()&0xfffffff, 1746598316+i)
			if _, err := Commit(context.Background(), opts, gitopsSetTag(tag)); err != nil {
				fmt.Fprintln(os.Stderr, "child:", err)
				os.Exit(3)
			}
		}
	}
	gitserver.RequireGit(t)
	bare := filepath.Join(t.TempDir(), "gitops.git")
	seed := gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
	rng := rand.New(rand.NewPCG(1, 2))
	recovered := 0
	for i := range 40 {
		child := exec.Command(os.Args[0], "-test.run=^TestCommitBareInPlaceKilled$")
		child.Env = append(os.Environ(), "NOTESCTL_TEST_KILL_BARE="+bare)
		child.Stderr = os.Stderr
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(20+rng.IntN(60)) * time.Millisecond)
		_ = child.Process.Signal(syscall.SIGKILL)
		_ = child.Wait()

		var logs strings.Builder
		opts := gitopsOptions(bare)
		opts.MaxAttempts = 3
		opts.Logger = func(format string, args ...any) { fmt.Fprintf(&logs, format+"\n", args...) }
		res, err := Commit(context.Background(), opts, gitopsSetTag(fmt.Sprintf("main-fffffff-%d-hugo0.145.0", i)))
		if err != nil || !res.Changed {
			t.Fatalf("kill %d: the next commit = %+v, %v\n%s", i, res, err, logs.String())
		}
		if strings.Contains(logs.String(), "removed") {
			recovered++
		}
	}
	t.Logf("40 kills; %d next runs removed a lock the killed run left", recovered)
	gitserver.Git(t, bare, "fsck", "--strict", "--no-progress")
	if got := gitserver.Git(t, bare, "rev-list", "--merges", "main"); got != "" {
		t.Errorf("history has merges: %s", got)
	}
	if _, err := exec.Command("git", "-C", bare, "merge-base", "--is-ancestor", seed, "main").CombinedOutput(); err != nil {
		t.Errorf("the seed is no longer an ancestor of main: %v", err)
	}
}
