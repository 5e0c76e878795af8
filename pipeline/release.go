package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/go-git/go-billy/v5"

	"github.com/notesctl/notesctl/manifests"
	"github.com/notesctl/notesctl/manifests/gitops"
	"github.com/notesctl/notesctl/pipeline/rollout"
	"github.com/notesctl/notesctl/registry"
	"github.com/notesctl/notesctl/registry/attest"
	"github.com/notesctl/notesctl/render"
)

// DefaultMessageTemplate is the GitOps commit message. The trailers name
// the source commit and the image so that `git log --grep` and tooling can
// trace a deployment back to the site commit.
const DefaultMessageTemplate = `Deploy {{.Repository}}:{{.Tag}}

Update {{.Policy}} to {{.Image}}
{{- if .Rollback}} (rollback){{end}}

{{if .Commit}}Source-Commit: {{.Commit}}
{{end}}{{range .Images}}Image: {{.}}
{{end}}`

// ReleaseOptions are the inputs of a whole release.
type ReleaseOptions struct {
	Build BuildOptions
	// GitOps is the repository the update commit goes to.
	GitOps gitops.Options
	// Policy is the Flux ImagePolicy the markers name, "namespace:name".
	Policy string
	// MessageTemplate is a text/template over MessageData; empty = default.
	MessageTemplate string
	// SkipUnparseable updates the other files when files with setter
	// marker text cannot be parsed; without it they fail the release
	// before anything is built.
	SkipUnparseable bool
	// DryRun renders and builds but publishes and commits nothing: the
	// result holds what would be pushed and the GitOps diff.
	DryRun bool
	// Scaffold, when set, creates a local GitOps repository with
	// manifests.Scaffold if GitOps.URL names a path that does not exist (or
	// an empty folder). Without it, such a path is an error.
	Scaffold *manifests.ScaffoldOptions
	// FluxWebhook is a Flux Receiver URL to call after the commit, signed
	// with FluxWebhookToken (HMAC-SHA256, generic-hmac receivers).
	FluxWebhook      string
	FluxWebhookToken string
	// Wait, when set, follows the commit into the cluster: reconcile now
	// and wait for Flux to apply it and the Deployment to run the image.
	Wait *rollout.Options
	// Keys sign the pushed image (--sign-key) and gate the GitOps commit
	// on its signature (--verify-key); see sign.go.
	Keys Keys
}

// Outcomes of a release.
const (
	// OutcomeReleased: a GitOps commit deploys the new image.
	OutcomeReleased = "released"
	// OutcomeNoOp: the GitOps repository already deployed the image this
	// release would build; nothing was built, pushed or committed.
	OutcomeNoOp = "no-op"
	// OutcomeUnchanged: the image was built and pushed, and the manifests
	// already held it; nothing was committed.
	OutcomeUnchanged = "unchanged"
	// OutcomeSuperseded: the image was built and pushed, but the GitOps
	// repository deploys a newer release (by commit time), which it keeps.
	OutcomeSuperseded = "superseded"
	// OutcomeDryRun: a dry run; nothing was published or committed.
	OutcomeDryRun = "dry-run"
)

// MessageData is what a commit message template sees.
type MessageData struct {
	Image string // repository:tag@digest
	// Images are all images the commit deploys: Image, and for an update
	// of several policies, theirs.
	Images      []string
	Repository  string
	Tag         string
	Digest      string
	Commit      string // source commit
	ShortCommit string
	Branch      string
	Policy      string
	Changes     []manifests.Change
	Rollback    bool
}

