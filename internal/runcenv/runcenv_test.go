package runcenv

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	corev1 "k8s.io/api/core/v1"
)

func ptr[T any](v T) *T { return &v }

func TestFromPodSpec(t *testing.T) {
	good := func() *corev1.PodSpec {
		return &corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr(true), RunAsUser: ptr(int64(101)), RunAsGroup: ptr(int64(101)),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name: "notes",
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr(false), ReadOnlyRootFilesystem: ptr(true),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
			}},
			Volumes: []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		}
	}
	sec, err := FromPodSpec(good(), "")
	if err != nil {
		t.Fatal(err)
	}
	if sec.UID != 101 || sec.GID != 101 || !sec.ReadOnlyRoot || !sec.NoNewPrivileges || len(sec.Capabilities) != 0 || sec.Capabilities == nil ||
		len(sec.EmptyDirs) != 1 || sec.EmptyDirs[0] != "/tmp" || sec.Seccomp != SeccompRuntimeDefault {
		t.Errorf("FromPodSpec = %+v", sec)
	}
	// The container's own user wins over the pod's.
	s := good()
	s.Containers[0].SecurityContext.RunAsUser = ptr(int64(1000))
	if sec, _ := FromPodSpec(s, "notes"); sec.UID != 1000 || sec.GID != 101 {
		t.Errorf("container user: %+v", sec)
	}

	for _, tc := range []struct {
		name    string
		change  func(*corev1.PodSpec)
		wantErr string
	}{
		{"no such container", func(s *corev1.PodSpec) { s.Containers[0].Name = "other" }, `no container "notes"`},
		{"no user", func(s *corev1.PodSpec) { s.SecurityContext.RunAsUser = nil }, "no runAsUser"},
		{"root with runAsNonRoot", func(s *corev1.PodSpec) { s.SecurityContext.RunAsUser = ptr(int64(0)) }, "runAsNonRoot"},
		{"capabilities kept", func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.Capabilities = nil }, "drop: [ALL]"},
		{"privileged", func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.Privileged = ptr(true) }, "privileged"},
		{"hostPath volume", func(s *corev1.PodSpec) {
			s.Volumes[0].VolumeSource = corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}
		}, "not an emptyDir"},
		{"unknown volume", func(s *corev1.PodSpec) { s.Containers[0].VolumeMounts[0].Name = "x" }, "unknown volume"},
		{"fsGroup", func(s *corev1.PodSpec) { s.SecurityContext.FSGroup = ptr(int64(2000)) }, "fsGroup"},
		{"localhost seccomp", func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost}
		}, "seccomp profile Localhost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good()
			tc.change(s)
			if _, err := FromPodSpec(s, "notes"); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestUnpack: owners, modes and mtimes survive (nginx's validators come
// from them), later layers win, and a layer cannot write through a
// symbolic link out of the root.
func TestUnpack(t *testing.T) {
	mtime := time.Date(1994, 3, 4, 5, 6, 7, 0, time.UTC)
	layer := func(entries ...*tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range entries {
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if h.Size > 0 {
				tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
			}
		}
		tw.Close()
		return buf.Bytes()
	}
	image := func(layers ...[]byte) v1.Image {
		img := empty.Image
		for _, l := range layers {
			tl, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(l)), nil })
			if err != nil {
				t.Fatal(err)
			}
			if img, err = mutate.AppendLayers(img, tl); err != nil {
				t.Fatal(err)
			}
		}
		return img
	}
	dir := filepath.Join(t.TempDir(), "rootfs")
	err := Unpack(image(
		layer(
			&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: mtime},
			&tar.Header{Name: "www/a.html", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3, ModTime: mtime, Uid: 101, Gid: 102},
			&tar.Header{Name: "www/old.html", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1, ModTime: mtime},
		),
		layer(
			&tar.Header{Name: "www/a.html", Typeflag: tar.TypeReg, Mode: 0o600, Size: 5, ModTime: mtime.Add(time.Hour)},
			&tar.Header{Name: "www/.wh.old.html", Typeflag: tar.TypeReg, ModTime: mtime},
			&tar.Header{Name: "log", Typeflag: tar.TypeSymlink, Linkname: "/dev/stdout", ModTime: mtime},
		),
	), dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "www/a.html"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != 5 || st.Mode().Perm() != 0o600 || !st.ModTime().Equal(mtime.Add(time.Hour)) {
		t.Errorf("www/a.html: size %d mode %v mtime %s", st.Size(), st.Mode(), st.ModTime())
	}
	if _, err := os.Stat(filepath.Join(dir, "www/old.html")); !os.IsNotExist(err) {
		t.Errorf("whiteout not applied: %v", err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "tmp")); st.Mode()&os.ModeSticky == 0 || st.Mode().Perm() != 0o777 {
		t.Errorf("tmp mode %v, want sticky 0777", st.Mode())
	}
	if l, _ := os.Readlink(filepath.Join(dir, "log")); l != "/dev/stdout" {
		t.Errorf("symlink %q", l)
	}

	// ggcr's Extract already drops entries under a path an earlier entry
	// made a non-directory; Unpack checks again, so that nothing is ever
	// written through a symbolic link out of the root.
	outside := t.TempDir()
	root := filepath.Join(t.TempDir(), "rootfs")
	err = Unpack(image(layer(
		&tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: outside, ModTime: mtime},
		&tar.Header{Name: "evil/file", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1, ModTime: mtime},
	)), root)
	if entries, _ := os.ReadDir(outside); err != nil || len(entries) != 0 {
		t.Errorf("a layer wrote outside the root: %v, %v", err, entries)
	}
	if err := noSymlinkParents(root, "/evil/file"); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("noSymlinkParents through a symlink: %v", err)
	}
	if err := noSymlinkParents(root, "/fresh/dir/file"); err != nil {
		t.Errorf("noSymlinkParents on a new path: %v", err)
	}
}
