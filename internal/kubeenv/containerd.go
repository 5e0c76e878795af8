package kubeenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// containerd is the node's container runtime: Debian's containerd 1.6 with
// runc, with its own configuration, root, state and socket, running in the
// node's network namespace (so the CNI bridge and the pods' interfaces are
// made there, not on the host).
type containerd struct {
	dir      string // holds config.toml, certs.d, cni, root, state
	root     string
	state    string
	socket   string
	runcRoot string // runc's state directory of the runc runtime
	proc     *process
}

// NodeRegistry is a registry on the host's loopback that the node pulls
// pod images from.
type NodeRegistry struct {
	// Host is host:port (127.0.0.1:PORT); the node reaches the same
	// address through a forwarder in its network namespace.
	Host string
	// CAFile is the PEM CA of an HTTPS registry; empty for plain HTTP.
	CAFile string
	// Username and Password are the node's pull credentials (the scaffold
	// has no imagePullSecrets: a node of a private registry holds them, as
	// a credential provider would). They are written to the containerd
	// configuration (mode 0600) and never logged.
	Username, Password string
}

// The pods' network on the node's bridge.
const (
	nodeBridge = "cni0"
	nodeSubnet = "10.88.0.0/16"
	// NodeIP is the node's address: the bridge's, inside the node's network
	// namespace (a node IP cannot be loopback).
	NodeIP = "10.88.0.1"
)

// containerdConfig writes config.toml, the registries' hosts.toml files and
// the CNI configuration.
func (c *containerd) writeConfig(sandboxImage, pauseHost string, regs []NodeRegistry) error {
	for _, d := range []string{c.root, c.state, filepath.Join(c.dir, "certs.d"), filepath.Join(c.dir, "cni", "net.d"), filepath.Join(c.dir, "cni", "ipam")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	hosts := map[string]string{pauseHost: fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+pauseHost, "http://"+pauseHost)}
	var auth strings.Builder
	for _, r := range regs {
		scheme := "https"
		if r.CAFile == "" {
			scheme = "http"
		}
		url := scheme + "://" + r.Host
		h := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", url, url)
		if r.CAFile != "" {
			h += fmt.Sprintf("  ca = %q\n", r.CAFile)
		}
		hosts[r.Host] = h
		if r.Username != "" {
			fmt.Fprintf(&auth, "    [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.%q.auth]\n      username = %q\n      password = %q\n",
				r.Host, r.Username, r.Password)
		}
	}
	for host, h := range hosts {
		d := filepath.Join(c.dir, "certs.d", host)
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(h), 0o600); err != nil {
			return err
		}
	}
	cfg := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  # runc cannot lower oom_score_adj here: without this every sandbox fails
  # ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
      Root = %[9]q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %[10]q
%[11]s`,
		c.root, c.state, c.socket, c.socket+".ttrpc", filepath.Join(c.root, "opt"), sandboxImage,
		cniBinDir, filepath.Join(c.dir, "cni", "net.d"), c.runcRoot, filepath.Join(c.dir, "certs.d"), auth.String())
	if err := os.WriteFile(filepath.Join(c.dir, "config.toml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	cni := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "notesctl-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "dataDir": %q
      }
    }
  ]
}
`, nodeBridge, nodeSubnet, NodeIP, filepath.Join(c.dir, "cni", "ipam"))
	return os.WriteFile(filepath.Join(c.dir, "cni", "net.d", "10-notesctl.conflist"), []byte(cni), 0o644)
}

// cniBinDir is where Debian's containernetworking-plugins installs the
// plugins.
const cniBinDir = "/usr/lib/cni"

// start starts containerd in the namespace and waits until it serves.
func (c *containerd) start(ctx context.Context, ns *netNS, containerdPath, nsenterPath string) error {
	p, err := startProcess("containerd", nsenterPath, []string{"--net=" + ns.path, "--", containerdPath, "--config", filepath.Join(c.dir, "config.toml")}, nil)
	if err != nil {
		return err
	}
	c.proc = p
	return p.waitForLog(ctx, "containerd to serve", func(line string) bool {
		return strings.Contains(line, "containerd successfully booted")
	})
}

