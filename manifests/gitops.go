package manifests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	pathpkg "path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/memfs"
	"github.com/go-git/go-billy/v5/util"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/index"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"
	"golang.org/x/crypto/ssh"
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
	// ErrConcurrentUpdates: every attempt lost the race against other pushes.
	ErrConcurrentUpdates = errors.New("branch kept moving")
	// ErrDirtyWorktree: a local non-bare repository has uncommitted changes.
	ErrDirtyWorktree = errors.New("worktree has uncommitted changes")
	// ErrBranchNotFound: the branch is missing from a repository that has
	// other branches (an empty repository gets the branch created instead).
	ErrBranchNotFound = errors.New("branch not found")
)

// Defaults for GitOpsOptions.
const (
	DefaultGitOpsBranch   = "main"
	DefaultAuthorName     = "notesctl"
	DefaultAuthorEmail    = "notesctl@localhost"
	DefaultMaxAttempts    = 5
	DefaultRetryBaseDelay = 250 * time.Millisecond
	maxRetryDelay         = 8 * time.Second
	// tokenUsername is sent with a token given as Password without a
	// Username; GitHub, Gitea and GitLab accept any user name with a token.
	tokenUsername = "x-access-token"
)

// GitOpsOptions says where the GitOps repository is and how to commit to it.
type GitOpsOptions struct {
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
func Commit(ctx context.Context, opts GitOpsOptions, edit Edit) (*CommitResult, error) {
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
func Open(ctx context.Context, opts GitOpsOptions) (*Workspace, error) {
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
		// A commit an interrupted run left half done is finished first, so
		// that a run that finds nothing to do leaves the worktree right too.
		if s.local.direct {
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

// Checkout returns a read-only view of the branch tip, for status and
// idempotency checks. For an empty repository or a missing branch it returns
// an empty filesystem and a CommitInfo with an empty Hash.
func Checkout(ctx context.Context, opts GitOpsOptions) (billy.Filesystem, CommitInfo, error) {
	w, err := Open(ctx, opts)
	if err != nil {
		return nil, CommitInfo{}, err
	}
	return w.FS(), w.Head(), nil
}

// session is one Commit or Checkout with validated options.
type session struct {
	opts    GitOpsOptions
	url     string // handed to go-git; credentials removed
	display string // for messages: redacted
	auth    transport.AuthMethod
	local   *localRepo
	secrets []string
	signKey *openpgp.Entity
}

type localRepo struct {
	path   string
	direct bool // non-bare with Branch checked out: committed in its worktree
	// inPlace: bare, and a push would run none of its own code, so the
	// commit is written into it directly (bare.go).
	inPlace bool
	// viaGit says why a bare repository is pushed to through git instead.
	viaGit string
}

func newSession(opts GitOpsOptions) (*session, error) {
	if opts.URL == "" {
		return nil, errors.New("gitops: repository URL is empty")
	}
	if opts.Branch == "" {
		opts.Branch = DefaultGitOpsBranch
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
	s := &session{opts: opts, display: RedactURL(opts.URL)}
	if err := plumbing.NewBranchReferenceName(opts.Branch).Validate(); err != nil {
		return nil, fmt.Errorf("gitops: invalid branch name %q: %w", opts.Branch, err)
	}
	s.secrets = []string{opts.Password, opts.SSHKeyPassphrase, opts.SigningKeyPassphrase}

	ep, err := transport.NewEndpoint(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("gitops: invalid repository URL %s: %v", s.display, RedactText(err.Error(), s.secrets...))
	}
	s.secrets = append(s.secrets, ep.Password)
	switch ep.Protocol {
	case "http", "https":
		user, pass := opts.Username, opts.Password
		if user == "" && pass == "" {
			user, pass = ep.User, ep.Password
		}
		if user != "" && pass == "" && ep.User != "" && ep.Password == "" && opts.Username == "" {
			// https://TOKEN@host/...: the user part is the token.
			user, pass = tokenUsername, user
			s.secrets = append(s.secrets, pass)
		}
		if pass != "" && user == "" {
			user = tokenUsername
		}
		if user != "" || pass != "" {
			s.auth = &githttp.BasicAuth{Username: user, Password: pass}
		}
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

func (s *session) sshAuth(ep *transport.Endpoint) (transport.AuthMethod, error) {
	user := ep.User
	if user == "" {
		user = "git"
	}
	var helper *gitssh.HostKeyCallbackHelper
	var auth transport.AuthMethod
	if s.opts.SSHKeyFile != "" {
		keys, err := gitssh.NewPublicKeysFromFile(user, s.opts.SSHKeyFile, s.opts.SSHKeyPassphrase)
		if err != nil {
			return nil, fmt.Errorf("gitops: SSH key %s: %v", s.opts.SSHKeyFile, RedactText(err.Error(), s.secrets...))
		}
		helper, auth = &keys.HostKeyCallbackHelper, keys
	} else {
		if os.Getenv("SSH_AUTH_SOCK") == "" {
			return nil, fmt.Errorf("gitops: no SSH key for %s: set an SSH key file or start an SSH agent", s.display)
		}
		agent, err := gitssh.NewSSHAgentAuth(user)
		if err != nil {
			return nil, fmt.Errorf("gitops: SSH agent for %s: %w", s.display, err)
		}
		helper, auth = &agent.HostKeyCallbackHelper, agent
	}
	if s.opts.InsecureSkipHostKeyCheck {
		s.logf("WARNING: SSH host key checking is disabled for %s; the connection can be intercepted", s.display)
		helper.HostKeyCallback = ssh.InsecureIgnoreHostKey() //nolint:gosec // explicitly requested
		return auth, nil
	}
	known := s.opts.KnownHostsFile
	if known == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("gitops: no known_hosts file for %s: %w", s.display, err)
		}
		known = filepath.Join(home, ".ssh", "known_hosts")
	}
	if _, err := os.Stat(known); err != nil {
		return nil, fmt.Errorf("%w for %s: cannot read known_hosts file: %v", ErrHostKey, s.display, err)
	}
	db, err := gitssh.NewKnownHostsDb(known)
	if err != nil {
		return nil, fmt.Errorf("gitops: known_hosts file %s: %w", known, err)
	}
	port := ep.Port
	if port == 0 {
		port = 22
	}
	hostPort := net.JoinHostPort(ep.Host, fmt.Sprint(port))
	helper.HostKeyCallback = db.HostKeyCallback()
	// Offer only the key types known_hosts holds for this host, so that a
	// server with several host keys presents the one we can check.
	helper.HostKeyAlgorithms = db.HostKeyAlgorithms(hostPort)
	s.opts.KnownHostsFile = known
	return auth, nil
}

// inspectLocal decides how to write to a repository on this machine.
func inspectLocal(path, branch string) (*localRepo, error) {
	repo, err := git.PlainOpen(path)
	if err != nil {
		return nil, fmt.Errorf("gitops: open local repository %s: %w", path, err)
	}
	cfg, err := repo.Config()
	if err != nil {
		return nil, fmt.Errorf("gitops: read config of %s: %w", path, err)
	}
	l := &localRepo{path: path}
	if cfg.Core.IsBare {
		l.viaGit = pushThroughGit(path, branch)
		l.inPlace = l.viaGit == ""
		return l, nil
	}
	head, err := repo.Storer.Reference(plumbing.HEAD)
	if err != nil {
		return nil, fmt.Errorf("gitops: read HEAD of %s: %w", path, err)
	}
	// A push to another branch of a non-bare repository is fine; only the
	// checked-out branch needs the direct path.
	l.direct = head.Type() == plumbing.SymbolicReference && head.Target() == plumbing.NewBranchReferenceName(branch)
	return l, nil
}

func loadSigningKey(file, passphrase string) (*openpgp.Entity, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("gitops: signing key: %w", err)
	}
	defer f.Close()
	ring, err := openpgp.ReadArmoredKeyRing(f)
	if err != nil {
		return nil, fmt.Errorf("gitops: signing key %s: not an armored OpenPGP key: %v", file, err)
	}
	for _, e := range ring {
		if e.PrivateKey == nil {
			continue
		}
		if err := e.DecryptPrivateKeys([]byte(passphrase)); err != nil {
			return nil, fmt.Errorf("gitops: signing key %s: cannot decrypt (wrong or missing passphrase?): %v", file, RedactText(err.Error(), passphrase))
		}
		return e, nil
	}
	return nil, fmt.Errorf("gitops: signing key %s holds no private key", file)
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
		return nil, true, errors.New(s.redact(err))
	case strings.Contains(progress.String(), "cannot lock ref"):
		// Another writer holds the branch's ref lock: it is moving it now.
		return nil, true, errors.New(s.redact(err) + remoteMessage(progress.String(), s.secrets))
	case droppedConnection(err):
		// The branch did not move: the push never reached the server.
		return nil, true, &connectionError{msg: fmt.Sprintf("push to %s failed before the branch was updated: %s", s.display, s.redact(err))}
	}
	return nil, false, fmt.Errorf("%w by %s (branch %s): %s%s", ErrPushRejected, s.display, s.opts.Branch,
		s.redact(err), remoteMessage(progress.String(), s.secrets))
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
	return RedactText(err.Error(), s.secrets...)
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
		lines = append(lines, "\nremote: "+RedactText(l, secrets...))
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

// commitDirect commits into the checked-out branch of a local non-bare
// repository and updates its worktree, as `git commit` would, in an order
// after which a crash at any point (kill -9, power loss aside) leaves the
// repository usable and the next run able to go on:
//
//  1. take git's index.lock, so that git commands and other notesctl runs
//     wait instead of interleaving (notesctl notes its pid in the lock, so a
//     lock left by a notesctl that died is recognised: see lockIndex);
//  2. finish or discard a commit an earlier run was interrupted in (see
//     recoverDirect);
//  3. write the new blobs, trees and the commit object (go-git writes loose
//     objects to a temporary file and renames it: all or nothing);
//  4. write the journal .git/NOTESCTL_COMMIT: old tip, new commit, paths;
//  5. move the branch with git's ref lock protocol (write B.lock, rename);
//  6. bring the changed worktree files (each written to a temporary file and
//     renamed) and their index entries (the index, too, is renamed into
//     place) to the new commit;
//  7. remove the journal, then the lock.
//
// A crash before 5 leaves the branch, index and worktree untouched (and
// unreferenced objects, which git gc prunes); after 5 the next run redoes 6
// from the journal.
func (s *session) commitDirect(ctx context.Context, edit Edit) (*CommitResult, error) {
	repo, st, err := s.openLocal()
	if err != nil {
		return nil, err
	}
	gitDir := st.Filesystem().Root()
	unlock, err := s.lockIndex(ctx, gitDir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	wt, err := repo.Worktree()
	if err != nil {
		return nil, fmt.Errorf("open worktree of %s: %w", s.display, err)
	}
	// The same repository, with index writes made atomic, for step 6.
	arepo, err := git.Open(atomicIndexStorage{st}, wt.Filesystem)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", s.display, err)
	}
	awt, err := arepo.Worktree()
	if err != nil {
		return nil, fmt.Errorf("open worktree of %s: %w", s.display, err)
	}
	if err := s.recoverDirect(arepo, awt, gitDir); err != nil {
		return nil, err
	}

	status, err := wt.Status()
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", s.display, err)
	}
	untracked := map[string]bool{}
	var dirty []string
	for path, st := range status {
		switch {
		case st.Staging == git.Untracked && st.Worktree == git.Untracked:
			untracked[path] = true
		case st.Staging != git.Unmodified || st.Worktree != git.Unmodified:
			dirty = append(dirty, path)
		}
	}
	if len(dirty) > 0 {
		sort.Strings(dirty)
		more := ""
		if len(dirty) > 5 {
			more = fmt.Sprintf(" and %d more", len(dirty)-5)
			dirty = dirty[:5]
		}
		return nil, fmt.Errorf("%w: %s: %s%s; commit or stash them first", ErrDirtyWorktree, s.local.path, strings.Join(dirty, ", "), more)
	}

	head, tree, changes, msg, err := s.editBranch(repo, edit)
	if err != nil {
		return nil, err
	}
	res := &CommitResult{Branch: s.opts.Branch, Hash: head.Hash, Attempts: 1}
	if len(changes) == 0 {
		return res, nil
	}
	for _, c := range changes {
		if untracked[c.path] {
			return nil, fmt.Errorf("%w: %s: untracked file %s would be overwritten", ErrDirtyWorktree, s.local.path, c.path)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gitops commit to %s: %w", s.display, err)
	}
	hash, err := s.writeCommit(repo.Storer, head, tree, changes, msg)
	if err != nil {
		return nil, fmt.Errorf("commit in %s: %w", s.local.path, err)
	}
	j := commitJournal{Old: head.Hash, New: hash.String()}
	for _, c := range changes {
		j.Paths = append(j.Paths, c.path)
	}
	if err := writeJournal(gitDir, j); err != nil {
		return nil, fmt.Errorf("commit in %s: %w", s.local.path, err)
	}
	if err := s.moveBranch(repo, gitDir, head.Hash, hash); err != nil {
		_ = os.Remove(filepath.Join(gitDir, journalFile))
		return nil, err
	}
	if err := s.checkoutPaths(arepo, awt, hash, j.Paths); err != nil {
		return nil, fmt.Errorf("branch %s of %s is at the new commit %s, but updating the worktree failed (the next run finishes it): %w",
			s.opts.Branch, s.local.path, hash.String()[:7], err)
	}
	if err := os.Remove(filepath.Join(gitDir, journalFile)); err != nil {
		return nil, fmt.Errorf("commit in %s: %w", s.local.path, err)
	}
	res.Hash, res.Changed, res.Files = hash.String(), true, j.Paths
	s.logf("committed %s to %s (branch %s)", hash.String()[:7], s.local.path, s.opts.Branch)
	return res, nil
}

// openLocal opens the repository on this machine with its storage.
func (s *session) openLocal() (*git.Repository, *filesystem.Storage, error) {
	repo, err := git.PlainOpen(s.local.path)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", s.display, err)
	}
	st, ok := repo.Storer.(*filesystem.Storage)
	if !ok {
		return nil, nil, fmt.Errorf("open %s: unexpected repository storage", s.local.path)
	}
	return repo, st, nil
}

// editBranch applies edit to a snapshot of the branch tip of a repository
// on this machine and returns what it changed against the tip's tree,
// with the commit message; no changes means nothing to commit.
func (s *session) editBranch(repo *git.Repository, edit Edit) (head CommitInfo, tree *object.Tree, changes []fileChange, msg string, err error) {
	fs, head, tree, err := snapshotBranch(repo, s.branchRef())
	if err != nil {
		return head, nil, nil, "", fmt.Errorf("read branch %s of %s: %w", s.opts.Branch, s.display, err)
	}
	msg, changed, err := edit(fs, head)
	if err != nil {
		return head, nil, nil, "", s.editError(head, err)
	}
	if !changed {
		s.logf("%s (branch %s) is up to date; nothing to commit", s.display, s.opts.Branch)
		return head, tree, nil, "", nil
	}
	if changes, err = diffTree(fs, tree); err != nil {
		return head, nil, nil, "", err
	}
	if len(changes) == 0 {
		s.logf("edit reported changes but the tree of %s is unchanged; nothing to commit", s.display)
		return head, tree, nil, "", nil
	}
	if strings.TrimSpace(msg) == "" {
		return head, nil, nil, "", errors.New("gitops commit: edit returned an empty commit message")
	}
	return head, tree, changes, msg, nil
}

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

// writeCommit writes the blobs of changes, the trees of the new snapshot
// and a commit on head (nothing when head.Hash is empty), and returns the
// commit's hash. No reference moves.
func (s *session) writeCommit(st storer.EncodedObjectStorer, head CommitInfo, tree *object.Tree, changes []fileChange, msg string) (plumbing.Hash, error) {
	entries := map[string]object.TreeEntry{}
	if tree != nil {
		w := object.NewTreeWalker(tree, true, nil)
		for {
			name, e, err := w.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				w.Close()
				return plumbing.ZeroHash, err
			}
			if e.Mode != filemode.Dir {
				entries[name] = e
			}
		}
		w.Close()
	}
	for _, c := range changes {
		if c.deleted {
			delete(entries, c.path)
			continue
		}
		obj := st.NewEncodedObject()
		obj.SetType(plumbing.BlobObject)
		if err := writeObject(obj, c.data); err != nil {
			return plumbing.ZeroHash, err
		}
		h, err := st.SetEncodedObject(obj)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		mode := filemode.Regular
		switch {
		case c.symlink:
			mode = filemode.Symlink
		case c.perm&0o111 != 0:
			mode = filemode.Executable
		}
		entries[c.path] = object.TreeEntry{Name: pathpkg.Base(c.path), Mode: mode, Hash: h}
	}
	root := &treeNode{}
	for p, e := range entries {
		root.add(strings.Split(p, "/"), e)
	}
	treeHash, err := root.write(st)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	sig := s.signature()
	commit := &object.Commit{Author: *sig, Committer: *sig, Message: msg, TreeHash: treeHash}
	if head.Hash != "" {
		commit.ParentHashes = []plumbing.Hash{plumbing.NewHash(head.Hash)}
	}
	if s.signKey != nil {
		unsigned := &plumbing.MemoryObject{}
		if err := commit.Encode(unsigned); err != nil {
			return plumbing.ZeroHash, err
		}
		r, err := unsigned.Reader()
		if err != nil {
			return plumbing.ZeroHash, err
		}
		var sigBuf bytes.Buffer
		if err := openpgp.ArmoredDetachSign(&sigBuf, s.signKey, r, nil); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("sign commit: %w", err)
		}
		commit.PGPSignature = sigBuf.String()
	}
	obj := st.NewEncodedObject()
	if err := commit.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return st.SetEncodedObject(obj)
}

func writeObject(obj plumbing.EncodedObject, data []byte) error {
	w, err := obj.Writer()
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// treeNode builds nested tree objects from a flat list of entries.
type treeNode struct {
	entries []object.TreeEntry
	dirs    map[string]*treeNode
}

func (n *treeNode) add(parts []string, e object.TreeEntry) {
	if len(parts) == 1 {
		n.entries = append(n.entries, e)
		return
	}
	if n.dirs == nil {
		n.dirs = map[string]*treeNode{}
	}
	sub := n.dirs[parts[0]]
	if sub == nil {
		sub = &treeNode{}
		n.dirs[parts[0]] = sub
	}
	sub.add(parts[1:], e)
}

func (n *treeNode) write(st storer.EncodedObjectStorer) (plumbing.Hash, error) {
	entries := append([]object.TreeEntry(nil), n.entries...)
	for name, sub := range n.dirs {
		h, err := sub.write(st)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		entries = append(entries, object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h})
	}
	// Git orders tree entries by name, a directory as if it ended in "/".
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	sort.Slice(entries, func(i, j int) bool { return key(entries[i]) < key(entries[j]) })
	obj := st.NewEncodedObject()
	if err := (&object.Tree{Entries: entries}).Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return st.SetEncodedObject(obj)
}

// moveBranch moves the branch from old (empty: it must not exist) to new
// the way git does: the new value goes into refs/heads/B.lock, which is
// renamed over the ref once the old value is confirmed.
func (s *session) moveBranch(repo *git.Repository, gitDir, old string, new plumbing.Hash) error {
	name := s.branchRef()
	file := filepath.Join(gitDir, filepath.FromSlash(name.String()))
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	lock := file + ".lock"
	// The lock appears with the new value already in it (see
	// createLockFile; the temporary file stays out of refs/, where git
	// would read it as a ref): a kill can leave the lock behind, but never
	// an empty one, so the guard of an in-place commit can tell it as its
	// own (bare.go).
	err := createLockFile(lock, gitDir, []byte(new.String()+"\n"))
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%w: %s exists: another git process is updating branch %s in %s (if none is, remove it: rm %s)",
			ErrConcurrentUpdates, lock, s.opts.Branch, s.local.path, shellQuote(lock))
	}
	if err != nil {
		return err
	}
	cur, err := repo.Storer.Reference(name)
	switch {
	case errors.Is(err, plumbing.ErrReferenceNotFound) && old == "":
	case err != nil:
		_ = os.Remove(lock)
		return fmt.Errorf("read branch %s of %s: %w", s.opts.Branch, s.local.path, err)
	case cur.Hash().String() != old:
		_ = os.Remove(lock)
		return fmt.Errorf("%w: branch %s of %s moved to %s meanwhile", ErrConcurrentUpdates, s.opts.Branch, s.local.path, cur.Hash())
	}
	if err := os.Rename(lock, file); err != nil {
		_ = os.Remove(lock)
		return err
	}
	return nil
}

