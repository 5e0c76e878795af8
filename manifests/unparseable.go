package manifests

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-billy/v5"
)

// UnparseableError says that files holding marker text do not parse as
// YAML or are templates: the update cannot see their markers, so an image
// there would stay as it is. UpdateOptions.SkipUnparseable accepts that.
type UnparseableError struct {
	Files []SkippedFile // by path
}

func (e *UnparseableError) Error() string {
	var b strings.Builder
	if len(e.Files) == 1 {
		b.WriteString("1 file with setter marker text cannot be parsed, so its markers would not be updated: ")
	} else {
		fmt.Fprintf(&b, "%d files with setter marker text cannot be parsed, so their markers would not be updated: ", len(e.Files))
	}
	for i, f := range e.Files {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.String())
	}
	b.WriteString("; fix them, or pass --skip-unparseable to update the other files and leave these as they are")
	return b.String()
}

// Unparseable lists the files under root that hold marker text but do not
// parse as YAML or are templates, the files Update would refuse or (with
// SkipUnparseable) skip, without needing the policies' values: a release
// checks them before it builds.
func Unparseable(fsys billy.Filesystem, root string) ([]SkippedFile, error) {
	var out []SkippedFile
	err := walkYAML(fsys, root, func(p string, data []byte) error {
		if !bytes.Contains(data, []byte(markerToken)) {
			return nil
		}
		pe := templateError(p, data)
		if pe == nil {
			_, err := parseDocuments(p, data)
			if err != nil && !errors.As(err, &pe) {
				return err
			}
		}
		if pe != nil {
			out = append(out, SkippedFile{Path: p, Line: pe.Line, Col: pe.Col, Reason: pe.Msg})
		}
		return nil
	})
	return out, err
}
