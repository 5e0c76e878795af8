package manifests

import (
	"os"
	"path/filepath"

	"github.com/go-git/go-billy/v5"
)

// writeBillyFile writes a file of the scaffold, creating its directory.
func writeBillyFile(fs billy.Filesystem, name string, data []byte, perm os.FileMode) error {
	if dir := filepath.Dir(name); dir != "." {
		if err := fs.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	f, err := fs.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