// checkoutPaths brings paths in the worktree and the index to their state
// in commit: each file is written to a temporary file and renamed, and the
// index is renamed into place (atomicIndexStorage), so a crash leaves every
// file and the index either old or new. Running it twice is harmless.
func (s *session) checkoutPaths(repo *git.Repository, wt *git.Worktree, commit plumbing.Hash, paths []string) error {
	c, err := repo.CommitObject(commit)
	if err != nil {
		return err
	}
	tree, err := c.Tree()
	if err != nil {
		return err
	}
	fs := wt.Filesystem
	for _, p := range paths {
		f, err := tree.File(p)
		if errors.Is(err, object.ErrFileNotFound) {
			if _, err := fs.Lstat(p); err == nil {
				if err := fs.Remove(p); err != nil {
					return err
				}
			}
			if _, err := wt.Remove(p); err != nil && !errors.Is(err, index.ErrEntryNotFound) {
				return fmt.Errorf("remove %s from the index: %w", p, err)
			}
			continue
		}
		if err != nil {
			return err
		}
		content, err := f.Contents()
		if err != nil {
			return err
		}
		perm := os.FileMode(0o644)
		if f.Mode == filemode.Executable {
			perm = 0o755
		}
		if err := writeWorktreeFile(fs, p, []byte(content), perm, f.Mode == filemode.Symlink); err != nil {
			return fmt.Errorf("update %s: %w", p, err)
		}
		if _, err := wt.Add(p); err != nil {
			return fmt.Errorf("add %s to the index: %w", p, err)
		}
	}
	return nil
}