// ReleaseResult is the one result of a release.
type ReleaseResult struct {
	Build  *BuildResult `json:"build"`
	GitOps GitOpsResult `json:"gitops"`
	// Outcome is what the release did, one of the Outcome* values.
	Outcome string `json:"outcome"`
	Skipped bool   `json:"skipped"`
	// Reason says why the release was a no-op, or why it was not.
	Reason    string             `json:"reason,omitempty"`
	DryRun    bool               `json:"dryRun"`
	Notified  bool               `json:"notified"`
	Rollout   *rollout.Result    `json:"rollout,omitempty"`
	Durations map[Stage]Duration `json:"durations"`
	// Signatures are the signature referrers of the image (--sign-key).
	Signatures []attest.Signed `json:"signatures,omitempty"`
}

// GitOpsResult is what happened in the GitOps repository.
type GitOpsResult struct {
	Repository string             `json:"repository"`
	Branch     string             `json:"branch"`
	Commit     string             `json:"commit,omitempty"`
	Changed    bool               `json:"changed"`
	Changes    []manifests.Change `json:"changes,omitempty"`
	Diff       string             `json:"diff,omitempty"`
	Attempts   int                `json:"attempts,omitempty"`
	Scaffolded bool               `json:"scaffolded,omitempty"`
	// Superseded names the newer release the repository already deploys
	// when this one was not committed because of it.
	Superseded string `json:"superseded,omitempty"`
}

// Duration marshals as seconds.
type Duration time.Duration

// MarshalJSON writes seconds with millisecond precision.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf("%.3f", time.Duration(d).Seconds())), nil
}

func parsePolicy(s string) (ns, name string, err error) {
	parts := strings.Split(s, ":")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "", "", fmt.Errorf("--policy %q: want NAMESPACE:NAME of the Flux ImagePolicy, e.g. flux-system:notes", s)
	}
	return parts[0], parts[1], nil
}

