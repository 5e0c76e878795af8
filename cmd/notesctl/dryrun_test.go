package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/internal/regserver"
)

// TestReleaseDryRun: the image is built for real (the digest is the one a
// real run pushes) but nothing is pushed or committed, and the GitOps diff
// is printed.
func TestReleaseDryRun(t *testing.T) {
	reg := regserver.InProcess(t, regserver.InProcessOptions{})
	gs := gitserver.StartHTTPBackend(t, "", "")
	scaffold := t.TempDir()
	image := reg.Host + "/acme/notes"
	mustSucceed(t, notesctl(t, scaffold, nil, "", "manifests", "init", "--dir", ".", "--image", image, "--git-url", gs.RepoURL("gitops.git")))
	seed := gitserver.SeedBareRepo(t, gs.RepoPath("gitops.git"), "main", scaffold)

	site := newSite(t)
	args := []string{"release", "--image", image, "--base", "scratch", "--gitops", gs.RepoURL("gitops.git")}
	r := notesctl(t, site, nil, "", append(args, "--dry-run")...)
	mustSucceed(t, r)
	m := regexp.MustCompile(`would push (\S+) to`).FindStringSubmatch(r.stdout)
	if m == nil || !strings.Contains(r.stdout, "+      - image: "+m[1]) {
		t.Fatalf("dry run does not show the image and the diff:\n%s", r.stdout)
	}
	if reg.Uploads.Bytes() != 0 {
		t.Errorf("dry run uploaded %d bytes", reg.Uploads.Bytes())
	}
	if tip := gitOut(t, gs.RepoPath("gitops.git"), "rev-parse", "main"); tip != seed {
		t.Errorf("dry run moved the GitOps branch")
	}

	// The real run pushes exactly the digest the dry run announced.
	r = notesctl(t, site, nil, "", args...)
	mustSucceed(t, r)
	if got := imageLine.FindStringSubmatch(r.stdout)[1]; got != m[1] {
		t.Errorf("real release pushed %s, dry run announced %s", got, m[1])
	}
}

// TestInterruptLeavesNothingHalfDone: Ctrl-C (SIGINT) during the push ends
// the release with exit 130; the GitOps branch has not moved, and a later
// run completes.
func TestInterruptLeavesNothingHalfDone(t *testing.T) {
	reg := regserver.InProcess(t, regserver.InProcessOptions{})
	proxy := regserver.NewFaultProxy(t, reg.URL)
	proxyHost := proxy.Host
	// Hold every blob upload so the process is mid-push when interrupted.
	proxy.Inject(t, regserver.Fault{Path: `/blobs/uploads/`, Kind: regserver.FaultStall, Stall: 30 * time.Second, Times: 100})

	gitops := filepath.Join(t.TempDir(), "gitops")
	site := newSite(t)
	args := []string{"release", "--image", proxyHost + "/acme/notes", "--base", "scratch", "--gitops", gitops, "--init"}
	cmd := exec.Command(notesctlBin, args...)
	cmd.Dir = site
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	stderr, _ := cmd.StderrPipe()
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var log strings.Builder
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "✓ image") {
			break
		}
	}
	// Give the push a moment to reach the stalled upload, then Ctrl-C.
	deadline := time.Now().Add(10 * time.Second)
	for len(proxy.Matching("", `/blobs/uploads/`)) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGINT)
	go func() {
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
		}
	}()
	err := cmd.Wait()
	t.Logf("stderr:\n%s", log.String())
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 130 {
		t.Fatalf("interrupted release: %v, want exit 130", err)
	}
	if _, err := os.Stat(filepath.Join(gitops, ".git")); err == nil {
		if n := gitOut(t, gitops, "rev-list", "--count", "HEAD"); n != "1" {
			t.Errorf("interrupted release committed: %s commits", n)
		}
	}

	// Without the stall the next run completes.
	proxy.Clear()
	r := notesctl(t, site, nil, "", args...)
	mustSucceed(t, r)
	assertImageLineCommit(t, gitops, imageLine.FindStringSubmatch(r.stdout)[1])
}
