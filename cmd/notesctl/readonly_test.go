package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/internal/repohash"
)

// deadPid is the pid of a process that has exited.
func deadPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// TestReadOnlyCommandsWriteNothing: status and the dry runs read a local
// GitOps repository that a killed release left with a stale index.lock and
// a commit journal. They must report what the branch holds and change not
// one byte (nor mtime) of the repository: finishing the interrupted commit
// is the next writing run's job.
func TestReadOnlyCommandsWriteNothing(t *testing.T) {
	t.Parallel()
	site := newSite(t)
	mustSucceed(t, notesctl(t, site, nil, "", "release", "--local"))
	gitops := filepath.Join(site, localGitOps)
	const path = "apps/notes/deployment.yaml"
	head := gitOut(t, gitops, "rev-parse", "HEAD")
	parent := gitOut(t, gitops, "rev-parse", "HEAD^")
	// The state of a release killed after it moved the branch: the
	// worktree and index still hold the old file, the journal is there,
	// and so is the lock of the dead run.
	old := gitOut(t, gitops, "show", parent+":"+path)
	if err := os.WriteFile(filepath.Join(gitops, path), []byte(old+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitserver.Git(t, gitops, "update-index", path)
	journal := fmt.Sprintf(`{"old":%q,"new":%q,"paths":[%q]}`, parent, head, path)
	if err := os.WriteFile(filepath.Join(gitops, ".git", "NOTESCTL_COMMIT"), []byte(journal), 0o644); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	lock := fmt.Sprintf("notesctl pid=%d host=%s started=%s\n", deadPid(t), host, time.Now().UTC().Format(time.RFC3339))
	if err := os.WriteFile(filepath.Join(gitops, ".git", "index.lock"), []byte(lock), 0o644); err != nil {
		t.Fatal(err)
	}
	// A new site commit, so that the dry run goes as far as the edit.
	editPage(t, site, 1)

	before := repohash.Tree(t, gitops)
	for _, args := range [][]string{
		{"status", "--local"},
		{"status", "--local", "-o", "json"},
		{"release", "--local", "--dry-run"},
		{"update", "--gitops", gitops, "--image", "notes.local/notes:main-0000000-1746598316-hugo0.145.0", "--dry-run"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := notesctl(t, site, nil, "", args...)
			mustSucceed(t, r)
			if args[0] == "status" && !strings.Contains(r.stdout, head[:7]) {
				t.Errorf("status does not name the branch tip %s", head[:7])
			}
			if strings.Contains(r.stderr, "finishing commit") || strings.Contains(r.stderr, "removed the stale lock") {
				t.Errorf("a read-only command repaired the repository")
			}
			if after := repohash.Tree(t, gitops); after != before {
				t.Fatalf("notesctl %s changed the GitOps repository", strings.Join(args, " "))
			}
		})
	}

	// The next writing run still finds the state and finishes it.
	r := notesctl(t, site, nil, "", "release", "--local")
	mustSucceed(t, r)
	if !strings.Contains(r.stderr, "finishing commit "+head[:7]) {
		t.Errorf("the release after the read-only runs did not finish the interrupted commit")
	}
	if st := gitOut(t, gitops, "status", "--porcelain"); st != "" {
		t.Errorf("the GitOps worktree is not clean:\n%s", st)
	}
}