// Release runs the whole pipeline.
func Release(ctx context.Context, opts ReleaseOptions, sink Sink) (*ReleaseResult, error) {
	r := newRunner(sink)
	res := &ReleaseResult{DryRun: opts.DryRun, GitOps: GitOpsResult{Repository: manifests.RedactURL(opts.GitOps.URL), Branch: opts.GitOps.Branch}}
	defer func() { res.Durations = durations(r.times.snapshot()) }()

	if opts.Policy == "" {
		opts.Policy = "flux-system:notes"
	}
	ns, pname, err := parsePolicy(opts.Policy)
	if err != nil {
		return nil, err
	}
	if opts.GitOps.URL == "" {
		return nil, fmt.Errorf("no GitOps repository: pass --gitops URL|PATH")
	}
	// A dry run writes nothing, not even the repair of a commit an earlier
	// run was killed in.
	opts.GitOps.ReadOnly = opts.GitOps.ReadOnly || opts.DryRun
	if err := checkMessageTemplate(opts.MessageTemplate); err != nil {
		return nil, err
	}
	if opts.Scaffold == nil {
		if err := missingLocal(opts.GitOps.URL); err != nil {
			return nil, err
		}
	}

	p, err := plan(r, opts.Build)
	if err != nil {
		return nil, err
	}

	if opts.Scaffold != nil {
		made, url, cleanup, err := scaffoldLocal(opts.GitOps.URL, *opts.Scaffold, p.repo.Repository, opts.DryRun)
		if err != nil {
			return nil, err
		}
		defer cleanup()
		opts.GitOps.URL = url
		res.GitOps.Scaffolded = made
		if made {
			r.note(StageUpdate, "created GitOps repository "+opts.GitOps.URL+" (manifests init)")
		}
	}

	// Read the GitOps repository before building: a repository that cannot
	// be read or has no marker for the policy fails the release before
	// anything is pushed.
	var deployed []manifests.Found
	var ws *gitops.Workspace
	if err := r.stage(StageUpdate, func() (string, error) {
		var err error
		ws, deployed, err = preflightGitOps(ctx, opts.GitOps, manifests.Policy{Namespace: ns, Name: pname, Image: p.repo.Repository, Tag: p.tag}, opts.SkipUnparseable)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d marker(s) for %s", len(deployed), opts.Policy), nil
	}); err != nil {
		return nil, err
	}

	// Idempotency: if the GitOps repo already deploys the image this
	// release would build (same commit, generator, base digest, web root,
	// platforms, layer format), there is nothing to render, push or commit.
	ref, reason, deployedAlready := deployedRelease(ctx, opts, p, deployed)
	res.Reason = reason
	if deployedAlready {
		return skipRelease(ctx, r, opts, p, res, ref, ws.Head())
	}
	r.note(StageUpdate, "not a no-op: "+reason)

	buildOpts := opts.Build
	if opts.DryRun {
		// A dry run builds for real but publishes into a throwaway layout,
		// so that the digest it reports is the one a real run would push.
		tmp, err := tempLayout()
		if err != nil {
			return nil, err
		}
		defer tmp.cleanup()
		buildOpts.To = "oci:" + tmp.dir
	}
	build, err := buildPlanned(ctx, r, buildOpts, p)
	if err != nil {
		return nil, err
	}
	if opts.DryRun {
		build.Destination = opts.Build.Image
		if opts.Build.To != "" {
			build.Destination = opts.Build.To
		}
		build.BytesUploaded = 0
	}
	res.Build = build

	if !opts.DryRun {
		// Never commit for an image that is not complete where it was pushed.
		err = r.stage(StageVerify, func() (string, error) {
			if err := registry.Verify(ctx, build.Destination+"@"+build.Digest, opts.Build.Registry); err != nil {
				return "", fmt.Errorf("image %s is not complete in %s; not committing: %w", build.Image, build.Destination, err)
			}
			return "manifest and every blob present", nil
		})
		if err != nil {
			return nil, err
		}
		// Sign, then verify before deploy: nothing unverified is committed.
		if res.Signatures, err = signRelease(ctx, r, opts.Keys, build, opts.Build.Registry); err != nil {
			return res, err
		}
		if _, err := gate(ctx, r, opts.Keys.Verify, build.Image, build.Destination, opts.Build.Registry); err != nil {
			return res, err
		}
	}

	policy := manifests.Policy{Namespace: ns, Name: pname, Image: build.Repository, Tag: build.Tag, Digest: build.Digest}
	data := MessageData{
		Image: build.Image, Images: []string{build.Image}, Repository: build.Repository, Tag: build.Tag, Digest: build.Digest,
		Commit: build.Commit, ShortCommit: shortCommit(build.Commit), Branch: build.Branch, Policy: opts.Policy,
	}
	if err := r.stage(StageUpdate, func() (string, error) {
		return updateGitOps(ctx, r, ws, opts, policy, data, &res.GitOps)
	}); err != nil {
		return res, err
	}

	res.Outcome = outcome(res)

	if opts.FluxWebhook != "" && res.GitOps.Changed && !opts.DryRun {
		if err := r.stage(StageNotify, func() (string, error) {
			return notifyReceiver(ctx, opts.FluxWebhook, opts.FluxWebhookToken, res)
		}); err != nil {
			return res, err
		}
		res.Notified = true
	}
	if opts.Wait != nil && !opts.DryRun && res.GitOps.Commit != "" && res.GitOps.Superseded == "" {
		target := rollout.Target{Branch: gitopsBranch(opts.GitOps), Commit: res.GitOps.Commit, Image: build.Image}
		if res.Rollout, err = waitRollout(ctx, r, *opts.Wait, opts.GitOps, target); err != nil {
			return res, err
		}
	}
	return res, nil
}

