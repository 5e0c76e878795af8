package forge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-github/v81/github"
)

// githubForge is GitHub's REST API through github.com/google/go-github, plus
// the one GraphQL mutation auto-merge has no REST call for.
type githubForge struct {
	c       *github.Client
	graphql string
	token   string
	hc      *http.Client
}

func newGitHub(opts Options, hc *http.Client) (Forge, error) {
	c := github.NewClient(hc).WithAuthToken(opts.Token)
	api, gql := opts.APIURL, opts.GraphQLURL
	if api == "" {
		u, err := url.Parse(opts.URL)
		if err != nil {
			return nil, fmt.Errorf("forge: github URL %q: %w", opts.URL, err)
		}
		if strings.EqualFold(u.Host, "github.com") {
			api = "https://api.github.com/"
		} else {
			// GitHub Enterprise Server.
			api = strings.TrimSuffix(opts.URL, "/") + "/api/v3/"
			if gql == "" {
				gql = strings.TrimSuffix(opts.URL, "/") + "/api/graphql"
			}
		}
	}
	if !strings.HasSuffix(api, "/") {
		api += "/"
	}
	base, err := url.Parse(api)
	if err != nil {
		return nil, fmt.Errorf("forge: github API URL %q: %w", api, err)
	}
	c.BaseURL = base
	if gql == "" {
		// api.github.com/graphql; an APIURL of a test server gets its /graphql.
		gql = base.ResolveReference(&url.URL{Path: "graphql"}).String()
	}
	return &githubForge{c: c, graphql: gql, token: opts.Token, hc: hc}, nil
}

func (g *githubForge) Kind() string { return KindGitHub }

func githubPR(p *github.PullRequest) *PR {
	return &PR{
		Number: p.GetNumber(), URL: p.GetHTMLURL(), State: p.GetState(), Merged: p.GetMerged(),
		MergeCommit: mergedCommit(p), Head: p.GetHead().GetRef(), HeadSHA: p.GetHead().GetSHA(),
		Base: p.GetBase().GetRef(), Title: p.GetTitle(), Body: p.GetBody(), NodeID: p.GetNodeID(),
	}
}

// mergedCommit is merge_commit_sha once merged: before that GitHub fills
// it with a test merge commit, which is not on the base branch.
func mergedCommit(p *github.PullRequest) string {
	if !p.GetMerged() {
		return ""
	}
	return p.GetMergeCommitSHA()
}

func githubErr(op string, repo Repo, resp *github.Response, err error) error {
	if resp != nil && resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("forge: %s in %s: %w: %v", op, repo, ErrNotFound, err)
	}
	return fmt.Errorf("forge: %s in %s: %w", op, repo, err)
}

func (g *githubForge) EnsurePR(ctx context.Context, repo Repo, spec PRSpec) (*PR, Result, error) {
	prs, resp, err := g.c.PullRequests.List(ctx, repo.Owner, repo.Name, &github.PullRequestListOptions{
		State: "open", Head: repo.Owner + ":" + spec.Head, Base: spec.Base})
	if err != nil {
		return nil, 0, githubErr("find pull request "+spec.Head, repo, resp, err)
	}
	for _, p := range prs {
		if p.GetHead().GetRef() != spec.Head || p.GetBase().GetRef() != spec.Base {
			continue
		}
		if spec.Body == "" || p.GetTitle() == spec.Title && p.GetBody() == spec.Body {
			return githubPR(p), Unchanged, nil
		}
		e, resp, err := g.c.PullRequests.Edit(ctx, repo.Owner, repo.Name, p.GetNumber(), &github.PullRequest{
			Title: github.Ptr(spec.Title), Body: github.Ptr(spec.Body)})
		if err != nil {
			return nil, 0, githubErr(fmt.Sprintf("update pull request #%d", p.GetNumber()), repo, resp, err)
		}
		return githubPR(e), Updated, nil
	}
	p, resp, err := g.c.PullRequests.Create(ctx, repo.Owner, repo.Name, &github.NewPullRequest{
		Title: github.Ptr(spec.Title), Head: github.Ptr(spec.Head), Base: github.Ptr(spec.Base), Body: github.Ptr(spec.Body)})
	if err != nil {
		return nil, 0, githubErr(fmt.Sprintf("open pull request %s -> %s", spec.Head, spec.Base), repo, resp, err)
	}
	return githubPR(p), Created, nil
}

