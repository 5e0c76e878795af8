package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/spf13/cobra"

	"github.com/notesctl/notesctl/manifests/gitops"
	"github.com/notesctl/notesctl/manifests/gitops/forge"
	"github.com/notesctl/notesctl/pipeline/rollout"
)

// prFlags are the pull-request mode flags of the commands that write the
// GitOps repository (release, preview).
type prFlags struct {
	enabled   bool
	autoMerge bool
}

func (p *prFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVar(&p.enabled, "gitops-pr", false, "push to notesctl/<policy>/<site-sha7> and open (or update) one pull request against --gitops-branch instead of pushing to it (token: NOTESCTL_FORGE_TOKEN, else GITHUB_TOKEN/GITEA_TOKEN)")
	f.BoolVar(&p.autoMerge, "auto-merge", false, "with --gitops-pr: ask the forge to merge the pull request when its checks pass")
}

// gitopsPR is a pull-request mode run: the branch it commits to and the
// forge that gets the pull request.
type gitopsPR struct {
	base, head string
	created    bool // the branch was created by this run
	loc        forge.Location
	forge      forge.Forge
}

// startGitOpsPR resolves the site commit, creates the pull-request branch
// from the GitOps branch when it is missing, and returns the options that
// commit to it.
func (a *app) startGitOpsPR(ctx context.Context, g *gitopsFlags, opts gitops.Options, siteDir, revision string) (*gitopsPR, gitops.Options, error) {
	commit, err := resolveCommit(siteDir, revision)
	if err != nil {
		return nil, opts, fmt.Errorf("--gitops-pr: %w", err)
	}
	return a.startGitOpsPRHead(ctx, g, opts, gitops.PRBranch(g.policy, commit))
}

// startGitOpsPRHead is startGitOpsPR for the branch head.
func (a *app) startGitOpsPRHead(ctx context.Context, g *gitopsFlags, opts gitops.Options, head string) (*gitopsPR, gitops.Options, error) {
	loc, err := forge.Detect(g.url, g.forge)
	if err != nil {
		return nil, opts, fmt.Errorf("--gitops-pr: %w", err)
	}
	f, err := forge.New(ctx, forge.Options{Kind: loc.Kind, URL: loc.URL, APIURL: a.getenv("NOTESCTL_FORGE_API_URL"),
		Token: a.forgeToken(loc.Kind), Logf: a.logf})
	if err != nil {
		return nil, opts, err
	}
	pr := &gitopsPR{base: opts.Branch, head: head, loc: loc, forge: f}
	if pr.created, err = gitops.EnsureBranch(ctx, opts, pr.head); err != nil {
		return nil, opts, err
	}
	opts.Branch = pr.head
	return pr, opts, nil
}

// rollbackBranch is the pull-request branch of a rollback to a release
// (tag, digest or site commit), e.g. notesctl/flux-system/notes/rollback-b9060af.
func rollbackBranch(policy, to string) string {
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '-'
	}, strings.TrimPrefix(to, "sha256:"))
	if len(clean) > 40 {
		clean = clean[:40]
	}
	return strings.TrimSuffix(gitops.PRBranch(policy, "x"), "/x") + "/rollback-" + strings.Trim(clean, "-.")
}

func (a *app) logf(format string, args ...any) {
	fmt.Fprintf(a.stderr, "notesctl: %s\n", a.redact(fmt.Sprintf(format, args...)))
}

// resolveCommit is the full hash of revision in the site's repository.
func resolveCommit(siteDir, revision string) (string, error) {
	repo, err := git.PlainOpenWithOptions(siteDir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return "", fmt.Errorf("site %s: %w", siteDir, err)
	}
	if revision == "" {
		revision = "HEAD"
	}
	h, err := repo.ResolveRevision(plumbing.Revision(revision))
	if err != nil {
		return "", fmt.Errorf("site revision %q: %w", revision, err)
	}
	return h.String(), nil
}

// finish opens or updates the one pull request of the branch, with the
// GitOps diff in its body, asks for auto-merge, and with wait waits for the
// merge (and then, with cluster options, for Flux and the rollout of
// target: its Image, in its Namespace when set; the merge commit on the base
// branch is what Flux must apply).
func (p *gitopsPR) finish(ctx context.Context, a *app, title, diff string, autoMerge bool, wait *rollout.Options, target rollout.Target) (*forge.PR, error) {
	if p.created && strings.TrimSpace(diff) == "" {
		// The branch is the base's tip: nothing to propose.
		a.logf("no GitOps change: no pull request")
		return nil, nil
	}
	// No diff: this run committed nothing (a re-run); the pull request
	// keeps the body the commit's run wrote.
	var body string
	if strings.TrimSpace(diff) != "" {
		body = fmt.Sprintf("notesctl commits this GitOps update to `%s` for `%s`.\n\n```diff\n%s```\n", p.head, p.base, diff)
	}
	pr, res, err := p.forge.EnsurePR(ctx, p.loc.Repo, forge.PRSpec{Head: p.head, Base: p.base, Title: title, Body: body})
	if err != nil {
		return nil, err
	}
	a.logf("pull request %s: %s", res, pr.URL)
	if autoMerge {
		if err := p.forge.EnableAutoMerge(ctx, p.loc.Repo, pr); err != nil {
			return pr, err
		}
		a.logf("auto-merge requested for #%d", pr.Number)
	}
	if wait == nil {
		return pr, nil
	}
	timeout := wait.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !pr.Merged {
		if pr.State == forge.StateClosed {
			return pr, fmt.Errorf("pull request #%d (%s) was closed without merging", pr.Number, pr.URL)
		}
		select {
		case <-wctx.Done():
			return pr, fmt.Errorf("pull request #%d (%s) not merged after %s (state %s)", pr.Number, pr.URL, timeout, pr.State)
		case <-time.After(2 * time.Second):
		}
		if pr, err = p.forge.GetPR(wctx, p.loc.Repo, pr.Number); err != nil {
			return nil, err
		}
	}
	a.logf("pull request #%d merged as %s", pr.Number, pr.MergeCommit)
	c, err := rollout.New(*wait)
	if err != nil {
		return pr, err
	}
	if _, _, err := c.RequestReconcile(wctx); err != nil {
		return pr, err
	}
	target.Branch, target.Commit = p.base, pr.MergeCommit
	if _, err := c.Wait(wctx, target, func(msg string) { a.logf("rollout: %s", msg) }); err != nil {
		return pr, err
	}
	return pr, nil
}

func prState(pr *forge.PR) string {
	if pr.Merged {
		return "merged"
	}
	return pr.State
}
