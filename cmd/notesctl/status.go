package main

import (
	"fmt"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/notesctl/notesctl/pipeline"
	"github.com/notesctl/notesctl/registry"
)

func (a *app) statusCommand() *cobra.Command {
	var gf gitopsFlags
	var cf clusterFlags
	var bf buildFlags
	var local, cluster bool
	cmd := &cobra.Command{
		Use:   "status [--gitops URL|PATH] [--kubeconfig FILE]",
		Short: "Show what is deployed where: the manifests, the image, and the cluster",
		Long: `status reads the GitOps repository (the image the setter markers hold), the
image's labels (site commit, Hugo version) and, with --cluster or
--kubeconfig, what Flux last applied and whether the Deployment runs it.`,
		Example: `  notesctl status --local
  notesctl status --gitops https://github.com/acme/gitops.git --kubeconfig ~/.kube/config -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.prepare(cmd, siteDirFor(cmd, a, bf.site), nil); err != nil {
				return err
			}
			opts := pipeline.StatusOptions{Policy: gf.policy}
			if local {
				if gf.url == "" {
					gf.url = filepath.Join(bf.site, localGitOps)
				}
				opts.Layout = "oci:" + filepath.Join(bf.site, localLayout)
			}
			if gf.url == "" {
				return fmt.Errorf("status needs --gitops URL|PATH (or --local)")
			}
			var err error
			if opts.GitOps, err = gf.options(a); err != nil {
				return err
			}
			if opts.Registry, opts.Credentials, err = registryOptions(a, &bf); err != nil {
				return err
			}
			if cluster || flagChanged(cmd.Flags(), "kubeconfig") || flagChanged(cmd.Flags(), "context") {
				c := cf.options(a)
				opts.Cluster = &c
			}
			st, err := pipeline.GetStatus(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(st)
			}
			printStatus(a, st)
			return nil
		},
	}
	gf.register(cmd)
	cf.register(cmd)
	bf.registerReadOnly(cmd)
	cmd.Flags().BoolVar(&local, "local", false, "the offline state of release --local (.notesctl/ in the site)")
	cmd.Flags().BoolVar(&cluster, "cluster", false, "also read the cluster (default kubeconfig)")
	return cmd
}

func printStatus(a *app, st *pipeline.Status) {
	w := tabwriter.NewWriter(a.stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintf(w, "GitOps\t%s (%s) at %s\n", st.GitOps.Repository, st.GitOps.Branch, short7(st.GitOps.Commit))
	fmt.Fprintf(w, "  image\t%s\n", st.GitOps.Image)
	fmt.Fprintf(w, "  tag\t%s\n", st.GitOps.Tag)
	if st.GitOps.Digest != "" {
		fmt.Fprintf(w, "  digest\t%s\n", st.GitOps.Digest)
	}
	if st.Image != nil {
		fmt.Fprintf(w, "Image\t\n")
		fmt.Fprintf(w, "  site commit\t%s\n", st.Image.SiteCommit)
		fmt.Fprintf(w, "  generator\t%s %s\n", st.Image.Generator, st.Image.GeneratorVersion)
		if st.Image.Created != "" {
			fmt.Fprintf(w, "  created\t%s\n", st.Image.Created)
		}
	}
	if st.Cluster != nil {
		fmt.Fprintf(w, "Cluster\t%s Ready=%s\n", st.Cluster.Kustomization, st.Cluster.Ready)
		fmt.Fprintf(w, "  applied\t%s\n", st.Cluster.LastAppliedRevision)
		if st.Cluster.Message != "" {
			fmt.Fprintf(w, "  message\t%s\n", st.Cluster.Message)
		}
		for _, d := range st.Cluster.Deployments {
			fmt.Fprintf(w, "  %s\t%s (%s)\n", d.Name, d.Image, d.Rollout)
		}
		if st.InSync != nil {
			fmt.Fprintf(w, "  in sync\t%v\n", *st.InSync)
		}
	}
	w.Flush()
	for _, p := range st.Problems {
		fmt.Fprintf(a.stderr, "notesctl: %s\n", a.redact(p))
	}
}

func short7(s string) string {
	if len(s) > 7 {
		return s[:7]
	}
	return s
}

// registerReadOnly registers the site and registry access flags of the
// commands that read releases without building (status, rollback).
func (b *buildFlags) registerReadOnly(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&b.site, "site", ".", "site directory (for --local and the config file)")
	f.StringVar(&b.username, "username", "", "registry user name (password in NOTESCTL_REGISTRY_PASSWORD)")
	f.BoolVar(&b.insecure, "insecure", false, "allow plain HTTP and unverified TLS to registries")
	f.StringVar(&b.caFile, "ca-file", "", "PEM file of extra CA certificates to trust for registries")
}

// registryOptions builds read-only registry access from the credential
// flags that status and rollback share with build. The explicit
// credentials are returned apart: pipeline offers them only to the
// registry of the image the GitOps repository deploys.
func registryOptions(a *app, bf *buildFlags) (registry.PublishOptions, registry.KeychainOptions, error) {
	user := bf.username
	if user == "" {
		user = a.getenv("NOTESCTL_REGISTRY_USERNAME")
	}
	password := a.getenv("NOTESCTL_REGISTRY_PASSWORD")
	a.addSecret(password)
	kc := registry.KeychainOptions{Username: user, Password: password}
	if err := kc.Validate(); err != nil {
		return registry.PublishOptions{}, kc, err
	}
	return registry.PublishOptions{Insecure: bf.insecure, CAFile: bf.caFile}, kc, nil
}
