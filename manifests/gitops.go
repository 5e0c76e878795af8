package manifests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/memfs"
	"github.com/go-git/go-billy/v5/util"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
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
	if edit == nil {
		return nil, errors.New("gitops commit: no edit function")
	}
	s, err := newSession(opts)
	if err != nil {
		return nil, err
	}
	if s.local != nil && s.local.direct {
		return s.commitDirect(ctx, edit)
	}
	for attempt := 1; ; attempt++ {
		res, retry, err := s.attempt(ctx, edit)
		if err == nil {
			res.Attempts = attempt
			return res, nil
		}
		if !retry {
			return nil, err
		}
		if attempt >= s.opts.MaxAttempts {
			return nil, fmt.Errorf("%w: pushing to %s (branch %s) failed %d times because other commits landed first: %v",
				ErrConcurrentUpdates, s.display, s.opts.Branch, attempt, err)
		}
		delay := s.backoff(attempt)
		s.logf("push to %s lost a race (%v); retrying on the new tip in %s (attempt %d/%d)",
			s.display, err, delay.Round(time.Millisecond), attempt+1, s.opts.MaxAttempts)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("gitops commit to %s: %w", s.display, ctx.Err())
		case <-t.C:
		}
	}
}

// Checkout returns a read-only view of the branch tip, for status and
// idempotency checks. For an empty repository or a missing branch it returns
// an empty filesystem and a CommitInfo with an empty Hash.
func Checkout(ctx context.Context, opts GitOpsOptions) (billy.Filesystem, CommitInfo, error) {
	s, err := newSession(opts)
	if err != nil {
		return nil, CommitInfo{}, err
	}
	if s.local != nil && s.local.direct {
		repo, err := git.PlainOpen(s.local.path)
		if err != nil {
			return nil, CommitInfo{}, fmt.Errorf("open %s: %w", s.display, err)
		}
		fs, info, _, err := snapshotBranch(repo, s.branchRef())
		if err != nil {
			return nil, CommitInfo{}, fmt.Errorf("read branch %s of %s: %w", s.opts.Branch, s.display, err)
		}
		return fs, info, nil
	}
	repo, info, err := s.clone(ctx, true)
	if err != nil {
		return nil, CommitInfo{}, err
	}
	if repo == nil {
		return memfs.New(), CommitInfo{}, nil
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, CommitInfo{}, err
	}
	return wt.Filesystem, info, nil
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
	direct bool // non-bare with Branch checked out
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
func (s *session) attempt(ctx context.Context, edit Edit) (res *CommitResult, retry bool, err error) {
	repo, head, err := s.clone(ctx, false)
	if err != nil {
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
	case lerr != nil:
		return nil, false, fmt.Errorf("push to %s failed: %s (and checking the branch afterwards failed: %v)",
			s.display, s.redact(err), s.redact(lerr))
	case tip == hash:
		// Our commit is there: the push went through but its report was lost.
		res.Hash, res.Changed = hash.String(), true
		return res, false, nil
	case tip.String() != head.Hash && !(tip.IsZero() && head.Hash == ""):
		return nil, true, errors.New(s.redact(err))
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
// repository and updates its worktree, as `git commit` would. It holds the
// index lock git itself uses, so concurrent git commands and other notesctl
// runs wait instead of interleaving.
func (s *session) commitDirect(ctx context.Context, edit Edit) (*CommitResult, error) {
	repo, err := git.PlainOpen(s.local.path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", s.display, err)
	}
	unlock, err := s.lockIndex(ctx, repo)
	if err != nil {
		return nil, err
	}
	defer unlock()

	wt, err := repo.Worktree()
	if err != nil {
		return nil, fmt.Errorf("open worktree of %s: %w", s.display, err)
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

	fs, head, tree, err := snapshotBranch(repo, s.branchRef())
	if err != nil {
		return nil, fmt.Errorf("read branch %s of %s: %w", s.opts.Branch, s.display, err)
	}
	msg, changed, err := edit(fs, head)
	if err != nil {
		return nil, s.editError(head, err)
	}
	res := &CommitResult{Branch: s.opts.Branch, Hash: head.Hash, Attempts: 1}
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
	for _, c := range changes {
		if untracked[c.path] {
			return nil, fmt.Errorf("%w: %s: untracked file %s would be overwritten", ErrDirtyWorktree, s.local.path, c.path)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gitops commit to %s: %w", s.display, err)
	}
	for _, c := range changes {
		if err := c.apply(wt); err != nil {
			return nil, fmt.Errorf("update %s in %s: %w", c.path, s.local.path, err)
		}
		res.Files = append(res.Files, c.path)
	}
	hash, err := wt.Commit(msg, &git.CommitOptions{Author: s.signature(), Committer: s.signature(), SignKey: s.signKey})
	if err != nil {
		return nil, fmt.Errorf("commit in %s: %w", s.local.path, err)
	}
	res.Hash, res.Changed = hash.String(), true
	s.logf("committed %s to %s (branch %s)", hash.String()[:7], s.local.path, s.opts.Branch)
	return res, nil
}

// lockIndex takes git's index.lock, waiting with backoff while another
// process holds it.
func (s *session) lockIndex(ctx context.Context, repo *git.Repository) (func(), error) {
	fsStorer, ok := repo.Storer.(interface{ Filesystem() billy.Filesystem })
	if !ok {
		return nil, fmt.Errorf("open %s: unexpected repository storage", s.local.path)
	}
	lock := filepath.Join(fsStorer.Filesystem().Root(), "index.lock")
	for attempt := 1; ; attempt++ {
		f, err := os.OpenFile(lock, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			f.Close()
			return func() { _ = os.Remove(lock) }, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("lock %s: %w", s.local.path, err)
		}
		if attempt >= s.opts.MaxAttempts {
			return nil, fmt.Errorf("%w: another git process seems to be running in %s (%s exists; remove it if no git process is running)",
				ErrConcurrentUpdates, s.local.path, lock)
		}
		t := time.NewTimer(s.backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("lock %s: %w", s.local.path, ctx.Err())
		case <-t.C:
		}
	}
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

func (c fileChange) apply(wt *git.Worktree) error {
	if c.deleted {
		_, err := wt.Remove(c.path)
		return err
	}
	fs := wt.Filesystem
	if _, err := fs.Lstat(c.path); err == nil {
		if err := fs.Remove(c.path); err != nil {
			return err
		}
	}
	var err error
	if c.symlink {
		if dir := filepath.Dir(c.path); dir != "." {
			err = fs.MkdirAll(dir, 0o755)
		}
		if err == nil {
			err = fs.Symlink(string(c.data), c.path)
		}
	} else {
		err = writeBillyFile(fs, c.path, c.data, c.perm)
	}
	if err != nil {
		return err
	}
	_, err = wt.Add(c.path)
	return err
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
