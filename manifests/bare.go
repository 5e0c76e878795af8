package manifests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
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
// the commit the update writes. A later run that finds the guard of a
// notesctl that is no longer running, and a ref lock holding exactly that
// commit, knows the ref lock is that run's and removes it. A ref lock with
// anything else in it is another writer's and is waited for.
const refGuardFile = "notesctl-ref.lock"

// receiveHooks are the hooks `git receive-pack` runs (githooks(5)).
var receiveHooks = []string{"pre-receive", "update", "proc-receive", "post-receive", "post-update", "reference-transaction", "push-to-checkout"}

// pushThroughGit says why a push to the bare repository at gitDir must go
// through git receive-pack ("" when it can be written in place).
func pushThroughGit(repo *git.Repository, gitDir string) string {
	cfgs := []*config.Config{}
	if local, err := repo.Config(); err == nil {
		cfgs = append(cfgs, local)
	} else {
		return fmt.Sprintf("its config cannot be read (%v)", err)
	}
	for _, scope := range []config.Scope{config.GlobalScope, config.SystemScope} {
		if c, err := config.LoadConfig(scope); err == nil {
			cfgs = append(cfgs, c)
		}
	}
	for _, c := range cfgs {
		core := c.Raw.Section("core")
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
	for _, h := range receiveHooks {
		fi, err := os.Stat(filepath.Join(gitDir, "hooks", h))
		if err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return "it has a " + h + " hook"
		}
	}
	return ""
}

// commitInPlace commits to a bare repository on this machine (see the top
// of this file). Like a push, it never moves the branch anywhere but
// forward from the tip it edited: when another writer moved it first, the
// edit is applied again on the new tip, at most MaxAttempts times.
func (s *session) commitInPlace(ctx context.Context, edit Edit) (*CommitResult, error) {
	repo, st, err := s.openLocal()
	if err != nil {
		return nil, err
	}
	gitDir := st.Filesystem().Root()
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("gitops commit to %s: %w", s.display, err)
		}
		res, err := s.commitInPlaceOnce(ctx, repo, gitDir, edit)
		if err == nil {
			res.Attempts = attempt
			return res, nil
		}
		if !errors.Is(err, ErrConcurrentUpdates) {
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
func (s *session) commitInPlaceOnce(ctx context.Context, repo *git.Repository, gitDir string, edit Edit) (*CommitResult, error) {
	if _, err := repo.Reference(s.branchRef(), true); errors.Is(err, plumbing.ErrReferenceNotFound) {
		// As over the wire: an empty repository gets the branch, one
		// with other branches is probably the wrong branch name.
		if n, err := countBranches(repo); err != nil {
			return nil, fmt.Errorf("list branches of %s: %w", s.display, err)
		} else if n > 0 {
			return nil, fmt.Errorf("%w: %s has no branch %q (it has %d other branches); create it first",
				ErrBranchNotFound, s.display, s.opts.Branch, n)
		}
	}
	head, tree, changes, msg, err := s.editBranch(repo, edit)
	if err != nil {
		return nil, err
	}
	res := &CommitResult{Branch: s.opts.Branch, Hash: head.Hash}
	if len(changes) == 0 {
		return res, nil
	}
	hash, err := s.writeCommit(repo.Storer, head, tree, changes, msg)
	if err != nil {
		return nil, fmt.Errorf("commit in %s: %w", s.local.path, err)
	}
	release, broken, err := s.takeLock(ctx, filepath.Join(gitDir, refGuardFile), "new="+hash.String())
	if err != nil {
		return nil, err
	}
	defer release()
	if dead := guardedCommit(broken); dead != "" {
		s.removeAbandonedRefLock(gitDir, dead)
	}
	if err := s.moveBranch(repo, gitDir, head.Hash, hash); err != nil {
		return nil, err
	}
	for _, c := range changes {
		res.Files = append(res.Files, c.path)
	}
	res.Hash, res.Changed = hash.String(), true
	s.logf("committed %s to %s (branch %s)", hash.String()[:7], s.local.path, s.opts.Branch)
	return res, nil
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

// guardedCommit is the "new=" commit of a ref guard's owner line.
func guardedCommit(owner string) string {
	for _, f := range strings.Fields(owner) {
		if v, ok := strings.CutPrefix(f, "new="); ok {
			return v
		}
	}
	return ""
}

// removeAbandonedRefLock removes the branch's ref lock if it holds commit,
// the update a notesctl that died under its guard was making (see
// refGuardFile). It runs under our own guard, so no other notesctl is
// between its lock and rename; git never writes our commit into a lock.
func (s *session) removeAbandonedRefLock(gitDir, commit string) {
	lock := filepath.Join(gitDir, filepath.FromSlash(s.branchRef().String())) + ".lock"
	b, err := os.ReadFile(lock)
	if err != nil || strings.TrimSpace(string(b)) != commit {
		return
	}
	if err := os.Remove(lock); err == nil {
		s.logf("removed %s, which a notesctl run that is no longer running left while moving branch %s to %s", lock, s.opts.Branch, commit[:min(7, len(commit))])
	}
}
