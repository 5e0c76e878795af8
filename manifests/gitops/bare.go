package gitops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	formatcfg "github.com/go-git/go-git/v5/plumbing/format/config"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// A bare repository on this machine is written in place: the new objects go
// into its object store and the branch moves under git's ref lock, as
// `git receive-pack` would do it, without cloning it through
// `git upload-pack` and pushing through `git receive-pack` (four git
// processes, most of the GitOps stage of a local release).
//
// That is only the same as a push when a push would run no code of the
// repository's own, so a repository with receive hooks, a hooks path set in
// any git config, a shared-repository permission setting (which git
// applies to the files it writes) or reflogs turned on is pushed to through
// git as before. Unlike receive-pack, an in-place commit does not run
// `git maintenance run --auto` afterwards: a repository written only this
// way keeps its new objects loose (a handful per release) until `git gc`.

// A run killed between creating the branch's ref lock and renaming it
// would leave refs/heads/<branch>.lock behind, and git (like notesctl)
// refuses to move the branch while it exists. git writes no owner into its
// locks, so notesctl holds a lock of its own around the ref update,
// refGuardFile, owner-stamped like index.lock (see lockOwnerLine) and naming
// the ref and the commit the update writes ("ref=refs/heads/main new=<sha>";
// the ref lock itself never exists without that commit in it, see
// moveBranch). A later run that finds the guard of a notesctl that is no
// longer running, and that ref's lock holding exactly that commit, knows the
// lock is that run's and removes it before it removes the guard, whatever
// branch it commits to itself. A ref lock with anything else in it is
// another writer's and is waited for.
const refGuardFile = "notesctl-ref.lock"

// receiveHooks are the hooks `git receive-pack` runs (githooks(5)).
var receiveHooks = []string{"pre-receive", "update", "proc-receive", "post-receive", "post-update", "reference-transaction", "push-to-checkout"}

// pushThroughGit says why a push to branch of the bare repository at
// gitDir must go through git receive-pack ("" when it can be written in
// place). Where it cannot be sure what git would do, it says git.
func pushThroughGit(gitDir, branch string) string {
	if os.Getenv("GIT_CONFIG_PARAMETERS") != "" || os.Getenv("GIT_CONFIG_COUNT") != "" {
		return "git configuration is given in the environment"
	}
	for _, file := range gitConfigFiles(gitDir) {
		cfg, err := readGitConfig(file)
		if err != nil {
			return fmt.Sprintf("%s cannot be read (%v)", file, err)
		}
		if cfg == nil {
			continue
		}
		if cfg.HasSection("include") || cfg.HasSection("includeIf") {
			return file + " includes other files"
		}
		core := cfg.Section("core")
		if v := core.Options.Get("hooksPath"); v != "" {
			return "core.hooksPath is set (" + v + ")"
		}
		if v := core.Options.Get("sharedRepository"); v != "" && v != "false" && v != "umask" && v != "0" {
			return "core.sharedRepository is set (" + v + ")"
		}
		// Reflogs are git's to write.
		if v := core.Options.Get("logAllRefUpdates"); v != "" && v != "false" {
			return "core.logAllRefUpdates is set (" + v + ")"
		}
	}
	// git appends to a branch's reflog that exists, whatever the config.
	if _, err := os.Stat(filepath.Join(gitDir, "logs", "refs", "heads", filepath.FromSlash(branch))); err == nil {
		return "branch " + branch + " has a reflog"
	}
	for _, h := range receiveHooks {
		fi, err := os.Stat(filepath.Join(gitDir, "hooks", h))
		if err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return "it has a " + h + " hook"
		}
	}
	return ""
}

