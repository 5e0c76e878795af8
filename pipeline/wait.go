package pipeline

import (
	"context"
	"fmt"

	"github.com/notesctl/notesctl/manifests/gitops"
	"github.com/notesctl/notesctl/pipeline/rollout"
)

// StageRollout follows the GitOps commit into the cluster (--wait).
const StageRollout Stage = "rollout"

// waitRollout asks Flux to reconcile the commit now and waits until it, or
// a later commit of the GitOps branch that contains it, is applied and the
// Deployment runs the image.
func waitRollout(ctx context.Context, r *runner, opts rollout.Options, gitopsOpts gitops.Options, target rollout.Target) (*rollout.Result, error) {
	if target.Contains == nil && gitopsOpts.URL != "" {
		target.Contains = func(ctx context.Context, commit string) (bool, error) {
			return gitops.Contains(ctx, gitopsOpts, commit, target.Commit)
		}
	}
	var res *rollout.Result
	err := r.stage(StageRollout, func() (string, error) {
		c, err := rollout.New(opts)
		if err != nil {
			return "", err
		}
		res, err = c.Wait(ctx, target, func(msg string) { r.note(StageRollout, msg) })
		if err != nil {
			return "", err
		}
		msg := fmt.Sprintf("Flux applied %s", res.Applied)
		if res.Note != "" {
			msg += "; " + res.Note
		}
		return msg, nil
	})
	return res, err
}
