package gitops

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// finishInterrupted runs recoverDirect under the index lock when an
// earlier run left a commit journal behind.
func (s *session) finishInterrupted(ctx context.Context, repo *git.Repository) error {
	st, ok := repo.Storer.(*filesystem.Storage)
	if !ok {
		return nil
	}
	gitDir := st.Filesystem().Root()
	if _, err := os.Stat(filepath.Join(gitDir, journalFile)); err != nil {
		// Nothing to finish; a lock a dead run left after its commit had
		// landed is still ours to clear, so that a run that finds nothing
		// to do leaves the repository as an uninterrupted run would.
		s.clearStaleLock(gitDir)
		return nil
	}
	unlock, err := s.lockIndex(ctx, gitDir)
	if err != nil {
		return err
	}
	defer unlock()
	wt, err := repo.Worktree()
	if err != nil {
		return err
	}
	arepo, err := git.Open(atomicIndexStorage{st}, wt.Filesystem)
	if err != nil {
		return err
	}
	awt, err := arepo.Worktree()
	if err != nil {
		return err
	}
	return s.recoverDirect(arepo, awt, gitDir)
}

// journalFile, in the git directory, records a direct commit between the
// branch move and the worktree update (see commitDirect).
const journalFile = "NOTESCTL_COMMIT"

type commitJournal struct {
	Old   string   `json:"old"` // empty: the branch did not exist
	New   string   `json:"new"`
	Paths []string `json:"paths"`
}

func writeJournal(gitDir string, j commitJournal) error {
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(gitDir, journalFile), b)
}

// writeFileAtomic writes data to a temporary file next to name, syncs it
// and renames it over name.
func writeFileAtomic(name string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-")
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), name); err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	return nil
}

