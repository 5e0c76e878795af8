package kubeenv

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"

	"github.com/notesctl/notesctl/internal/testenv"
)

// The servers run as testenv.Process; these are the package's short names
// for it.

// logBuffer is a process's output (testenv.LogBuffer).
type logBuffer struct{ *testenv.LogBuffer }

// snapshot returns the output so far and a channel closed on the next write.
func (b logBuffer) snapshot() (string, <-chan struct{}) { return b.Snapshot() }

// tail returns the last n lines.
func (b logBuffer) tail(n int) string { return b.Tail(n) }

// process is one server started by the environment.
type process struct {
	p    *testenv.Process
	name string
	cmd  *exec.Cmd
	log  logBuffer
	done <-chan struct{} // closed when the process has exited
}

// startProcess starts path with args and env (appended to a minimal
// environment), output captured in the process's log.
func startProcess(name, path string, args, env []string) (*process, error) {
	p, err := testenv.StartProcess(name, "", path, args, append(testenv.BaseEnv(), env...))
	if err != nil {
		return nil, err
	}
	return &process{p: p, name: p.Name, cmd: p.Cmd, log: logBuffer{p.Log}, done: p.Done()}, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool { return p.p.Exited() }

// exitError describes how the process ended, with the end of its log.
func (p *process) exitError() error { return p.p.ExitError() }

// stop sends SIGTERM to the process group, and SIGKILL after grace.
func (p *process) stop(grace time.Duration) error { return p.p.Stop(grace) }

// waitForLog waits until a line of the output satisfies match, the process
// exits, or ctx ends.
func (p *process) waitForLog(ctx context.Context, what string, match func(line string) bool) error {
	return p.p.WaitForLog(ctx, what, match)
}

// addrInUse reports whether the process failed because a port was taken
// between picking it and binding it.
func (p *process) addrInUse() bool { return p.p.AddrInUse() }

// errAddrInUse marks a start that may be retried on other ports.
var errAddrInUse = errors.New("address already in use")

// freePorts returns n distinct free TCP ports on 127.0.0.1 (see
// testenv.FreePorts: starts retry on "address already in use").
func freePorts(n int) ([]int, error) { return testenv.FreePorts(n) }

// loopback formats 127.0.0.1:port.
func loopback(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
