package actiontest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/notesctl/notesctl/internal/testenv"
)

// fakeRelease is a release server for tools/action/install.sh: it serves
// /<repo>/releases/download/<tag>/<file> from files and records who sent
// an Authorization header.
type fakeRelease struct {
	files map[string][]byte // "tag/file" -> bytes
	mu    sync.Mutex
	auth  []string // paths requested with an Authorization header
	paths []string // every path requested
}

func (f *fakeRelease) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.paths = append(f.paths, r.URL.Path)
	if r.Header.Get("Authorization") != "" {
		f.auth = append(f.auth, r.URL.Path)
	}
	f.mu.Unlock()
	rest, ok := strings.CutPrefix(r.URL.Path, "/acme/notesctl/releases/download/")
	if b, found := f.files[rest]; ok && found {
		w.Write(b)
		return
	}
	http.NotFound(w, r)
}

// scriptArchive is a release archive whose notesctl is a shell script that
// prints a version: enough for install.sh, which only runs `notesctl version`.
func scriptArchive(t *testing.T, version string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	// More output after the first line than a pipe holds, as the real
	// notesctl version may print: a reader that stops early gets SIGPIPE.
	script := []byte("#!/bin/sh\necho 'notesctl " + version + "'\nseq 1 50000\n")
	if err := tw.WriteHeader(&tar.Header{Name: "notesctl", Mode: 0o755, Size: int64(len(script))}); err != nil {
		t.Fatal(err)
	}
	tw.Write(script)
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func sumLine(name string, b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]) + "  " + name + "\n"
}

type installRun struct {
	out     string
	err     error
	outputs string
}

// runInstall runs install.sh with the environment action.yml gives it.
func runInstall(t *testing.T, env map[string]string) installRun {
	t.Helper()
	testenv.LookPath(t, "curl", "apt-get install -y curl")
	tmp := t.TempDir()
	outFile := filepath.Join(tmp, "output")
	os.WriteFile(outFile, nil, 0o644)
	base := map[string]string{
		"PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME"), "RUNNER_TEMP": tmp, "GITHUB_OUTPUT": outFile,
		"NOTESCTL_ACTION_PATH": repoRoot(t), "NOTESCTL_ACTION_REPOSITORY": "acme/notesctl", "NOTESCTL_INSTALL": "auto",
	}
	for k, v := range env {
		base[k] = v
	}
	cmd := exec.Command("bash", filepath.Join(repoRoot(t), "tools/action/install.sh"))
	for k, v := range base {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	outputs, _ := os.ReadFile(outFile)
	return installRun{out: string(out), err: err, outputs: string(outputs)}
}