// gitConfigFiles lists the config files git reads for the repository at
// gitDir (git-config(1), FILES): system, global (both the XDG and the home
// file), local.
func gitConfigFiles(gitDir string) []string {
	var files []string
	if v := os.Getenv("GIT_CONFIG_NOSYSTEM"); v == "" || v == "0" || strings.EqualFold(v, "false") {
		if f := os.Getenv("GIT_CONFIG_SYSTEM"); f != "" {
			files = append(files, f)
		} else {
			files = append(files, "/etc/gitconfig")
		}
	}
	if f, ok := os.LookupEnv("GIT_CONFIG_GLOBAL"); ok {
		if f != "" {
			files = append(files, f)
		}
	} else {
		xdg := os.Getenv("XDG_CONFIG_HOME")
		home, _ := os.UserHomeDir()
		if xdg == "" && home != "" {
			xdg = filepath.Join(home, ".config")
		}
		if xdg != "" {
			files = append(files, filepath.Join(xdg, "git", "config"))
		}
		if home != "" {
			files = append(files, filepath.Join(home, ".gitconfig"))
		}
	}
	return append(files, filepath.Join(gitDir, "config"))
}

// readGitConfig parses a git config file; a missing file is nil.
func readGitConfig(file string) (*formatcfg.Config, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cfg := formatcfg.New()
	if err := formatcfg.NewDecoder(bytes.NewReader(b)).Decode(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// commitInPlace commits to a bare repository on this machine (see the top
// of this file). Like a push, it never moves the branch anywhere but
// forward from the tip it edited: when another writer moved it first, the
// edit is applied again on the new tip, at most MaxAttempts times.
func (s *session) commitInPlace(ctx context.Context, edit Edit) (*CommitResult, error) {
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("gitops commit to %s: %w", s.display, err)
		}
		// Opened afresh each attempt: go-git reads the list of packs once,
		// and the writer that moved the branch may have added a pack (a
		// large push, a git gc).
		repo, st, err := s.openLocal()
		if err != nil {
			return nil, err
		}
		res, retry, err := s.commitInPlaceOnce(ctx, repo, st.Filesystem().Root(), edit)
		if err == nil {
			res.Attempts = attempt
			return res, nil
		}
		if !retry {
			return nil, err
		}
		if attempt >= s.opts.MaxAttempts {
			return nil, fmt.Errorf("gitops commit to %s (branch %s) failed %d times: %w", s.display, s.opts.Branch, attempt, err)
		}
		delay := s.backoff(attempt)
		s.logf("%v; retrying on the new tip in %s (attempt %d/%d)", err, delay.Round(time.Millisecond), attempt+1, s.opts.MaxAttempts)
		if err := sleepCtx(ctx, delay); err != nil {
			return nil, fmt.Errorf("gitops commit to %s: %w", s.display, err)
		}
	}
}

// commitInPlaceOnce is one read-edit-write round of commitInPlace. A crash
// anywhere in it leaves the branch either where it was or at the new
// commit: everything before the ref rename only adds unreferenced objects,
// which git gc prunes.
//
// retry reports a branch that another writer moved or holds (its ref lock):
// the edit is worth running again on the new tip. A guard held by a live
// notesctl is not: takeLock has waited for it already.
func (s *session) commitInPlaceOnce(ctx context.Context, repo *git.Repository, gitDir string, edit Edit) (res *CommitResult, retry bool, err error) {
	// Whatever this round turns out to do (a no-op, an error), a dead
	// run's guard goes first; see recoverDeadGuard.
	s.recoverDeadGuard(gitDir)
	if _, err := repo.Reference(s.branchRef(), true); errors.Is(err, plumbing.ErrReferenceNotFound) {
		// As over the wire: an empty repository gets the branch, one
		// with other branches is probably the wrong branch name.
		if n, err := countBranches(repo); err != nil {
			return nil, false, fmt.Errorf("list branches of %s: %w", s.display, err)
		} else if n > 0 {
			return nil, false, fmt.Errorf("%w: %s has no branch %q (it has %d other branches); create it first",
				ErrBranchNotFound, s.display, s.opts.Branch, n)
		}
	}
	head, tree, changes, msg, err := s.editBranch(repo, edit)
	if err != nil {
		return nil, false, err
	}
	res = &CommitResult{Branch: s.opts.Branch, Hash: head.Hash}
	if len(changes) == 0 {
		return res, false, nil
	}
	hash, err := s.writeCommit(repo.Storer, head, tree, changes, msg)
	if err != nil {
		return nil, false, fmt.Errorf("commit in %s: %w", s.local.path, err)
	}
	guard := filepath.Join(gitDir, refGuardFile)
	release, err := s.takeLock(ctx, guard, "ref="+s.branchRef().String()+" new="+hash.String(),
		func(held string) { s.removeAbandonedRefLock(gitDir, held) })
	if err != nil {
		return nil, false, err
	}
	defer release()
	if err := s.moveBranch(repo, gitDir, head.Hash, hash); err != nil {
		return nil, errors.Is(err, ErrConcurrentUpdates), err
	}
	for _, c := range changes {
		res.Files = append(res.Files, c.path)
	}
	res.Hash, res.Changed = hash.String(), true
	s.logf("committed %s to %s (branch %s)", hash.String()[:7], s.local.path, s.opts.Branch)
	return res, false, nil
}