// tempPrefix starts the names of temporary files checkoutPaths writes
// next to the files it replaces.
const tempPrefix = ".notesctl-tmp-"

func writeWorktreeFile(fs billy.Filesystem, name string, data []byte, perm os.FileMode, symlink bool) error {
	dir := pathpkg.Dir(name)
	if dir != "." {
		if err := fs.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	tmp := pathpkg.Join(dir, fmt.Sprintf("%s%d-%s", tempPrefix, os.Getpid(), pathpkg.Base(name)))
	_ = fs.Remove(tmp)
	var err error
	if symlink {
		err = fs.Symlink(string(data), tmp)
	} else {
		var f billy.File
		if f, err = fs.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm); err == nil {
			_, err = f.Write(data)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
	}
	if err == nil {
		err = fs.Rename(tmp, name)
	}
	if err != nil {
		_ = fs.Remove(tmp)
	}
	return err
}

// removeTempSiblings removes temporary files an interrupted checkoutPaths
// left next to name.
func removeTempSiblings(fs billy.Filesystem, name string) {
	dir := pathpkg.Dir(name)
	infos, err := fs.ReadDir(dir)
	if err != nil {
		return
	}
	for _, fi := range infos {
		if n := fi.Name(); strings.HasPrefix(n, tempPrefix) && strings.HasSuffix(n, "-"+pathpkg.Base(name)) {
			_ = fs.Remove(pathpkg.Join(dir, n))
		}
	}
}

// atomicIndexStorage is the repository storage with SetIndex writing the
// index to a temporary file and renaming it into place: go-git truncates
// and rewrites the index in place, which a crash can leave half written.
type atomicIndexStorage struct{ *filesystem.Storage }

func (s atomicIndexStorage) SetIndex(idx *index.Index) error {
	var b bytes.Buffer
	if err := index.NewEncoder(&b).Encode(idx); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.Filesystem().Root(), "index"), b.Bytes())
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

