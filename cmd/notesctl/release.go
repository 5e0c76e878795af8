package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/notesctl/notesctl/manifests/gitops/forge"
	"github.com/notesctl/notesctl/pipeline"
	"github.com/notesctl/notesctl/pipeline/rollout"
)

// Defaults of release --local: everything stays under .notesctl/ in the
// site repository, which the scaffolded .gitignore advice covers.
const (
	localImage  = "notes.local/notes"
	localLayout = ".notesctl/image"
	localGitOps = ".notesctl/gitops"
)

func (a *app) releaseCommand() *cobra.Command {
	var bf buildFlags
	var gf gitopsFlags
	var sf scaffoldFlags
	var cf clusterFlags
	var kf keyFlags
	var local, initRepo, dryRun, wait bool
	var prf prFlags
	var webhook string
	cmd := &cobra.Command{
		Use:   "release --image REPO --gitops URL|PATH",
		Short: "Render, publish and deploy a site commit: the whole pipeline",
		Long: `release runs the whole pipeline for one site commit: render it with the
embedded Hugo, publish the image, verify it is complete in the registry, and
commit the image update into the GitOps repository that Flux applies.

It is idempotent: when the GitOps repository already deploys an image of this
commit and Hugo version, nothing is rendered, pushed or committed. A release
never overwrites a newer release (by commit time) that won a race.

--local runs it offline, with no registry and no services: the image goes into
an OCI layout (` + localLayout + `) and the update into a local GitOps
repository (` + localGitOps + `), scaffolded with "manifests init" on first use.
A --gitops path that does not exist is an error (a typo must not become a new
repository) unless --init says to create it the same way.

--sign-key signs the pushed image digest with a cosign key (cosign.key from
"cosign generate-key-pair"; its password in COSIGN_PASSWORD), attached as a
sigstore bundle referrer that "cosign verify --key cosign.pub" accepts.
--verify-key (or verify-key in .notesctl.yaml) is the deploy policy: the
GitOps commit is written only if the image's signature verifies with that
public key; otherwise the release fails naming the image and the reason, and
nothing is committed (the image stays pushed).`,
		Example: `  # offline, on a laptop, in the site repository
  notesctl release --local

  # CI: push to GHCR, commit to the GitOps repo, ping Flux
  NOTESCTL_GITOPS_PASSWORD=$TOKEN NOTESCTL_FLUX_WEBHOOK_TOKEN=$HOOK \
  notesctl release --image ghcr.io/acme/notes --gitops https://github.com/acme/gitops.git \
      --flux-webhook https://flux.example.org/hook/abc

  # what would happen, with no side effects
  notesctl release --image ghcr.io/acme/notes --gitops ../gitops --dry-run

  # first release into a new local GitOps repository, scaffolded on the way
  notesctl release --image ghcr.io/acme/notes --gitops ../gitops --init

  # sign the image with a cosign key and deploy only what verifies
  COSIGN_PASSWORD=$PASSWORD notesctl release --image ghcr.io/acme/notes --gitops ../gitops \
      --sign-key cosign.key --verify-key cosign.pub`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inputs := map[string]string{}
			if a.getenv("GITHUB_ACTIONS") == "true" {
				var err error
				inputs, err = actionInputs(a)
				if err != nil {
					return err
				}
			}
			if err := a.prepare(cmd, siteDirFor(cmd, a, bf.site), inputs); err != nil {
				return err
			}
			if a.getenv("GITHUB_ACTIONS") == "true" && !local {
				if err := requiredInputs(bf.image, gf.url); err != nil {
					return err
				}
			}
			if local {
				root := bf.site
				if bf.image == "" {
					bf.image = localImage
				}
				if bf.to == "" {
					bf.to = "oci:" + filepath.Join(root, localLayout)
				}
				if gf.url == "" {
					gf.url = filepath.Join(root, localGitOps)
				}
				if !dryRun {
					if err := pipeline.ExcludeStateDir(root); err != nil {
						return err
					}
				}
				if !flagChanged(cmd.Flags(), "base") {
					// The default base lives in a registry; offline there is
					// none, so the local image is data-only unless told.
					bf.base = "scratch"
				}
			}
			bopts, err := bf.options(a, a.stdin)
			if err != nil {
				return err
			}
			gopts, err := gf.options(a)
			if err != nil {
				return err
			}
			opts := pipeline.ReleaseOptions{
				Build: bopts, GitOps: gopts, Policy: gf.policy, MessageTemplate: gf.message, SkipUnparseable: gf.skipUnparseable,
				DryRun: dryRun, FluxWebhook: webhook, FluxWebhookToken: a.getenv("NOTESCTL_FLUX_WEBHOOK_TOKEN"),
			}
			a.addSecret(opts.FluxWebhookToken)
			if opts.Keys, err = kf.keys(a); err != nil {
				return err
			}
			if wait {
				w := cf.options(a)
				opts.Wait = &w
			}
			if initRepo && !pipeline.IsLocalPath(gf.url) {
				return fmt.Errorf("--init creates a GitOps repository at a local path; %s is not one", a.redact(gf.url))
			}
			if local || initRepo {
				so := sf.options(bf.image, gf.policy)
				opts.Scaffold = &so
			}
			var gpr *gitopsPR
			var prWait *rollout.Options
			if prf.enabled && !dryRun {
				if gpr, opts.GitOps, err = a.startGitOpsPR(cmd.Context(), &gf, opts.GitOps, bf.site, bf.revision); err != nil {
					return err
				}
				// --wait waits for the merge, then for Flux.
				prWait, opts.Wait = opts.Wait, nil
			}
			sink := a.sink()
			res, err := pipeline.Release(cmd.Context(), opts, sink)
			a.finish(sink)
			if err == nil && gpr != nil {
				var pr *forge.PR
				pr, err = gpr.finish(cmd.Context(), a, "Deploy "+res.Build.Image, res.GitOps.Diff, prf.autoMerge, prWait, rollout.Target{Image: res.Build.Image})
				if pr != nil && a.output != "json" {
					defer fmt.Fprintf(a.stdout, "gitops-pr: %s (#%d, %s)\n", pr.URL, pr.Number, prState(pr))
				}
			}
			if as, ok := sink.(*pipeline.ActionsSink); ok {
				as.Finish(res, err)
				setMetadataOutput(a, res)
				logSummaryOnGitea(a, res, err)
			}
			if err != nil {
				return err
			}
			return a.printRelease(res)
		},
	}
	bf.register(cmd)
	gf.register(cmd)
	gf.registerUpdate(cmd)
	sf.register(cmd, "scaffold-")
	cf.register(cmd)
	kf.registerSign(cmd)
	kf.registerVerify(cmd)
	prf.register(cmd)
	f := cmd.Flags()
	f.BoolVar(&local, "local", false, "offline: OCI layout + local GitOps repository under .notesctl/, scratch base, no network")
	f.BoolVar(&initRepo, "init", false, "create the GitOps repository at the --gitops path if it does not exist (or is an empty folder), scaffolded as by manifests init (--local does this itself)")
	f.BoolVar(&dryRun, "dry-run", false, "build, then print what would be pushed and the GitOps diff; publish and commit nothing")
	f.BoolVar(&wait, "wait", false, "after the commit, ask Flux to reconcile now and wait until the Deployment runs the new image")
	f.StringVar(&webhook, "flux-webhook", "", "Flux Receiver URL to call after the commit (token in NOTESCTL_FLUX_WEBHOOK_TOKEN)")
	return cmd
}

