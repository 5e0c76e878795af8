package gitops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-git/go-billy/v5/memfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/notesctl/notesctl/manifests"
)

// commit runs the attempts; pre, when set, is a clone of head the first
// attempt uses instead of cloning.
func (s *session) commit(ctx context.Context, edit Edit, pre *git.Repository, preHead CommitInfo) (*CommitResult, error) {
	if edit == nil {
		return nil, errors.New("gitops commit: no edit function")
	}
	if s.local != nil && s.local.direct {
		return s.commitDirect(ctx, edit)
	}
	if s.local != nil && s.local.inPlace {
		return s.commitInPlace(ctx, edit)
	}
	if s.local != nil && s.local.viaGit != "" {
		s.logf("pushing to %s through git receive-pack: %s", s.display, s.local.viaGit)
	}
	for attempt := 1; ; attempt++ {
		res, retry, err := s.attempt(ctx, edit, pre, preHead)
		pre = nil
		if err == nil {
			res.Attempts = attempt
			return res, nil
		}
		if !retry {
			return nil, err
		}
		var lost *connectionError
		dropped := errors.As(err, &lost)
		if attempt >= s.opts.MaxAttempts {
			if dropped {
				return nil, fmt.Errorf("gitops commit to %s (branch %s): the connection failed %d times: %v",
					s.display, s.opts.Branch, attempt, err)
			}
			return nil, fmt.Errorf("%w: pushing to %s (branch %s) failed %d times because other writers moved or held the branch: %v",
				ErrConcurrentUpdates, s.display, s.opts.Branch, attempt, err)
		}
		delay := s.backoff(attempt)
		if dropped {
			s.logf("%v; trying again in %s (attempt %d/%d)", err, delay.Round(time.Millisecond), attempt+1, s.opts.MaxAttempts)
		} else {
			s.logf("push to %s lost a race (%v); retrying on the new tip in %s (attempt %d/%d)",
				s.display, err, delay.Round(time.Millisecond), attempt+1, s.opts.MaxAttempts)
		}
		if err := sleepCtx(ctx, delay); err != nil {
			return nil, fmt.Errorf("gitops commit to %s: %w", s.display, err)
		}
	}
}

// connectionError is a clone or push that failed because the connection
// dropped or timed out, not because the server answered no. Commit tries
// again (on a fresh clone) within MaxAttempts.
type connectionError struct{ msg string }

func (e *connectionError) Error() string { return e.msg }

