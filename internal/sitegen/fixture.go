// Package sitegen provides the notes-site test fixture (testdata/site) and
// generates synthetic sites of the same shape, with any number of talk
// pages, for tests and benchmarks.
//
// A notes site is a Hugo site whose content is organised by conference day:
//
//	content/_index.md              home page
//	content/_imgs/                 images shared by all days
//	content/tags/_index.md         title of the tags taxonomy page
//	content/<day>/_index.md        one section per day, ordered by weight
//	content/<day>/_img/            images of that day
//	content/<day>/NN_<slug>.md     talk pages (YAML front matter: title,
//	                               weight, tags)
//
// Talk pages use the relearn-style button and notice shortcodes (some inside
// HTML comments), mermaid code fences, $...$ and $$...$$ math, relative image
// links (_img/x.png, ../_imgs/x.png) and relative page links (./02_gslb).
// The fixture's theme (themes/notes) resolves all of these.
package sitegen

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// FixtureDir returns the absolute path of the notes-site fixture,
// testdata/site at the root of the module. It is located relative to this
// source file, so it works from any working directory (tests, benchmarks,
// go run).
//
// In a binary built with -trimpath the source location is not a real path;
// the fixture is then looked up in the working directory and its parents
// (the module root holds testdata/site).
func FixtureDir() string {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		// file is <module>/internal/sitegen/fixture.go.
		return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", "testdata", "site"))
	}
	rel := filepath.Join("testdata", "site")
	if dir, err := os.Getwd(); err == nil {
		for {
			candidate := filepath.Join(dir, rel)
			if _, err := os.Stat(filepath.Join(candidate, "hugo.yaml")); err == nil {
				return candidate
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return rel
}

// skipped reports whether a path (slash-separated, relative to a site root)
// is a build artifact that must not be copied: Hugo's default output
// directory, its resource cache and its build lock.
func skipped(rel string) bool {
	switch rel {
	case "public", "resources", ".hugo_build.lock":
		return true
	}
	return false
}

// CopyFixture copies the notes-site fixture (FixtureDir) to dst. dst must
// not exist or be an empty directory. Build artifacts of a local hugo run
// (public/, resources/, .hugo_build.lock) are not copied.
func CopyFixture(dst string) error {
	src := FixtureDir()
	if err := prepareDir(dst); err != nil {
		return err
	}
	return copyTree(src, dst, func(rel string) bool { return skipped(rel) })
}

// prepareDir creates dir, or checks that it is empty if it exists.
func prepareDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("sitegen: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("sitegen: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("sitegen: destination %s is not empty", dir)
	}
	return nil
}

// copyTree copies the regular files and directories under src to dst,
// which must exist. skip is called with slash-separated paths relative to
// src; skipped directories are not descended into. File permission bits
// are preserved; anything but regular files and directories is an error.
func copyTree(src, dst string, skip func(rel string) bool) error {
	srcFS := os.DirFS(src)
	return fs.WalkDir(srcFS, ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("sitegen: copying %s: %w", src, err)
		}
		if rel == "." {
			return nil
		}
		if skip != nil && skip(rel) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, filepath.FromSlash(rel))
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, 0o755); err != nil {
				return fmt.Errorf("sitegen: %w", err)
			}
			return nil
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return fmt.Errorf("sitegen: %w", err)
			}
			return copyFile(filepath.Join(src, filepath.FromSlash(rel)), target, info.Mode().Perm())
		default:
			return fmt.Errorf("sitegen: %s: unsupported file type %s", filepath.Join(src, rel), d.Type())
		}
	})
}

func copyFile(src, dst string, perm fs.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("sitegen: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("sitegen: %w", err)
	}
	defer func() {
		if cerr := out.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("sitegen: %w", cerr)
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("sitegen: copying %s: %w", src, err)
	}
	// The umask may have cleared bits of perm; set them exactly.
	if err := out.Chmod(perm); err != nil {
		return fmt.Errorf("sitegen: %w", err)
	}
	return nil
}

// writeFile writes a generated file with mode 0644, creating its parent
// directories with mode 0755.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("sitegen: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("sitegen: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("sitegen: %w", err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("sitegen: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sitegen: %w", err)
	}
	return nil
}
