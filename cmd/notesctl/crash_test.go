package main

// Hardening tests, part 2: crash safety. A release is killed with SIGKILL
// at each stage boundary (right after the "✓ <stage>" line of the line
// sink), a few milliseconds into the GitOps commit, and while the registry
// stalls a blob upload; then the release of the same commit runs again
// without faults. It must converge to what an uninterrupted run gives: the
// same image digest, exactly one update commit for it, git fsck clean, no
// lock or journal left, the image complete. The offline mode (OCI layout
// + local non-bare GitOps repository, committed in place), the registry +
// HTTP git mode and the registry + local bare repository mode (written in
// place, manifests/gitops/bare.go) are covered. Also: the index.lock rule for
// local GitOps repositories (see manifests/gitops/lock.go, lockIndex).

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/internal/regserver"
)

// killPoint says when to kill a release.
type killPoint struct {
	// after is the stage whose "✓ <stage>" line triggers the kill.
	after string
	// delay is how long to wait after that line.
	delay time.Duration
	// stall: kill while the fault proxy stalls a blob upload instead.
	stall bool
}

func (k killPoint) String() string {
	switch {
	case k.stall:
		return "during-push-stall"
	case k.delay > 0:
		return fmt.Sprintf("%s+%s", k.after, k.delay)
	}
	return "after-" + k.after
}

// hardCmd is the binary with the environment the notesctl helper gives it.
func hardCmd(t *testing.T, dir string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(notesctlBin, args...)
	cmd.Dir = dir
	home := t.TempDir()
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker"), "TMPDIR=" + os.TempDir()}, env...)
	return cmd
}