// droppedConnection reports whether err is a connection that was reset,
// closed early or timed out. go-git's plumbing.UnexpectedError does not
// unwrap, so the text is checked as well.
func droppedConnection(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"connection reset by peer", "broken pipe", "connection refused", "unexpected EOF",
		"i/o timeout", "server closed idle connection", ": EOF"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// attempt is one clone-edit-commit-push round. retry reports that the push
// lost a race against another writer.
func (s *session) attempt(ctx context.Context, edit Edit, pre *git.Repository, preHead CommitInfo) (res *CommitResult, retry bool, err error) {
	repo, head := pre, preHead
	if repo == nil {
		repo, head, err = s.clone(ctx, false)
	}
	if err != nil {
		if ctx.Err() == nil && droppedConnection(err) {
			return nil, true, &connectionError{msg: err.Error()}
		}
		return nil, false, err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, false, err
	}
	msg, changed, err := edit(wt.Filesystem, head)
	if err != nil {
		return nil, false, s.editError(head, err)
	}
	res = &CommitResult{Branch: s.opts.Branch, Hash: head.Hash}
	if !changed {
		s.logf("%s (branch %s) is up to date; nothing to commit", s.display, s.opts.Branch)
		return res, false, nil
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		return nil, false, fmt.Errorf("stage changes: %w", err)
	}
	status, err := wt.Status()
	if err != nil {
		return nil, false, fmt.Errorf("stage changes: %w", err)
	}
	for path, st := range status {
		if st.Staging != git.Unmodified && st.Staging != git.Untracked {
			res.Files = append(res.Files, path)
		}
	}
	sort.Strings(res.Files)
	if len(res.Files) == 0 {
		s.logf("edit reported changes but the tree of %s is unchanged; nothing to commit", s.display)
		return res, false, nil
	}
	if strings.TrimSpace(msg) == "" {
		return nil, false, errors.New("gitops commit: edit returned an empty commit message")
	}
	hash, err := wt.Commit(msg, &git.CommitOptions{Author: s.signature(), Committer: s.signature(), SignKey: s.signKey})
	if err != nil {
		return nil, false, fmt.Errorf("commit: %w", err)
	}
	var progress bytes.Buffer
	ref := s.branchRef()
	err = repo.PushContext(ctx, &git.PushOptions{
		RemoteName: git.DefaultRemoteName,
		// No '+': a push that is not a fast-forward must fail.
		RefSpecs: []config.RefSpec{config.RefSpec(ref + ":" + ref)},
		Auth:     s.auth,
		CABundle: s.opts.CABundle,
		Progress: &syncBuffer{b: &progress},
	})
	if err == nil {
		res.Hash, res.Changed = hash.String(), true
		s.logf("pushed %s to %s (branch %s)", hash.String()[:7], s.display, s.opts.Branch)
		return res, false, nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, false, fmt.Errorf("push to %s: %w", s.display, ctxErr)
	}
	if e := s.classify(err); e != nil {
		return nil, false, e
	}
	// Find out whether the branch moved under us: then it was a race and the
	// edit is re-applied; if it did not, the remote refused the commit.
	tip, lerr := s.remoteTip(ctx)
	switch {
	case lerr != nil && droppedConnection(lerr):
		// Both connections dropped: try again on a fresh clone, which also
		// sees our commit if the push went through after all.
		return nil, true, &connectionError{msg: fmt.Sprintf("push to %s failed: %s (and checking the branch afterwards failed: %s)",
			s.display, s.redact(err), s.redact(lerr))}
	case lerr != nil:
		return nil, false, fmt.Errorf("push to %s failed: %s (and checking the branch afterwards failed: %v)",
			s.display, s.redact(err), s.redact(lerr))
	case tip == hash:
		// Our commit is there: the push went through but its report was lost.
		s.logf("the connection to %s dropped after the push (%s), but the branch holds %s: pushed",
			s.display, s.redact(err), hash.String()[:7])
		res.Hash, res.Changed = hash.String(), true
		return res, false, nil
	case tip.String() != head.Hash && !(tip.IsZero() && head.Hash == ""):
		// go-git reports a moved branch in its own words ("object not
		// found": the new tip is not in our clone); say what happened.
		return nil, true, fmt.Errorf("the branch moved to %s (%s)", shortHash(tip), s.redact(err))
	case strings.Contains(progress.String(), "cannot lock ref"):
		// Another writer holds the branch's ref lock: it is moving it now.
		return nil, true, errors.New(s.redact(err) + remoteMessage(progress.String(), s.secrets))
	case droppedConnection(err):
		// The branch did not move: the push never reached the server.
		return nil, true, &connectionError{msg: fmt.Sprintf("push to %s failed before the branch was updated: %s", s.display, s.redact(err))}
	}
	remote := remoteMessage(progress.String(), s.secrets)
	if protectedBranch(err.Error() + remote) {
		return nil, false, fmt.Errorf("%w by %s (branch %s): %w: %s%s", ErrPushRejected, s.display, s.opts.Branch,
			ErrBranchProtected, s.redact(err), remote)
	}
	return nil, false, fmt.Errorf("%w by %s (branch %s): %s%s", ErrPushRejected, s.display, s.opts.Branch,
		s.redact(err), remote)
}

// protectedBranch reports whether a rejected push's messages say the
// branch is protected, in the words of the forges: Gitea and Forgejo ("Not
// allowed to push to protected branch"), GitHub ("GH006: Protected branch
// update failed"), GitLab ("not allowed to push code to protected
// branches").
func protectedBranch(msg string) bool {
	return strings.Contains(strings.ToLower(msg), "protected branch")
}

// clone fetches the branch tip into memory. For an empty repository (or a
// missing branch, when allowMissing) it returns a new repository whose HEAD
// is the unborn branch; with allowMissing it returns a nil repository instead.
func (s *session) clone(ctx context.Context, readOnly bool) (*git.Repository, CommitInfo, error) {
	return s.cloneDepth(ctx, readOnly, 1)
}

// cloneDepth clones the branch with depth commits of history (0: all).
func (s *session) cloneDepth(ctx context.Context, readOnly bool, depth int) (*git.Repository, CommitInfo, error) {
	s.logf("cloning %s (branch %s)", s.display, s.opts.Branch)
	opts := &git.CloneOptions{
		URL:           s.url,
		Auth:          s.auth,
		ReferenceName: s.branchRef(),
		SingleBranch:  true,
		Depth:         depth,
		Tags:          git.NoTags,
		CABundle:      s.opts.CABundle,
	}
	repo, err := git.CloneContext(ctx, memory.NewStorage(), memfs.New(), opts)
	if err != nil && strings.Contains(err.Error(), "shallow") {
		// Servers without shallow support: fetch the whole branch.
		opts.Depth = 0
		repo, err = git.CloneContext(ctx, memory.NewStorage(), memfs.New(), opts)
	}
	if err == nil {
		info, err := headInfo(repo)
		if err != nil {
			return nil, CommitInfo{}, fmt.Errorf("read branch %s of %s: %w", s.opts.Branch, s.display, err)
		}
		return repo, info, nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, CommitInfo{}, fmt.Errorf("clone %s: %w", s.display, ctxErr)
	}
	if e := s.classify(err); e != nil {
		return nil, CommitInfo{}, e
	}
	empty := errors.Is(err, transport.ErrEmptyRemoteRepository)
	if !empty {
		// Tell a missing branch from other failures.
		refs, lerr := s.list(ctx)
		if lerr != nil {
			return nil, CommitInfo{}, fmt.Errorf("clone %s (branch %s): %s", s.display, s.opts.Branch, s.redact(err))
		}
		branches := 0
		for _, r := range refs {
			if r.Name() == s.branchRef() {
				// It exists after all: report the clone failure.
				return nil, CommitInfo{}, fmt.Errorf("clone %s (branch %s): %s", s.display, s.opts.Branch, s.redact(err))
			}
			if r.Name().IsBranch() {
				branches++
			}
		}
		if branches > 0 && !readOnly {
			return nil, CommitInfo{}, fmt.Errorf("%w: %s has no branch %q (it has %d other branches); create it first",
				ErrBranchNotFound, s.display, s.opts.Branch, branches)
		}
	}
	if readOnly {
		return nil, CommitInfo{}, nil
	}
	s.logf("%s has no branch %s yet; the first push creates it", s.display, s.opts.Branch)
	repo, err = git.Init(memory.NewStorage(), memfs.New())
	if err != nil {
		return nil, CommitInfo{}, err
	}
	if err := repo.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, s.branchRef())); err != nil {
		return nil, CommitInfo{}, err
	}
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: git.DefaultRemoteName, URLs: []string{s.url}}); err != nil {
		return nil, CommitInfo{}, err
	}
	return repo, CommitInfo{}, nil
}

