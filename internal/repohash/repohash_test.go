package repohash

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestTreeSeesEveryWrite: a content change, a mode change, an mtime change,
// a new file, a new link target each change the hash; nothing else does.
func TestTreeSeesEveryWrite(t *testing.T) {
	root := t.TempDir()
	f := filepath.Join(root, ".git", "HEAD")
	if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, []byte("ref: refs/heads/main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("HEAD", filepath.Join(root, ".git", "link")); err != nil {
		t.Fatal(err)
	}
	base := Tree(t, root)
	if again := Tree(t, root); again != base {
		t.Fatal("hash of an unchanged tree differs")
	}
	mtime := time.Unix(1746598316, 0)
	for _, tc := range []struct {
		name   string
		change func() error
	}{
		{"content", func() error { return os.WriteFile(f, []byte("ref: refs/heads/other\n"), 0o644) }},
		{"mode", func() error { return os.Chmod(f, 0o600) }},
		{"mtime", func() error { return os.Chtimes(f, mtime, mtime) }},
		{"new file", func() error { return os.WriteFile(filepath.Join(root, "new"), nil, 0o644) }},
		{"link target", func() error {
			l := filepath.Join(root, ".git", "link")
			if err := os.Remove(l); err != nil {
				return err
			}
			return os.Symlink("ORIG_HEAD", l)
		}},
	} {
		if err := tc.change(); err != nil {
			t.Fatal(err)
		}
		h := Tree(t, root)
		if h == base {
			t.Errorf("%s: hash unchanged", tc.name)
		}
		base = h
	}
}
