package actiontest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/notesctl/notesctl/internal/testenv"
)

// repoRoot is the notesctl checkout the tests run in.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// hostArchive is the release archive name for this machine.
func hostArchive() string { return "notesctl_" + runtime.GOOS + "_" + runtime.GOARCH + ".tar.gz" }

// runRelease runs tools/release/release.sh for this machine's platform only
// (the other platforms cost minutes and are the same code path).
func runRelease(t testing.TB, version, out string) {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(repoRoot(t), "tools/release/release.sh"), "-o", out, version)
	cmd.Env = append(os.Environ(), "PLATFORMS="+runtime.GOOS+"/"+runtime.GOARCH, "NOTESCTL_RELEASE_ALLOW_DIRTY=1")
	outb, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("release.sh %s: %v\n%s", version, err, outb)
	}
}

// unpack returns the files of a .tar.gz with their modes.
func unpack(t testing.TB, archive []byte) map[string]*tar.Header {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = h
	}
}

// extractBinary writes the notesctl binary of an archive to dir.
func extractBinary(t testing.TB, archive []byte, dir string) string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no notesctl in the archive: %v", err)
		}
		if h.Name == "notesctl" {
			p := filepath.Join(dir, "notesctl")
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
}

// TestReleaseReproducible: two runs of release.sh give the same bytes, the
// archive holds a stamped binary with fixed metadata, and checksums.txt
// names it.
func TestReleaseReproducible(t *testing.T) {
	testenv.LookPath(t, "git", "apt-get install -y git")
	a, b := t.TempDir(), t.TempDir()
	runRelease(t, "v0.0.1-test", a)
	runRelease(t, "v0.0.1-test", b)
	for _, name := range []string{hostArchive(), "checksums.txt"} {
		x, err := os.ReadFile(filepath.Join(a, name))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(b, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two runs of release.sh", name)
		}
	}
	archive, _ := os.ReadFile(filepath.Join(a, hostArchive()))
	sums, _ := os.ReadFile(filepath.Join(a, "checksums.txt"))
	if !strings.Contains(string(sums), "  "+hostArchive()+"\n") {
		t.Errorf("checksums.txt does not list %s:\n%s", hostArchive(), sums)
	}
	files := unpack(t, archive)
	for _, name := range []string{"notesctl", "README.md"} {
		h, ok := files[name]
		if !ok {
			t.Errorf("archive lacks %s", name)
			continue
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.ModTime.Unix() <= 0 {
			t.Errorf("%s: uid %d gid %d uname %q mtime %s: metadata not fixed", name, h.Uid, h.Gid, h.Uname, h.ModTime)
		}
	}
	if h := files["notesctl"]; h != nil && h.Mode&0o111 == 0 {
		t.Errorf("notesctl in the archive is not executable: %o", h.Mode)
	}
	bin := extractBinary(t, archive, t.TempDir())
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("notesctl version: %v\n%s", err, out)
	}
	head, _ := exec.Command("git", "-C", repoRoot(t), "rev-parse", "HEAD").Output()
	lines := strings.Split(string(out), "\n")
	if lines[0] != "notesctl v0.0.1-test" || !strings.HasPrefix(lines[1], "commit "+strings.TrimSpace(string(head))+", built ") {
		t.Errorf("notesctl version of the release binary:\n%s", out)
	}
}

// TestReleaseRefusesBadVersion: a version that is not vX.Y.Z fails before
// building anything.
func TestReleaseRefusesBadVersion(t *testing.T) {
	out := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(repoRoot(t), "tools/release/release.sh"), "-o", out, "1.2")
	b, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "version 1.2: want vMAJOR.MINOR.PATCH") {
		t.Errorf("release.sh 1.2: err %v\n%s", err, b)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("release.sh wrote %d files for a bad version", len(entries))
	}
}
