package kubeenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// netNS is a network namespace the test made: a bind mount of the
// namespace on a file in the test's directory keeps it alive without a
// process. Nothing in it touches the host's interfaces; the host reaches
// into it only through sockets made inside it (inNS).
type netNS struct {
	path string
}

// newNetNS makes a network namespace with its loopback up and pins it at
// path.
func newNetNS(path string) (*netNS, error) {
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		return nil, err
	}
	err := onLockedThread(func() error {
		host, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("this thread's network namespace: %w", err)
		}
		defer unix.Close(host)
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare the network namespace: %w", err)
		}
		mountErr := unix.Mount("/proc/thread-self/ns/net", path, "", unix.MS_BIND, "")
		if err := unix.Setns(host, unix.CLONE_NEWNET); err != nil {
			return errThreadStuck{fmt.Errorf("back to the host's network namespace: %w", err)}
		}
		if mountErr != nil {
			return fmt.Errorf("pin the network namespace at %s: %w", path, mountErr)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &netNS{path: path}, nil
}

// remove unpins the namespace; it ends with the last socket or process in
// it.
func (n *netNS) remove() error {
	if err := unix.Unmount(n.path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount the network namespace %s: %w", n.path, err)
	}
	return os.Remove(n.path)
}

// errThreadStuck marks a thread that could not go back to the host's
// namespace: it must not run other goroutines.
type errThreadStuck struct{ error }

// onLockedThread runs fn on a locked OS thread, from a goroutine of its
// own. The thread goes back to the scheduler afterwards unless fn reports
// errThreadStuck; then the goroutine ends locked and the thread with it.
// A thread must never end otherwise: the kernel sends the Pdeathsig of
// every process started from it (the environment's servers) when it does.
func onLockedThread(fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := fn()
		var stuck errThreadStuck
		if !errors.As(err, &stuck) {
			runtime.UnlockOSThread()
		}
		ch <- err
	}()
	return <-ch
}

// inNS runs fn on a thread that joined the namespace: sockets fn makes
// belong to it wherever they are used afterwards.
func (n *netNS) inNS(fn func() error) error {
	return onLockedThread(func() error {
		host, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("this thread's network namespace: %w", err)
		}
		defer unix.Close(host)
		fd, err := unix.Open(n.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("node network namespace: %w", err)
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("join the node network namespace: %w", err)
		}
		fnErr := fn()
		if err := unix.Setns(host, unix.CLONE_NEWNET); err != nil {
			return errThreadStuck{fmt.Errorf("back to the host's network namespace: %w", err)}
		}
		return fnErr
	})
}

// dial connects to addr from inside the namespace.
func (n *netNS) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := n.inNS(func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		conn = c
		return err
	})
	if err != nil && conn != nil {
		conn.Close()
		conn = nil
	}
	return conn, err
}

// listen listens on addr inside the namespace.
func (n *netNS) listen(addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.inNS(func() error {
		l, err := net.Listen("tcp", addr)
		ln = l
		return err
	})
	return ln, err
}

// proxy copies between accepted connections of ln and connections dial
// makes, until ln is closed; close stops it and waits for its copies.
type proxy struct {
	ln    net.Listener
	dial  func(ctx context.Context) (net.Conn, error)
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]bool
}

func startProxy(ln net.Listener, dial func(ctx context.Context) (net.Conn, error)) *proxy {
	p := &proxy{ln: ln, dial: dial, conns: map[net.Conn]bool{}}
	p.wg.Go(p.serve)
	return p
}

func (p *proxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.pipe(in) })
	}
}

func (p *proxy) pipe(in net.Conn) {
	defer in.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	out, err := p.dial(ctx)
	cancel()
	if err != nil {
		return
	}
	defer out.Close()
	if !p.add(in, out) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(out, in); closeWrite(out); done <- struct{}{} }()
	go func() { _, _ = io.Copy(in, out); closeWrite(in); done <- struct{}{} }()
	<-done
	<-done
	p.mu.Lock()
	delete(p.conns, in)
	delete(p.conns, out)
	p.mu.Unlock()
}

// add tracks a pair of connections, or reports false when closing.
func (p *proxy) add(in, out net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[in], p.conns[out] = true, true
	return true
}

// closeConns closes the connections open now (new ones are still made).
func (p *proxy) closeConns() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}
