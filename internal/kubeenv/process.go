package kubeenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxLogBytes bounds the log kept per process; older output is dropped.
const maxLogBytes = 8 << 20

// logBuffer keeps a process's combined output and wakes waiters on writes.
type logBuffer struct {
	mu      sync.Mutex
	buf     []byte
	dropped int64
	changed chan struct{}
}

func newLogBuffer() *logBuffer { return &logBuffer{changed: make(chan struct{})} }

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - maxLogBytes; over > 0 {
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

// snapshot returns the output so far and a channel closed on the next write.
func (b *logBuffer) snapshot() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf), b.changed
}

// tail returns the last n lines.
func (b *logBuffer) tail(n int) string {
	s, _ := b.snapshot()
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	prefix := ""
	if len(lines) > n {
		prefix = fmt.Sprintf("[... %d earlier lines]\n", len(lines)-n)
		lines = lines[len(lines)-n:]
	}
	return prefix + strings.Join(lines, "\n")
}

// process is one server started by the environment.
type process struct {
	name string
	cmd  *exec.Cmd
	log  *logBuffer
	done chan struct{} // closed when the process has exited
	err  error         // the Wait result, valid after done
}

// startProcess starts path with args and env (appended to a minimal
// environment), output captured in the process's log.
func startProcess(name, path string, args, env []string) (*process, error) {
	p := &process{name: name, log: newLogBuffer(), done: make(chan struct{})}
	cmd := exec.Command(path, args...)
	cmd.Env = append(baseEnv(), env...)
	cmd.Stdout = p.log
	cmd.Stderr = p.log
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// A group of its own, so that stop reaches children too and a
		// terminal's ^C goes to the test binary only.
		Setpgid: true,
		// If the test binary dies without running its cleanups (a panic, a
		// test timeout), the kernel kills the server.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.cmd = cmd
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func baseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitError describes how the process ended, with the end of its log.
func (p *process) exitError() error {
	return fmt.Errorf("%s exited (%v); last output:\n%s", p.name, p.err, p.log.tail(40))
}

// stop sends SIGTERM to the process group, and SIGKILL after grace.
func (p *process) stop(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.done:
		return fmt.Errorf("%s ignored SIGTERM for %s and was killed", p.name, grace)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, pgid)
	}
}

// waitForLog waits until a line of the output satisfies match, the process
// exits, or ctx ends.
func (p *process) waitForLog(ctx context.Context, what string, match func(line string) bool) error {
	for {
		out, changed := p.log.snapshot()
		for _, line := range strings.Split(out, "\n") {
			if match(line) {
				return nil
			}
		}
		select {
		case <-changed:
		case <-p.done:
			out, _ := p.log.snapshot()
			for _, line := range strings.Split(out, "\n") {
				if match(line) {
					return nil
				}
			}
			return fmt.Errorf("waiting for %s: %w", what, p.exitError())
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s from %s: %w; last output:\n%s", what, p.name, context.Cause(ctx), p.log.tail(40))
		}
	}
}

// addrInUse reports whether the process failed because a port was taken
// between picking it and binding it.
func (p *process) addrInUse() bool {
	out, _ := p.log.snapshot()
	return strings.Contains(out, "address already in use")
}

// errAddrInUse marks a start that may be retried on other ports.
var errAddrInUse = errors.New("address already in use")

// freePorts returns n distinct free TCP ports on 127.0.0.1. The ports are
// released before returning, so another process may take one before the
// server binds it; starts retry on "address already in use".
func freePorts(n int) ([]int, error) {
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

// loopback formats 127.0.0.1:port.
func loopback(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
