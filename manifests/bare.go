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
// any git config, or a shared-repository permission setting (which git
// applies to the files it writes) is pushed to through git as before.

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
	repo, err := git.PlainOpen(s.local.path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", s.display, err)
	}
	st, ok := repo.Storer.(*filesystem.Storage)
	if !ok {
		return nil, fmt.Errorf("open %s: unexpected repository storage", s.local.path)
	}
	gitDir := st.Filesystem().Root()
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("gitops commit to %s: %w", s.display, err)
		}
		res, err := s.commitInPlaceOnce(repo, gitDir, edit)
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
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("gitops commit to %s: %w", s.display, ctx.Err())
		case <-t.C:
		}
	}
}

// commitInPlaceOnce is one read-edit-write round of commitInPlace. A crash
// anywhere in it leaves the branch either where it was or at the new
// commit: everything before the ref rename only adds unreferenced objects,
// which git gc prunes.
func (s *session) commitInPlaceOnce(repo *git.Repository, gitDir string, edit Edit) (*CommitResult, error) {
	fs, head, tree, err := snapshotBranch(repo, s.branchRef())
	if err != nil {
		return nil, fmt.Errorf("read branch %s of %s: %w", s.opts.Branch, s.display, err)
	}
	if head.Hash == "" {
		// As over the wire: an empty repository gets the branch, one
		// with other branches is probably the wrong branch name.
		if n, err := countBranches(repo); err != nil {
			return nil, fmt.Errorf("list branches of %s: %w", s.display, err)
		} else if n > 0 {
			return nil, fmt.Errorf("%w: %s has no branch %q (it has %d other branches); create it first",
				ErrBranchNotFound, s.display, s.opts.Branch, n)
		}
	}
	msg, changed, err := edit(fs, head)
	if err != nil {
		return nil, s.editError(head, err)
	}
	res := &CommitResult{Branch: s.opts.Branch, Hash: head.Hash}
	if !changed {
		s.logf("%s (branch %s) is up to date; nothing to commit", s.display, s.opts.Branch)
		return res, nil
	}
	changes, err := diffTree(fs, tree)
	if err != nil {
		return nil, err
	}
	if len(changes) == 0 {
		s.logf("edit reported changes but the tree of %s is unchanged; nothing to commit", s.display)
		return res, nil
	}
	if strings.TrimSpace(msg) == "" {
		return nil, errors.New("gitops commit: edit returned an empty commit message")
	}
	hash, err := s.writeCommit(repo.Storer, head, tree, changes, msg)
	if err != nil {
		return nil, fmt.Errorf("commit in %s: %w", s.local.path, err)
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
