// Package gitops writes to and reads from the GitOps repository with git:
// credentials (auth.go), clone, commit and push with retry (remote.go),
// commits in place in a repository on this machine (local.go, bare.go), the
// locks and the journal that make those safe against other writers and
// crashes (lock.go), and reading the branch history (history.go).
//
// It knows nothing of setters or scaffolds: what a commit changes is an
// Edit of the checked-out files.
package gitops

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/memfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/notesctl/notesctl/manifests"
)

// Errors returned by Commit and Checkout, for errors.Is. The error text
// always names the (redacted) repository URL.
var (
	// ErrAuthentication: the server refused the credentials.
	ErrAuthentication = errors.New("authentication failed")
	// ErrHostKey: the SSH host key is unknown or does not match known_hosts.
	ErrHostKey = errors.New("SSH host key verification failed")
	// ErrPushRejected: the remote refused the push for a reason other than
	// a concurrent update (e.g. a pre-receive hook or branch protection).
	ErrPushRejected = errors.New("push rejected")
	// ErrBranchProtected: the push was rejected because the forge protects
	// the branch from direct pushes (it wraps ErrPushRejected too). A pull
	// request is the way in.
	ErrBranchProtected = errors.New("the branch is protected")
	// ErrConcurrentUpdates: every attempt lost the race against other pushes.
	ErrConcurrentUpdates = errors.New("branch kept moving")
	// ErrDirtyWorktree: a local non-bare repository has uncommitted changes.
	ErrDirtyWorktree = errors.New("worktree has uncommitted changes")
	// ErrBranchNotFound: the branch is missing from a repository that has
	// other branches (an empty repository gets the branch created instead).
	ErrBranchNotFound = errors.New("branch not found")
	// ErrReadOnly: an edit changed files of a repository opened ReadOnly.
	ErrReadOnly = errors.New("opened read-only")
)

// Defaults for Options.
const (
	DefaultBranch         = "main"
	DefaultAuthorName     = "notesctl"
	DefaultAuthorEmail    = "notesctl@localhost"
	DefaultMaxAttempts    = 5
	DefaultRetryBaseDelay = 250 * time.Millisecond
	maxRetryDelay         = 8 * time.Second
	// tokenUsername is sent with a token given as Password without a
	// Username; GitHub, Gitea and GitLab accept any user name with a token.
	tokenUsername = "x-access-token"
)

// Options says where the GitOps repository is and how to commit to it.
type Options struct {
	// URL of the repository: https://, http://, ssh://, scp-like
	// git@host:path, git://, file:// or a local path. Credentials embedded
	// in an http(s) URL are used when Username/Password are empty.
	URL string
	// Branch to commit to; default "main". In an empty repository it is
	// created by the first push.
	Branch string

	// Username and Password (or token) for HTTP(S). Never logged.
	Username, Password string
	// CABundle is extra PEM roots for HTTPS servers with a private CA.
	CABundle []byte

	// SSHKeyFile is a private key for SSH; without it the SSH agent
	// (SSH_AUTH_SOCK) is used.
	SSHKeyFile, SSHKeyPassphrase string
	// KnownHostsFile checks the SSH host key; default ~/.ssh/known_hosts.
	KnownHostsFile string
	// InsecureSkipHostKeyCheck accepts any SSH host key (logged as a warning).
	InsecureSkipHostKeyCheck bool

	// AuthorName and AuthorEmail are the author and committer; defaults
	// "notesctl" <notesctl@localhost>.
	AuthorName, AuthorEmail string

	// SigningKey signs commits with OpenPGP; SigningKeyFile is the
	// armored private key to load instead, decrypted with
	// SigningKeyPassphrase when it is protected.
	SigningKey           *openpgp.Entity
	SigningKeyFile       string
	SigningKeyPassphrase string

	// MaxAttempts bounds how often a push rejected because the branch moved
	// is retried on the new tip; default 5.
	MaxAttempts int
	// RetryBaseDelay is the first backoff delay; it doubles per attempt
	// (capped at 8s) and is jittered. Default 250ms.
	RetryBaseDelay time.Duration

	// Logger receives progress and warnings; nil discards them.
	Logger func(format string, args ...any)

	// ReadOnly makes Open and Commit write nothing anywhere (Checkout always
	// is): a commit an interrupted run left half done in a local repository,
	// and the lock it left, stay for the next run that writes; Commit runs
	// the edit on the checkout and fails with ErrReadOnly if it changed
	// anything. For status and dry runs.
	ReadOnly bool
}