func (g *githubForge) GetPR(ctx context.Context, repo Repo, number int) (*PR, error) {
	p, resp, err := g.c.PullRequests.Get(ctx, repo.Owner, repo.Name, number)
	if err != nil {
		return nil, githubErr(fmt.Sprintf("pull request #%d", number), repo, resp, err)
	}
	return githubPR(p), nil
}

func (g *githubForge) UpsertComment(ctx context.Context, repo Repo, number int, marker, body string) (*Comment, Result, error) {
	body = withMarker(marker, body)
	opts := &github.IssueListCommentsOptions{ListOptions: github.ListOptions{PerPage: 100}}
	for {
		cs, resp, err := g.c.Issues.ListComments(ctx, repo.Owner, repo.Name, number, opts)
		if err != nil {
			return nil, 0, githubErr(fmt.Sprintf("comments of #%d", number), repo, resp, err)
		}
		for _, c := range cs {
			if !strings.Contains(c.GetBody(), marker) {
				continue
			}
			if c.GetBody() == body {
				return &Comment{ID: c.GetID(), URL: c.GetHTMLURL(), Body: c.GetBody()}, Unchanged, nil
			}
			e, resp, err := g.c.Issues.EditComment(ctx, repo.Owner, repo.Name, c.GetID(), &github.IssueComment{Body: github.Ptr(body)})
			if err != nil {
				return nil, 0, githubErr(fmt.Sprintf("edit comment %d on #%d", c.GetID(), number), repo, resp, err)
			}
			return &Comment{ID: e.GetID(), URL: e.GetHTMLURL(), Body: e.GetBody()}, Updated, nil
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	c, resp, err := g.c.Issues.CreateComment(ctx, repo.Owner, repo.Name, number, &github.IssueComment{Body: github.Ptr(body)})
	if err != nil {
		return nil, 0, githubErr(fmt.Sprintf("comment on #%d", number), repo, resp, err)
	}
	return &Comment{ID: c.GetID(), URL: c.GetHTMLURL(), Body: c.GetBody()}, Created, nil
}

const enableAutoMerge = `mutation($id: ID!) { enablePullRequestAutoMerge(input: {pullRequestId: $id, mergeMethod: MERGE}) { pullRequest { number autoMergeRequest { enabledAt } } } }`

// EnableAutoMerge runs GitHub's enablePullRequestAutoMerge mutation (there
// is no REST call for it). The repository must allow auto-merge and the
// base branch must have required checks; GitHub says so otherwise.
func (g *githubForge) EnableAutoMerge(ctx context.Context, repo Repo, pr *PR) error {
	if pr.NodeID == "" {
		p, err := g.GetPR(ctx, repo, pr.Number)
		if err != nil {
			return err
		}
		pr = p
	}
	body, err := json.Marshal(map[string]any{"query": enableAutoMerge, "variables": map[string]string{"id": pr.NodeID}})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.graphql, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+g.token)
	resp, err := g.hc.Do(req)
	if err != nil {
		return fmt.Errorf("forge: auto-merge #%d in %s: %w", pr.Number, repo, err)
	}
	defer resp.Body.Close()
	var out struct {
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil && resp.StatusCode/100 == 2 {
		return fmt.Errorf("forge: auto-merge #%d in %s: decode answer: %w", pr.Number, repo, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("forge: auto-merge #%d in %s: %s", pr.Number, repo, resp.Status)
	}
	if len(out.Errors) > 0 {
		var msgs []string
		for _, e := range out.Errors {
			msgs = append(msgs, e.Message)
		}
		return fmt.Errorf("forge: auto-merge #%d in %s: %w", pr.Number, repo, errors.New(strings.Join(msgs, "; ")))
	}
	return nil
}