func countBranches(repo *git.Repository) (int, error) {
	iter, err := repo.Branches()
	if err != nil {
		return 0, err
	}
	n := 0
	err = iter.ForEach(func(*plumbing.Reference) error { n++; return nil })
	return n, err
}

// recoverDeadGuard removes the ref guard of a notesctl run on this host
// that is no longer running, and the ref lock it names if that lock holds
// the dead run's commit (as takeLock does when it finds the guard). A run
// killed after its ref update landed but before it removed its guard leaves
// a guard behind; the next run usually has nothing to commit (the commit is
// there already) and so never takes the guard itself, which left it for
// ever. Every in-place round calls this first, whatever it goes on to do.
func (s *session) recoverDeadGuard(gitDir string) {
	guard := filepath.Join(gitDir, refGuardFile)
	held, err := os.ReadFile(guard)
	if err != nil {
		return
	}
	host, _ := os.Hostname()
	if o, ours := parseLockOwner(held); ours && o.host == host && !processRunning(o.pid) {
		s.breakStaleLock(guard, held, o, func(h string) { s.removeAbandonedRefLock(gitDir, h) })
	}
}

// recoverDeadGuardOf is recoverDeadGuard for the repository Open reads in
// place: a release that finds its image deployed already (the dead run's
// commit landed) ends without a commit round, so Open recovers the guard.
// A read-only run writes nothing and leaves it.
func (s *session) recoverDeadGuardOf(repo *git.Repository) {
	if s.opts.ReadOnly {
		return
	}
	if st, ok := repo.Storer.(*filesystem.Storage); ok {
		s.recoverDeadGuard(st.Filesystem().Root())
	}
}

// guardedUpdate reads the ref and the commit a ref guard's owner line names.
func guardedUpdate(owner string) (ref, commit string) {
	for _, f := range strings.Fields(owner) {
		if v, ok := strings.CutPrefix(f, "ref="); ok {
			ref = v
		}
		if v, ok := strings.CutPrefix(f, "new="); ok {
			commit = v
		}
	}
	return ref, commit
}

// removeAbandonedRefLock removes the ref lock named by the guard of a
// notesctl that died (see refGuardFile) if it holds the commit that run
// was writing. It runs under the breaker of that guard, before the guard
// goes, so no other notesctl is between its ref lock and rename, and a run
// killed here leaves the guard for the next one; git never writes our
// commit into a lock.
func (s *session) removeAbandonedRefLock(gitDir, guard string) {
	ref, commit := guardedUpdate(guard)
	name := plumbing.ReferenceName(ref)
	if commit == "" || name.Validate() != nil || !strings.HasPrefix(ref, "refs/") {
		return
	}
	lock := filepath.Join(gitDir, filepath.FromSlash(ref)) + ".lock"
	b, err := os.ReadFile(lock)
	if err != nil || strings.TrimSpace(string(b)) != commit {
		return
	}
	if err := os.Remove(lock); err == nil {
		s.logf("removed %s, which a notesctl run that is no longer running left while moving %s to %s", lock, name.Short(), commit[:min(7, len(commit))])
	}
}
