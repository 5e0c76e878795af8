package gitops

import (
	"os"
	"testing"
)

// TestMain keeps the machine's own git configuration out of the tests:
// whether a local bare repository is written in place depends on it
// (pushThroughGit), and the tests say which configuration they mean.
func TestMain(m *testing.M) {
	os.Setenv("GIT_CONFIG_GLOBAL", os.DevNull)
	os.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	os.Exit(m.Run())
}
