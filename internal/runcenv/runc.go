package runcenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// Security is what a container runs under: the parts of a Kubernetes
// security context and volume mounts that runc enforces.
type Security struct {
	UID, GID uint32
	// ReadOnlyRoot mounts the image's root file system read-only.
	ReadOnlyRoot bool
	// NoNewPrivileges is allowPrivilegeEscalation: false.
	NoNewPrivileges bool
	// Capabilities the process keeps (none when empty: drop ALL).
	Capabilities []string
	// Seccomp is "" (unconfined) or SeccompRuntimeDefault.
	Seccomp string
	// EmptyDirs are the mount paths of emptyDir volumes. Each gets a fresh
	// world-writable (0777) directory of the host bind-mounted, as kubelet
	// makes them.
	EmptyDirs []string
}

// Container is a running container.
type Container struct {
	ID  string
	PID int
	// Dir is the bundle directory (config.json, rootfs, emptyDirs, log).
	Dir     string
	root    string // runc's state directory, private to this container
	log     string
	netns   string
	removed atomic.Bool
}

var containerSeq atomic.Int64

// Run unpacks img into a bundle and starts it with runc under sec, in new
// pid, mount, ipc, uts and network namespaces (the network namespace holds
// only a loopback interface: Dial and Forward reach it). The process is
// the image's entrypoint and cmd with its env and working directory. The
// container is killed and deleted when the test ends, pass or fail.
func Run(t testing.TB, img v1.Image, sec Security) *Container {
	t.Helper()
	Require(t)
	dir := t.TempDir()
	c := &Container{
		ID:   fmt.Sprintf("notesctl-test-%d-%d", os.Getpid(), containerSeq.Add(1)),
		Dir:  dir,
		root: filepath.Join(dir, "runc-state"),
		log:  filepath.Join(dir, "container.log"),
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := Unpack(img, rootfs); err != nil {
		t.Fatalf("unpacking the image: %v", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	spec, err := runtimeSpec(cfg.Config, sec, dir)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// Registered before the start, so that a half-started container is
	// removed too.
	t.Cleanup(func() { c.remove(t) })
	pidFile := filepath.Join(dir, "container.pid")
	cmd := exec.Command("runc", "--root", c.root, "run", "--detach", "--pid-file", pidFile, "--bundle", dir, c.ID)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		t.Fatalf("runc run %s: %v\n%s", c.ID, err, c.Logs())
	}
	pid, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	if c.PID, err = strconv.Atoi(strings.TrimSpace(string(pid))); err != nil {
		t.Fatalf("pid file: %v", err)
	}
	c.netns = fmt.Sprintf("/proc/%d/ns/net", c.PID)
	return c
}

// Logs returns what the container (and runc) wrote so far.
func (c *Container) Logs() string {
	data, _ := os.ReadFile(c.log)
	return string(data)
}

// Stop kills and deletes the container now (it is also done when the test
// ends), as a rollout stops the old pod.
func (c *Container) Stop(t testing.TB) {
	t.Helper()
	c.remove(t)
}

// remove kills and deletes the container by its ID in its own runc state
// directory, and checks that its process is gone. It runs once.
func (c *Container) remove(t testing.TB) {
	if c.removed.Swap(true) {
		return
	}
	if _, err := os.Stat(c.root); err != nil {
		return // never started
	}
	_ = exec.Command("runc", "--root", c.root, "kill", c.ID, "KILL").Run()
	if out, err := exec.Command("runc", "--root", c.root, "delete", "--force", c.ID).CombinedOutput(); err != nil &&
		!strings.Contains(string(out), "does not exist") {
		t.Errorf("runc delete %s: %v\n%s", c.ID, err, out)
	}
	if c.PID > 0 {
		deadline := time.Now().Add(5 * time.Second)
		for unix.Kill(c.PID, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if unix.Kill(c.PID, 0) == nil {
			t.Errorf("container %s: process %d still runs after runc delete", c.ID, c.PID)
		}
	}
	if t.Failed() {
		t.Logf("container %s log:\n%s", c.ID, c.Logs())
	}
}

// Dial connects to addr inside the container's network namespace: the
// socket is made on an OS thread that joined the namespace, and stays in
// it, wherever it is used afterwards.
//
// The thread then goes back to the host's namespace and to the scheduler.
// It must not end: a locked thread whose goroutine returns is terminated,
// and the kernel sends the Pdeathsig of every process started from that
// thread (kubeenv's etcd, kube-apiserver and Flux controllers) - that
// killed them at random while a test dialed a container.
func (c *Container) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		host, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("this thread's network namespace: %w", err)}
			return
		}
		defer unix.Close(host)
		fd, err := unix.Open(c.netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("container %s network namespace: %w", c.ID, err)}
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("joining the network namespace of container %s: %w", c.ID, err)}
			return
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, addr)
		if rerr := unix.Setns(host, unix.CLONE_NEWNET); rerr != nil {
			// The thread cannot go back: it stays locked and ends with
			// this goroutine rather than run others in the container's
			// namespace.
			if conn != nil {
				conn.Close()
			}
			ch <- result{err: fmt.Errorf("leaving the network namespace of container %s: %w", c.ID, rerr)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}

// HTTPClient returns a client whose connections go to the container's
// network namespace: http://127.0.0.1:8080/ is the container's port 8080,
// as a kubelet probe sees it. It does not decompress responses (the test
// sees Content-Encoding as sent) and does not follow redirects.
func (c *Container) HTTPClient() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext:        c.Dial,
			DisableCompression: true,
			Proxy:              nil,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Forwarder listens on a free port of the host's loopback and forwards
// each connection to a port inside a container, for clients that cannot
// dial into a namespace (a browser). Switch moves it to another container,
// as a Service moves to the new pod of a rollout: connections to the old
// one are closed, new ones go to the new one, and the address stays, so a
// browser keeps its cache for the site's origin.
type Forwarder struct {
	ln     net.Listener
	port   int
	mu     sync.Mutex
	target *Container
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

// NewForwarder starts a forwarder to port; it has no target until Switch,
// and stops when the test ends.
func NewForwarder(t testing.TB, port int) *Forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &Forwarder{ln: ln, port: port, conns: map[net.Conn]bool{}}
	t.Cleanup(func() {
		ln.Close()
		f.Switch(nil)
		f.wg.Wait()
	})
	f.wg.Go(f.serve)
	return f
}

// Addr is the host address ("127.0.0.1:PORT").
func (f *Forwarder) Addr() string { return f.ln.Addr().String() }

// Switch sends new connections to c and closes those to the previous
// target.
func (f *Forwarder) Switch(c *Container) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.target = c
	for conn := range f.conns {
		conn.Close()
	}
	clear(f.conns)
}

