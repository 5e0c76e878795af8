package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/notesctl/notesctl/manifests"
	"github.com/notesctl/notesctl/pipeline"
)

func (a *app) updateCommand() *cobra.Command {
	var gf gitopsFlags
	var dir string
	var sets []string
	var image string
	var dryRun bool
	var kf keyFlags
	var bf buildFlags
	cmd := &cobra.Command{
		Use:   "update (--dir DIR | --gitops URL|PATH) (--set NS:NAME=IMAGE:TAG[@DIGEST]... | --image IMAGE:TAG[@DIGEST] [--policy NS:NAME])",
		Short: "Write an image update into GitOps manifests, the way Flux's image automation does",
		Long: `update finds Flux setter markers ({"$imagepolicy": "NS:NAME"} and its :tag,
:name and :digest forms) in the .yaml/.yml/Kustomization files of a GitOps
tree and sets the same fields Flux's image-automation-controller would, leaving
every other byte of each file as it was.

With --dir it edits a directory in place; with --gitops it clones the
repository, commits and pushes (retrying on a moved branch, never forcing),
with the commit message of a release (--message: the same template fields,
filled from the first policy).

With --verify-key, each image's cosign signature must verify with the key
before anything is written (an image given by tag is pinned to the digest
that verified); otherwise the error names the image and the reason.`,
		Example: `  notesctl update --dir ./gitops --image ghcr.io/acme/notes:main-b9060af-1746598316-hugo0.145.0
  notesctl update --gitops git@github.com:acme/gitops.git \
      --set flux-system:notes=ghcr.io/acme/notes:main-b9060af-1746598316-hugo0.145.0@sha256:0d3b2b1f8c6a1f3f6bb1c3d5ad1f8e1e4c7b9a8d2e5f60718293a4b5c6d7e8f9
  notesctl update --dir ./gitops --image ghcr.io/acme/notes:v2 --dry-run
  notesctl update --dir ./gitops --image ghcr.io/acme/notes:main-b9060af-1746598316-hugo0.145.0 --verify-key cosign.pub`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.prepare(cmd, ".", nil); err != nil {
				return err
			}
			if (dir == "") == (gf.url == "") {
				return fmt.Errorf("give exactly one of --dir DIR or --gitops URL|PATH")
			}
			policies, err := parsePolicies(sets, image, gf.policy)
			if err != nil {
				return err
			}
			opts := pipeline.UpdateOptions{Dir: dir, Policies: policies, MessageTemplate: gf.message, DryRun: dryRun, SkipUnparseable: gf.skipUnparseable}
			if gf.url != "" {
				if opts.GitOps, err = gf.options(a); err != nil {
					return err
				}
			}
			keys, err := kf.keys(a)
			if err != nil {
				return err
			}
			if opts.VerifyKey = keys.Verify; opts.VerifyKey != nil {
				if opts.Registry, err = verifyRegistry(a, &bf, policies[0].Image); err != nil {
					return err
				}
			}
			res, err := pipeline.Update(cmd.Context(), opts, nil)
			if err != nil {
				return err
			}
			return a.printUpdate(res)
		},
	}
	gf.register(cmd)
	gf.registerUpdate(cmd)
	cmd.Flags().StringVar(&dir, "dir", "", "GitOps directory to edit in place (no commit)")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "policy=image: NS:NAME=IMAGE:TAG[@DIGEST] (repeatable)")
	cmd.Flags().StringVar(&image, "image", "", "IMAGE:TAG[@DIGEST] for the policy named by --policy")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the diff and write nothing")
	kf.registerVerify(cmd)
	bf.registerRegistryRead(cmd)
	return cmd
}

// parsePolicies reads --set and --image into policies.
func parsePolicies(sets []string, image, policy string) ([]manifests.Policy, error) {
	if len(sets) > 0 && image != "" {
		return nil, fmt.Errorf("give --set or --image, not both")
	}
	if image != "" {
		sets = []string{policy + "=" + image}
	}
	if len(sets) == 0 {
		return nil, fmt.Errorf("nothing to update: give --image IMAGE:TAG or --set NS:NAME=IMAGE:TAG")
	}
	var out []manifests.Policy
	for _, s := range sets {
		id, ref, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("--set %q: want NAMESPACE:NAME=IMAGE:TAG[@DIGEST]", s)
		}
		p, err := pipeline.PolicyFromRef(id, ref)
		if err != nil {
			return nil, fmt.Errorf("--set %q: %w", s, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func (a *app) printUpdate(res *pipeline.UpdateResult) error {
	for _, s := range res.Skipped {
		fmt.Fprintf(a.stderr, "notesctl: skipped %s\n", s.String())
	}
	if a.output == "json" {
		return a.printJSON(res)
	}
	if len(res.Changes) == 0 {
		fmt.Fprintf(a.stderr, "no change: %d file(s) scanned, the markers already hold these values\n", res.FilesScanned)
		return nil
	}
	for _, c := range res.Changes {
		fmt.Fprintf(a.stderr, "%s:%d %s %s/%s %s: %s -> %s\n", c.File, c.Line, c.Kind, c.Namespace, c.Name, c.Setter, c.Old, c.New)
	}
	if res.DryRun {
		fmt.Fprint(a.stdout, res.Diff)
		return nil
	}
	if res.Commit != "" {
		fmt.Fprintln(a.stdout, res.Commit)
	}
	return nil
}
