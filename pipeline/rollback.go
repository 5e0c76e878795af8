package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-billy/v5"

	"github.com/notesctl/notesctl/manifests"
	"github.com/notesctl/notesctl/manifests/gitops"
	"github.com/notesctl/notesctl/pipeline/rollout"
	"github.com/notesctl/notesctl/registry"
	"github.com/notesctl/notesctl/registry/attest"
)

// RollbackOptions say what to roll back to.
type RollbackOptions struct {
	GitOps gitops.Options
	Policy string
	// To is a tag, a digest (sha256:…), or a site commit (7+ hex digits):
	// looked up in the GitOps history first, then in the registry's tags.
	To string
	// Repository is where to list tags when the history does not have the
	// release; default: the repository the manifests hold. "oci:PATH" for
	// a layout.
	Repository string
	Registry   registry.PublishOptions
	// Credentials are explicit registry credentials, offered only to the
	// registry of Repository, or else of the image the GitOps repository
	// deploys.
	Credentials registry.KeychainOptions
	Wait        *rollout.Options
	// SkipUnparseable: see ReleaseOptions.
	SkipUnparseable bool
	// VerifyKey, when set, must verify the signature of the release rolled
	// back to before the commit (see ReleaseOptions.Keys).
	VerifyKey *attest.PublicKey
}

// RollbackResult is the rollback commit.
type RollbackResult struct {
	From    string          `json:"from"`
	To      string          `json:"to"`
	Found   string          `json:"foundIn"` // "gitops-history" or "registry"
	GitOps  GitOpsResult    `json:"gitops"`
	Rollout *rollout.Result `json:"rollout,omitempty"`
}

var hexPattern = func(s string) bool {
	if len(s) < 7 || len(s) > 40 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}

// matches says whether a reference is the release named by to: the same
// reference, its tag, its digest, or (7+ hex digits) the site commit its
// tag names.
func matches(ref, to string) bool {
	r := parseRef(ref)
	switch {
	case ref == to, r.Tag != "" && r.Tag == to:
		return true
	case strings.HasPrefix(to, "sha256:"):
		return r.Digest == to
	case hexPattern(to):
		if _, sha, _, _, ok := registry.ParseTag(r.Tag); ok {
			return strings.HasPrefix(sha, to) || strings.HasPrefix(to, sha)
		}
	}
	return false
}

