// Package forge talks to the forge that hosts a repository (Gitea/Forgejo or
// GitHub) through its REST API: pull requests opened or updated by head
// branch, one comment per pull request found again by a hidden marker,
// auto-merge, and a pull request's state. It is the one small interface
// behind which notesctl's pull-request features (previews, --gitops-pr) work
// on either forge; it knows nothing of git, setters or scaffolds.
//
// Both implementations use the forges' own Go clients
// (code.gitea.io/sdk/gitea, github.com/google/go-github) over an HTTP
// transport that retries rate limits and 5xx answers, waiting as the forge's
// Retry-After or X-RateLimit-Reset headers say (retry.go).
package forge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Kinds of forge.
const (
	KindGitea  = "gitea" // Gitea and Forgejo
	KindGitHub = "github"
)

// Repo names a repository on a forge.
type Repo struct {
	Owner, Name string
}

func (r Repo) String() string { return r.Owner + "/" + r.Name }

// PRSpec is the pull request EnsurePR opens or updates.
type PRSpec struct {
	// Head is the branch with the changes (in the same repository).
	Head string
	// Base is the branch the pull request targets.
	Base  string
	Title string
	Body  string
}

// PR is a pull request as the forge reports it.
type PR struct {
	Number int    `json:"number"`
	URL    string `json:"url"` // the page a person opens
	State  string `json:"state"`
	Merged bool   `json:"merged"`
	// MergeCommit is the commit the merge made on Base (empty until merged).
	MergeCommit string `json:"mergeCommit,omitempty"`
	Head        string `json:"head"`
	HeadSHA     string `json:"headSHA"`
	Base        string `json:"base"`
	Title       string `json:"title"`
	Body        string `json:"body"`
	// NodeID is GitHub's GraphQL ID (auto-merge needs it); empty on Gitea.
	NodeID string `json:"-"`
}

// Pull request states.
const (
	StateOpen   = "open"
	StateClosed = "closed"
)

// Comment is an issue/pull request comment.
type Comment struct {
	ID   int64  `json:"id"`
	URL  string `json:"url"`
	Body string `json:"body"`
}

// Result says whether a call created a new object or updated (or kept) one.
type Result int

// Results of EnsurePR and UpsertComment.
const (
	Created   Result = iota // a new pull request or comment
	Updated                 // an existing one was edited
	Unchanged               // an existing one already said this
)

func (r Result) String() string {
	switch r {
	case Created:
		return "created"
	case Updated:
		return "updated"
	default:
		return "unchanged"
	}
}

// Forge is what notesctl asks of a forge.
type Forge interface {
	// Kind is KindGitea or KindGitHub.
	Kind() string
	// EnsurePR returns the open pull request from spec.Head to spec.Base,
	// with its title and body set to spec's, creating it when there is
	// none. An empty spec.Body keeps an existing pull request's title and
	// body as they are (a re-run that changed nothing). Closed or merged
	// pull requests of the same head are left alone.
	EnsurePR(ctx context.Context, repo Repo, spec PRSpec) (*PR, Result, error)
	// GetPR returns pull request number.
	GetPR(ctx context.Context, repo Repo, number int) (*PR, error)
	// UpsertComment keeps exactly one comment on pull request number that
	// carries marker (an HTML comment, invisible when rendered): the first
	// such comment is edited to body (marker prepended), or one is created.
	UpsertComment(ctx context.Context, repo Repo, number int, marker, body string) (*Comment, Result, error)
	// EnableAutoMerge asks the forge to merge pull request number (merge
	// commit) as soon as its required checks pass; where nothing is
	// required the forge may merge at once.
	EnableAutoMerge(ctx context.Context, repo Repo, pr *PR) error
}

// Options configures New.
type Options struct {
	// Kind is KindGitea or KindGitHub.
	Kind string
	// URL is the forge's web root (https://github.com, https://gitea.example.org).
	URL string
	// APIURL overrides the REST API root; default: derived from URL
	// (https://api.github.com/ for github.com, URL/api/v3/ for GitHub
	// Enterprise; Gitea's client derives /api/v1 itself).
	APIURL string
	// GraphQLURL overrides GitHub's GraphQL endpoint (auto-merge).
	GraphQLURL string
	// Token authenticates every call. A secret: never logged.
	Token string
	// HTTPClient is the base client (its Transport is wrapped with retries);
	// default http.DefaultTransport with a 60 s timeout.
	HTTPClient *http.Client
	// Retry bounds the retries; zero values take the defaults.
	Retry RetryPolicy
	// Logf receives one line per retry.
	Logf func(format string, args ...any)
}

