package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoadConfig feeds arbitrary bytes as .notesctl.yaml to loadConfig and
// then binds them to the release command's flags, as every command does:
// neither panics, every error names the file, and every key that loads has
// the line it came from.
func FuzzLoadConfig(f *testing.F) {
	for _, s := range []string{
		"",
		"---\n",
		"null\n",
		"image: ghcr.io/acme/notes\nbase: docker.io/nginxinc/nginx-unprivileged:1.27-alpine\nplatform: [linux/amd64, linux/arm64]\ngitops: https://github.com/acme/gitops.git\ngitops-branch: main\npolicy: flux-system:notes\nhugo-version: \">=0.145.0, <0.146.0\"\n",
		"platform:\n  - linux/amd64\n  - linux/arm64\n",
		"extra-tag: latest,stable\n",
		"allow-warnings: true\nmax-push-attempts: 3\n",
		"max-push-attempts: lots\n",
		"web-root: [/srv/www, /var/www]\n",
		"platform: [linux/amd64, {os: linux}]\n",
		"platform: {a: b}\n",
		"# notesctl settings\nallow-warnings: false\nweb-rot: /srv/www\n",
		"username: ci\npassword: Hunter2-config-secret\n",
		"gitops-token: t\n",
		"image: a\nimage: b\n",
		"- image\n- base\n",
		"just a string\n",
		"web-root: /srv/www\nplatform: [linux/amd64\n",
		"base: &b scratch\nweb-root: *b\n",
		"defaults: &d {base: scratch}\n<<: *d\n",
		"? [a, b]\n: c\n",
		"image: !!binary aGVsbG8=\n",
		"image: ghcr.io/acme/notes\n---\nbase: scratch\n",
		"\xef\xbb\xbfimage: ghcr.io/acme/notes\r\nbase: scratch\r\n",
		"image:\tx\n",
		"image: \"\\xff\"\n",
		"\xff\xfe",
		"key: [[[[[[[[[[[[[[[[[[[[x]]]]]]]]]]]]]]]]]]]]\n",
		"output: yaml\n",
		"config: other.yaml\n",
	} {
		f.Add([]byte(s))
	}
	// The config files of the bad-input corpus.
	files, _ := filepath.Glob(filepath.Join(badCorpusDir, "*", "site", DefaultConfigName))
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	// One file per fuzzing process, rewritten by every input (inputs run
	// one at a time in a process).
	dir := f.TempDir()
	path := filepath.Join(dir, DefaultConfigName)
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		cf, err := loadConfig(path, true)
		if err != nil {
			if cf != nil {
				t.Fatalf("loadConfig returned a config and the error %v", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("loadConfig error does not name the file %s: %v", path, err)
			}
			return
		}
		for k, v := range cf.values {
			if v.line < 1 {
				t.Fatalf("key %q loaded without its line", k)
			}
		}

		// Bind the file to the release command, as notesctl release does
		// with no flags, no environment and no Actions inputs.
		a := &app{stdin: bytes.NewReader(nil), stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }, configFile: path}
		root := a.rootCommand()
		release, _, err := root.Find([]string{"release"})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.bind(release, dir, nil); err != nil && !strings.Contains(err.Error(), path) {
			t.Fatalf("bind error does not name the file %s: %v", path, err)
		}
	})
}
