package forge

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"code.gitea.io/sdk/gitea"
)

// giteaForge is Gitea's (and Forgejo's) REST API through code.gitea.io/sdk/gitea.
type giteaForge struct {
	// mu serializes calls: the SDK's client holds one context at a time.
	mu sync.Mutex
	c  *gitea.Client
}

func newGitea(ctx context.Context, opts Options, hc *http.Client) (Forge, error) {
	root := opts.URL
	if opts.APIURL != "" {
		root = strings.TrimSuffix(strings.TrimSuffix(opts.APIURL, "/"), "/api/v1")
	}
	c, err := gitea.NewClient(root, gitea.SetHTTPClient(hc), gitea.SetToken(opts.Token), gitea.SetContext(ctx),
		gitea.SetUserAgent("notesctl"))
	if err != nil {
		return nil, fmt.Errorf("forge: gitea at %s: %w", root, err)
	}
	return &giteaForge{c: c}, nil
}

func (g *giteaForge) Kind() string { return KindGitea }

func (g *giteaForge) with(ctx context.Context) func() {
	g.mu.Lock()
	g.c.SetContext(ctx)
	return g.mu.Unlock
}

func giteaPR(p *gitea.PullRequest) *PR {
	pr := &PR{Number: int(p.Index), URL: p.HTMLURL, State: string(p.State), Merged: p.HasMerged, Title: p.Title, Body: p.Body}
	if p.MergedCommitID != nil {
		pr.MergeCommit = *p.MergedCommitID
	}
	if p.Head != nil {
		pr.Head, pr.HeadSHA = p.Head.Ref, p.Head.Sha
	}
	if p.Base != nil {
		pr.Base = p.Base.Ref
	}
	return pr
}

func giteaErr(op string, repo Repo, resp *gitea.Response, err error) error {
	if resp != nil && resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("forge: %s in %s: %w: %v", op, repo, ErrNotFound, err)
	}
	return fmt.Errorf("forge: %s in %s: %w", op, repo, err)
}

func (g *giteaForge) EnsurePR(ctx context.Context, repo Repo, spec PRSpec) (*PR, Result, error) {
	defer g.with(ctx)()
	existing, err := g.openPR(repo, spec)
	if err != nil {
		return nil, 0, err
	}
	if existing != nil {
		if spec.Body == "" || existing.Title == spec.Title && existing.Body == spec.Body {
			return giteaPR(existing), Unchanged, nil
		}
		title, body := spec.Title, spec.Body
		p, resp, err := g.c.EditPullRequest(repo.Owner, repo.Name, existing.Index, gitea.EditPullRequestOption{Title: title, Body: &body})
		if err != nil {
			return nil, 0, giteaErr(fmt.Sprintf("update pull request #%d", existing.Index), repo, resp, err)
		}
		return giteaPR(p), Updated, nil
	}
	p, resp, err := g.c.CreatePullRequest(repo.Owner, repo.Name, gitea.CreatePullRequestOption{
		Head: spec.Head, Base: spec.Base, Title: spec.Title, Body: spec.Body})
	if err != nil {
		return nil, 0, giteaErr(fmt.Sprintf("open pull request %s -> %s", spec.Head, spec.Base), repo, resp, err)
	}
	return giteaPR(p), Created, nil
}

// openPR finds the open pull request from spec.Head to spec.Base. Gitea's
// base/head lookup answers the newest pull request of the pair, open or
// not; the list is the fallback that sees every open one.
func (g *giteaForge) openPR(repo Repo, spec PRSpec) (*gitea.PullRequest, error) {
	p, resp, err := g.c.GetPullRequestByBaseHead(repo.Owner, repo.Name, spec.Base, spec.Head)
	switch {
	case err == nil && p.State == gitea.StateOpen:
		return p, nil
	case err != nil && (resp == nil || resp.StatusCode != http.StatusNotFound):
		return nil, giteaErr("find pull request "+spec.Head, repo, resp, err)
	}
	for page := 1; ; page++ {
		prs, resp, err := g.c.ListRepoPullRequests(repo.Owner, repo.Name, gitea.ListPullRequestsOptions{
			ListOptions: gitea.ListOptions{Page: page, PageSize: 50}, State: gitea.StateOpen})
		if err != nil {
			return nil, giteaErr("list pull requests", repo, resp, err)
		}
		for _, p := range prs {
			if p.Head != nil && p.Base != nil && p.Head.Ref == spec.Head && p.Base.Ref == spec.Base {
				return p, nil
			}
		}
		if len(prs) < 50 {
			return nil, nil
		}
	}
}

func (g *giteaForge) GetPR(ctx context.Context, repo Repo, number int) (*PR, error) {
	defer g.with(ctx)()
	p, resp, err := g.c.GetPullRequest(repo.Owner, repo.Name, int64(number))
	if err != nil {
		return nil, giteaErr(fmt.Sprintf("pull request #%d", number), repo, resp, err)
	}
	return giteaPR(p), nil
}

func (g *giteaForge) UpsertComment(ctx context.Context, repo Repo, number int, marker, body string) (*Comment, Result, error) {
	defer g.with(ctx)()
	body = withMarker(marker, body)
	for page := 1; ; page++ {
		cs, resp, err := g.c.ListIssueComments(repo.Owner, repo.Name, int64(number), gitea.ListIssueCommentOptions{
			ListOptions: gitea.ListOptions{Page: page, PageSize: 50}})
		if err != nil {
			return nil, 0, giteaErr(fmt.Sprintf("comments of #%d", number), repo, resp, err)
		}
		for _, c := range cs {
			if !strings.Contains(c.Body, marker) {
				continue
			}
			if c.Body == body {
				return &Comment{ID: c.ID, URL: c.HTMLURL, Body: c.Body}, Unchanged, nil
			}
			e, resp, err := g.c.EditIssueComment(repo.Owner, repo.Name, c.ID, gitea.EditIssueCommentOption{Body: body})
			if err != nil {
				return nil, 0, giteaErr(fmt.Sprintf("edit comment %d on #%d", c.ID, number), repo, resp, err)
			}
			return &Comment{ID: e.ID, URL: e.HTMLURL, Body: e.Body}, Updated, nil
		}
		if len(cs) < 50 {
			break
		}
	}
	c, resp, err := g.c.CreateIssueComment(repo.Owner, repo.Name, int64(number), gitea.CreateIssueCommentOption{Body: body})
	if err != nil {
		return nil, 0, giteaErr(fmt.Sprintf("comment on #%d", number), repo, resp, err)
	}
	return &Comment{ID: c.ID, URL: c.HTMLURL, Body: c.Body}, Created, nil
}

// EnableAutoMerge schedules a merge commit once the pull request's checks
// pass (Gitea's "merge when checks succeed"); with no checks required Gitea
// merges at once.
func (g *giteaForge) EnableAutoMerge(ctx context.Context, repo Repo, pr *PR) error {
	defer g.with(ctx)()
	_, resp, err := g.c.MergePullRequest(repo.Owner, repo.Name, int64(pr.Number), gitea.MergePullRequestOption{
		Style: gitea.MergeStyleMerge, MergeWhenChecksSucceed: true, HeadCommitId: pr.HeadSHA})
	if err != nil {
		var detail string
		if resp != nil && resp.StatusCode == http.StatusMethodNotAllowed {
			detail = " (Gitea says the pull request cannot be merged: conflicts, a missing approval or merges not allowed)"
		}
		return fmt.Errorf("%w%s", giteaErr(fmt.Sprintf("auto-merge #%d", pr.Number), repo, resp, err), detail)
	}
	return nil
}
