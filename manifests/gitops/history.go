package gitops

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/memfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// DefaultLogLimit is how many commits Log reads when no limit is given.
const DefaultLogLimit = 200

// FileFilter chooses the files of a commit that Log copies for visit:
// Name is asked first (nil: every file), then Content with the file's bytes
// (nil: every named file), so that files passed over by name are not read.
type FileFilter struct {
	Name    func(path string) bool
	Content func(data []byte) bool
}

func (f FileFilter) keepName(p string) bool    { return f.Name == nil || f.Name(p) }
func (f FileFilter) keepContent(b []byte) bool { return f.Content == nil || f.Content(b) }

// Log calls visit for each commit of the branch, newest first by committer
// time, reading at most limit commits (<= 0: DefaultLogLimit). visit gets a
// snapshot in memory of the commit's files that keep chooses. Log needs
// the full history, so it clones without depth; a repository on this
// machine is read where it is. A missing branch (or an empty repository)
// has no commits.
func Log(ctx context.Context, opts Options, limit int, keep FileFilter, visit func(CommitInfo, billy.Filesystem) error) error {
	if limit <= 0 {
		limit = DefaultLogLimit
	}
	s, err := newSession(opts)
	if err != nil {
		return err
	}
	var repo *git.Repository
	if s.local != nil {
		if repo, err = git.PlainOpen(s.local.path); err != nil {
			return fmt.Errorf("open %s: %w", s.display, err)
		}
		if _, err := repo.Reference(s.branchRef(), true); errors.Is(err, plumbing.ErrReferenceNotFound) {
			return nil // as for a clone of a missing branch
		}
	} else {
		if repo, _, err = s.cloneDepth(ctx, true, 0); err != nil {
			return err
		}
		if repo == nil {
			return nil
		}
	}
	ref, err := repo.Reference(s.branchRef(), true)
	if err != nil {
		return fmt.Errorf("%s: branch %s: %w", s.display, s.opts.Branch, err)
	}
	iter, err := repo.Log(&git.LogOptions{From: ref.Hash(), Order: git.LogOrderCommitterTime})
	if err != nil {
		return fmt.Errorf("%s: log: %w", s.display, err)
	}
	defer iter.Close()
	for n := 0; n < limit; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, err := iter.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: log: %w", s.display, err)
		}
		fsys, err := commitFiles(c, keep)
		if err == nil {
			err = visit(commitInfo(c), fsys)
		}
		if err != nil {
			return fmt.Errorf("%s: commit %s: %w", s.display, c.Hash.String()[:7], err)
		}
	}
	return nil
}

// commitFiles copies the files of a commit's tree that keep wants into
// memory.
func commitFiles(c *object.Commit, keep FileFilter) (billy.Filesystem, error) {
	tree, err := c.Tree()
	if err != nil {
		return nil, err
	}
	fsys := memfs.New()
	err = tree.Files().ForEach(func(f *object.File) error {
		if !keep.keepName(f.Name) {
			return nil
		}
		content, err := f.Contents()
		if err != nil {
			return err
		}
		if !keep.keepContent([]byte(content)) {
			return nil
		}
		return writeBillyFile(fsys, f.Name, []byte(content), 0o644)
	})
	return fsys, err
}
