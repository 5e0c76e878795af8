package giteaenv

import (
	"fmt"
	"time"

	"github.com/notesctl/notesctl/internal/testenv"
)

// The servers run as testenv.Process; these are the package's short names
// for it.

// logBuffer is a process's output (testenv.LogBuffer).
type logBuffer struct{ *testenv.LogBuffer }

// tail returns the last n lines.
func (b logBuffer) tail(n int) string { return b.Tail(n) }

// process is one server the environment started.
type process struct {
	p    *testenv.Process
	name string
	log  logBuffer
}

// startProcess starts path with args in dir with exactly env; the runner's
// job processes are in its process group, so stop reaches them too.
func startProcess(name, dir, path string, args, env []string) (*process, error) {
	p, err := testenv.StartProcess(name, dir, path, args, env)
	if err != nil {
		return nil, err
	}
	return &process{p: p, name: p.Name, log: logBuffer{p.Log}}, nil
}

func (p *process) exited() bool { return p.p.Exited() }

func (p *process) exitError() error { return p.p.ExitError() }

// stop sends SIGTERM to the process group, SIGKILL after grace.
func (p *process) stop(grace time.Duration) error { return p.p.Stop(grace) }

// freePort picks a free TCP port on 127.0.0.1 (released before it returns;
// a start that loses the race is retried).
func freePort() (int, error) {
	ports, err := testenv.FreePorts(1)
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	return ports[0], nil
}
