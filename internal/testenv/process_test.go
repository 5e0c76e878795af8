package testenv

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestLogBufferKeepsTheEnd(t *testing.T) {
	b := NewLogBuffer()
	line := strings.Repeat("x", 1023) + "\n"
	for range (MaxLogBytes / len(line)) + 100 {
		if _, err := b.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Write([]byte("the end\n")); err != nil {
		t.Fatal(err)
	}
	s, _ := b.Snapshot()
	if len(s) > MaxLogBytes {
		t.Errorf("log holds %d bytes, limit %d", len(s), MaxLogBytes)
	}
	if !strings.HasPrefix(s, "xxx") {
		t.Errorf("log does not start at a line boundary: %q", s[:20])
	}
	if got := b.Tail(2); !strings.HasSuffix(got, "x\nthe end") || !strings.HasPrefix(got, "[... ") {
		t.Errorf("Tail(2) = %q", got[len(got)-20:])
	}
}

func TestWaitForLogSeesLaterLinesAndExit(t *testing.T) {
	p, err := StartProcess("sh", "", "/bin/sh", []string{"-c", `echo one; sleep 0.3; echo '{"msg":"Starting workers","controllerKind":"X"}'; sleep 0.3; exit 3`}, BaseEnv())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitForLog(ctx, "workers", func(l string) bool { return strings.Contains(l, `"controllerKind":"X"`) }); err != nil {
		t.Fatalf("WaitForLog: %v", err)
	}
	err = p.WaitForLog(ctx, "a line that never comes", func(l string) bool { return l == "never" })
	if err == nil || !strings.Contains(err.Error(), "sh exited (exit status 3)") || !strings.Contains(err.Error(), "one") {
		t.Fatalf("WaitForLog after exit: err = %v", err)
	}
}

func TestStopKillsAProcessThatIgnoresSIGTERM(t *testing.T) {
	p, err := StartProcess("stubborn", "", "/bin/sh", []string{"-c", `trap '' TERM; echo ready; while :; do sleep 0.1; done`}, BaseEnv())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitForLog(ctx, "ready", func(l string) bool { return l == "ready" }); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = p.Stop(300 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "ignored SIGTERM") {
		t.Errorf("Stop = %v, want an error saying SIGTERM was ignored", err)
	}
	if !p.Exited() {
		t.Fatal("process still running after Stop")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Stop took %s", d)
	}
}