// New returns the client for opts.Kind.
func New(ctx context.Context, opts Options) (Forge, error) {
	if opts.URL == "" {
		return nil, errors.New("forge: no server URL")
	}
	if opts.Token == "" {
		return nil, fmt.Errorf("forge: no token for %s (set NOTESCTL_FORGE_TOKEN, or GITHUB_TOKEN / GITEA_TOKEN as Actions provide)", opts.URL)
	}
	base := opts.HTTPClient
	if base == nil {
		base = &http.Client{Timeout: 60 * time.Second}
	}
	hc := *base
	hc.Transport = &retryTransport{next: base.Transport, policy: opts.Retry.withDefaults(), logf: opts.Logf}
	switch opts.Kind {
	case KindGitea:
		return newGitea(ctx, opts, &hc)
	case KindGitHub:
		return newGitHub(opts, &hc)
	default:
		return nil, fmt.Errorf("forge: unknown kind %q: want %s or %s", opts.Kind, KindGitea, KindGitHub)
	}
}

// Location is where a repository lives: its forge, server and name.
type Location struct {
	Kind string
	// URL is the server's web root, e.g. https://github.com.
	URL  string
	Repo Repo
}

// Detect reads a repository URL (https://host/owner/repo(.git),
// ssh://git@host/owner/repo.git, git@host:owner/repo.git) into its server
// and repository. kind, when not empty ("gitea", "forgejo", "github"), is
// taken as given; otherwise github.com and hosts named github.* are GitHub
// and hosts whose name says gitea, forgejo or codeberg are Gitea. Any other
// host is an error asking for --forge. An SSH URL's server is assumed to
// answer HTTPS on the same host.
func Detect(rawURL, kind string) (Location, error) {
	host, scheme, p, err := splitRepoURL(rawURL)
	if err != nil {
		return Location{}, err
	}
	parts := strings.Split(strings.Trim(strings.TrimSuffix(strings.Trim(p, "/"), ".git"), "/"), "/")
	if len(parts) < 2 || parts[len(parts)-1] == "" || parts[len(parts)-2] == "" {
		return Location{}, fmt.Errorf("forge: %s: want a repository URL ending in OWNER/REPO", redactURL(rawURL))
	}
	loc := Location{Repo: Repo{Owner: parts[len(parts)-2], Name: parts[len(parts)-1]}}
	// A server under a sub-path (https://host/gitea/owner/repo) keeps it.
	prefix := strings.Join(parts[:len(parts)-2], "/")
	loc.URL = scheme + "://" + host
	if prefix != "" {
		loc.URL += "/" + prefix
	}
	switch strings.ToLower(kind) {
	case KindGitea, "forgejo":
		loc.Kind = KindGitea
	case KindGitHub:
		loc.Kind = KindGitHub
	case "":
		h := strings.ToLower(host)
		if i := strings.LastIndex(h, ":"); i >= 0 && !strings.Contains(h[i:], "]") {
			h = h[:i]
		}
		switch {
		case h == "github.com" || strings.HasPrefix(h, "github."):
			loc.Kind = KindGitHub
		case strings.Contains(h, "gitea") || strings.Contains(h, "forgejo") || strings.Contains(h, "codeberg"):
			loc.Kind = KindGitea
		default:
			return Location{}, fmt.Errorf("forge: cannot tell which forge serves %s: pass --forge gitea or --forge github", redactURL(rawURL))
		}
	default:
		return Location{}, fmt.Errorf("forge: --forge %q: want gitea, forgejo or github", kind)
	}
	return loc, nil
}

func splitRepoURL(raw string) (host, scheme, p string, err error) {
	if !strings.Contains(raw, "://") {
		// scp-like git@host:owner/repo.git
		at := strings.Index(raw, "@")
		colon := strings.Index(raw, ":")
		if colon > 0 && (at < 0 || at < colon) {
			return raw[at+1 : colon], "https", raw[colon+1:], nil
		}
		return "", "", "", fmt.Errorf("forge: %s is not a repository URL on a forge (a local path has no pull requests)", raw)
	}
	u, perr := url.Parse(raw)
	if perr != nil {
		return "", "", "", fmt.Errorf("forge: %s: %v", redactURL(raw), perr)
	}
	scheme = u.Scheme
	host = u.Host
	switch scheme {
	case "http", "https":
	case "ssh", "git":
		scheme, host = "https", u.Hostname()
	default:
		return "", "", "", fmt.Errorf("forge: %s: a %s URL has no forge API", redactURL(raw), u.Scheme)
	}
	return host, scheme, u.Path, nil
}

// redactURL drops user info from a URL for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = nil
	return u.String()
}

// MarkerComment is the hidden marker UpsertComment finds its comment by:
// an HTML comment, which neither forge renders.
func MarkerComment(id string) string { return "<!-- notesctl:" + id + " -->" }

func withMarker(marker, body string) string {
	if strings.HasPrefix(body, marker) {
		return body
	}
	return marker + "\n" + body
}

// ErrNotFound is returned (wrapped) when a pull request does not exist.
var ErrNotFound = errors.New("not found")
