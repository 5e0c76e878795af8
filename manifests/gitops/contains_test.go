package gitops

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestContains checks the GitOps ancestry --wait relies on, on a local
// repository and through a file:// clone: main is A-B-C, branch other is A-D.
func TestContains(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gitops")
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
		cmd.Env = append(cmd.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "init", "-q", "-b", "main", dir).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	commit := func(msg string) string {
		git("commit", "-q", "--allow-empty", "-m", msg)
		return git("rev-parse", "HEAD")
	}
	a := commit("A")
	b := commit("B")
	c := commit("C")
	git("checkout", "-q", "-b", "other", a)
	d := commit("D")
	git("checkout", "-q", "main")

	tests := []struct {
		name, commit, base string
		want               bool
	}{
		{"same commit", a, a, true},
		{"same commit, upper case", strings.ToUpper(b), b, true},
		{"descendant", c, a, true},
		{"child", c, b, true},
		{"ancestor is not a descendant", a, c, false},
		{"other branch", d, a, false},
		{"unknown commit", strings.Repeat("1", 40), a, false},
		{"unknown base", c, strings.Repeat("2", 40), false},
	}
	for _, url := range []string{dir, "file://" + dir} {
		for _, tt := range tests {
			got, err := Contains(context.Background(), Options{URL: url, Branch: "main"}, tt.commit, tt.base)
			if err != nil {
				t.Fatalf("%s: %s: %v", url, tt.name, err)
			}
			if got != tt.want {
				t.Errorf("%s: %s: Contains = %v, want %v", url, tt.name, got, tt.want)
			}
		}
	}
}
