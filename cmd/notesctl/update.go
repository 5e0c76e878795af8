package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/notesctl/notesctl/manifests"
)

func (a *app) updateCommand() *cobra.Command {
	var gf gitopsFlags
	var dir string
	var sets []string
	var image string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "update (--dir DIR | --gitops URL|PATH) (--set NS:NAME=IMAGE:TAG[@DIGEST]... | --image IMAGE:TAG[@DIGEST] [--policy NS:NAME])",
		Short: "Write an image update into GitOps manifests, the way Flux's image automation does",
		Long: `update finds Flux setter markers ({"$imagepolicy": "NS:NAME"} and its :tag,
:name and :digest forms) in the .yaml/.yml/Kustomization files of a GitOps
tree and sets the same fields Flux's image-automation-controller would, leaving
every other byte of each file as it was.

With --dir it edits a directory in place; with --gitops it clones the
repository, commits and pushes (retrying on a moved branch, never forcing).`,
		Example: `  notesctl update --dir ./gitops --image ghcr.io/acme/notes:main-b9060af-1746598316-hugo0.145.0
  notesctl update --gitops git@github.com:acme/gitops.git \
      --set flux-system:notes=ghcr.io/acme/notes:main-b9060af-1746598316-hugo0.145.0@sha256:0d3b2b1f8c6a1f3f6bb1c3d5ad1f8e1e4c7b9a8d2e5f60718293a4b5c6d7e8f9
  notesctl update --dir ./gitops --image ghcr.io/acme/notes:v2 --dry-run`,
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
			if dir != "" {
				return a.updateDir(dir, policies, dryRun)
			}
			return a.updateRepo(cmd.Context(), gf, policies, dryRun)
		},
	}
	gf.register(cmd)
	cmd.Flags().StringVar(&dir, "dir", "", "GitOps directory to edit in place (no commit)")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "policy=image: NS:NAME=IMAGE:TAG[@DIGEST] (repeatable)")
	cmd.Flags().StringVar(&image, "image", "", "IMAGE:TAG[@DIGEST] for the policy named by --policy")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the diff and write nothing")
	return cmd
}

var policyIDPattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-.a-z0-9]*[a-z0-9])?$`)

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
		if !ok || !policyIDPattern.MatchString(id) {
			return nil, fmt.Errorf("--set %q: want NAMESPACE:NAME=IMAGE:TAG[@DIGEST]", s)
		}
		p, err := policyFromRef(id, ref)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func policyFromRef(id, ref string) (manifests.Policy, error) {
	ns, pname, _ := strings.Cut(id, ":")
	p := manifests.Policy{Namespace: ns, Name: pname}
	base, digest, hasDigest := strings.Cut(ref, "@")
	if hasDigest {
		d, err := name.NewDigest("example.invalid/x@" + digest)
		if err != nil {
			return p, fmt.Errorf("image %q: invalid digest: %v", ref, err)
		}
		p.Digest = d.DigestStr()
	}
	tag, err := name.NewTag(base, name.StrictValidation)
	if err != nil {
		return p, fmt.Errorf("image %q: want REPOSITORY:TAG[@DIGEST]: %v", ref, err)
	}
	p.Image = tag.Context().String()
	// Keep the repository as the user wrote it (Flux writes the name the
	// ImageRepository holds, not a normalized docker.io/library/... form).
	if i := strings.LastIndex(base, ":"); i >= 0 && !strings.Contains(base[i:], "/") {
		p.Image = base[:i]
	}
	p.Tag = tag.TagStr()
	return p, nil
}

func (a *app) updateDir(dir string, policies []manifests.Policy, dryRun bool) error {
	fsys := osfs.New(dir)
	res, err := manifests.Update(fsys, "", policies, manifests.UpdateOptions{DryRun: dryRun})
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return a.printUpdate(res, dryRun, "")
}

func (a *app) updateRepo(ctx context.Context, gf gitopsFlags, policies []manifests.Policy, dryRun bool) error {
	opts, err := gf.options(a)
	if err != nil {
		return err
	}
	var res *manifests.Result
	if dryRun {
		fsys, _, err := manifests.Checkout(ctx, opts)
		if err != nil {
			return err
		}
		res, err = manifests.Update(fsys, "", policies, manifests.UpdateOptions{DryRun: true})
		if err != nil {
			return err
		}
		return a.printUpdate(res, true, "")
	}
	cr, err := manifests.Commit(ctx, opts, func(fsys billy.Filesystem, head manifests.CommitInfo) (string, bool, error) {
		r, err := manifests.Update(fsys, "", policies, manifests.UpdateOptions{})
		if err != nil {
			return "", false, err
		}
		res = r
		if len(r.Changes) == 0 {
			return "", false, nil
		}
		msg, err := updateMessage(gf.message, policies, r.Changes)
		return msg, err == nil, err
	})
	if err != nil {
		return err
	}
	commit := ""
	if cr.Changed {
		commit = cr.Hash
	}
	return a.printUpdate(res, false, commit)
}

func updateMessage(tmpl string, policies []manifests.Policy, changes []manifests.Change) (string, error) {
	if tmpl != "" {
		// The same template fields as release, filled from the first policy.
		return renderUpdateTemplate(tmpl, policies, changes)
	}
	var b strings.Builder
	p := policies[0]
	fmt.Fprintf(&b, "Update %s to %s:%s\n\n", p.ID(), p.Image, p.Tag)
	for _, c := range changes {
		fmt.Fprintf(&b, "- %s:%d %s: %s -> %s\n", c.File, c.Line, c.Setter, c.Old, c.New)
	}
	b.WriteString("\n")
	for _, p := range policies {
		ref := p.Image + ":" + p.Tag
		if p.Digest != "" {
			ref += "@" + p.Digest
		}
		fmt.Fprintf(&b, "Image: %s\n", ref)
	}
	return b.String(), nil
}

func (a *app) printUpdate(res *manifests.Result, dryRun bool, commit string) error {
	for _, s := range res.Skipped {
		fmt.Fprintf(a.stderr, "notesctl: skipped %s\n", s.String())
	}
	if a.output == "json" {
		return a.printJSON(map[string]any{"changes": res.Changes, "filesScanned": res.FilesScanned, "dryRun": dryRun, "commit": commit, "diff": res.Diff()})
	}
	if len(res.Changes) == 0 {
		fmt.Fprintf(a.stderr, "no change: %d file(s) scanned, the markers already hold these values\n", res.FilesScanned)
		return nil
	}
	for _, c := range res.Changes {
		fmt.Fprintf(a.stderr, "%s:%d %s %s/%s %s: %s -> %s\n", c.File, c.Line, c.Kind, c.Namespace, c.Name, c.Setter, c.Old, c.New)
	}
	if dryRun {
		fmt.Fprint(a.stdout, res.Diff())
		return nil
	}
	if commit != "" {
		fmt.Fprintln(a.stdout, commit)
	}
	return nil
}