func (s *session) list(ctx context.Context) ([]*plumbing.Reference, error) {
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: git.DefaultRemoteName, URLs: []string{s.url}})
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: s.auth, CABundle: s.opts.CABundle})
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return nil, nil
	}
	return refs, err
}

// remoteTip is the branch's commit on the remote; zero when it is missing.
func (s *session) remoteTip(ctx context.Context) (plumbing.Hash, error) {
	refs, err := s.list(ctx)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	for _, r := range refs {
		if r.Name() == s.branchRef() {
			return r.Hash(), nil
		}
	}
	return plumbing.ZeroHash, nil
}

// classify turns authentication and host key failures into clear errors;
// it returns nil for everything else.
func (s *session) classify(err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired),
		errors.Is(err, transport.ErrAuthorizationFailed),
		strings.Contains(msg, "unable to authenticate"):
		hint := ""
		if s.auth == nil {
			hint = " (no credentials were given)"
		}
		return fmt.Errorf("%w for %s%s: %s", ErrAuthentication, s.display, hint, s.redact(err))
	case strings.Contains(msg, "knownhosts: key mismatch"):
		return fmt.Errorf("%w for %s: the server's host key does not match %s (possible man-in-the-middle, or the key changed)",
			ErrHostKey, s.display, s.opts.KnownHostsFile)
	case strings.Contains(msg, "no common algorithm for host key") && !s.opts.InsecureSkipHostKeyCheck:
		// We offer only the key types known_hosts lists for the host, so
		// a server without such a key does not match either.
		return fmt.Errorf("%w for %s: the server's host key does not match %s (it offers none of the key types listed there)",
			ErrHostKey, s.display, s.opts.KnownHostsFile)
	case strings.Contains(msg, "knownhosts: key is unknown"):
		return fmt.Errorf("%w for %s: the host is not in %s (add it with ssh-keyscan)",
			ErrHostKey, s.display, s.opts.KnownHostsFile)
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return fmt.Errorf("repository %s not found: %s", s.display, s.redact(err))
	}
	return nil
}

// editError puts the repository and commit the edit ran on around its error.
func (s *session) editError(head CommitInfo, err error) error {
	at := "empty branch"
	if head.Hash != "" {
		at = head.Hash[:7]
	}
	return fmt.Errorf("edit %s (branch %s at %s): %w", s.display, s.opts.Branch, at, err)
}

func (s *session) redact(err error) string {
	return manifests.RedactText(err.Error(), s.secrets...)
}

// remoteMessage formats what the remote printed on its progress channel
// (hook output, protection messages) for an error.
func remoteMessage(progress string, secrets []string) string {
	var lines []string
	for _, l := range strings.FieldsFunc(progress, func(r rune) bool { return r == '\n' || r == '\r' }) {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "Counting objects") || strings.HasPrefix(l, "Compressing objects") ||
			strings.HasPrefix(l, "Writing objects") || strings.HasPrefix(l, "Total ") || strings.HasPrefix(l, "Resolving deltas") {
			continue
		}
		lines = append(lines, "\nremote: "+manifests.RedactText(l, secrets...))
	}
	return strings.Join(lines, "")
}

// syncBuffer guards a buffer written by go-git's sideband demuxer.
type syncBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func headInfo(repo *git.Repository) (CommitInfo, error) {
	head, err := repo.Head()
	if err != nil {
		return CommitInfo{}, err
	}
	c, err := repo.CommitObject(head.Hash())
	if err != nil {
		return CommitInfo{}, err
	}
	return commitInfo(c), nil
}

func commitInfo(c *object.Commit) CommitInfo {
	return CommitInfo{
		Hash:    c.Hash.String(),
		Time:    c.Committer.When,
		Author:  fmt.Sprintf("%s <%s>", c.Author.Name, c.Author.Email),
		Message: c.Message,
	}
}

// shortHash is the 7-digit form of h that git prints; the zero hash is a
// branch that was deleted.
func shortHash(h plumbing.Hash) string {
	if h.IsZero() {
		return "nothing (deleted)"
	}
	return h.String()[:7]
}
