package manifests

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/go-git/go-billy/v5/osfs"
)

// TestUnparseable lists the files with marker text that do not parse, as
// Update refuses them, and none in trees that parse.
func TestUnparseable(t *testing.T) {
	for _, tc := range []struct {
		dir  string
		want string
	}{
		{"unparseable", "[broken.yaml chart/templates/deployment.yaml tabs.yml]"},
		{"deployment", "[]"},
		{"multidoc", "[]"},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			fsys := osfs.New(filepath.Join("testdata", "update", tc.dir, "input"))
			bad, err := Unparseable(fsys, "")
			if err != nil {
				t.Fatal(err)
			}
			var paths []string
			for _, f := range bad {
				paths = append(paths, f.Path)
			}
			if got := fmt.Sprint(paths); got != tc.want {
				t.Errorf("Unparseable = %s, want %s", got, tc.want)
			}
			_, err = Update(fsys, "", []Policy{notesPolicy}, UpdateOptions{DryRun: true})
			var ue *UnparseableError
			if errors.As(err, &ue) != (len(bad) > 0) {
				t.Errorf("Update: err = %v; want an *UnparseableError exactly when files do not parse", err)
			}
		})
	}
}
