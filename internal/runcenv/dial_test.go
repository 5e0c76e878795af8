package runcenv

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// threads lists the test binary's OS threads with their network namespace.
func threads(t *testing.T) map[string]string {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		ns, err := os.Readlink("/proc/self/task/" + e.Name() + "/ns/net")
		if err != nil {
			continue // ended meanwhile
		}
		out[e.Name()] = ns
	}
	return out
}

// TestDialKeepsThreads: dialing into a container ends no OS thread of the
// test binary and leaves none in the container's network namespace. An
// ended thread fires the Pdeathsig of the processes started from it, which
// is how kubeenv's servers died at random in TestSeedFlow.
func TestDialKeepsThreads(t *testing.T) {
	Require(t)
	idx, err := layout.ImageIndexFromPath(NginxBase(t))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) == 0 {
		t.Fatalf("base layout: %v, %d manifests", err, len(im.Manifests))
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	c := Run(t, img, Security{UID: NginxUID, GID: NginxUID, Capabilities: []string{}, EmptyDirs: []string{"/tmp"}})
	c.WaitHTTP(t, "http://127.0.0.1:8080/", 15*time.Second)

	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	before := threads(t)
	for range 30 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := c.Dial(ctx, "tcp", "127.0.0.1:8080")
		cancel()
		if err != nil {
			t.Fatalf("dial into the container: %v", err)
		}
		conn.Close()
	}
	after := threads(t)
	for tid := range before {
		if _, ok := after[tid]; !ok {
			t.Errorf("thread %s ended while dialing into the container", tid)
		}
	}
	for tid, ns := range after {
		if ns != host {
			t.Errorf("thread %s is left in network namespace %s, not the host's %s", tid, ns, host)
		}
	}
}
