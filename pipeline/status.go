package pipeline

import (
	"context"
	"fmt"

	"github.com/notesctl/notesctl/manifests"
	"github.com/notesctl/notesctl/manifests/gitops"
	"github.com/notesctl/notesctl/pipeline/rollout"
	"github.com/notesctl/notesctl/registry"
)

// StatusOptions say where to look.
type StatusOptions struct {
	GitOps   gitops.Options
	Policy   string
	Registry registry.PublishOptions
	// Credentials are explicit registry credentials, offered only to the
	// registry of the image the GitOps repository deploys.
	Credentials registry.KeychainOptions
	// Layout, when set ("oci:PATH"), is where images are read instead of
	// the registry named in the manifests (release --local).
	Layout string
	// Cluster, when set, also reads Flux and the Deployment.
	Cluster *rollout.Options
}

// Status is what is deployed where.
type Status struct {
	GitOps  GitOpsStatus           `json:"gitops"`
	Image   *ImageStatus           `json:"image,omitempty"`
	Cluster *rollout.ClusterStatus `json:"cluster,omitempty"`
	// InSync is true when the cluster applied the GitOps tip and every
	// Deployment runs the image the manifests hold.
	InSync *bool `json:"inSync,omitempty"`
	// Problems are what could not be read (a missing registry, no cluster).
	Problems []string `json:"problems,omitempty"`
}

// GitOpsStatus is what the manifests hold.
type GitOpsStatus struct {
	Repository string   `json:"repository"`
	Branch     string   `json:"branch"`
	Commit     string   `json:"commit"`
	Image      string   `json:"image"`
	Tag        string   `json:"tag"`
	Digest     string   `json:"digest,omitempty"`
	Files      []string `json:"files"`
}

// ImageStatus is what the image's labels say.
type ImageStatus struct {
	SiteCommit       string `json:"siteCommit"`
	Source           string `json:"source,omitempty"`
	Created          string `json:"created,omitempty"`
	Generator        string `json:"generator"`
	GeneratorVersion string `json:"generatorVersion"`
}

// GetStatus reads the GitOps repository, the image and (optionally) the
// cluster. Only a GitOps repository that cannot be read is an error; the
// rest is reported as problems.
func GetStatus(ctx context.Context, opts StatusOptions) (*Status, error) {
	if opts.Policy == "" {
		opts.Policy = "flux-system:notes"
	}
	if _, _, err := parsePolicy(opts.Policy); err != nil {
		return nil, err
	}
	fsys, head, err := gitops.Checkout(ctx, opts.GitOps)
	if err != nil {
		return nil, err
	}
	st := &Status{GitOps: GitOpsStatus{Repository: manifests.RedactURL(opts.GitOps.URL), Branch: gitopsBranch(opts.GitOps), Commit: head.Hash}}
	if head.Hash == "" {
		return nil, fmt.Errorf("GitOps repository %s has no branch %s yet", st.GitOps.Repository, st.GitOps.Branch)
	}
	found, err := manifests.Current(fsys, "", opts.Policy)
	if err != nil {
		return nil, err
	}
	d := manifests.Deployed{Found: found}
	ref := d.Ref()
	if ref == "" {
		return nil, fmt.Errorf("GitOps repository %s: no setter marker for %s", st.GitOps.Repository, opts.Policy)
	}
	for _, f := range found {
		if !contains(st.GitOps.Files, f.File) {
			st.GitOps.Files = append(st.GitOps.Files, f.File)
		}
	}
	st.GitOps.Image = ref
	parsed := parseRef(ref)
	st.GitOps.Tag, st.GitOps.Digest = parsed.Tag, parsed.Digest

	where := ref
	if opts.Layout != "" && st.GitOps.Tag != "" {
		where = opts.Layout + ":" + st.GitOps.Tag
	}
	ropts := withCredentials(opts.Registry, opts.Credentials, parsed)
	if labels, _, err := registry.FetchLabels(ctx, where, ropts); err != nil {
		st.Problems = append(st.Problems, fmt.Sprintf("image %s: %v", where, err))
	} else if meta, ok := registry.MetadataFromLabels(labels); ok {
		st.Image = &ImageStatus{SiteCommit: meta.Revision, Source: meta.Source, Generator: meta.Generator, GeneratorVersion: meta.GeneratorVersion}
		if !meta.Created.IsZero() {
			st.Image.Created = meta.Created.UTC().Format("2006-01-02T15:04:05Z")
		}
	} else {
		st.Problems = append(st.Problems, fmt.Sprintf("image %s was not built by notesctl (no generator labels)", where))
	}

	if opts.Cluster != nil {
		c, err := rollout.New(*opts.Cluster)
		if err == nil {
			st.Cluster, err = c.Status(ctx, ref)
		}
		if err != nil {
			st.Problems = append(st.Problems, "cluster: "+err.Error())
		} else {
			in := st.Cluster.LastAppliedRevision == st.GitOps.Branch+"@sha1:"+st.GitOps.Commit && st.Cluster.Ready == "True"
			for _, dep := range st.Cluster.Deployments {
				in = in && dep.Image == ref
			}
			st.InSync = &in
		}
	}
	return st, nil
}
