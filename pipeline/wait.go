package pipeline

import (
	"context"
	"fmt"

	"github.com/notesctl/notesctl/pipeline/rollout"
)

// StageRollout follows the GitOps commit into the cluster (--wait).
const StageRollout Stage = "rollout"

// waitRollout asks Flux to reconcile the commit now and waits until it is
// applied and the Deployment runs the image.
func waitRollout(ctx context.Context, r *runner, opts rollout.Options, target rollout.Target) (*rollout.Result, error) {
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