// skipRelease reports a release whose image the GitOps repository already
// deploys; with --wait it still follows the tip into the cluster, since a
// commit may be made but not yet applied.
func skipRelease(ctx context.Context, r *runner, opts ReleaseOptions, p *plannedBuild, res *ReleaseResult, ref string, head gitops.CommitInfo) (*ReleaseResult, error) {
	res.Skipped, res.Outcome = true, OutcomeNoOp
	res.Build = &BuildResult{Image: ref, Tag: p.tag, Commit: p.src.Commit, Revision: p.src.Revision(), Branch: p.src.Branch, CommitTime: p.src.Time, Repository: p.repo.Repository, Generator: render.GeneratorName, GeneratorVer: generatorVersion()}
	res.Build.Digest = parseRef(ref).Digest
	existingAttestations(ctx, r, opts.Build, p, res.Build)
	r.note(StageUpdate, res.Reason+": nothing to do")
	if opts.Wait == nil || opts.DryRun {
		return res, nil
	}
	res.GitOps.Commit = head.Hash
	var err error
	res.Rollout, err = waitRollout(ctx, r, *opts.Wait, opts.GitOps, rollout.Target{Branch: gitopsBranch(opts.GitOps), Commit: head.Hash, Image: ref})
	return res, err
}

// outcome classifies a release that went through the update stage.
func outcome(res *ReleaseResult) string {
	switch {
	case res.DryRun:
		return OutcomeDryRun
	case res.GitOps.Superseded != "":
		return OutcomeSuperseded
	case res.GitOps.Changed:
		return OutcomeReleased
	default:
		return OutcomeUnchanged
	}
}

func gitopsBranch(o gitops.Options) string {
	if o.Branch != "" {
		return o.Branch
	}
	return gitops.DefaultBranch
}

func shortCommit(c string) string {
	if len(c) > 7 {
		return c[:7]
	}
	return c
}

func durations(in map[Stage]time.Duration) map[Stage]Duration {
	out := make(map[Stage]Duration, len(in))
	for k, v := range in {
		out[k] = Duration(v)
	}
	return out
}

func checkMessageTemplate(t string) error {
	if t == "" {
		return nil
	}
	if _, err := template.New("message").Option("missingkey=error").Parse(t); err != nil {
		return fmt.Errorf("--message template: %w", err)
	}
	return nil
}

func renderMessage(t string, d MessageData) (string, error) {
	if t == "" {
		t = DefaultMessageTemplate
	}
	tmpl, err := template.New("message").Option("missingkey=error").Parse(t)
	if err != nil {
		return "", fmt.Errorf("--message template: %w", err)
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, d); err != nil {
		return "", fmt.Errorf("--message template: %w", err)
	}
	msg := strings.TrimSpace(b.String())
	if msg == "" {
		return "", errors.New("--message template rendered an empty commit message")
	}
	return msg + "\n", nil
}

// updateGitOps applies the policy to the GitOps repository and commits. The
// edit runs again on a fresh tip if the push races another release.
func updateGitOps(ctx context.Context, r *runner, ws *gitops.Workspace, opts ReleaseOptions, policy manifests.Policy, data MessageData, out *GitOpsResult) (string, error) {
	edit := func(fsys billy.Filesystem, head gitops.CommitInfo) (string, bool, error) {
		newer, err := newerRelease(fsys, policy)
		if err != nil {
			return "", false, err
		}
		out.Superseded = newer
		if newer != "" {
			r.note(StageUpdate, fmt.Sprintf("the GitOps repository already deploys %s, newer than %s: not overwriting it", newer, policy.Tag))
			out.Changes = nil
			return "", false, nil
		}
		result, err := manifests.Update(fsys, "", []manifests.Policy{policy}, manifests.UpdateOptions{DryRun: opts.DryRun, SkipUnparseable: opts.SkipUnparseable})
		if err != nil {
			return "", false, err
		}
		for _, s := range result.Skipped {
			r.note(StageUpdate, "skipped "+s.String())
		}
		out.Changes = result.Changes
		out.Diff = result.Diff()
		if len(result.Changes) == 0 || opts.DryRun {
			return "", false, nil
		}
		d := data
		d.Changes = result.Changes
		msg, err := renderMessage(opts.MessageTemplate, d)
		return msg, err == nil, err
	}
	cr, err := ws.Commit(ctx, edit)
	if err != nil {
		return "", err
	}
	out.Commit, out.Changed, out.Attempts = cr.Hash, cr.Changed, cr.Attempts
	if out.Branch == "" {
		out.Branch = cr.Branch
	}
	switch {
	case opts.DryRun:
		return fmt.Sprintf("dry run: %d change(s) would be committed", len(out.Changes)), nil
	case !cr.Changed:
		return "no change: the manifests already hold this image", nil
	default:
		return fmt.Sprintf("commit %s on %s (%d change(s))", shortCommit(cr.Hash), out.Branch, len(out.Changes)), nil
	}
}

