package pipeline

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"

	"github.com/notesctl/notesctl/manifests"
	"github.com/notesctl/notesctl/manifests/gitops"
	"github.com/notesctl/notesctl/registry"
	"github.com/notesctl/notesctl/registry/attest"
)

// UpdateOptions are the inputs of an image update without a build (the
// update command): set what the policies' markers hold, in a directory or
// in a GitOps repository, through the same engine, commit rules and
// message template as a release.
type UpdateOptions struct {
	// SkipUnparseable updates the other files when a file with marker text
	// does not parse, instead of failing (see ReleaseOptions).
	SkipUnparseable bool
	// Dir is a GitOps tree edited in place, with no commit. Exactly one of
	// Dir and GitOps.URL is set.
	Dir    string
	GitOps gitops.Options
	// Policies say what each policy's markers get.
	Policies []manifests.Policy
	// MessageTemplate is a text/template over MessageData, filled from the
	// first policy; empty = DefaultMessageTemplate.
	MessageTemplate string
	DryRun          bool
	// VerifyKey, when set, must verify each policy's image signature
	// before anything is written; an image given by tag only is pinned to
	// the digest that verified. Registry reaches the images.
	VerifyKey *attest.PublicKey
	Registry  registry.PublishOptions
}

// UpdateResult is what an update changed.
type UpdateResult struct {
	Changes      []manifests.Change      `json:"changes"`
	FilesScanned int                     `json:"filesScanned"`
	Skipped      []manifests.SkippedFile `json:"-"`
	DryRun       bool                    `json:"dryRun"`
	// Commit is the GitOps commit made; "" for a directory, a dry run or
	// no change.
	Commit string `json:"commit"`
	Diff   string `json:"diff"`
}

var policyIDPattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-.a-z0-9]*[a-z0-9])?$`)

// PolicyFromRef is the update of policy id ("NAMESPACE:NAME") to an image
// reference REPOSITORY:TAG[@DIGEST], with the repository as written.
func PolicyFromRef(id, ref string) (manifests.Policy, error) {
	if !policyIDPattern.MatchString(id) {
		return manifests.Policy{}, fmt.Errorf("policy %q: want NAMESPACE:NAME of the Flux ImagePolicy", id)
	}
	ns, pname, _ := strings.Cut(id, ":")
	r, err := registry.ParseRef(ref)
	if err != nil {
		return manifests.Policy{}, fmt.Errorf("image %q: want REPOSITORY:TAG[@DIGEST]: %v", ref, err)
	}
	if r.Tag == "" {
		return manifests.Policy{}, fmt.Errorf("image %q: want REPOSITORY:TAG[@DIGEST]: no tag", ref)
	}
	return manifests.Policy{Namespace: ns, Name: pname, Image: r.Repository, Tag: r.Tag, Digest: r.Digest}, nil
}

// Update writes the policies into a GitOps directory or repository.
func Update(ctx context.Context, opts UpdateOptions, sink Sink) (*UpdateResult, error) {
	r := newRunner(sink)
	if (opts.Dir == "") == (opts.GitOps.URL == "") {
		return nil, errors.New("give exactly one of --dir DIR or --gitops URL|PATH")
	}
	if len(opts.Policies) == 0 {
		return nil, errors.New("nothing to update: give --image IMAGE:TAG or --set NS:NAME=IMAGE:TAG")
	}
	if err := checkMessageTemplate(opts.MessageTemplate); err != nil {
		return nil, err
	}
	res := &UpdateResult{DryRun: opts.DryRun}
	if opts.VerifyKey != nil {
		policies := make([]manifests.Policy, len(opts.Policies))
		for i, p := range opts.Policies {
			image := registry.Ref{Repository: p.Image, Tag: p.Tag, Digest: p.Digest}.String()
			digest, err := gate(ctx, r, opts.VerifyKey, image, "", opts.Registry)
			if err != nil {
				return nil, err
			}
			if p.Digest == "" {
				// What is written is what verified, not what the tag
				// may point at later.
				p.Digest = digest
			}
			policies[i] = p
		}
		opts.Policies = policies
	}
	apply := func(fsys billy.Filesystem, dryRun bool) (*manifests.Result, error) {
		mr, err := manifests.Update(fsys, "", opts.Policies, manifests.UpdateOptions{DryRun: dryRun, SkipUnparseable: opts.SkipUnparseable})
		if err != nil {
			return nil, err
		}
		res.Changes, res.FilesScanned, res.Skipped, res.Diff = mr.Changes, mr.FilesScanned, mr.Skipped, mr.Diff()
		return mr, nil
	}
	if opts.Dir != "" {
		err := r.stage(StageUpdate, func() (string, error) {
			if _, err := apply(osfs.New(opts.Dir), opts.DryRun); err != nil {
				return "", fmt.Errorf("%s: %w", opts.Dir, err)
			}
			return fmt.Sprintf("%d change(s) in %s", len(res.Changes), opts.Dir), nil
		})
		return res, err
	}
	// A dry run only reads: it must not finish an interrupted commit or
	// clear a stale lock (that is a writing run's job).
	if opts.DryRun {
		opts.GitOps.ReadOnly = true
	}
	err := r.stage(StageUpdate, func() (string, error) {
		ws, err := gitops.Open(ctx, opts.GitOps)
		if err != nil {
			return "", err
		}
		if opts.DryRun {
			_, err := apply(ws.FS(), true)
			return fmt.Sprintf("dry run: %d change(s) would be committed", len(res.Changes)), err
		}
		cr, err := ws.Commit(ctx, func(fsys billy.Filesystem, head gitops.CommitInfo) (string, bool, error) {
			mr, err := apply(fsys, false)
			if err != nil || len(mr.Changes) == 0 {
				return "", false, err
			}
			msg, err := renderMessage(opts.MessageTemplate, updateMessageData(opts.Policies, mr.Changes))
			return msg, err == nil, err
		})
		if err != nil {
			return "", err
		}
		if !cr.Changed {
			return "no change: the markers already hold these values", nil
		}
		res.Commit = cr.Hash
		return fmt.Sprintf("commit %s on %s (%d change(s))", shortCommit(cr.Hash), cr.Branch, len(res.Changes)), nil
	})
	return res, err
}

// updateMessageData fills the release message fields from the first policy;
// Images lists every policy's image.
func updateMessageData(policies []manifests.Policy, changes []manifests.Change) MessageData {
	ref := func(p manifests.Policy) string {
		return registry.Ref{Repository: p.Image, Tag: p.Tag, Digest: p.Digest}.String()
	}
	p := policies[0]
	d := MessageData{Image: ref(p), Repository: p.Image, Tag: p.Tag, Digest: p.Digest, Policy: p.ID(), Changes: changes}
	for _, q := range policies {
		d.Images = append(d.Images, ref(q))
	}
	return d
}
