package kubeenv

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// pauseRepository is where the node's sandbox image is pushed in the
// node's own registry.
const pauseRepository = "notesctl/pause:busybox"

// pauseImage is the pods' sandbox image: registry.k8s.io is out of reach
// here, and a sandbox only needs a process that waits forever, so it is
// Debian's static busybox running `sleep` (with the platform set, which
// containerd checks).
func pauseImage(busybox string) (v1.Image, error) {
	data, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("pause image: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	if err := tw.WriteHeader(&tar.Header{Name: "busybox", Mode: 0o755, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Config.Entrypoint = []string{"/busybox", "sleep", "2147483647"}
	cfg.Created = v1.Time{Time: epoch}
	return mutate.ConfigFile(img, cfg)
}

// pauseRegistry is the node's own registry (go-containerregistry's, in
// memory, plain HTTP) listening inside the node's network namespace, where
// containerd pulls the sandbox image from.
type pauseRegistry struct {
	host  string // 127.0.0.1:PORT inside the namespace
	image string // the pushed sandbox image reference
	srv   *http.Server
}

// startPauseRegistry serves a registry in ns and pushes the sandbox image
// built from busybox to it.
func startPauseRegistry(ns *netNS, busybox string) (*pauseRegistry, error) {
	ln, err := ns.listen("127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("pause registry: %w", err)
	}
	r := &pauseRegistry{
		host: ln.Addr().String(),
		srv: &http.Server{
			Handler:           ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))),
			ReadHeaderTimeout: 10 * time.Second,
		},
	}
	go func() {
		if err := r.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("kubeenv: pause registry: %v", err)
		}
	}()
	img, err := pauseImage(busybox)
	if err != nil {
		r.close()
		return nil, err
	}
	ref, err := name.ParseReference(r.host+"/"+pauseRepository, name.Insecure)
	if err != nil {
		r.close()
		return nil, err
	}
	tr := &http.Transport{DialContext: ns.dial, Proxy: nil}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := remote.Write(ref, img, remote.WithTransport(tr), remote.WithContext(ctx)); err != nil {
		r.close()
		return nil, fmt.Errorf("push the pause image to %s: %w", ref, err)
	}
	r.image = ref.String()
	return r, nil
}

func (r *pauseRegistry) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.srv.Shutdown(ctx)
}
