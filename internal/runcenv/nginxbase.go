// Package runcenv runs images for real, for tests: a runnable nginx base
// made from the machine's Debian nginx package, an image unpacked into an
// OCI runtime bundle, and Debian's runc running it under a Kubernetes
// container's security context, in a network namespace of its own that the
// test reaches through a dialer (so no host port is taken and parallel
// tests never collide).
//
// runc needs root; the tests that use this package call Require first,
// which skips without runc, nginx or root (and fails under
// NOTESCTL_REQUIRE_TOOLS=1).
package runcenv

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/notesctl/notesctl/internal/testenv"
)

// Where Debian's nginx package puts what the base needs.
const (
	nginxBinary    = "/usr/sbin/nginx"
	nginxMimeTypes = "/etc/nginx/mime.types"
)

// Install is how to get the tools this package runs.
const Install = "apt-get install -y runc nginx-light"

// NginxUID is the user the base runs as, as in nginx-unprivileged.
const NginxUID = 101

// Require ends the test (Missing) unless runc and Debian's nginx are
// installed and the test runs as root, which runc needs to make
// namespaces and mounts.
func Require(t testing.TB) {
	t.Helper()
	testenv.LookPath(t, "runc", Install)
	if _, err := os.Stat(nginxBinary); err != nil {
		testenv.Missing(t, "%s not found (%s)", nginxBinary, Install)
	}
	if os.Geteuid() != 0 {
		testenv.Missing(t, "runc runs containers only as root here (uid %d)", os.Geteuid())
	}
}

// nginxConf mirrors nginx-unprivileged's nginx.conf: no user directive (the
// container's user runs it), the pid file and every temp path under /tmp,
// logs to the container's stdout and stderr, and the server blocks from
// conf.d, where notesctl's serving layer puts its own.
const nginxConf = `worker_processes  auto;
error_log  /dev/stderr notice;
pid        /tmp/nginx.pid;

events {
    worker_connections  1024;
}

http {
    client_body_temp_path /tmp/client_temp;
    proxy_temp_path       /tmp/proxy_temp_path;
    fastcgi_temp_path     /tmp/fastcgi_temp;
    uwsgi_temp_path       /tmp/uwsgi_temp;
    scgi_temp_path        /tmp/scgi_temp;

    include       /etc/nginx/mime.types;
    default_type  application/octet-stream;

    log_format  main  '$remote_addr - $remote_user [$time_local] "$request" '
                      '$status $body_bytes_sent "$http_referer" '
                      '"$http_user_agent" "$http_x_forwarded_for"';
    access_log  /dev/stdout  main;

    sendfile        on;
    keepalive_timeout  65;

    include /etc/nginx/conf.d/*.conf;
}
`

// defaultConf is the server nginx-unprivileged ships, which notesctl's
// serving layer replaces.
const defaultConf = `server {
    listen       8080;
    server_name  localhost;

    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }
}
`

// PlaceholderPage is the base's own index.html, which a site replaces.
const PlaceholderPage = "<!doctype html><title>Welcome to nginx!</title><h1>Welcome to nginx!</h1>\n"

// NginxBase writes a runnable nginx base image into an OCI image layout in
// a temporary directory and returns the directory. The image holds the
// machine's nginx binary, the shared libraries ldd lists for it, Debian's
// mime.types and a config like nginx-unprivileged's; it runs as 101:101 and
// listens on 8080, with its pid and temp files under /tmp. Its config
// (user, cmd, exposed port, stop signal) is nginx-unprivileged's.
func NginxBase(t testing.TB) string {
	t.Helper()
	Require(t)
	img, err := nginxImage()
	if err != nil {
		t.Fatalf("building the nginx base from Debian's package: %v", err)
	}
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": "nginx-debian:test",
	})); err != nil {
		t.Fatal(err)
	}
	return dir
}