func (f *Forwarder) serve() {
	target := net.JoinHostPort("127.0.0.1", strconv.Itoa(f.port))
	for {
		in, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		c := f.target
		f.mu.Unlock()
		if c == nil {
			in.Close()
			continue
		}
		f.wg.Go(func() {
			defer in.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			out, err := c.Dial(ctx, "tcp", target)
			cancel()
			if err != nil {
				return
			}
			defer out.Close()
			f.mu.Lock()
			if f.target != c { // switched while dialing
				f.mu.Unlock()
				return
			}
			f.conns[in], f.conns[out] = true, true
			f.mu.Unlock()
			done := make(chan struct{}, 2)
			go func() { io.Copy(out, in); out.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
			go func() { io.Copy(in, out); in.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
			<-done
			<-done
			f.mu.Lock()
			delete(f.conns, in)
			delete(f.conns, out)
			f.mu.Unlock()
		})
	}
}

// WaitHTTP polls url through the container's client until it answers (any
// status) or the timeout passes.
func (c *Container) WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	client := c.HTTPClient()
	client.Timeout = time.Second
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		lastErr = err
		if unix.Kill(c.PID, 0) != nil {
			t.Fatalf("container %s exited: %v\n%s", c.ID, lastErr, c.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("container %s: %s did not answer within %s: %v\n%s", c.ID, url, timeout, lastErr, c.Logs())
}

// runtimeSpec is the OCI runtime config for the image config and security.
func runtimeSpec(img v1.Config, sec Security, bundle string) (map[string]any, error) {
	args := append(append([]string{}, img.Entrypoint...), img.Cmd...)
	if len(args) == 0 {
		return nil, errors.New("the image has neither entrypoint nor cmd")
	}
	cwd := img.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	caps := sec.Capabilities
	if caps == nil {
		caps = []string{}
	}
	mounts := []map[string]any{
		{"destination": "/proc", "type": "proc", "source": "proc"},
		{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": []string{"nosuid", "noexec", "nodev"}},
		{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": []string{"nosuid", "noexec", "nodev", "ro"}},
	}
	for i, dest := range sec.EmptyDirs {
		// kubelet makes an emptyDir as a 0777 directory on the node.
		src := filepath.Join(bundle, "emptydir", strconv.Itoa(i))
		if err := os.MkdirAll(src, 0o755); err != nil {
			return nil, err
		}
		if err := os.Chmod(src, 0o777); err != nil {
			return nil, err
		}
		mounts = append(mounts, map[string]any{
			"destination": dest, "type": "bind", "source": src,
			"options": []string{"rbind", "rw", "nosuid", "nodev"},
		})
	}
	linux := map[string]any{
		"namespaces": []map[string]any{
			{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
		},
		"maskedPaths": []string{
			"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
			"/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
		},
		"readonlyPaths": []string{
			"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
		},
	}
	switch sec.Seccomp {
	case "":
	case SeccompRuntimeDefault:
		linux["seccomp"] = seccompSpec(sec.Seccomp)
	default:
		return nil, fmt.Errorf("seccomp profile %q: only %s is known here", sec.Seccomp, SeccompRuntimeDefault)
	}
	return map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"terminal": false,
			"user":     map[string]any{"uid": sec.UID, "gid": sec.GID},
			"args":     args,
			"env":      img.Env,
			"cwd":      cwd,
			"capabilities": map[string]any{
				"bounding": caps, "effective": caps, "inheritable": caps, "permitted": caps, "ambient": caps,
			},
			"rlimits":         []map[string]any{{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}},
			"noNewPrivileges": sec.NoNewPrivileges,
		},
		"root":     map[string]any{"path": "rootfs", "readonly": sec.ReadOnlyRoot},
		"hostname": "notes",
		"mounts":   mounts,
		"linux":    linux,
	}, nil
}
