package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/notesctl/notesctl/render"
)

// version is set at link time (-ldflags "-X main.version=v1.2.3"); a build
// from source reports the module version or "devel".
var version = ""

func notesctlVersion() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "devel"
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print notesctl's version and the embedded Hugo version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.checkOutput(); err != nil {
				return err
			}
			pin := "ok"
			if err := render.PinCheck(); err != nil {
				pin = err.Error()
			}
			if a.output == "json" {
				return json.NewEncoder(a.stdout).Encode(map[string]string{
					"notesctl": notesctlVersion(), "hugo": render.HugoVersion(), "go": runtime.Version(), "hugoPin": pin,
				})
			}
			fmt.Fprintf(a.stdout, "notesctl %s\nhugo %s (embedded, pinned in go.mod)\n%s %s/%s\n", notesctlVersion(), render.HugoVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			if pin != "ok" {
				return fmt.Errorf("Hugo pin check: %s", pin)
			}
			return nil
		},
	}
}