// snapshotBranch copies the files of the branch tip into memory. A missing
// branch gives an empty filesystem, an empty CommitInfo and a nil tree.
func snapshotBranch(repo *git.Repository, branch plumbing.ReferenceName) (billy.Filesystem, CommitInfo, *object.Tree, error) {
	fs := memfs.New()
	ref, err := repo.Reference(branch, true)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return fs, CommitInfo{}, nil, nil
	}
	if err != nil {
		return nil, CommitInfo{}, nil, err
	}
	c, err := repo.CommitObject(ref.Hash())
	if err != nil {
		return nil, CommitInfo{}, nil, err
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, CommitInfo{}, nil, err
	}
	err = tree.Files().ForEach(func(f *object.File) error {
		content, err := f.Contents()
		if err != nil {
			return err
		}
		if f.Mode == filemode.Symlink {
			return fs.Symlink(content, f.Name)
		}
		perm := os.FileMode(0o644)
		if f.Mode == filemode.Executable {
			perm = 0o755
		}
		return writeBillyFile(fs, f.Name, []byte(content), perm)
	})
	if err != nil {
		return nil, CommitInfo{}, nil, err
	}
	return fs, commitInfo(c), tree, nil
}

func writeBillyFile(fs billy.Filesystem, name string, data []byte, perm os.FileMode) error {
	if dir := filepath.Dir(name); dir != "." {
		if err := fs.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	f, err := fs.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// fileChange is one path that differs between an edited snapshot and the
// tree it was taken from.
type fileChange struct {
	path    string
	data    []byte
	perm    os.FileMode
	symlink bool
	deleted bool
}

// diffTree lists the files of fs that differ from tree (nil: empty), sorted.
func diffTree(fs billy.Filesystem, tree *object.Tree) ([]fileChange, error) {
	var changes []fileChange
	seen := map[string]bool{}
	err := util.Walk(fs, "/", func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.IsDir() {
			return nil
		}
		rel := strings.TrimPrefix(filepath.ToSlash(p), "/")
		seen[rel] = true
		var entry *object.TreeEntry
		if tree != nil {
			entry, _ = tree.FindEntry(rel)
		}
		c := fileChange{path: rel, perm: 0o644}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := fs.Readlink(p)
			if err != nil {
				return err
			}
			c.data, c.symlink = []byte(target), true
		} else {
			c.data, err = util.ReadFile(fs, p)
			if err != nil {
				return err
			}
			if fi.Mode().Perm()&0o111 != 0 {
				c.perm = 0o755
			}
		}
		if entry != nil && entry.Hash == plumbing.ComputeHash(plumbing.BlobObject, c.data) &&
			(entry.Mode == filemode.Symlink) == c.symlink {
			return nil
		}
		if entry != nil && entry.Mode == filemode.Executable {
			c.perm = 0o755
		}
		changes = append(changes, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("compare edited files: %w", err)
	}
	if tree != nil {
		err = tree.Files().ForEach(func(f *object.File) error {
			if !seen[f.Name] {
				changes = append(changes, fileChange{path: f.Name, deleted: true})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].path < changes[j].path })
	return changes, nil
}
