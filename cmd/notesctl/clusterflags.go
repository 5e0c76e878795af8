package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/notesctl/notesctl/pipeline/rollout"
)

// clusterFlags say how to reach the cluster Flux runs in.
type clusterFlags struct {
	kubeconfig, context string
	fluxNamespace       string
	kustomization       string
	timeout             time.Duration
}

func (c *clusterFlags) register(cmd *cobra.Command) {
	c.registerFor(cmd, "notes", "Flux Kustomization that applies the GitOps path")
}

// registerFor registers the flags with the Kustomization --wait follows by
// default: a preview's is the scaffolded NAME-previews.
func (c *clusterFlags) registerFor(cmd *cobra.Command, kustomization, usage string) {
	f := cmd.Flags()
	f.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, ~/.kube/config, or in-cluster; content in NOTESCTL_KUBECONFIG_DATA)")
	f.StringVar(&c.context, "context", "", "kubeconfig context (default: the current one)")
	f.StringVar(&c.fluxNamespace, "flux-namespace", "flux-system", "namespace of the Flux objects")
	f.StringVar(&c.kustomization, "kustomization", kustomization, usage)
	f.DurationVar(&c.timeout, "timeout", 5*time.Minute, "how long --wait waits for Flux and the rollout")
}

func (c *clusterFlags) options(a *app) rollout.Options {
	o := rollout.Options{
		Kubeconfig: c.kubeconfig, Context: c.context, Namespace: c.fluxNamespace,
		Kustomization: c.kustomization, Timeout: c.timeout,
	}
	if data := a.getenv("NOTESCTL_KUBECONFIG_DATA"); data != "" {
		o.KubeconfigData = []byte(data)
		a.addSecret(data)
	}
	return o
}
