// Package testenv holds what every test environment of notesctl shares:
// the rule for an external tool that is missing, and throwaway TLS
// certificates for servers on loopback.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// EnvRequireTools, set to 1 (as .ci/run does), turns a missing external
// tool from a skipped test into a failed one, so that CI never skips.
const EnvRequireTools = "NOTESCTL_REQUIRE_TOOLS"

// ToolsRequired reports whether EnvRequireTools is set.
func ToolsRequired() bool { return os.Getenv(EnvRequireTools) == "1" }

// Missing ends the test for a missing external tool: a skip, or a failure
// under EnvRequireTools=1. The message should say how to install it.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if ToolsRequired() {
		t.Fatalf("%s (%s=1)", msg, EnvRequireTools)
	}
	t.Skip(msg)
}

// LookPath returns the path of tool on PATH, or ends the test by Missing
// with install telling how to get it.
func LookPath(t testing.TB, tool, install string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		Missing(t, "%s not found on PATH (%s)", tool, install)
	}
	return p
}
