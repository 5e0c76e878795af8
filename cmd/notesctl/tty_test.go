package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/notesctl/notesctl/internal/testenv"
)

// TestTerminalProgress runs the release under a pseudo-terminal (util-linux
// script) and checks the live display: each stage is drawn as running and
// then redrawn in place as done; without a terminal the same run prints
// plain lines only.
func TestTerminalProgress(t *testing.T) {
	scriptBin := testenv.LookPath(t, "script", "apt-get install -y util-linux")
	site := newSite(t)
	cmd := exec.Command(scriptBin, "-qec", notesctlBin+" release --local", "/dev/null")
	cmd.Dir = site
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TERM=xterm"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("release under a terminal: %v\n%s", err, out)
	}
	s := string(out)
	for _, stage := range []string{"source", "render", "image", "push", "update"} {
		running := strings.Index(s, "  "+stage)
		done := strings.Index(s, "\r\x1b[K✓ "+stage)
		if running < 0 || done < running {
			t.Errorf("stage %s is not drawn running, then redrawn in place as done:\n%q", stage, s)
		}
	}

	// The render is drawn as it goes: the files Hugo has published.
	if !strings.Contains(s, "  render  ") || !strings.Contains(s, " files published") {
		t.Errorf("no render progress on the terminal:\n%q", s)
	}

	// Plain output (not a terminal): no control sequences.
	editPage(t, site, 1)
	r := notesctl(t, site, nil, "", "release", "--local")
	mustSucceed(t, r)
	if strings.ContainsAny(r.stderr, "\r\x1b") {
		t.Errorf("plain output has terminal control sequences: %q", r.stderr)
	}
}
