// Package testimage makes small, deterministic stand-ins for the nginx base
// image, for tests in several packages: a single-platform image and a
// linux/amd64 + linux/arm64 index, written into OCI image layouts.
//
// The images look like the non-root nginx image notesctl builds on: user
// 101, an entrypoint and cmd, env, port 8080/tcp exposed, a working
// directory, a base label, nginx's config under /etc and a placeholder
// index.html in /usr/share/nginx/html. Every byte is a function of the
// platform, so digests are stable across runs and machines.
package testimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"maps"
	"slices"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the base config holds, for tests to compare against.
const (
	User        = "101"
	WorkingDir  = "/usr/share/nginx"
	ExposedPort = "8080/tcp"
	// LabelKey and LabelValue are a label the base carries, to check that a
	// build keeps base labels.
	LabelKey   = "maintainer"
	LabelValue = "notesctl test base"
	// RefName is the org.opencontainers.image.ref.name annotation the
	// layouts written by SingleLayout and MultiLayout give their manifest.
	RefName = "nginx-test:1.27"
	// PlaceholderPath is the base's own page, which a site's index.html
	// replaces.
	PlaceholderPath = "/usr/share/nginx/html/index.html"
	// EtcPath is a config file in the base.
	EtcPath = "/etc/nginx/nginx.conf"
)

var (
	// Entrypoint, Cmd and Env of the base config.
	Entrypoint = []string{"/docker-entrypoint.sh"}
	Cmd        = []string{"nginx", "-g", "daemon off;"}
	Env        = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"NGINX_VERSION=1.27.5",
	}
	// Created is the base's build time.
	Created = time.Date(2025, 4, 16, 12, 0, 0, 0, time.UTC)
	// Platforms are the platforms of Index, in order.
	Platforms = []v1.Platform{
		{OS: "linux", Architecture: "amd64"},
		{OS: "linux", Architecture: "arm64"},
	}
)

// Image returns the base image for platform p with OCI media types.
func Image(p v1.Platform) (v1.Image, error) {
	return build(p, types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer)
}

// DockerImage returns the same image with Docker schema 2 media types, as
// many registry images still have.
func DockerImage(p v1.Platform) (v1.Image, error) {
	return build(p, types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer)
}

// Index returns an OCI index of Image for each of Platforms.
func Index() (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range Platforms {
		img, err := Image(p)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &p},
		})
	}
	return idx, nil
}

// Entry is one manifest to write into a layout: an image or an index, named
// by the ref.name annotation unless Name is empty.
type Entry struct {
	Name  string
	Image v1.Image
	Index v1.ImageIndex
}

// WriteLayout writes the entries, in order, into a new OCI image layout at
// dir and returns the digests of their manifests.
func WriteLayout(dir string, entries ...Entry) ([]v1.Hash, error) {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return nil, fmt.Errorf("creating OCI layout %s: %w", dir, err)
	}
	digests := make([]v1.Hash, 0, len(entries))
	for i, e := range entries {
		var opts []layout.Option
		if e.Name != "" {
			opts = append(opts, layout.WithAnnotations(map[string]string{
				"org.opencontainers.image.ref.name": e.Name,
			}))
		}
		var h v1.Hash
		switch {
		case e.Image != nil && e.Index == nil:
			if err = p.AppendImage(e.Image, opts...); err == nil {
				h, err = e.Image.Digest()
			}
		case e.Index != nil && e.Image == nil:
			if err = p.AppendIndex(e.Index, opts...); err == nil {
				h, err = e.Index.Digest()
			}
		default:
			err = fmt.Errorf("entry %d: set exactly one of Image and Index", i)
		}
		if err != nil {
			return nil, fmt.Errorf("writing OCI layout %s: %w", dir, err)
		}
		digests = append(digests, h)
	}
	return digests, nil
}

// SingleLayout writes a layout holding Image(linux/amd64), named RefName,
// into a temporary directory and returns the directory and manifest digest.
func SingleLayout(t testing.TB) (string, v1.Hash) {
	t.Helper()
	img, err := Image(Platforms[0])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ds, err := WriteLayout(dir, Entry{Name: RefName, Image: img})
	if err != nil {
		t.Fatal(err)
	}
	return dir, ds[0]
}

// MultiLayout writes a layout holding Index(), named RefName, into a
// temporary directory and returns the directory and index digest.
func MultiLayout(t testing.TB) (string, v1.Hash) {
	t.Helper()
	idx, err := Index()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ds, err := WriteLayout(dir, Entry{Name: RefName, Index: idx})
	if err != nil {
		t.Fatal(err)
	}
	return dir, ds[0]
}

func build(p v1.Platform, manifestType, configType, layerType types.MediaType) (v1.Image, error) {
	data, err := rootfs(p)
	if err != nil {
		return nil, err
	}
	layer, err := newLayer(data, layerType)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, manifestType)
	img = mutate.ConfigMediaType(img, configType)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: layerType,
		History: v1.History{
			Created:   v1.Time{Time: Created},
			CreatedBy: "testimage: nginx-like root filesystem",
		},
	})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Created = v1.Time{Time: Created}
	cfg.OS, cfg.Architecture, cfg.Variant = p.OS, p.Architecture, p.Variant
	cfg.Config = v1.Config{
		User:         User,
		Entrypoint:   slices.Clone(Entrypoint),
		Cmd:          slices.Clone(Cmd),
		Env:          slices.Clone(Env),
		ExposedPorts: map[string]struct{}{ExposedPort: {}},
		WorkingDir:   WorkingDir,
		Labels:       map[string]string{LabelKey: LabelValue},
		StopSignal:   "SIGQUIT",
	}
	return mutate.ConfigFile(img, cfg)
}

// rootfs is the base layer's tar: nginx's config, a passwd entry for user
// 101, the placeholder page, and a file naming the platform so each
// platform's layer differs as real ones do.
func rootfs(p v1.Platform) ([]byte, error) {
	files := map[string]string{
		"etc/nginx/nginx.conf":            "pid /tmp/nginx.pid;\nevents {}\nhttp {\n  server {\n    listen 8080;\n    root /usr/share/nginx/html;\n  }\n}\n",
		"etc/passwd":                      "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/nonexistent:/sbin/nologin\n",
		"etc/platform":                    p.String() + "\n",
		"usr/share/nginx/html/index.html": "<!doctype html><title>Welcome to nginx!</title><p>placeholder</p>\n",
	}
	dirs := []string{"etc/", "etc/nginx/", "usr/", "usr/share/", "usr/share/nginx/", "usr/share/nginx/html/"}
	names := append(slices.Collect(maps.Keys(files)), dirs...)
	slices.Sort(names)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		hdr := &tar.Header{Name: n, ModTime: Created, Format: tar.FormatPAX}
		body, isFile := files[n]
		if isFile {
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, int64(len(body))
		} else {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := io.WriteString(tw, body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// memLayer is a gzip layer held in memory. (tarball layers describe
// themselves with an empty annotations map, which validate.Image reports as
// a manifest mismatch.)
type memLayer struct {
	gz, raw        []byte
	digest, diffID v1.Hash
	mediaType      types.MediaType
}

func newLayer(raw []byte, mt types.MediaType) (*memLayer, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	digest, _, err := v1.SHA256(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return nil, err
	}
	diffID, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	return &memLayer{gz: buf.Bytes(), raw: raw, digest: digest, diffID: diffID, mediaType: mt}, nil
}

func (l *memLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *memLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *memLayer) Size() (int64, error)                { return int64(len(l.gz)), nil }
func (l *memLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }
func (l *memLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.gz)), nil
}
func (l *memLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.raw)), nil
}
