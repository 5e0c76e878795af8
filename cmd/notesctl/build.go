package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/notesctl/notesctl/pipeline"
)

func (a *app) buildCommand() *cobra.Command {
	var bf buildFlags
	cmd := &cobra.Command{
		Use:   "build --image REPO [--to oci:PATH]",
		Short: "Render a site commit and publish it as an OCI image",
		Long: `build renders the committed tree of the site repository at --revision
(default HEAD) with the embedded Hugo, assembles a reproducible OCI image on
--base, and pushes it to --image (or writes an OCI image layout with --to).

It prints the result as repo:tag@sha256:<digest> on stdout; progress goes to
stderr. The same commit and Hugo version always give the same digest.`,
		Example: `  # push to a registry, with the docker login credentials
  notesctl build --site . --image ghcr.io/acme/notes

  # offline: a data-only image into an OCI layout
  notesctl build --image notes.local/notes --base scratch --to oci:./out/image

  # CI with explicit credentials
  echo "$TOKEN" | notesctl build --image registry.example.org/notes --username ci --password-stdin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.prepare(cmd, siteDirFor(cmd, a, bf.site), nil); err != nil {
				return err
			}
			opts, err := bf.options(a, a.stdin)
			if err != nil {
				return err
			}
			sink := a.sink()
			res, err := pipeline.Build(cmd.Context(), opts, sink)
			a.finish(sink)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(res)
			}
			fmt.Fprintln(a.stdout, res.Image)
			return nil
		},
	}
	bf.register(cmd)
	return cmd
}

// siteDirFor finds the site directory before binding, so that the config
// file can be found: the flag, else NOTESCTL_SITE, else the default.
func siteDirFor(cmd *cobra.Command, a *app, current string) string {
	if flagChanged(cmd.Flags(), "site") {
		return current
	}
	if v := a.getenv("NOTESCTL_SITE"); v != "" {
		return v
	}
	return current
}
