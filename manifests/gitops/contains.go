package gitops

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// Contains reports whether commit (a full sha) on the GitOps branch is base
// or descends from it, reading the branch's history (a full clone of a
// remote; a local repository is read in place). A commit the branch does not
// hold is not a descendant: false, no error. `--wait` uses it to accept a
// revision Flux applied after the release commit (Flux's own image update,
// a concurrent release).
func Contains(ctx context.Context, opts Options, commit, base string) (bool, error) {
	commit, base = strings.ToLower(commit), strings.ToLower(base)
	if commit == base {
		return true, nil
	}
	s, err := newSession(opts)
	if err != nil {
		return false, err
	}
	var repo *git.Repository
	if s.local != nil {
		if repo, err = git.PlainOpen(s.local.path); err != nil {
			return false, fmt.Errorf("open %s: %w", s.display, err)
		}
	} else if repo, _, err = s.cloneDepth(ctx, true, 0); err != nil {
		return false, err
	} else if repo == nil {
		return false, nil
	}
	tip, err := repo.Reference(s.branchRef(), true)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: branch %s: %w", s.display, s.opts.Branch, err)
	}
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: commit %s: %w", s.display, commit, err)
	}
	b, err := repo.CommitObject(plumbing.NewHash(base))
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: commit %s: %w", s.display, base, err)
	}
	// Only commits of the branch count: a descendant on another branch was
	// never applied from this one.
	onBranch, err := isAncestorOrSelf(repo, c.Hash, tip.Hash())
	if err != nil || !onBranch {
		return false, err
	}
	return b.IsAncestor(c)
}

func isAncestorOrSelf(repo *git.Repository, a, b plumbing.Hash) (bool, error) {
	if a == b {
		return true, nil
	}
	ca, err := repo.CommitObject(a)
	if err != nil {
		return false, err
	}
	cb, err := repo.CommitObject(b)
	if err != nil {
		return false, err
	}
	return ca.IsAncestor(cb)
}