// newerRelease returns the reference deployed now if its tag is one of
// ours and newer (by commit time) than the tag being released: a release
// that lost a race must not roll the site back.
func newerRelease(fsys billy.Filesystem, policy manifests.Policy) (string, error) {
	found, err := manifests.Current(fsys, "", policy.ID())
	if err != nil {
		return "", err
	}
	_, _, ours, _, ok := registry.ParseTag(policy.Tag)
	if !ok {
		return "", nil
	}
	for _, f := range found {
		tag := tagOf(f)
		if tag == "" {
			continue
		}
		if _, _, ts, _, ok := registry.ParseTag(tag); ok && ts > ours {
			// The whole reference, also when the markers split it into
			// name, tag and digest.
			if ref := (manifests.Deployed{Found: found}).Ref(); ref != "" {
				return ref, nil
			}
			return f.Value, nil
		}
	}
	return "", nil
}

// tagOf extracts the tag of what a marker holds: the value of a :tag
// marker, or the tag of a whole reference; "" when there is none or the
// value is not an image reference.
func tagOf(f manifests.Found) string {
	switch f.Field {
	case manifests.FieldTag:
		return f.Value
	case manifests.FieldImage:
		return parseRef(f.Value).Tag
	}
	return ""
}

// parseRef parses an image reference read from the GitOps repository; the
// zero Ref when it is not one (a template placeholder, a typo), which
// matches no release.
func parseRef(s string) registry.Ref {
	r, err := registry.ParseRef(s)
	if err != nil {
		return registry.Ref{}
	}
	return r
}

// preflightGitOps checks out the GitOps branch tip (kept for the commit)
// and reads what the policy's markers hold there. No marker is an error that names the files that did not
// parse, if any; so are files with marker text that do not parse, unless
// skipUnparseable.
func preflightGitOps(ctx context.Context, o gitops.Options, policy manifests.Policy, skipUnparseable bool) (*gitops.Workspace, []manifests.Found, error) {
	ws, err := gitops.Open(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	fsys, head := ws.FS(), ws.Head()
	found, err := manifests.Current(fsys, "", policy.ID())
	if err != nil {
		return nil, nil, err
	}
	if len(found) > 0 && !skipUnparseable {
		bad, err := manifests.Unparseable(fsys, "")
		if err != nil {
			return nil, nil, err
		}
		if len(bad) > 0 {
			return nil, nil, fmt.Errorf("GitOps repository %s (branch %s at %s): %w", manifests.RedactURL(o.URL), gitopsBranch(o), shortCommit(head.Hash), &manifests.UnparseableError{Files: bad})
		}
	}
	if len(found) > 0 {
		return ws, found, nil
	}
	// A dry-run update produces the engine's own error, which lists the
	// files it scanned and skipped.
	if _, err = manifests.Update(fsys, "", []manifests.Policy{policy}, manifests.UpdateOptions{DryRun: true}); err == nil {
		err = fmt.Errorf("no setter marker for image policy %q", policy.ID())
	}
	at := "empty (scaffold it first: notesctl manifests init)"
	if head.Hash != "" {
		at = shortCommit(head.Hash)
	}
	return nil, nil, fmt.Errorf("GitOps repository %s (branch %s at %s): %w", manifests.RedactURL(o.URL), gitopsBranch(o), at, err)
}