// CommitInfo describes the commit an edit was made on.
type CommitInfo struct {
	// Hash is empty for an empty repository or a branch that does not exist.
	Hash    string
	Time    time.Time // committer time
	Author  string    // "Name <email>"
	Message string
}

// Edit changes the checkout of the branch tip in fs (slash paths from the
// repository root) and says whether it changed anything and with what commit
// message. After a push lost a race, it is called again on a fresh checkout
// of the new tip, so it must derive its changes from fs, not from state kept
// between calls.
type Edit func(fs billy.Filesystem, head CommitInfo) (message string, changed bool, err error)

// CommitResult is the outcome of Commit.
type CommitResult struct {
	Hash     string // the new commit; the unchanged tip when Changed is false
	Changed  bool
	Attempts int
	Branch   string
	Files    []string // paths added, modified or deleted, sorted
}

// Commit checks out the branch tip, applies edit and, when it changed
// anything, commits and pushes. A push rejected because the branch moved is
// retried on the new tip with jittered exponential backoff, at most
// MaxAttempts times; it never force-pushes.
//
// A local non-bare repository whose checked-out branch is Branch is
// committed to directly (git refuses pushes to a checked-out branch); its
// worktree must be clean and is updated with the commit.
func Commit(ctx context.Context, opts Options, edit Edit) (*CommitResult, error) {
	if opts.ReadOnly {
		w, err := Open(ctx, opts)
		if err != nil {
			return nil, err
		}
		return w.Commit(ctx, edit)
	}
	s, err := newSession(opts)
	if err != nil {
		return nil, err
	}
	return s.commit(ctx, edit, nil, CommitInfo{})
}

// Workspace is a read-only checkout of the GitOps branch (Open) that a
// Commit can start from, saving the clone of its first attempt: a release
// reads the repository before it builds, then commits to it.
type Workspace struct {
	s    *session
	repo *git.Repository // the clone; nil for a local repository committed in place
	fs   billy.Filesystem
	head CommitInfo
	used bool
}

// Open checks out the branch tip, as Checkout does, and keeps the clone
// for Commit.
func Open(ctx context.Context, opts Options) (*Workspace, error) {
	s, err := newSession(opts)
	if err != nil {
		return nil, err
	}
	w := &Workspace{s: s}
	if s.local != nil {
		// A repository on this machine is read where it is, whichever way
		// a commit will reach it: a clone through git upload-pack would
		// read the same objects at the cost of two processes.
		repo, err := git.PlainOpen(s.local.path)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", s.display, err)
		}
		s.recoverDeadGuardOf(repo)
		// A commit an interrupted run left half done is finished first, so
		// that a run that finds nothing to do leaves the worktree right too.
		if s.local.direct && !s.opts.ReadOnly {
			if err := s.finishInterrupted(ctx, repo); err != nil {
				return nil, err
			}
		}
		if w.fs, w.head, _, err = snapshotBranch(repo, s.branchRef()); err != nil {
			return nil, fmt.Errorf("read branch %s of %s: %w", s.opts.Branch, s.display, err)
		}
		return w, nil
	}
	repo, info, err := s.clone(ctx, true)
	if err != nil {
		return nil, err
	}
	w.head = info
	if repo == nil {
		w.fs = memfs.New()
		return w, nil
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, err
	}
	w.repo, w.fs = repo, wt.Filesystem
	return w, nil
}

// FS is the checked-out tree; edits to it are discarded by Commit.
func (w *Workspace) FS() billy.Filesystem { return w.fs }

// Head is the commit that was checked out (Hash empty for an empty branch).
func (w *Workspace) Head() CommitInfo { return w.head }

// Commit commits like the package-level Commit, starting from this
// checkout when nothing was changed in it; a retry clones afresh.
func (w *Workspace) Commit(ctx context.Context, edit Edit) (*CommitResult, error) {
	if w.s.opts.ReadOnly {
		return w.s.editReadOnly(edit, w.fs, w.head)
	}
	var pre *git.Repository
	if w.repo != nil && !w.used {
		if wt, err := w.repo.Worktree(); err == nil {
			if st, err := wt.Status(); err == nil && st.IsClean() {
				pre = w.repo
			}
		}
	}
	w.used = true
	return w.s.commit(ctx, edit, pre, w.head)
}