// recoverDirect finishes or discards a direct commit that an earlier run
// did not complete (it died between steps 4 and 7 of commitDirect). It
// runs under the index lock.
func (s *session) recoverDirect(repo *git.Repository, wt *git.Worktree, gitDir string) error {
	b, err := os.ReadFile(filepath.Join(gitDir, journalFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", filepath.Join(gitDir, journalFile), err)
	}
	var j commitJournal
	if err := json.Unmarshal(b, &j); err != nil || j.New == "" {
		return fmt.Errorf("%s is not a notesctl commit journal (%v); if no notesctl runs in %s, remove it: rm %s",
			filepath.Join(gitDir, journalFile), err, s.local.path, shellQuote(filepath.Join(gitDir, journalFile)))
	}
	// A ref lock holding our new commit is ours: it was never renamed.
	refFile := filepath.Join(gitDir, filepath.FromSlash(s.branchRef().String()))
	if lb, err := os.ReadFile(refFile + ".lock"); err == nil && strings.TrimSpace(string(lb)) == j.New {
		if err := os.Remove(refFile + ".lock"); err != nil {
			return err
		}
	}
	cur, err := repo.Storer.Reference(s.branchRef())
	tip := ""
	switch {
	case err == nil:
		tip = cur.Hash().String()
	case !errors.Is(err, plumbing.ErrReferenceNotFound):
		return fmt.Errorf("read branch %s of %s: %w", s.opts.Branch, s.local.path, err)
	}
	switch tip {
	case j.New:
		s.logf("finishing commit %s in %s, which an earlier run was interrupted in: updating %s", j.New[:7], s.local.path, strings.Join(j.Paths, ", "))
		if err := s.checkoutPaths(repo, wt, cur.Hash(), j.Paths); err != nil {
			return fmt.Errorf("finish the interrupted commit %s in %s: %w", j.New[:7], s.local.path, err)
		}
	case j.Old:
		s.logf("discarding a commit an earlier run was interrupted in before it moved branch %s of %s", s.opts.Branch, s.local.path)
	default:
		s.logf("warning: an earlier run was interrupted in %s, and branch %s has moved since (to %s); leaving the worktree as it is",
			s.local.path, s.opts.Branch, tip)
	}
	for _, p := range j.Paths {
		removeTempSiblings(wt.Filesystem, p)
	}
	return os.Remove(filepath.Join(gitDir, journalFile))
}

// The index lock.
//
// git writes no owner into its lock files, so a lock left behind by a
// process that died cannot be told from one that is held. notesctl writes
// its own line into the index.lock it holds: "notesctl pid=N host=H
// started=T". The rule for a lock that exists:
//   - it holds a notesctl line of this host whose pid is not running: the
//     notesctl that took it died (kill -9, crash, reboot); it is stale and
//     removed, and the commit goes on (recoverDirect then finishes or
//     discards what that run left);
//   - anything else (a running notesctl, git's own lock, a lock from another
//     host sharing the directory): it is waited for, MaxAttempts times with
//     backoff; then the error names the holder, the lock's age and the exact
//     command to remove it if no such process is running.
// Removing a stale lock takes a second lock (index.lock.notesctl-break,
// created exclusively) and re-reads the lock under it, so two runs that
// find the same stale lock cannot remove a lock one of them has just taken.

// lockOwnerLine is the line notesctl writes into the locks it holds.
func lockOwnerLine() []byte {
	host, _ := os.Hostname()
	return []byte(fmt.Sprintf("notesctl pid=%d host=%s started=%s\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339)))
}

type lockOwner struct {
	pid     int
	host    string
	started time.Time
}

func parseLockOwner(b []byte) (lockOwner, bool) {
	var o lockOwner
	var started string
	line := strings.TrimSpace(string(b))
	if n, err := fmt.Sscanf(line, "notesctl pid=%d host=%s started=%s", &o.pid, &o.host, &started); err != nil || n != 3 || o.pid <= 0 {
		return o, false
	}
	o.started, _ = time.Parse(time.RFC3339, started)
	return o, true
}

// processRunning reports whether a process with pid exists on this host.
// Where that cannot be told (Signal(0) unsupported), it says yes.
func processRunning(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return !errors.Is(err, os.ErrProcessDone) && !errors.Is(err, syscall.ESRCH)
}

// lockIndex takes git's index.lock in gitDir, waiting with backoff while
// another process holds it and removing it when its notesctl owner died.
// The returned function releases it.
func (s *session) lockIndex(ctx context.Context, gitDir string) (func(), error) {
	return s.takeLock(ctx, filepath.Join(gitDir, "index.lock"), "", nil)
}

// takeLock takes the lock file at path by the rule above, with note (if
// any) added to the owner line. onStale, if set, is called with the
// content of a stale lock before it is removed, to undo what its dead
// owner left; the lock stays until onStale returns, so a run killed
// during onStale leaves the record for the next one.
func (s *session) takeLock(ctx context.Context, lock, note string, onStale func(held string)) (release func(), err error) {
	owner := lockOwnerLine()
	if note != "" {
		owner = append(bytes.TrimSuffix(owner, []byte("\n")), []byte(" "+note+"\n")...)
	}
	host, _ := os.Hostname()
	for attempt := 1; ; attempt++ {
		err := createLockFile(lock, filepath.Dir(lock), owner)
		if err == nil {
			return func() {
				// Remove only our own lock.
				if b, err := os.ReadFile(lock); err == nil && bytes.Equal(b, owner) {
					_ = os.Remove(lock)
				}
			}, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("lock %s: %w", s.local.path, err)
		}
		held, rerr := os.ReadFile(lock)
		if errors.Is(rerr, os.ErrNotExist) {
			continue // released meanwhile
		}
		o, ours := parseLockOwner(held)
		if ours && o.host == host && !processRunning(o.pid) && s.breakStaleLock(lock, held, o, onStale) {
			continue
		}
		if attempt >= s.opts.MaxAttempts {
			return nil, s.lockError(lock, held, o, ours, host)
		}
		if err := sleepCtx(ctx, s.backoff(attempt)); err != nil {
			return nil, fmt.Errorf("lock %s: %w", s.local.path, err)
		}
	}
}

// createLockFile creates lock holding content, atomically: the content is
// written to a private file in tmpDir and synced, then hard-linked to the
// lock name (which fails if the lock exists). A lock created empty and
// written after would, if the run were killed in between, be an empty lock
// no one could tell from git's own. Private files that a killed run left
// are removed once they are old.
func createLockFile(lock, tmpDir string, content []byte) error {
	prefix := filepath.Base(lock) + ".notesctl-"
	removeOldTemps(tmpDir, prefix)
	// A name of its own per call: two commits of one process (a library
	// user's goroutines) must not write each other's owner line.
	f, err := os.CreateTemp(tmpDir, prefix+"*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, werr := f.Write(content)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return err
	}
	return os.Link(tmp, lock)
}

// removeOldTemps removes createLockFile's private files in dir that are
// more than ten minutes old: a run that is alive holds one for
// microseconds.
func removeOldTemps(dir, prefix string) {
	matches, _ := filepath.Glob(filepath.Join(dir, prefix+"*.tmp"))
	for _, m := range matches {
		if fi, err := os.Lstat(m); err == nil && time.Since(fi.ModTime()) > 10*time.Minute {
			_ = os.Remove(m)
		}
	}
}

// clearStaleLock removes index.lock if a notesctl run on this host that
// is no longer running holds it (the rule lockIndex applies too).
func (s *session) clearStaleLock(gitDir string) {
	lock := filepath.Join(gitDir, "index.lock")
	held, err := os.ReadFile(lock)
	if err != nil {
		return
	}
	host, _ := os.Hostname()
	if o, ours := parseLockOwner(held); ours && o.host == host && !processRunning(o.pid) {
		s.breakStaleLock(lock, held, o, nil)
	}
}

// breakStaleLock removes the lock if it still holds exactly stale; see the
// comment above lockOwnerLine.
func (s *session) breakStaleLock(lock string, stale []byte, o lockOwner, onStale func(held string)) bool {
	breaker := lock + ".notesctl-break"
	f, err := os.OpenFile(breaker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		// Another run is removing it. A breaker is held for microseconds:
		// one older than a few seconds was left by a run that died.
		if fi, serr := os.Stat(breaker); serr == nil && time.Since(fi.ModTime()) > 10*time.Second {
			_ = os.Remove(breaker)
		}
		return false
	}
	f.Close()
	defer os.Remove(breaker)
	cur, err := os.ReadFile(lock)
	if err != nil || !bytes.Equal(cur, stale) {
		return false
	}
	if onStale != nil {
		onStale(string(stale))
	}
	if err := os.Remove(lock); err != nil {
		return false
	}
	s.logf("removed the stale lock %s: notesctl pid %d, which took it at %s, is no longer running",
		lock, o.pid, o.started.Local().Format(time.DateTime))
	return true
}

func (s *session) lockError(lock string, held []byte, o lockOwner, ours bool, host string) error {
	age := ""
	if fi, err := os.Stat(lock); err == nil {
		age = fmt.Sprintf(", %s old", time.Since(fi.ModTime()).Round(time.Second))
	}
	rm := "rm " + shellQuote(lock)
	switch {
	case ours && o.host == host:
		return fmt.Errorf("%w: %s is held by notesctl pid %d (since %s%s), which is still running; wait for it to finish (if that pid is not notesctl, remove the lock: %s)",
			ErrConcurrentUpdates, lock, o.pid, o.started.Local().Format(time.DateTime), age, rm)
	case ours:
		return fmt.Errorf("%w: %s is held by notesctl pid %d on host %s (since %s%s); if that run is over, remove the lock: %s",
			ErrConcurrentUpdates, lock, o.pid, o.host, o.started.Local().Format(time.DateTime), age, rm)
	}
	_ = held
	return fmt.Errorf("%w: another git process seems to be running in %s (%s exists%s); if none is, remove the lock: %s",
		ErrConcurrentUpdates, s.local.path, lock, age, rm)
}

// shellQuote quotes a path for a POSIX shell.
func shellQuote(p string) string {
	return "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
}