// stop ends everything containerd started, then containerd: the
// containers (by their IDs in runc's state directory of this containerd),
// the shims serving this containerd's socket, containerd itself; then it
// unmounts what containerd left under its directories (rootfs overlays,
// sandbox /dev/shm, the pods' network namespaces).
func (c *containerd) stop(grace time.Duration) []error {
	var errs []error
	runcState := filepath.Join(c.runcRoot, "k8s.io")
	if out, err := exec.Command("runc", "--root", runcState, "list", "-q").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			_ = exec.Command("runc", "--root", runcState, "kill", id, "KILL").Run()
			// A container that stops during delete --force makes runc
			// fail its freeze ("invalid state transition from stopped to
			// paused"); deleting it again, stopped, succeeds.
			var lastErr error
			for attempt := 0; attempt < 5; attempt++ {
				out, err := exec.Command("runc", "--root", runcState, "delete", "--force", id).CombinedOutput()
				if err == nil || bytes.Contains(out, []byte("does not exist")) {
					lastErr = nil
					break
				}
				lastErr = fmt.Errorf("runc delete %s: %v: %s", id, err, bytes.TrimSpace(out))
				time.Sleep(100 * time.Millisecond)
			}
			if lastErr != nil {
				errs = append(errs, lastErr)
			}
		}
	}
	shims := shimPIDs(c.socket)
	for _, pid := range shims {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range shims {
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			errs = append(errs, fmt.Errorf("containerd shim %d still runs after SIGKILL", pid))
		}
	}
	if c.proc != nil {
		if err := c.proc.stop(grace); err != nil {
			errs = append(errs, err)
		}
	}
	if err := unmountUnder(c.dir); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// shimPIDs finds the containerd-shim processes serving socket.
func shimPIDs(socket string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) == 0 || !strings.Contains(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		for i, a := range args {
			if a == "-address" && i+1 < len(args) && args[i+1] == socket {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// unmountUnder unmounts every mount point at or below dir, deepest first
// (lazily: a busy mount goes once its last user does).
func unmountUnder(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountPath(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var failed []string
	for _, mp := range points {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			failed = append(failed, fmt.Sprintf("%s: %v", mp, err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("unmount under %s: %s", dir, strings.Join(failed, "; "))
	}
	return nil
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Container is a container the node's containerd runs, as runc reports it.
type Container struct {
	ID  string
	PID int
	// Pod is namespace/name of its pod, Name the container's name in it;
	// Sandbox is set for a pod's sandbox (pause) container.
	Pod, Name string
	Sandbox   bool
}

// Containers lists the containers running on the node, from runc's state
// (the annotations containerd's CRI plugin sets).
func (n *Node) Containers() ([]Container, error) {
	runcState := filepath.Join(n.ctrd.runcRoot, "k8s.io")
	out, err := exec.Command("runc", "--root", runcState, "list", "--format", "json").Output()
	if err != nil {
		return nil, fmt.Errorf("runc list: %w", err)
	}
	var states []struct {
		ID          string            `json:"id"`
		PID         int               `json:"pid"`
		Status      string            `json:"status"`
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &states); err != nil && len(bytes.TrimSpace(out)) > 0 && !bytes.Equal(bytes.TrimSpace(out), []byte("null")) {
		return nil, fmt.Errorf("runc list: %w", err)
	}
	var cs []Container
	for _, s := range states {
		if s.Status != "running" {
			continue
		}
		a := s.Annotations
		cs = append(cs, Container{
			ID: s.ID, PID: s.PID,
			Pod:     a["io.kubernetes.cri.sandbox-namespace"] + "/" + a["io.kubernetes.cri.sandbox-name"],
			Name:    a["io.kubernetes.cri.container-name"],
			Sandbox: a["io.kubernetes.cri.container-type"] == "sandbox",
		})
	}
	return cs, nil
}