// Rollback writes a GitOps commit that pins an earlier release, through the
// same update engine and commit rules as a release.
func Rollback(ctx context.Context, opts RollbackOptions, sink Sink) (*RollbackResult, error) {
	r := newRunner(sink)
	if opts.Policy == "" {
		opts.Policy = "flux-system:notes"
	}
	ns, pname, err := parsePolicy(opts.Policy)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(opts.To) == "" {
		return nil, errors.New("rollback needs --to TAG|DIGEST|SITE-COMMIT")
	}
	res := &RollbackResult{GitOps: GitOpsResult{Repository: manifests.RedactURL(opts.GitOps.URL), Branch: gitopsBranch(opts.GitOps)}}

	var target string
	err = r.stage(StageSource, func() (string, error) {
		hist, err := deployHistory(ctx, opts.GitOps, opts.Policy)
		if err != nil {
			return "", err
		}
		if len(hist) == 0 {
			return "", fmt.Errorf("GitOps repository %s: no marker for %s in its history", res.GitOps.Repository, opts.Policy)
		}
		res.From = hist[0].Ref()
		opts.Registry = withCredentials(opts.Registry, opts.Credentials, credentialsScope(opts.Repository, res.From))
		for _, d := range hist {
			if matches(d.Ref(), opts.To) {
				target, res.Found = d.Ref(), "gitops-history"
				return fmt.Sprintf("%s was deployed by GitOps commit %s (%s)", target, shortCommit(d.Commit), d.Time.Format("2006-01-02 15:04")), nil
			}
		}
		from := parseRef(res.From)
		if from.Repository == "" {
			return "", fmt.Errorf("%q is not in the GitOps history, and the GitOps repository deploys %q, which is not an image reference to look for tags under", opts.To, res.From)
		}
		repo := opts.Repository
		if repo == "" {
			repo = from.Repository
		}
		tags, err := registry.ListTags(ctx, repo, opts.Registry)
		if err != nil {
			return "", fmt.Errorf("%q is not in the GitOps history, and the registry could not be searched: %w", opts.To, err)
		}
		for _, t := range tags {
			if !matches(from.WithTag(t.Tag).String(), opts.To) && !(strings.HasPrefix(opts.To, "sha256:") && t.Digest.String() == opts.To) {
				continue
			}
			d := t.Digest
			if d.Hex == "" {
				if d, err = registry.ResolveTag(ctx, repo, t.Tag, opts.Registry); err != nil {
					return "", err
				}
			}
			target, res.Found = from.WithTag(t.Tag).WithDigest(d.String()).String(), "registry"
			return fmt.Sprintf("%s found in %s", target, repo), nil
		}
		return "", fmt.Errorf("no release %q in the GitOps history of %s or the tags of %s", opts.To, res.GitOps.Repository, repo)
	})
	if err != nil {
		return nil, err
	}
	res.To = target
	if target == res.From {
		r.note(StageUpdate, target+" is what the GitOps repository deploys already")
	}
	to := parseRef(target)
	if to.Repository == "" {
		return nil, fmt.Errorf("rollback target %q is not an image reference", target)
	}
	policy := manifests.Policy{Namespace: ns, Name: pname, Image: to.Repository, Tag: to.Tag, Digest: to.Digest}
	if opts.VerifyKey != nil {
		where := opts.Repository
		if where == "" {
			where = to.Repository
		}
		digest, err := gate(ctx, r, opts.VerifyKey, target, where, opts.Registry)
		if err != nil {
			return nil, err
		}
		if policy.Digest == "" {
			policy.Digest = digest
		}
	}
	source := siteCommitOf(ctx, opts, target)
	err = r.stage(StageUpdate, func() (string, error) {
		cr, err := gitops.Commit(ctx, opts.GitOps, func(fsys billy.Filesystem, head gitops.CommitInfo) (string, bool, error) {
			result, err := manifests.Update(fsys, "", []manifests.Policy{policy}, manifests.UpdateOptions{SkipUnparseable: opts.SkipUnparseable})
			if err != nil {
				return "", false, err
			}
			res.GitOps.Changes, res.GitOps.Diff = result.Changes, result.Diff()
			if len(result.Changes) == 0 {
				return "", false, nil
			}
			msg := fmt.Sprintf("Roll back %s to %s\n\nRollback of %s to an earlier release.\n\nRollback-From: %s\nSource-Commit: %s\nImage: %s\n", opts.Policy, policy.Tag, res.From, res.From, source, target)
			return msg, true, nil
		})
		if err != nil {
			return "", err
		}
		res.GitOps.Commit, res.GitOps.Changed, res.GitOps.Attempts = cr.Hash, cr.Changed, cr.Attempts
		if !cr.Changed {
			return "no change: the manifests already hold " + target, nil
		}
		return fmt.Sprintf("commit %s: %s -> %s", shortCommit(cr.Hash), res.From, target), nil
	})
	if err != nil {
		return nil, err
	}
	if opts.Wait != nil && res.GitOps.Commit != "" {
		if res.Rollout, err = waitRollout(ctx, r, *opts.Wait, opts.GitOps, rollout.Target{Branch: res.GitOps.Branch, Commit: res.GitOps.Commit, Image: target}); err != nil {
			return res, err
		}
	}
	return res, nil
}

// siteCommitOf names the site commit of a release: from the image's
// revision label when the image can be read, else from its tag.
func siteCommitOf(ctx context.Context, opts RollbackOptions, ref string) string {
	tag := parseRef(ref).Tag
	where := ref
	if opts.Repository != "" && tag != "" {
		where = opts.Repository + ":" + tag
	}
	if labels, _, err := registry.FetchLabels(ctx, where, opts.Registry); err == nil {
		if meta, ok := registry.MetadataFromLabels(labels); ok && meta.Revision != "" {
			return meta.Revision
		}
	}
	if _, sha, _, _, ok := registry.ParseTag(tag); ok {
		return sha
	}
	return "unknown"
}

// deployHistory walks the GitOps branch from its tip, newest first, and
// returns each commit (of the last gitops.DefaultLogLimit) after which the
// policy's markers held something other than before.
func deployHistory(ctx context.Context, o gitops.Options, policyID string) ([]manifests.Deployed, error) {
	var states []manifests.Deployed
	keep := gitops.FileFilter{Name: manifests.MarkerFileName, Content: manifests.MarkerFileContent}
	err := gitops.Log(ctx, o, 0, keep, func(c gitops.CommitInfo, fsys billy.Filesystem) error {
		found, err := manifests.Current(fsys, "", policyID)
		if err != nil {
			return err
		}
		states = append(states, manifests.Deployed{
			Commit: c.Hash, Time: c.Time.UTC(),
			Subject: strings.SplitN(c.Message, "\n", 2)[0], Found: found,
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return manifests.DeployChanges(states), nil
}