func (a *app) printRelease(res *pipeline.ReleaseResult) error {
	if a.output == "json" {
		return a.printJSON(res)
	}
	b := res.Build
	switch {
	case res.Skipped:
		fmt.Fprintf(a.stdout, "%s\nno-op: %s\n", b.Image, res.Reason)
		a.printAttestations(b)
		return nil
	case res.DryRun:
		fmt.Fprintf(a.stdout, "dry run: would push %s to %s\n", b.Image, b.Destination)
	default:
		fmt.Fprintf(a.stdout, "image:  %s\n", b.Image)
		fmt.Fprintf(a.stdout, "digest: %s\n", b.Digest)
		a.printAttestations(b)
		if b.AlreadyPresent {
			fmt.Fprintf(a.stdout, "push:   the tag already pointed at this digest; nothing uploaded\n")
		}
	}
	g := res.GitOps
	switch {
	case g.Superseded != "":
		fmt.Fprintf(a.stdout, "gitops: superseded: %s already deploys %s, a newer release (by commit time); not overwriting it\n", g.Repository, g.Superseded)
	case res.DryRun && len(g.Changes) > 0:
		fmt.Fprintf(a.stdout, "would commit to %s (%s):\n%s", g.Repository, g.Branch, g.Diff)
	case g.Changed:
		fmt.Fprintf(a.stdout, "gitops: commit %s on %s in %s\n%s", g.Commit, g.Branch, g.Repository, g.Diff)
	default:
		fmt.Fprintf(a.stdout, "gitops: no change in %s\n", g.Repository)
	}
	if res.Rollout != nil {
		fmt.Fprintf(a.stdout, "rollout: Flux applied %s; %s\n", res.Rollout.Applied, strings.Join(res.Rollout.Deployments, ", "))
		if res.Rollout.Note != "" {
			fmt.Fprintf(a.stdout, "rollout: %s\n", res.Rollout.Note)
		}
	} else if !res.DryRun && g.Changed && !res.Notified {
		fmt.Fprintln(a.stdout, "Flux applies it at its next interval (use --wait or --flux-webhook to apply it now).")
	}
	if res.Reason != "" {
		fmt.Fprintf(a.stdout, "why:    built, not a no-op: %s\n", res.Reason)
	}
	return nil
}

// printAttestations prints the digests of the SBOM and provenance referrers.
func (a *app) printAttestations(b *pipeline.BuildResult) {
	if b.SBOMDigest != "" {
		fmt.Fprintf(a.stdout, "sbom:   %s\n", b.SBOMDigest)
	}
	if b.ProvenanceDigest != "" {
		fmt.Fprintf(a.stdout, "provenance: %s\n", b.ProvenanceDigest)
	}
}
