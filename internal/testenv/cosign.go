package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// CosignVersionKey names the cache directory tools/cosign/build.sh fills by
// default; it must equal VERSION_KEY in that script (a test checks it).
const CosignVersionKey = "cosign-v3.1.3-r1"

// EnvCosign names the cosign binary to run, overriding the lookup.
const EnvCosign = "NOTESCTL_COSIGN"

// Cosign returns the path of the real cosign CLI: $NOTESCTL_COSIGN, else
// what tools/cosign/build.sh built into the tools cache
// ($NOTESCTL_TOOLS_CACHE or ~/.cache/notesctl-tools), else cosign on PATH.
// Without one it ends the test through Missing (a failure under
// NOTESCTL_REQUIRE_TOOLS=1).
func Cosign(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvCosign); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			Missing(t, "%s=%s: %v", EnvCosign, p, err)
		}
		return p
	}
	root := os.Getenv("NOTESCTL_TOOLS_CACHE")
	if root == "" {
		if home, err := os.UserHomeDir(); err == nil {
			root = filepath.Join(home, ".cache", "notesctl-tools")
		}
	}
	if root != "" {
		p := filepath.Join(root, CosignVersionKey, "bin", "cosign")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p
		}
	}
	return LookPath(t, "cosign", "build it: bash tools/cosign/build.sh (cosign v3.1.3 into ~/.cache/notesctl-tools)")
}