// runAndKill starts a release, waits for the kill point and sends SIGKILL.
// It reports whether the process was killed (false: it finished first).
// stalled, for stall points, reports whether the proxy holds a stalled
// request.
func runAndKill(t *testing.T, dir string, env []string, kp killPoint, stalled func() bool, args ...string) bool {
	t.Helper()
	cmd := hardCmd(t, dir, env, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	trigger := make(chan struct{})
	var once sync.Once
	fire := func() { once.Do(func() { close(trigger) }) }
	lines := make(chan struct{})
	var log strings.Builder
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			l := sc.Text()
			log.WriteString(l + "\n")
			if !kp.stall && strings.HasPrefix(l, "✓ "+kp.after+" ") {
				fire()
			}
		}
	}()
	if kp.stall {
		go func() {
			// Bounded: the stall lasts a minute, the loop 30 s at most.
			for i := 0; i < 3000; i++ {
				select {
				case <-lines:
					return
				default:
				}
				if stalled() {
					fire()
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	select {
	case <-trigger:
		if kp.delay > 0 {
			time.Sleep(kp.delay)
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
	case <-lines: // it finished before the kill point
	}
	<-lines
	err = cmd.Wait() // reaps the process: its pid is free again
	var ee *exec.ExitError
	killed := false
	if errors.As(err, &ee) {
		ws, ok := ee.Sys().(syscall.WaitStatus)
		killed = ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
	}
	t.Logf("notesctl %s, killed %s: killed=%v\nstderr:\n%s", strings.Join(args, " "), kp, killed, log.String())
	return killed
}

// releaseJSON is the part of `release --output json` the tests read.
type releaseJSON struct {
	Build struct {
		Image, Tag, Digest string
		BytesUploaded      int64
	}
	Skipped bool
	GitOps  struct {
		Changed bool
		Commit  string
	}
}

func parseRelease(t *testing.T, r result) releaseJSON {
	t.Helper()
	var out releaseJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("release --output json: %v\n%s", err, r.stdout)
	}
	return out
}

// siteCommits adds n commits, an hour apart, and returns their hashes.
func siteCommits(t *testing.T, site string, from, n int) []string {
	t.Helper()
	var out []string
	for i := 0; i < n; i++ {
		editPage(t, site, from+i)
		out = append(out, gitserver.Git(t, site, "rev-parse", "HEAD"))
	}
	return out
}

// referenceDigests builds each commit, uninterrupted, into its own OCI
// layout with the options release --local uses, concurrently, and returns
// the digests.
func referenceDigests(t *testing.T, site string, commits []string) []string {
	t.Helper()
	out := make([]string, len(commits))
	var wg sync.WaitGroup
	for i, c := range commits {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := hardCmd(t, site, nil, "build", "--revision", c, "--image", localImage, "--base", "scratch", "--to", "oci:"+t.TempDir(), "--output", "json")
			b, err := cmd.Output()
			if err != nil {
				t.Errorf("reference build of %s: %v", c, err)
				return
			}
			var res struct{ Digest string }
			if err := json.Unmarshal(b, &res); err != nil || res.Digest == "" {
				t.Errorf("reference build of %s: %v\n%s", c, err, b)
				return
			}
			out[i] = res.Digest
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return out
}

func TestCrashRelease(t *testing.T) {
	t.Parallel()
	site := newSite(t)
	local := []killPoint{
		{after: "source"}, // the first run scaffolds the GitOps repository here
		{after: "render"},
		{after: "image"}, // lands in the push into the layout
		{after: "push"},
		{after: "verify"}, // lands in the GitOps commit
		{after: "verify", delay: 3 * time.Millisecond},
		{after: "verify", delay: 10 * time.Millisecond},
		{after: "verify", delay: 25 * time.Millisecond},
	}
	remote := []killPoint{
		{after: "source"},
		{after: "render"},
		{after: "image"},
		{stall: true},
		{after: "push"},
		{after: "verify"},
		{after: "verify", delay: 10 * time.Millisecond},
	}
	// A bare GitOps repository given as a path is committed to in place
	// (manifests/gitops/bare.go); the update takes a few milliseconds, so the
	// kills after verify come close together.
	bareKills := []killPoint{
		{after: "push"},
		{after: "verify"},
		{after: "verify", delay: 1 * time.Millisecond},
		{after: "verify", delay: 2 * time.Millisecond},
		{after: "verify", delay: 4 * time.Millisecond},
		{after: "verify", delay: 7 * time.Millisecond},
	}
	commits := siteCommits(t, site, 1, len(local)+len(remote)+len(bareKills))
	want := referenceDigests(t, site, commits)
	var kills atomic.Int32

	// The two modes run side by side; the registry mode only reads the
	// site repository (--revision), the local mode writes under .notesctl/.
	localMode := func(t *testing.T) {
		gitops := filepath.Join(site, localGitOps)
		for i, kp := range local {
			args := []string{"release", "--local", "--revision", commits[i], "--output", "json"}
			if runAndKill(t, site, nil, kp, nil, args...) {
				kills.Add(1)
			}
			res := notesctl(t, site, nil, "", args...)
			mustSucceed(t, res)
			got := parseRelease(t, res)
			if got.Build.Digest != want[i] {
				t.Errorf("%s: digest %s, an uninterrupted run gives %s", kp, got.Build.Digest, want[i])
			}
			assertConverged(t, gitops, got.Build.Tag, got.Build.Digest)
			if st := gitOut(t, gitops, "status", "--porcelain"); st != "" {
				t.Errorf("%s: the GitOps worktree is not clean:\n%s", kp, st)
			}
			for _, f := range []string{"index.lock", "NOTESCTL_COMMIT", "refs/heads/main.lock"} {
				if _, err := os.Stat(filepath.Join(gitops, ".git", f)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s: .git/%s left behind", kp, f)
				}
			}
			img := layoutImage(t, filepath.Join(site, localLayout), got.Build.Tag)
			if err := validate.Image(img); err != nil {
				t.Errorf("%s: the layout image does not verify: %v", kp, err)
			}
		}
	}

	// registryMode releases to the registry behind the fault proxy and to
	// the GitOps repository over HTTP or, inPlace, by its path.
	registryMode := func(t *testing.T, inPlace bool) {
		rig := newHardRig(t)
		rig.site, rig.base = site, "scratch"
		n, points, offset := "crash", remote, len(local)
		if inPlace {
			n, points, offset = "crash-bare", bareKills, len(local)+len(remote)
		}
		rig.gitops(t, n)
		bare := rig.git.RepoPath(n + ".git")
		first := rig.tip(t, n)
		for j, kp := range points {
			i := offset + j
			args := rig.releaseArgs(n, "--revision", commits[i], "--output", "json")
			if inPlace {
				args = []string{"release", "--site", rig.site, "--image", rig.image(n), "--base", rig.base,
					"--gitops", bare, "--revision", commits[i], "--output", "json"}
			}
			var stalled func() bool
			if kp.stall {
				rig.proxy.Inject(t, regserver.Fault{Method: "PATCH", Path: rig.paths(n, "blobs/uploads/."), Kind: regserver.FaultStall, Stall: time.Minute})
				stalled = func() bool {
					for _, rq := range rig.proxy.Matching("PATCH", rig.paths(n, "blobs/uploads/.")) {
						if rq.Fault == "stall" {
							return true
						}
					}
					return false
				}
			}
			before := rig.tip(t, n)
			if runAndKill(t, site, rig.env(), kp, stalled, args...) {
				kills.Add(1)
			}
			if tip := rig.tip(t, n); tip != before {
				// A kill after the push may come after the commit landed;
				// then it must be the commit of this release.
				if d := deployedIn(t, bare, "main"); !strings.HasSuffix(d, "@"+want[i]) {
					t.Errorf("%s: the killed run moved the branch to %s, deploying %s", kp, tip, d)
				}
			}
			res := notesctl(t, site, rig.env(), "", args...)
			mustSucceed(t, res)
			got := parseRelease(t, res)
			if got.Build.Digest != want[i] {
				t.Errorf("%s: digest %s, an uninterrupted run gives %s", kp, got.Build.Digest, want[i])
			}
			assertConverged(t, bare, got.Build.Tag, got.Build.Digest)
			rig.pullVerify(t, rig.deployed(t, n))
			// A crash between push and commit: the rerun finishes the
			// commit without a second upload.
			if (kp.after == "push" || kp.after == "verify") && got.Build.BytesUploaded != 0 {
				t.Errorf("%s: the rerun uploaded %d bytes again", kp, got.Build.BytesUploaded)
			}
			for _, f := range []string{"refs/heads/main.lock", "notesctl-ref.lock"} {
				if _, err := os.Stat(filepath.Join(bare, f)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s: %s left behind in the GitOps repository", kp, f)
				}
			}
		}
		assertLinear(t, bare, first)
	}
	concurrently(t, []string{"local", "registry", "bare-in-place"}, func(t *testing.T, i int) {
		switch i {
		case 0:
			localMode(t)
		default:
			registryMode(t, i == 2)
		}
	})
	total := len(local) + len(remote) + len(bareKills)
	t.Logf("kills: %d of %d kill points hit a running release", kills.Load(), total)
	// Under heavy machine load a release can outrun its kill point; the
	// convergence checks hold either way, this only guards against a
	// harness that kills nothing.
	if int(kills.Load()) < total/3 {
		t.Errorf("only %d kill points hit a running release", kills.Load())
	}
}

// assertConverged checks the GitOps repository after the rerun: fsck
// clean, linear, exactly one commit deploying tag, and the branch deploys
// the digest.
func assertConverged(t *testing.T, repo, tag, digest string) {
	t.Helper()
	gitserver.Git(t, repo, "fsck", "--strict", "--no-dangling")
	if merges := gitserver.Git(t, repo, "rev-list", "--merges", "refs/heads/main"); merges != "" {
		t.Errorf("merge commits in the GitOps history: %s", merges)
	}
	if got := countDeploys(t, repo, tag); got != 1 {
		t.Errorf("%d commits deploy %s, want exactly 1", got, tag)
	}
	if d := deployedIn(t, repo, "main"); !strings.HasSuffix(d, ":"+tag+"@"+digest) {
		t.Errorf("the branch deploys %s, want tag %s at %s", d, tag, digest)
	}
}

// A local GitOps repository's index.lock: one left by a notesctl that was
// killed is removed; one held by a running process, or by git, is waited
// for and then reported with the command that removes it.
func TestCrashStaleIndexLock(t *testing.T) {
	t.Parallel()
	site := newSite(t)
	mustSucceed(t, notesctl(t, site, nil, "", "release", "--local"))
	lock := filepath.Join(site, localGitOps, ".git", "index.lock")
	host, _ := os.Hostname()

	// A pid that is not running: a process that has exited and been reaped.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	owner := fmt.Sprintf("notesctl pid=%d host=%s started=%s\n", dead.Process.Pid, host, time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
	if err := os.WriteFile(lock, []byte(owner), 0o644); err != nil {
		t.Fatal(err)
	}
	editPage(t, site, 1)
	r := notesctl(t, site, nil, "", "release", "--local")
	mustSucceed(t, r)
	if !strings.Contains(r.stderr, "removed the stale lock "+lock) {
		t.Errorf("the stale lock was not reported as removed")
	}
	assertLockGone(t, lock)

	// The same after a kill once the commit had landed: the rerun is a
	// no-op and still clears the lock.
	if err := os.WriteFile(lock, []byte(owner), 0o644); err != nil {
		t.Fatal(err)
	}
	r = notesctl(t, site, nil, "", "release", "--local")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "no-op") {
		t.Errorf("rerun of a deployed commit is not a no-op:\n%s", r.stdout)
	}
	assertLockGone(t, lock)

	// A lock held by a running notesctl (this test process stands in).
	live := fmt.Sprintf("notesctl pid=%d host=%s started=%s\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	if err := os.WriteFile(lock, []byte(live), 0o644); err != nil {
		t.Fatal(err)
	}
	editPage(t, site, 2)
	r = notesctl(t, site, nil, "", "release", "--local", "--max-push-attempts", "2")
	if r.code == 0 || !strings.Contains(r.stderr, fmt.Sprintf("is held by notesctl pid %d", os.Getpid())) || !strings.Contains(r.stderr, "still running") {
		t.Fatalf("a lock of a running notesctl: exit %d, want a failure naming it:\n%s", r.code, r.stderr)
	}
	if b, _ := os.ReadFile(lock); string(b) != live {
		t.Fatalf("the lock of a running process was touched")
	}

	// git's own lock (an index being written): not ours to judge.
	if err := os.WriteFile(lock, []byte("DIRC\x00\x00\x00\x02"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = notesctl(t, site, nil, "", "release", "--local", "--max-push-attempts", "2")
	rm := "rm '" + lock + "'"
	if r.code == 0 || !strings.Contains(r.stderr, "another git process seems to be running") || !strings.Contains(r.stderr, rm) {
		t.Fatalf("git's lock: exit %d, want a failure with %q:\n%s", r.code, rm, r.stderr)
	}
	// The command the error names, then the release goes through.
	if out, err := exec.Command("sh", "-c", rm).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", rm, err, out)
	}
	mustSucceed(t, notesctl(t, site, nil, "", "release", "--local"))
	assertLockGone(t, lock)
	gitops := filepath.Join(site, localGitOps)
	if st := gitOut(t, gitops, "status", "--porcelain"); st != "" {
		t.Errorf("the GitOps worktree is not clean:\n%s", st)
	}
	if n := gitOut(t, gitops, "rev-list", "--count", "HEAD"); n != "4" {
		t.Errorf("GitOps history has %s commits, want scaffold + 3 releases", n)
	}
}

func assertLockGone(t *testing.T, lock string) {
	t.Helper()
	if _, err := os.Stat(lock); !errors.Is(err, os.ErrNotExist) {
		b, _ := os.ReadFile(lock)
		t.Errorf("%s left behind (%v): %q", lock, err, b)
	}
}

// An interrupted direct commit, in the state a kill between moving the
// branch and updating the worktree leaves (branch at the new commit, index
// and worktree still at the old one, the journal, our ref lock leftovers):
// the next run, even one with nothing to release, finishes it.
func TestCrashInterruptedLocalCommit(t *testing.T) {
	t.Parallel()
	site := newSite(t)
	mustSucceed(t, notesctl(t, site, nil, "", "release", "--local"))
	gitops := filepath.Join(site, localGitOps)
	const path = "apps/notes/deployment.yaml"
	head := gitOut(t, gitops, "rev-parse", "HEAD")
	parent := gitOut(t, gitops, "rev-parse", "HEAD^")
	old := gitOut(t, gitops, "show", parent+":"+path)
	if err := os.WriteFile(filepath.Join(gitops, path), []byte(old+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitserver.Git(t, gitops, "update-index", path)
	if gitOut(t, gitops, "status", "--porcelain") == "" {
		t.Fatal("could not stage the interrupted state")
	}
	journal := fmt.Sprintf(`{"old":%q,"new":%q,"paths":[%q]}`, parent, head, path)
	if err := os.WriteFile(filepath.Join(gitops, ".git", "NOTESCTL_COMMIT"), []byte(journal), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(gitops, "apps/notes/.notesctl-tmp-99999-deployment.yaml")
	if err := os.WriteFile(tmp, []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}

	r := notesctl(t, site, nil, "", "release", "--local")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "no-op") || !strings.Contains(r.stderr, "finishing commit "+head[:7]) {
		t.Errorf("want a no-op that finishes the interrupted commit")
	}
	if st := gitOut(t, gitops, "status", "--porcelain"); st != "" {
		t.Errorf("the GitOps worktree is not clean:\n%s", st)
	}
	for _, f := range []string{filepath.Join(gitops, ".git", "NOTESCTL_COMMIT"), tmp} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind", f)
		}
	}
	if got := gitOut(t, gitops, "rev-parse", "HEAD"); got != head {
		t.Errorf("HEAD moved to %s", got)
	}
	gitserver.Git(t, gitops, "fsck", "--strict", "--no-dangling")
}
