package gitops

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
)

// PRBranch is the branch a pull-request mode commit goes to instead of the
// GitOps branch: notesctl/<policy namespace>/<policy name>/<site sha7>
// (a policy's ':' is not allowed in a ref name). One site commit's update
// always goes to the same branch, so a re-run finds it and its pull request.
func PRBranch(policy, siteCommit string) string {
	p := strings.NewReplacer(":", "/", " ", "-").Replace(policy)
	if len(siteCommit) > 7 {
		siteCommit = siteCommit[:7]
	}
	return "notesctl/" + p + "/" + siteCommit
}

// EnsureBranch makes sure the remote has branch head: when it is missing it
// is created at the tip of opts.Branch (the base) by a push that sends no
// objects. An existing head is left as it is: a re-run commits on top of
// it, so the pull request keeps its history and no push is ever forced. It
// reports whether it created the branch. Local repositories have no pull
// requests: they are an error.
func EnsureBranch(ctx context.Context, opts Options, head string) (bool, error) {
	if head == "" || head == opts.Branch {
		return false, fmt.Errorf("pull-request branch %q: want a branch other than %q", head, opts.Branch)
	}
	if err := plumbing.NewBranchReferenceName(head).Validate(); err != nil {
		return false, fmt.Errorf("pull-request branch %q: %w", head, err)
	}
	s, err := newSession(opts)
	if err != nil {
		return false, err
	}
	if s.local != nil {
		return false, errors.New("--gitops-pr needs a GitOps repository on a forge (https:// or ssh://), not a local path")
	}
	refs, err := s.list(ctx)
	if err != nil {
		if e := s.classify(err); e != nil {
			return false, e
		}
		return false, fmt.Errorf("list branches of %s: %s", s.display, s.redact(err))
	}
	headRef := plumbing.NewBranchReferenceName(head)
	var base plumbing.Hash
	for _, r := range refs {
		switch r.Name() {
		case headRef:
			s.logf("%s has branch %s already: committing on top of it", s.display, head)
			return false, nil
		case s.branchRef():
			base = r.Hash()
		}
	}
	if base.IsZero() {
		return false, fmt.Errorf("%w: %s has no branch %q to open a pull request against", ErrBranchNotFound, s.display, opts.Branch)
	}
	repo, _, err := s.clone(ctx, true)
	if err != nil {
		return false, err
	}
	err = repo.PushContext(ctx, &git.PushOptions{
		RemoteName: git.DefaultRemoteName,
		RefSpecs:   []config.RefSpec{config.RefSpec(s.branchRef() + ":" + headRef)},
		Auth:       s.auth,
		CABundle:   s.opts.CABundle,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		if e := s.classify(err); e != nil {
			return false, e
		}
		return false, fmt.Errorf("create branch %s on %s: %s", head, s.display, s.redact(err))
	}
	s.logf("created branch %s at %s on %s", head, base.String()[:7], s.display)
	return true, nil
}