// libraries lists the shared objects ldd names for binary, the dynamic
// loader included.
func libraries(binary string) ([]string, error) {
	out, err := exec.Command("ldd", binary).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", binary, err)
	}
	// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and
	// "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file.
	re := regexp.MustCompile(`(?m)(?:=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)`)
	var libs []string
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		libs = append(libs, m[1])
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("ldd %s listed no libraries:\n%s", binary, out)
	}
	return libs, nil
}

type fileEntry struct {
	mode     int64
	data     []byte
	linkname string // a symlink when set
	dir      bool
}

func nginxImage() (v1.Image, error) {
	files := map[string]fileEntry{}
	addHost := func(path, to string, mode int64) error {
		data, err := os.ReadFile(path) // follows symlinks: the library itself
		if err != nil {
			return err
		}
		files[to] = fileEntry{mode: mode, data: data}
		return nil
	}
	if err := addHost(nginxBinary, nginxBinary, 0o755); err != nil {
		return nil, err
	}
	libs, err := libraries(nginxBinary)
	if err != nil {
		return nil, err
	}
	for _, l := range libs {
		if err := addHost(l, l, 0o755); err != nil {
			return nil, err
		}
	}
	if err := addHost(nginxMimeTypes, nginxMimeTypes, 0o644); err != nil {
		return nil, err
	}
	text := func(path, s string) { files[path] = fileEntry{mode: 0o644, data: []byte(s)} }
	text("/etc/nginx/nginx.conf", nginxConf)
	text("/etc/nginx/conf.d/default.conf", defaultConf)
	text("/etc/passwd", "root:x:0:0:root:/root:/sbin/nologin\nnginx:x:101:101:nginx user:/nonexistent:/sbin/nologin\n")
	text("/etc/group", "root:x:0:\nnginx:x:101:\n")
	text("/usr/share/nginx/html/index.html", PlaceholderPage)
	files["/var/log/nginx/access.log"] = fileEntry{linkname: "/dev/stdout"}
	files["/var/log/nginx/error.log"] = fileEntry{linkname: "/dev/stderr"}
	// The places the scaffold mounts emptyDirs on, and /tmp world-writable
	// for a run without them.
	files["/tmp"] = fileEntry{dir: true, mode: 0o1777}
	files["/var/cache/nginx"] = fileEntry{dir: true, mode: 0o755}
	files["/var/run"] = fileEntry{dir: true, mode: 0o755}
	files["/proc"] = fileEntry{dir: true, mode: 0o555}
	files["/dev"] = fileEntry{dir: true, mode: 0o755}
	files["/sys"] = fileEntry{dir: true, mode: 0o555}

	layerTar, err := tarOf(files)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH // the machine's nginx
	cf.Created = v1.Time{Time: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	cf.Config = v1.Config{
		User:         fmt.Sprint(NginxUID),
		Cmd:          []string{"nginx", "-g", "daemon off;"},
		Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
		StopSignal:   "SIGQUIT",
		Labels:       map[string]string{"org.opencontainers.image.title": "nginx from Debian's package, for notesctl's tests"},
	}
	return mutate.ConfigFile(img, cf)
}

// tarOf writes files, with every parent directory, sorted, owned by root.
func tarOf(files map[string]fileEntry) ([]byte, error) {
	all := map[string]fileEntry{}
	for p, e := range files {
		all[p] = e
		for d := filepath.Dir(p); d != "/"; d = filepath.Dir(d) {
			if _, ok := all[d]; !ok {
				all[d] = fileEntry{dir: true, mode: 0o755}
			}
		}
	}
	// Explicit directory entries win over implied ones.
	for p, e := range files {
		all[p] = e
	}
	names := make([]string, 0, len(all))
	for p := range all {
		names = append(names, p)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, p := range names {
		e := all[p]
		hdr := &tar.Header{Name: strings.TrimPrefix(p, "/"), Mode: e.mode, ModTime: mtime, Format: tar.FormatPAX}
		switch {
		case e.dir:
			hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
		case e.linkname != "":
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, e.linkname, 0o777
		default:
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
