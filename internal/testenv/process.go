package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MaxLogBytes bounds the output a LogBuffer keeps; older lines are dropped.
const MaxLogBytes = 16 << 20

// LogBuffer keeps a process's combined output (the newest MaxLogBytes of
// it, whole lines) and wakes waiters on every write.
type LogBuffer struct {
	mu      sync.Mutex
	buf     []byte
	dropped int64
	changed chan struct{}
}

// NewLogBuffer returns an empty LogBuffer.
func NewLogBuffer() *LogBuffer { return &LogBuffer{changed: make(chan struct{})} }

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - MaxLogBytes; over > 0 {
		// Drop whole lines from the front.
		if i := bytes.IndexByte(b.buf[over:], '\n'); i >= 0 {
			over += i + 1
		}
		b.dropped += int64(over)
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

// Snapshot returns the output so far and a channel closed on the next write.
func (b *LogBuffer) Snapshot() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf), b.changed
}

// String returns the output so far.
func (b *LogBuffer) String() string {
	s, _ := b.Snapshot()
	return s
}

// Tail returns the last n lines, saying how many came before.
func (b *LogBuffer) Tail(n int) string {
	s := strings.TrimRight(b.String(), "\n")
	lines := strings.Split(s, "\n")
	prefix := ""
	if len(lines) > n {
		prefix = fmt.Sprintf("[... %d earlier lines]\n", len(lines)-n)
		lines = lines[len(lines)-n:]
	}
	return prefix + strings.Join(lines, "\n")
}

// Process is a server a test environment started: in a process group of
// its own (Stop reaches its children too, a terminal's ^C only the test
// binary), killed by the kernel if the test binary dies without running its
// cleanups, its combined output in Log.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	Log  *LogBuffer

	done chan struct{} // closed when the process has exited
	err  error         // the Wait result, valid after done
}

// StartProcess starts path with args in dir ("" for the current directory)
// with exactly env (see BaseEnv).
func StartProcess(name, dir, path string, args, env []string) (*Process, error) {
	p := &Process{Name: name, Log: NewLogBuffer(), done: make(chan struct{})}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = p.Log, p.Log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.Cmd = cmd
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// BaseEnv is a minimal environment for a server: PATH, HOME, TMPDIR and
// the locale, as far as they are set.
func BaseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitError describes how the process ended, with the end of its log.
func (p *Process) ExitError() error {
	var err error
	if p.Exited() {
		err = p.err
	}
	return fmt.Errorf("%s exited (%v); last output:\n%s", p.Name, err, p.Log.Tail(40))
}

// Stop sends SIGTERM to the process group, and SIGKILL after grace.
func (p *Process) Stop(grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	pgid := p.Cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.done:
		return fmt.Errorf("%s ignored SIGTERM for %s and was killed", p.Name, grace)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.Name, pgid)
	}
}

// WaitForLog waits until a line of the output satisfies match, the process
// exits, or ctx ends.
func (p *Process) WaitForLog(ctx context.Context, what string, match func(line string) bool) error {
	found := func() bool {
		out, _ := p.Log.Snapshot()
		for _, line := range strings.Split(out, "\n") {
			if match(line) {
				return true
			}
		}
		return false
	}
	for {
		_, changed := p.Log.Snapshot()
		if found() {
			return nil
		}
		select {
		case <-changed:
		case <-p.done:
			if found() {
				return nil
			}
			return fmt.Errorf("waiting for %s: %w", what, p.ExitError())
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s from %s: %w; last output:\n%s", what, p.Name, context.Cause(ctx), p.Log.Tail(40))
		}
	}
}

// AddrInUse reports whether the process failed because a port was taken
// between picking it and binding it.
func (p *Process) AddrInUse() bool {
	return strings.Contains(p.Log.String(), "address already in use")
}

// FreePorts returns n distinct free TCP ports on 127.0.0.1. They are
// released before it returns, so another process may take one before the
// server binds it: starts should retry on "address already in use".
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
