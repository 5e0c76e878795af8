package testenv

import (
	"os"
	"regexp"
	"testing"
)

// TestCosignVersionKey: the key the tests look under is the one
// tools/cosign/build.sh builds into.
func TestCosignVersionKey(t *testing.T) {
	b, err := os.ReadFile("../../tools/cosign/build.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^VERSION_KEY=(\S+)$`).FindSubmatch(b)
	if m == nil || string(m[1]) != CosignVersionKey {
		t.Fatalf("tools/cosign/build.sh VERSION_KEY = %q, CosignVersionKey = %q", m, CosignVersionKey)
	}
}
