package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sethvargo/go-githubactions"
	"github.com/spf13/cobra"

	"github.com/notesctl/notesctl/manifests/gitops"
	"github.com/notesctl/notesctl/manifests/gitops/forge"
	"github.com/notesctl/notesctl/pipeline"
	"github.com/notesctl/notesctl/pipeline/rollout"
)

// previewMarker identifies the one pull-request comment a preview keeps up
// to date.
var previewMarker = forge.MarkerComment("preview")

func (a *app) previewCommand() *cobra.Command {
	var bf buildFlags
	var gf gitopsFlags
	var pr, closeN int
	var ttl time.Duration
	var domain, appPath, siteRepo string
	var comment bool
	var local, wait bool
	var prf prFlags
	var cf clusterFlags
	cmd := &cobra.Command{
		Use:   "preview --pr N --preview-domain DOMAIN | --close N | --ttl DURATION",
		Short: "Deploy a live preview of a pull request, or close previews",
		Long: `preview renders the head of pull request N with the baseURL
https://pr-N.<preview-domain>/, pushes it with the tag
pr-N-<sha7>-<commit time>-hugo<version> (no release ImagePolicy matches it), and
writes previews/pr-N/ into the GitOps repository: a kustomize overlay of the
app (--preview-app, default ./apps/notes) in its own namespace
(NAMESPACE-pr-N), with the name suffix -pr-N, one replica and the Ingress host
pr-N.<preview-domain>. previews/kustomization.yaml lists the open previews,
and the Flux Kustomization NAME-previews that "manifests init" scaffolds
applies them with pruning.

--close N removes the overlay (Flux prunes its objects, namespace included).
--ttl closes every preview whose pull request head commit is older than the
duration (the overlay records the commit time).

--wait asks Flux to reconcile now and waits until the previews Kustomization
(--kustomization, default notes-previews) has applied the commit and the
preview's Deployment runs the new image; with --close, until Flux has pruned
the preview. With --gitops-pr it first waits for the pull request to merge.

Under GitHub or Gitea Actions on a pull_request event, the event says N:
a closed pull request closes its preview, any other event deploys it, and
the preview URL goes into one comment on the pull request, updated on later
pushes (token: NOTESCTL_FORGE_TOKEN, else GITHUB_TOKEN or GITEA_TOKEN).`,
		Example: `  # deploy the preview of pull request 12 (in the site repository, at its head)
  notesctl preview --pr 12 --preview-domain preview.example.org \
      --image ghcr.io/acme/notes --gitops https://github.com/acme/gitops.git

  # offline, into the local GitOps repository of release --local
  notesctl preview --local --pr 12 --preview-domain preview.example.org

  # the pull request was closed or merged
  notesctl preview --local --close 12

  # close previews whose head commit is older than a week
  notesctl preview --local --ttl 168h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inputs := map[string]string{}
			actions := a.getenv("GITHUB_ACTIONS") == "true"
			if actions {
				var err error
				if inputs, err = actionInputs(a); err != nil {
					return err
				}
			}
			if err := a.prepare(cmd, siteDirFor(cmd, a, bf.site), inputs); err != nil {
				return err
			}
			var event *pullRequestEvent
			if actions && !flagChanged(cmd.Flags(), "pr") && !flagChanged(cmd.Flags(), "close") && !flagChanged(cmd.Flags(), "ttl") {
				ev, err := readPullRequestEvent(a)
				if err != nil {
					return err
				}
				event = ev
				if ev.closed() {
					closeN = ev.Number
				} else {
					pr = ev.Number
					if !flagChanged(cmd.Flags(), "revision") && ev.PullRequest.Head.SHA != "" {
						bf.revision = ev.PullRequest.Head.SHA
					}
					if !flagChanged(cmd.Flags(), "branch") && bf.branch == "" {
						bf.branch = ev.PullRequest.Head.Ref
					}
				}
				if !flagChanged(cmd.Flags(), "comment") {
					comment = true
				}
			}
			modes := 0
			for _, set := range []bool{pr != 0, closeN != 0, ttl != 0} {
				if set {
					modes++
				}
			}
			if modes != 1 {
				return errors.New("preview: give exactly one of --pr N, --close N or --ttl DURATION")
			}
			if local {
				if bf.image == "" {
					bf.image = localImage
				}
				if bf.to == "" {
					bf.to = "oci:" + filepath.Join(bf.site, localLayout)
				}
				if gf.url == "" {
					gf.url = filepath.Join(bf.site, localGitOps)
				}
				if !flagChanged(cmd.Flags(), "base") {
					bf.base = "scratch"
				}
			}
			if gf.url == "" {
				return errors.New("preview: no GitOps repository: pass --gitops URL|PATH (or --local)")
			}
			gopts, err := gf.options(a)
			if err != nil {
				return err
			}
			var gpr *gitopsPR
			if prf.enabled {
				// One branch per pull request and head commit; previews
				// and releases of the same site commit never share one.
				n := pr + closeN
				if n == 0 {
					return errors.New("preview: --gitops-pr works with --pr or --close, not --ttl")
				}
				commit, err := resolveCommit(bf.site, bf.revision)
				if err != nil {
					return fmt.Errorf("--gitops-pr: %w", err)
				}
				if gpr, gopts, err = a.startGitOpsPRHead(cmd.Context(), &gf, gopts, gitops.PRBranch(fmt.Sprintf("preview:pr-%d", n), commit)); err != nil {
					return err
				}
			}
			opts := pipeline.PreviewOptions{GitOps: gopts, Domain: domain, AppPath: appPath}
			var prWait *rollout.Options
			if wait {
				w := cf.options(a)
				opts.Wait = &w
				if gpr != nil {
					// --wait waits for the merge, then for Flux.
					prWait, opts.Wait = opts.Wait, nil
				}
			}
			sink := a.sink()
			defer a.finish(sink)
			var res *pipeline.PreviewResult
			switch {
			case pr != 0:
				if actions {
					if err := requiredInputs(bf.image, gf.url); err != nil {
						return err
					}
				}
				if flagChanged(cmd.Flags(), "base-url") {
					return errors.New("preview: --base-url is the preview's own (https://pr-N.<preview-domain>/); leave it out")
				}
				if opts.Build, err = bf.options(a, a.stdin); err != nil {
					return err
				}
				opts.Number = pr
				res, err = pipeline.Preview(cmd.Context(), opts, sink)
			case closeN != 0:
				opts.Number = closeN
				res, err = pipeline.ClosePreview(cmd.Context(), opts, sink)
			default:
				res, err = pipeline.ExpirePreviews(cmd.Context(), opts, ttl, time.Now(), sink)
			}
			if err != nil {
				return err
			}
			if gpr != nil {
				title, diff := fmt.Sprintf("Preview pull request #%d", res.Number), ""
				if closeN != 0 {
					title = fmt.Sprintf("Close the preview of pull request #%d", res.Number)
				}
				if res.Changed {
					diff = res.Diff
				}
				target := rollout.Target{Namespace: res.Namespace}
				if res.Build != nil {
					target.Image = res.Build.Image
				}
				p, err := gpr.finish(cmd.Context(), a, title, diff, prf.autoMerge, prWait, target)
				if err != nil {
					return err
				}
				if p != nil && a.output != "json" {
					defer fmt.Fprintf(a.stdout, "gitops-pr: %s (#%d, %s)\n", p.URL, p.Number, prState(p))
				}
			}
			if comment && (pr != 0 || closeN != 0) {
				if err := a.commentPreview(cmd, event, siteRepo, gf.forge, res, closeN != 0); err != nil {
					return err
				}
			}
			if actions {
				setPreviewOutputs(a, res)
			}
			return a.printPreview(res, closeN != 0 || ttl != 0)
		},
	}
	bf.register(cmd)
	gf.register(cmd)
	prf.register(cmd)
	cf.registerFor(cmd, "notes-previews", "Flux Kustomization that applies the previews (manifests init scaffolds NAME-previews)")
	f := cmd.Flags()
	f.BoolVar(&wait, "wait", false, "after the commit, ask Flux to reconcile now and wait until the preview runs the new image (or, closing, is pruned)")
	f.IntVar(&pr, "pr", 0, "pull request number to deploy a preview of (its head: --revision, default HEAD)")
	f.IntVar(&closeN, "close", 0, "pull request number whose preview to remove")
	f.DurationVar(&ttl, "ttl", 0, "close every preview whose head commit is older than this, e.g. 168h")
	f.StringVar(&domain, "preview-domain", "", "domain of the previews: pull request N is served at https://pr-N.<domain>/")
	f.StringVar(&appPath, "preview-app", "./apps/notes", "the app's directory in the GitOps repository, which each preview copies")
	f.BoolVar(&comment, "comment", false, "keep one comment with the preview URL on the pull request (default on under Actions pull_request events)")
	f.StringVar(&siteRepo, "site-repo", "", "the site repository's URL, for the comment (default under Actions: $GITHUB_SERVER_URL/$GITHUB_REPOSITORY)")
	f.BoolVar(&local, "local", false, "offline: OCI layout and the local GitOps repository of release --local, scratch base")
	return cmd
}

// pullRequestEvent is the part of an Actions pull_request event payload
// (GITHUB_EVENT_PATH) a preview reads; GitHub and Gitea write the same.
type pullRequestEvent struct {
	Action      string `json:"action"`
	Number      int    `json:"number"`
	PullRequest struct {
		Number int    `json:"number"`
		State  string `json:"state"`
		Merged bool   `json:"merged"`
		Head   struct {
			SHA string `json:"sha"`
			Ref string `json:"ref"`
		} `json:"head"`
	} `json:"pull_request"`
}

func (e *pullRequestEvent) closed() bool {
	return e.Action == "closed" || e.PullRequest.State == "closed"
}

func readPullRequestEvent(a *app) (*pullRequestEvent, error) {
	name := a.getenv("GITHUB_EVENT_NAME")
	if name != "pull_request" && name != "pull_request_target" {
		return nil, fmt.Errorf("preview: the workflow runs on a %q event, not pull_request: pass --pr N, --close N or --ttl", name)
	}
	p := a.getenv("GITHUB_EVENT_PATH")
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("preview: the %s event payload: %w", name, err)
	}
	var ev pullRequestEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, fmt.Errorf("preview: the %s event payload %s: %w", name, p, err)
	}
	if ev.Number == 0 {
		ev.Number = ev.PullRequest.Number
	}
	if ev.Number <= 0 {
		return nil, fmt.Errorf("preview: the %s event payload %s names no pull request number", name, p)
	}
	return &ev, nil
}

// forgeToken is the token for the forge API: NOTESCTL_FORGE_TOKEN, else the
// one Actions provide.
func (a *app) forgeToken(kind string) string {
	for _, k := range []string{"NOTESCTL_FORGE_TOKEN", map[string]string{forge.KindGitea: "GITEA_TOKEN", forge.KindGitHub: "GITHUB_TOKEN"}[kind], "GITHUB_TOKEN", "GITEA_TOKEN"} {
		if v := strings.TrimSpace(a.getenv(k)); k != "" && v != "" {
			a.addSecret(v)
			return v
		}
	}
	return ""
}

// commentPreview keeps the one preview comment on the pull request.
func (a *app) commentPreview(cmd *cobra.Command, event *pullRequestEvent, siteRepo, kind string, res *pipeline.PreviewResult, closed bool) error {
	if siteRepo == "" {
		server, repo := a.getenv("GITHUB_SERVER_URL"), a.getenv("GITHUB_REPOSITORY")
		if server == "" || repo == "" {
			return errors.New("preview: --comment needs --site-repo URL (under Actions GITHUB_SERVER_URL and GITHUB_REPOSITORY say it)")
		}
		siteRepo = strings.TrimSuffix(server, "/") + "/" + repo
	}
	if kind == "" && a.getenv("GITHUB_ACTIONS") == "true" {
		kind = forge.KindGitHub
		if a.getenv("GITEA_ACTIONS") == "true" {
			kind = forge.KindGitea
		}
	}
	loc, err := forge.Detect(siteRepo, kind)
	if err != nil {
		return err
	}
	opts := forge.Options{Kind: loc.Kind, URL: loc.URL, Token: a.forgeToken(loc.Kind),
		Logf: func(format string, args ...any) {
			fmt.Fprintf(a.stderr, "notesctl: %s\n", a.redact(fmt.Sprintf(format, args...)))
		}}
	if loc.Kind == forge.KindGitHub && a.getenv("GITHUB_ACTIONS") == "true" {
		opts.APIURL, opts.GraphQLURL = a.getenv("GITHUB_API_URL"), a.getenv("GITHUB_GRAPHQL_URL")
	}
	f, err := forge.New(cmd.Context(), opts)
	if err != nil {
		return err
	}
	var body string
	if closed {
		body = "The preview of this pull request is closed: its overlay is removed from the GitOps repository, and Flux prunes it."
	} else {
		body = fmt.Sprintf("**Preview:** %s\n\nCommit `%s`, image `%s`.", res.URL, shortCommit(res.Build.Commit), res.Build.Image)
	}
	c, result, err := f.UpsertComment(cmd.Context(), loc.Repo, res.Number, previewMarker, body)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "notesctl: preview comment %s on %s#%d: %s\n", result, loc.Repo, res.Number, c.URL)
	return nil
}

func shortCommit(c string) string {
	if len(c) > 7 {
		return c[:7]
	}
	return c
}

func setPreviewOutputs(a *app, res *pipeline.PreviewResult) {
	if a.getenv("GITHUB_OUTPUT") == "" {
		return
	}
	gh := githubactions.New(githubactions.WithWriter(a.stdout), githubactions.WithGetenv(githubactions.GetenvFunc(a.getenv)))
	gh.SetOutput("preview-url", res.URL)
	gh.SetOutput("gitops-commit", res.Commit)
	gh.SetOutput("changed", fmt.Sprint(res.Changed))
	if b := res.Build; b != nil {
		gh.SetOutput("image", b.Image)
		gh.SetOutput("tag", b.Tag)
		gh.SetOutput("digest", b.Digest)
	}
}

func (a *app) printPreview(res *pipeline.PreviewResult, closing bool) error {
	if a.output == "json" {
		return a.printJSON(res)
	}
	if closing {
		if len(res.Closed) == 0 {
			fmt.Fprintln(a.stdout, "no preview to close")
			return nil
		}
		fmt.Fprintf(a.stdout, "closed: %s\ngitops: commit %s\n", joinInts(res.Closed), res.Commit)
		a.printPreviewRollout(res)
		return nil
	}
	fmt.Fprintf(a.stdout, "preview-url: %s\n", res.URL)
	fmt.Fprintf(a.stdout, "image:       %s\n", res.Build.Image)
	if res.Changed {
		fmt.Fprintf(a.stdout, "gitops:      commit %s writes %s\n", res.Commit, res.Dir)
	} else {
		fmt.Fprintf(a.stdout, "gitops:      %s already deploys this image\n", res.Dir)
	}
	a.printPreviewRollout(res)
	return nil
}

func (a *app) printPreviewRollout(res *pipeline.PreviewResult) {
	if res.Rollout == nil {
		return
	}
	line := "rollout: Flux applied " + res.Rollout.Applied
	if len(res.Rollout.Deployments) > 0 {
		line += "; " + strings.Join(res.Rollout.Deployments, ", ")
	}
	fmt.Fprintln(a.stdout, line)
	if res.Rollout.Note != "" {
		fmt.Fprintf(a.stdout, "rollout: %s\n", res.Rollout.Note)
	}
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmt.Sprintf("#%d", n)
	}
	return strings.Join(s, ", ")
}