// Checkout returns a read-only view of the branch tip, for status and
// idempotency checks; it writes nothing, as with Options.ReadOnly. For an empty repository or a missing branch it returns
// an empty filesystem and a CommitInfo with an empty Hash.
func Checkout(ctx context.Context, opts Options) (billy.Filesystem, CommitInfo, error) {
	opts.ReadOnly = true
	w, err := Open(ctx, opts)
	if err != nil {
		return nil, CommitInfo{}, err
	}
	return w.FS(), w.Head(), nil
}

// session is one Commit or Checkout with validated options.
type session struct {
	opts    Options
	url     string // handed to go-git; credentials removed
	display string // for messages: redacted
	auth    transport.AuthMethod
	local   *localRepo
	secrets []string
	signKey *openpgp.Entity
}

func newSession(opts Options) (*session, error) {
	if opts.URL == "" {
		return nil, errors.New("gitops: repository URL is empty")
	}
	if opts.Branch == "" {
		opts.Branch = DefaultBranch
	}
	if opts.AuthorName == "" {
		opts.AuthorName = DefaultAuthorName
	}
	if opts.AuthorEmail == "" {
		opts.AuthorEmail = DefaultAuthorEmail
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.RetryBaseDelay <= 0 {
		opts.RetryBaseDelay = DefaultRetryBaseDelay
	}
	s := &session{opts: opts, display: manifests.RedactURL(opts.URL)}
	if err := plumbing.NewBranchReferenceName(opts.Branch).Validate(); err != nil {
		return nil, fmt.Errorf("gitops: invalid branch name %q: %w", opts.Branch, err)
	}
	s.secrets = []string{opts.Password, opts.SSHKeyPassphrase, opts.SigningKeyPassphrase}

	ep, err := transport.NewEndpoint(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("gitops: invalid repository URL %s: %v", s.display, manifests.RedactText(err.Error(), s.secrets...))
	}
	s.secrets = append(s.secrets, ep.Password)
	switch ep.Protocol {
	case "http", "https":
		s.auth = s.httpAuth(ep)
		ep.User, ep.Password = "", ""
		s.url = ep.String()
	case "ssh":
		auth, err := s.sshAuth(ep)
		if err != nil {
			return nil, err
		}
		s.auth = auth
		s.url = opts.URL
	case "file":
		path := ep.Path
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("gitops: local repository %s: %w", path, err)
		}
		local, err := inspectLocal(abs, opts.Branch)
		if err != nil {
			return nil, err
		}
		s.local = local
		s.url = abs
	case "git":
		s.url = opts.URL
	default:
		return nil, fmt.Errorf("gitops: unsupported repository URL %s (protocol %q)", s.display, ep.Protocol)
	}

	if opts.SigningKey != nil {
		s.signKey = opts.SigningKey
	} else if opts.SigningKeyFile != "" {
		s.signKey, err = loadSigningKey(opts.SigningKeyFile, opts.SigningKeyPassphrase)
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *session) logf(format string, args ...any) {
	if s.opts.Logger != nil {
		s.opts.Logger(format, args...)
	}
}

func (s *session) branchRef() plumbing.ReferenceName {
	return plumbing.NewBranchReferenceName(s.opts.Branch)
}

func (s *session) backoff(attempt int) time.Duration {
	d := s.opts.RetryBaseDelay << (attempt - 1)
	if d > maxRetryDelay || d <= 0 {
		d = maxRetryDelay
	}
	// Jitter in [d/2, d) so racing writers spread out.
	return d/2 + rand.N(d/2+1)
}

func (s *session) signature() *object.Signature {
	return &object.Signature{Name: s.opts.AuthorName, Email: s.opts.AuthorEmail, When: time.Now()}
}

// sleepCtx waits for d, or returns ctx's error if it ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// editReadOnly runs edit on a checkout of a repository opened ReadOnly.
func (s *session) editReadOnly(edit Edit, fs billy.Filesystem, head CommitInfo) (*CommitResult, error) {
	if edit == nil {
		return nil, errors.New("gitops commit: no edit function")
	}
	_, changed, err := edit(fs, head)
	if err != nil {
		return nil, s.editError(head, err)
	}
	if changed {
		return nil, fmt.Errorf("gitops commit to %s (branch %s): %w", s.display, s.opts.Branch, ErrReadOnly)
	}
	return &CommitResult{Branch: s.opts.Branch, Hash: head.Hash, Attempts: 1}, nil
}
