package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/notesctl/notesctl/render"
)

// Set at link time by tools/release/release.sh:
//
//	-ldflags "-X main.version=v1.2.3 -X main.commit=<sha> -X main.date=<RFC 3339>"
//
// A binary built any other way reports what the Go build info knows.
var (
	version = ""
	commit  = ""
	date    = ""
)

// versionInfo is what `notesctl version` reports about the binary itself.
type versionInfo struct {
	Version  string `json:"notesctl"`
	Commit   string `json:"commit,omitempty"`
	Date     string `json:"date,omitempty"`     // build date of a release; commit time of a checkout build
	DateKind string `json:"dateKind,omitempty"` // "built" or "committed"
	Modified bool   `json:"modified,omitempty"` // a checkout build with uncommitted changes
}

// readVersion prefers the stamped values; without them it falls back to the
// module version (go install ...@vX) and the VCS settings Go records when it
// builds from a checkout (vcs.revision, vcs.time, vcs.modified).
func readVersion(stampVersion, stampCommit, stampDate string, info *debug.BuildInfo) versionInfo {
	if stampVersion != "" {
		v := versionInfo{Version: stampVersion, Commit: stampCommit, Date: stampDate}
		if v.Date != "" {
			v.DateKind = "built"
		}
		return v
	}
	v := versionInfo{Version: "devel"}
	if info == nil {
		return v
	}
	if mv := info.Main.Version; mv != "" && mv != "(devel)" {
		v.Version = mv
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.Date, v.DateKind = s.Value, "committed"
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func currentVersion() versionInfo {
	info, _ := debug.ReadBuildInfo()
	return readVersion(version, commit, date, info)
}

// notesctlVersion is the short form (user agent, first line of `version`).
func notesctlVersion() string { return currentVersion().Version }

// detail is the second line of the text output, or "" when nothing is known.
func (v versionInfo) detail() string {
	if v.Commit == "" && v.Date == "" {
		return ""
	}
	s := "commit " + v.Commit
	if v.Commit == "" {
		s = "commit unknown"
	}
	if v.Modified {
		s += " (modified)"
	}
	if v.Date != "" {
		s += ", " + v.DateKind + " " + v.Date
	}
	return s
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print notesctl's version, commit and build date, and the embedded Hugo version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.checkOutput(); err != nil {
				return err
			}
			pin := "ok"
			if err := render.PinCheck(); err != nil {
				pin = err.Error()
			}
			v := currentVersion()
			if a.output == "json" {
				return json.NewEncoder(a.stdout).Encode(struct {
					versionInfo
					Hugo    string `json:"hugo"`
					Go      string `json:"go"`
					HugoPin string `json:"hugoPin"`
				}{v, render.HugoVersion(), runtime.Version(), pin})
			}
			fmt.Fprintf(a.stdout, "notesctl %s\n", v.Version)
			if d := v.detail(); d != "" {
				fmt.Fprintln(a.stdout, d)
			}
			fmt.Fprintf(a.stdout, "hugo %s (embedded, pinned in go.mod)\n%s %s/%s\n", render.HugoVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			if pin != "ok" {
				return fmt.Errorf("Hugo pin check: %s", pin)
			}
			return nil
		},
	}
}