func TestInstallScript(t *testing.T) {
	asset := hostArchive()
	good := scriptArchive(t, "v2.0.0")
	rel := &fakeRelease{files: map[string][]byte{
		"v2.0.0/" + asset:      good,
		"v2.0.0/checksums.txt": []byte(sumLine("notesctl_plan9_mips.tar.gz", []byte("x")) + sumLine(asset, good)),
		"v2.0.1/" + asset:      append(bytes.Clone(good), '\n'),
		"v2.0.1/checksums.txt": []byte(sumLine(asset, good)),
		"v2.0.2/checksums.txt": []byte(sumLine(asset, good)), // lists an archive it lacks
		"v2.0.3/checksums.txt": []byte(sumLine("notesctl_plan9_mips.tar.gz", []byte("x"))),
		"v2.0.4/checksums.txt": []byte("../../etc  " + asset + "\n"),
	}}
	srv := httptest.NewServer(rel)
	defer srv.Close()
	noGo := t.TempDir() // a PATH with the tools install.sh needs but no go
	for _, tool := range []string{"bash", "curl", "sha256sum", "awk", "tar", "gzip", "mktemp", "uname", "tr", "cut", "head", "rm", "chmod", "cat", "seq"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("%s not installed", tool)
		}
		os.Symlink(p, filepath.Join(noGo, tool))
	}

	tests := []struct {
		name    string
		env     map[string]string
		wantErr bool
		want    []string // in the log
		outputs []string // in GITHUB_OUTPUT
		not     []string // not in the log
	}{
		{
			name:    "release binary, checksum verified",
			env:     map[string]string{"NOTESCTL_SERVER_URL": srv.URL, "NOTESCTL_ACTION_REF": "v2.0.0"},
			want:    []string{"installed the release binary " + srv.URL + "/acme/notesctl/releases/download/v2.0.0/" + asset, "install-method=release (notesctl v2.0.0"},
			outputs: []string{"install-method=release\n", "notesctl-version=v2.0.0\n", "path=" + "/"},
			not:     []string{"go build"},
		},
		{
			name:    "download-url overrides the server",
			env:     map[string]string{"NOTESCTL_SERVER_URL": "http://127.0.0.1:1", "NOTESCTL_DOWNLOAD_URL": srv.URL + "/acme/notesctl/releases/download/", "NOTESCTL_ACTION_REF": "v2.0.0"},
			outputs: []string{"install-method=release\n"},
		},
		{
			name:    "checksum mismatch fails and installs nothing",
			env:     map[string]string{"NOTESCTL_SERVER_URL": srv.URL, "NOTESCTL_ACTION_REF": "v2.0.1"},
			wantErr: true,
			want:    []string{"::error title=notesctl install::checksum mismatch for " + srv.URL + "/acme/notesctl/releases/download/v2.0.1/" + asset + ": checksums.txt says sha256 "},
			not:     []string{"go build", "install-method="},
		},
		{
			name:    "listed archive missing fails",
			env:     map[string]string{"NOTESCTL_SERVER_URL": srv.URL, "NOTESCTL_ACTION_REF": "v2.0.2"},
			wantErr: true,
			want:    []string{"lists " + asset + " in checksums.txt but it could not be downloaded"},
		},
		{
			name:    "no release and no Go names the fix",
			env:     map[string]string{"NOTESCTL_SERVER_URL": srv.URL, "NOTESCTL_ACTION_REF": "main", "PATH": noGo},
			wantErr: true,
			want:    []string{"no release at " + srv.URL + "/acme/notesctl/releases/download/main", `no release binary for ref "main" and no Go on the runner`},
		},
		{
			name:    "no build for this platform falls back to source",
			env:     map[string]string{"NOTESCTL_SERVER_URL": srv.URL, "NOTESCTL_ACTION_REF": "v2.0.3", "PATH": noGo},
			wantErr: true,
			want:    []string{"has no " + asset + " (no build for " + runtime.GOOS + "/" + runtime.GOARCH + ")", "no Go on the runner"},
		},
		{
			name:    "malformed checksums.txt",
			env:     map[string]string{"NOTESCTL_SERVER_URL": srv.URL, "NOTESCTL_ACTION_REF": "v2.0.4", "NOTESCTL_TOOL_CACHE": t.TempDir()},
			wantErr: true,
			want:    []string{"checksums.txt: the line for " + asset + " does not hold one sha256"},
		},
		{
			name:    "install release without a release fails",
			env:     map[string]string{"NOTESCTL_SERVER_URL": srv.URL, "NOTESCTL_ACTION_REF": "main", "NOTESCTL_INSTALL": "release"},
			wantErr: true,
			want:    []string{`input install is release but ref "main" has no release binary`},
			not:     []string{"go build"},
		},
		{
			name:    "bad install input",
			env:     map[string]string{"NOTESCTL_INSTALL": "docker"},
			wantErr: true,
			want:    []string{`input install: want auto, release or source, got "docker"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runInstall(t, tt.env)
			if (r.err != nil) != tt.wantErr {
				t.Fatalf("install.sh: err %v, want error %v\n%s", r.err, tt.wantErr, r.out)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.out, w) {
					t.Errorf("log lacks %q:\n%s", w, r.out)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(r.out, w) {
					t.Errorf("log has %q:\n%s", w, r.out)
				}
			}
			for _, w := range tt.outputs {
				if !strings.Contains(r.outputs, w) {
					t.Errorf("GITHUB_OUTPUT lacks %q:\n%s", w, r.outputs)
				}
			}
			if tt.wantErr && r.outputs != "" {
				t.Errorf("a failed install wrote outputs:\n%s", r.outputs)
			}
		})
	}

	// A warm runner takes the verified binary from its tool cache, after
	// checking the release's checksums.txt, without downloading the archive.
	cache := t.TempDir()
	for i, want := range []string{"installed the release binary " + srv.URL, "from the runner's tool cache (sha256 "} {
		rel.paths = nil
		r := runInstall(t, map[string]string{"NOTESCTL_SERVER_URL": srv.URL, "NOTESCTL_ACTION_REF": "v2.0.0", "NOTESCTL_TOOL_CACHE": cache})
		if r.err != nil || !strings.Contains(r.out, want) || !strings.Contains(r.outputs, "install-method=release\n") {
			t.Errorf("tool cache, run %d: err %v, log lacks %q:\n%s", i+1, r.err, want, r.out)
		}
		wantPaths := 2
		if i == 1 {
			wantPaths = 1 // checksums.txt only
		}
		if len(rel.paths) != wantPaths {
			t.Errorf("tool cache, run %d: requests %v, want %d", i+1, rel.paths, wantPaths)
		}
	}

	// The workflow token goes to the server the action came from, never to
	// another download host.
	rel.auth = nil
	r := runInstall(t, map[string]string{"NOTESCTL_SERVER_URL": srv.URL, "NOTESCTL_ACTION_REF": "v2.0.0", "NOTESCTL_TOKEN": "tok"})
	if r.err != nil || len(rel.auth) != 2 {
		t.Errorf("from the action's server: %d authorized requests, want 2 (err %v)", len(rel.auth), r.err)
	}
	rel.auth = nil
	r = runInstall(t, map[string]string{"NOTESCTL_SERVER_URL": "http://forge.invalid", "NOTESCTL_DOWNLOAD_URL": srv.URL + "/acme/notesctl/releases/download", "NOTESCTL_ACTION_REF": "v2.0.0", "NOTESCTL_TOKEN": "tok"})
	if r.err != nil || len(rel.auth) != 0 {
		t.Errorf("token sent to a download host other than the server: %v (err %v)", rel.auth, r.err)
	}
	if strings.Contains(r.out, "tok") {
		t.Errorf("token in the log:\n%s", r.out)
	}
}
