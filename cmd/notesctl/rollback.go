package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/notesctl/notesctl/pipeline"
	"github.com/notesctl/notesctl/pipeline/rollout"
)

func (a *app) rollbackCommand() *cobra.Command {
	var gf gitopsFlags
	var cf clusterFlags
	var bf buildFlags
	var to, repository string
	var local, wait bool
	var kf keyFlags
	var prf prFlags
	cmd := &cobra.Command{
		Use:   "rollback --to TAG|DIGEST|SITE-COMMIT [--gitops URL|PATH]",
		Short: "Commit an earlier release back into the GitOps repository",
		Long: `rollback writes an image-update commit that pins an earlier release, found
by tag, digest or site commit in the GitOps history, else in the registry's
tags. It goes through the same update engine and commit rules as a release,
and the commit message says it is a rollback and from what.

If Flux's ImageUpdateAutomation runs for this policy, it will move the image
forward to the newest tag again: suspend it first
(flux suspend image update <name>).

With --verify-key, the release rolled back to must carry a cosign signature
by the key, or nothing is committed.`,
		Example: `  notesctl rollback --local --to b9060af
  notesctl rollback --gitops git@github.com:acme/gitops.git --to main-b9060af-1746598316-hugo0.145.0 --wait`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.prepare(cmd, siteDirFor(cmd, a, bf.site), nil); err != nil {
				return err
			}
			if local {
				if gf.url == "" {
					gf.url = filepath.Join(bf.site, localGitOps)
				}
				if repository == "" {
					repository = "oci:" + filepath.Join(bf.site, localLayout)
				}
			}
			if gf.url == "" {
				return fmt.Errorf("rollback needs --gitops URL|PATH (or --local)")
			}
			opts := pipeline.RollbackOptions{Policy: gf.policy, To: to, Repository: repository, SkipUnparseable: gf.skipUnparseable}
			var err error
			if opts.GitOps, err = gf.options(a); err != nil {
				return err
			}
			if opts.Registry, opts.Credentials, err = registryOptions(a, &bf); err != nil {
				return err
			}
			if wait {
				w := cf.options(a)
				opts.Wait = &w
			}
			keys, err := kf.keys(a)
			if err != nil {
				return err
			}
			opts.VerifyKey = keys.Verify
			var gpr *gitopsPR
			var prWait *rollout.Options
			if prf.enabled {
				if gpr, opts.GitOps, err = a.startGitOpsPRHead(cmd.Context(), &gf, opts.GitOps, rollbackBranch(gf.policy, to)); err != nil {
					return err
				}
				prWait, opts.Wait = opts.Wait, nil
			}
			sink := a.sink()
			res, err := pipeline.Rollback(cmd.Context(), opts, sink)
			a.finish(sink)
			if err != nil {
				return err
			}
			if gpr != nil {
				pr, err := gpr.finish(cmd.Context(), a, "Roll back to "+res.To, res.GitOps.Diff, prf.autoMerge, prWait, rollout.Target{Image: res.To})
				if err != nil {
					return err
				}
				if pr != nil && a.output != "json" {
					defer fmt.Fprintf(a.stdout, "gitops-pr: %s (#%d, %s)\n", pr.URL, pr.Number, prState(pr))
				}
			}
			if a.output == "json" {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "from:   %s\nto:     %s (found in %s)\n", res.From, res.To, res.Found)
			if res.GitOps.Changed {
				fmt.Fprintf(a.stdout, "gitops: commit %s on %s\n%s", res.GitOps.Commit, res.GitOps.Branch, res.GitOps.Diff)
			} else {
				fmt.Fprintln(a.stdout, "gitops: no change")
			}
			return nil
		},
	}
	gf.register(cmd)
	gf.registerUpdate(cmd)
	cf.register(cmd)
	prf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "the release to roll back to: a tag, a digest (sha256:…) or a site commit (7+ hex digits)")
	f.StringVar(&repository, "repository", "", "where to look for tags when the GitOps history lacks the release (default: the image repository in the manifests)")
	bf.registerReadOnly(cmd)
	kf.registerVerify(cmd)
	f.BoolVar(&local, "local", false, "roll back the offline state of release --local")
	f.BoolVar(&wait, "wait", false, "ask Flux to reconcile now and wait for the rollout")
	return cmd
}
