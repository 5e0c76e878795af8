package giteaenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notesctl/notesctl/internal/testenv"
)

// DefaultVersionKey names the cache directory tools/gitea/build.sh fills by
// default; it must equal VERSION_KEY in that script (a test checks it).
const DefaultVersionKey = "gitea-v1.26.0-runner-v1.0.8-r1"

// Environment variables that locate the tools.
const (
	// EnvTools names a directory holding bin/gitea, bin/act_runner and
	// static/ (what build.sh writes).
	EnvTools = "NOTESCTL_GITEA_TOOLS"
	// EnvToolsCache overrides the cache root ($HOME/.cache/notesctl-tools),
	// as it does for the build scripts.
	EnvToolsCache = "NOTESCTL_TOOLS_CACHE"
)

// BuildCommand is what a developer runs to fill the default cache.
const BuildCommand = "bash tools/gitea/build.sh"

// Tools are the Gitea server and runner binaries and Gitea's static files.
type Tools struct {
	Gitea  string // the gitea binary
	Runner string // the act_runner binary
	Static string // STATIC_ROOT_PATH: templates/, options/, public/
}

// FindTools locates the tools: EnvTools when set, else the default cache.
func FindTools() (Tools, error) {
	dir := os.Getenv(EnvTools)
	if dir == "" {
		root := os.Getenv(EnvToolsCache)
		if root == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return Tools{}, fmt.Errorf("locate the tools cache: %w (set %s or %s)", err, EnvToolsCache, EnvTools)
			}
			root = filepath.Join(home, ".cache", "notesctl-tools")
		}
		dir = filepath.Join(root, DefaultVersionKey)
	}
	tools := Tools{
		Gitea:  filepath.Join(dir, "bin", "gitea"),
		Runner: filepath.Join(dir, "bin", "act_runner"),
		Static: filepath.Join(dir, "static"),
	}
	var problems []string
	for _, p := range []string{tools.Gitea, tools.Runner} {
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", p, errors.Unwrap(err)))
		case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
			problems = append(problems, p+": not an executable file")
		}
	}
	if fi, err := os.Stat(filepath.Join(tools.Static, "templates")); err != nil || !fi.IsDir() {
		problems = append(problems, "no templates/ in "+tools.Static)
	}
	if len(problems) > 0 {
		return tools, fmt.Errorf("gitea test tools missing in %s: %s", dir, strings.Join(problems, "; "))
	}
	return tools, nil
}

// RequireTools returns the tools or ends the test through testenv.Missing
// (a skip, or a failure in CI), naming the command that builds them.
func RequireTools(t testing.TB) Tools {
	t.Helper()
	tools, err := FindTools()
	if err != nil {
		testenv.Missing(t, "%v\nbuild them with `%s` from the repository root (or set %s)", err, BuildCommand, EnvTools)
	}
	return tools
}
