package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/notesctl/notesctl/internal/redact"
	"github.com/notesctl/notesctl/manifests/gitops"
)

// app is what every command shares: the streams, the environment and the
// sink choice. Commands are thin: they bind flags and call pipeline.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	output         string // text | json
	configFile     string
	secrets        []string // values to redact from any error text
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	msg := a.redact(err.Error())
	if ctx.Err() != nil {
		fmt.Fprintf(stderr, "notesctl: cancelled: %s\n", msg)
		return 130
	}
	fmt.Fprintf(stderr, "notesctl: %s\n", msg)
	if errors.Is(err, gitops.ErrBranchProtected) {
		fmt.Fprintln(stderr, "notesctl: the GitOps branch takes no direct pushes: run again with --gitops-pr to propose the update as a pull request (and --auto-merge to merge it when the checks pass)")
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "notesctl",
		Short: "Render a Hugo notes site, publish it as an OCI image, and deploy it through GitOps",
		Long: `notesctl runs the build-and-deploy pipeline of a Hugo notes site with no
Docker daemon: it renders a commit of the site with Hugo embedded at a pinned
version, assembles a reproducible OCI image, pushes it with a tag that carries
the generator version, and commits the image update into the GitOps
repository that Flux applies to Kubernetes.

Start offline, with no registry and no services:

  notesctl release --local

Configuration comes from flags, then NOTESCTL_* environment variables, then
.notesctl.yaml in the site directory (see "notesctl help config").`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "text", "output format: text or json")
	root.PersistentFlags().StringVar(&a.configFile, "config", "", "config file (default: .notesctl.yaml in the site directory)")
	root.AddCommand(
		a.versionCommand(),
		a.buildCommand(),
		a.updateCommand(),
		a.manifestsCommand(),
		a.releaseCommand(),
		a.statusCommand(),
		a.rollbackCommand(),
		a.verifyCommand(),
		a.previewCommand(),
		configHelpTopic(),
	)
	return root
}

// redact removes every secret the command has seen from a message.
func (a *app) redact(s string) string { return redact.Text(s, a.secrets...) }

func (a *app) addSecret(s string) {
	if s = strings.TrimSpace(s); s != "" {
		a.secrets = append(a.secrets, s)
	}
}

// prepare binds a command's flags (see bind) and checks --output: the
// first thing every command does.
func (a *app) prepare(cmd *cobra.Command, siteDir string, inputs map[string]string) error {
	if err := a.bind(cmd, siteDir, inputs); err != nil {
		return err
	}
	return a.checkOutput()
}

// printJSON writes a command's result for --output json.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *app) checkOutput() error {
	switch a.output {
	case "text", "json":
		return nil
	}
	return fmt.Errorf("--output %q: want text or json", a.output)
}

// flagChanged says whether a flag was set on the command line.
func flagChanged(fs *pflag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	return f != nil && f.Changed
}
