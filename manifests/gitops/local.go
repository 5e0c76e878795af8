package gitops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	pathpkg "path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/memfs"
	"github.com/go-git/go-billy/v5/util"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/index"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

type localRepo struct {
	path   string
	direct bool // non-bare with Branch checked out: committed in its worktree
	// inPlace: bare, and a push would run none of its own code, so the
	// commit is written into it directly (bare.go).
	inPlace bool
	// viaGit says why a bare repository is pushed to through git instead.
	viaGit string
}

// inspectLocal decides how to write to a repository on this machine.
func inspectLocal(path, branch string) (*localRepo, error) {
	repo, err := git.PlainOpen(path)
	if err != nil {
		return nil, fmt.Errorf("gitops: open local repository %s: %w", path, err)
	}
	cfg, err := repo.Config()
	if err != nil {
		return nil, fmt.Errorf("gitops: read config of %s: %w", path, err)
	}
	l := &localRepo{path: path}
	if cfg.Core.IsBare {
		l.viaGit = pushThroughGit(path, branch)
		l.inPlace = l.viaGit == ""
		return l, nil
	}
	head, err := repo.Storer.Reference(plumbing.HEAD)
	if err != nil {
		return nil, fmt.Errorf("gitops: read HEAD of %s: %w", path, err)
	}
	// A push to another branch of a non-bare repository is fine; only the
	// checked-out branch needs the direct path.
	l.direct = head.Type() == plumbing.SymbolicReference && head.Target() == plumbing.NewBranchReferenceName(branch)
	return l, nil
}

// commitDirect commits into the checked-out branch of a local non-bare
// repository and updates its worktree, as `git commit` would, in an order
// after which a crash at any point (kill -9, power loss aside) leaves the
// repository usable and the next run able to go on:
//
//  1. take git's index.lock, so that git commands and other notesctl runs
//     wait instead of interleaving (notesctl notes its pid in the lock, so a
//     lock left by a notesctl that died is recognised: see lockIndex);
//  2. finish or discard a commit an earlier run was interrupted in (see
//     recoverDirect);
//  3. write the new blobs, trees and the commit object (go-git writes loose
//     objects to a temporary file and renames it: all or nothing);
//  4. write the journal .git/NOTESCTL_COMMIT: old tip, new commit, paths;
//  5. move the branch with git's ref lock protocol (write B.lock, rename);
//  6. bring the changed worktree files (each written to a temporary file and
//     renamed) and their index entries (the index, too, is renamed into
//     place) to the new commit;
//  7. remove the journal, then the lock.
//
// A crash before 5 leaves the branch, index and worktree untouched (and
// unreferenced objects, which git gc prunes); after 5 the next run redoes 6
// from the journal.
func (s *session) commitDirect(ctx context.Context, edit Edit) (*CommitResult, error) {
	repo, st, err := s.openLocal()
	if err != nil {
		return nil, err
	}
	gitDir := st.Filesystem().Root()
	unlock, err := s.lockIndex(ctx, gitDir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	wt, err := repo.Worktree()
	if err != nil {
		return nil, fmt.Errorf("open worktree of %s: %w", s.display, err)
	}
	// The same repository, with index writes made atomic, for step 6.
	arepo, err := git.Open(atomicIndexStorage{st}, wt.Filesystem)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", s.display, err)
	}
	awt, err := arepo.Worktree()
	if err != nil {
		return nil, fmt.Errorf("open worktree of %s: %w", s.display, err)
	}
	if err := s.recoverDirect(arepo, awt, gitDir); err != nil {
		return nil, err
	}

	status, err := wt.Status()
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", s.display, err)
	}
	untracked := map[string]bool{}
	var dirty []string
	for path, st := range status {
		switch {
		case st.Staging == git.Untracked && st.Worktree == git.Untracked:
			untracked[path] = true
		case st.Staging != git.Unmodified || st.Worktree != git.Unmodified:
			dirty = append(dirty, path)
		}
	}
	if len(dirty) > 0 {
		sort.Strings(dirty)
		more := ""
		if len(dirty) > 5 {
			more = fmt.Sprintf(" and %d more", len(dirty)-5)
			dirty = dirty[:5]
		}
		return nil, fmt.Errorf("%w: %s: %s%s; commit or stash them first", ErrDirtyWorktree, s.local.path, strings.Join(dirty, ", "), more)
	}

	head, tree, changes, msg, err := s.editBranch(repo, edit)
	if err != nil {
		return nil, err
	}
	res := &CommitResult{Branch: s.opts.Branch, Hash: head.Hash, Attempts: 1}
	if len(changes) == 0 {
		return res, nil
	}
	for _, c := range changes {
		if untracked[c.path] {
			return nil, fmt.Errorf("%w: %s: untracked file %s would be overwritten", ErrDirtyWorktree, s.local.path, c.path)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gitops commit to %s: %w", s.display, err)
	}
	hash, err := s.writeCommit(repo.Storer, head, tree, changes, msg)
	if err != nil {
		return nil, fmt.Errorf("commit in %s: %w", s.local.path, err)
	}
	j := commitJournal{Old: head.Hash, New: hash.String()}
	for _, c := range changes {
		j.Paths = append(j.Paths, c.path)
	}
	if err := writeJournal(gitDir, j); err != nil {
		return nil, fmt.Errorf("commit in %s: %w", s.local.path, err)
	}
	if err := s.moveBranch(repo, gitDir, head.Hash, hash); err != nil {
		_ = os.Remove(filepath.Join(gitDir, journalFile))
		return nil, err
	}
	if err := s.checkoutPaths(arepo, awt, hash, j.Paths); err != nil {
		return nil, fmt.Errorf("branch %s of %s is at the new commit %s, but updating the worktree failed (the next run finishes it): %w",
			s.opts.Branch, s.local.path, hash.String()[:7], err)
	}
	if err := os.Remove(filepath.Join(gitDir, journalFile)); err != nil {
		return nil, fmt.Errorf("commit in %s: %w", s.local.path, err)
	}
	res.Hash, res.Changed, res.Files = hash.String(), true, j.Paths
	s.logf("committed %s to %s (branch %s)", hash.String()[:7], s.local.path, s.opts.Branch)
	return res, nil
}

// openLocal opens the repository on this machine with its storage.
func (s *session) openLocal() (*git.Repository, *filesystem.Storage, error) {
	repo, err := git.PlainOpen(s.local.path)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", s.display, err)
	}
	st, ok := repo.Storer.(*filesystem.Storage)
	if !ok {
		return nil, nil, fmt.Errorf("open %s: unexpected repository storage", s.local.path)
	}
	return repo, st, nil
}

// editBranch applies edit to a snapshot of the branch tip of a repository
// on this machine and returns what it changed against the tip's tree,
// with the commit message; no changes means nothing to commit.
func (s *session) editBranch(repo *git.Repository, edit Edit) (head CommitInfo, tree *object.Tree, changes []fileChange, msg string, err error) {
	fs, head, tree, err := snapshotBranch(repo, s.branchRef())
	if err != nil {
		return head, nil, nil, "", fmt.Errorf("read branch %s of %s: %w", s.opts.Branch, s.display, err)
	}
	msg, changed, err := edit(fs, head)
	if err != nil {
		return head, nil, nil, "", s.editError(head, err)
	}
	if !changed {
		s.logf("%s (branch %s) is up to date; nothing to commit", s.display, s.opts.Branch)
		return head, tree, nil, "", nil
	}
	if changes, err = diffTree(fs, tree); err != nil {
		return head, nil, nil, "", err
	}
	if len(changes) == 0 {
		s.logf("edit reported changes but the tree of %s is unchanged; nothing to commit", s.display)
		return head, tree, nil, "", nil
	}
	if strings.TrimSpace(msg) == "" {
		return head, nil, nil, "", errors.New("gitops commit: edit returned an empty commit message")
	}
	return head, tree, changes, msg, nil
}

// writeCommit writes the blobs of changes, the trees of the new snapshot
// and a commit on head (nothing when head.Hash is empty), and returns the
// commit's hash. No reference moves.
func (s *session) writeCommit(st storer.EncodedObjectStorer, head CommitInfo, tree *object.Tree, changes []fileChange, msg string) (plumbing.Hash, error) {
	entries := map[string]object.TreeEntry{}
	if tree != nil {
		w := object.NewTreeWalker(tree, true, nil)
		for {
			name, e, err := w.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				w.Close()
				return plumbing.ZeroHash, err
			}
			if e.Mode != filemode.Dir {
				entries[name] = e
			}
		}
		w.Close()
	}
	for _, c := range changes {
		if c.deleted {
			delete(entries, c.path)
			continue
		}
		obj := st.NewEncodedObject()
		obj.SetType(plumbing.BlobObject)
		if err := writeObject(obj, c.data); err != nil {
			return plumbing.ZeroHash, err
		}
		h, err := st.SetEncodedObject(obj)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		mode := filemode.Regular
		switch {
		case c.symlink:
			mode = filemode.Symlink
		case c.perm&0o111 != 0:
			mode = filemode.Executable
		}
		entries[c.path] = object.TreeEntry{Name: pathpkg.Base(c.path), Mode: mode, Hash: h}
	}
	root := &treeNode{}
	for p, e := range entries {
		root.add(strings.Split(p, "/"), e)
	}
	treeHash, err := root.write(st)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	sig := s.signature()
	commit := &object.Commit{Author: *sig, Committer: *sig, Message: msg, TreeHash: treeHash}
	if head.Hash != "" {
		commit.ParentHashes = []plumbing.Hash{plumbing.NewHash(head.Hash)}
	}
	if s.signKey != nil {
		unsigned := &plumbing.MemoryObject{}
		if err := commit.Encode(unsigned); err != nil {
			return plumbing.ZeroHash, err
		}
		r, err := unsigned.Reader()
		if err != nil {
			return plumbing.ZeroHash, err
		}
		var sigBuf bytes.Buffer
		if err := openpgp.ArmoredDetachSign(&sigBuf, s.signKey, r, nil); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("sign commit: %w", err)
		}
		commit.PGPSignature = sigBuf.String()
	}
	obj := st.NewEncodedObject()
	if err := commit.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return st.SetEncodedObject(obj)
}

func writeObject(obj plumbing.EncodedObject, data []byte) error {
	w, err := obj.Writer()
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// treeNode builds nested tree objects from a flat list of entries.
type treeNode struct {
	entries []object.TreeEntry
	dirs    map[string]*treeNode
}

func (n *treeNode) add(parts []string, e object.TreeEntry) {
	if len(parts) == 1 {
		n.entries = append(n.entries, e)
		return
	}
	if n.dirs == nil {
		n.dirs = map[string]*treeNode{}
	}
	sub := n.dirs[parts[0]]
	if sub == nil {
		sub = &treeNode{}
		n.dirs[parts[0]] = sub
	}
	sub.add(parts[1:], e)
}

func (n *treeNode) write(st storer.EncodedObjectStorer) (plumbing.Hash, error) {
	entries := append([]object.TreeEntry(nil), n.entries...)
	for name, sub := range n.dirs {
		h, err := sub.write(st)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		entries = append(entries, object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h})
	}
	// Git orders tree entries by name, a directory as if it ended in "/".
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	sort.Slice(entries, func(i, j int) bool { return key(entries[i]) < key(entries[j]) })
	obj := st.NewEncodedObject()
	if err := (&object.Tree{Entries: entries}).Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return st.SetEncodedObject(obj)
}

// moveBranch moves the branch from old (empty: it must not exist) to new
// the way git does: the new value goes into refs/heads/B.lock, which is
// renamed over the ref once the old value is confirmed.
func (s *session) moveBranch(repo *git.Repository, gitDir, old string, new plumbing.Hash) error {
	name := s.branchRef()
	file := filepath.Join(gitDir, filepath.FromSlash(name.String()))
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	lock := file + ".lock"
	// The lock appears with the new value already in it (see
	// createLockFile; the temporary file stays out of refs/, where git
	// would read it as a ref): a kill can leave the lock behind, but never
	// an empty one, so the guard of an in-place commit can tell it as its
	// own (bare.go).
	err := createLockFile(lock, gitDir, []byte(new.String()+"\n"))
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%w: %s exists: another git process is updating branch %s in %s (if none is, remove it: rm %s)",
			ErrConcurrentUpdates, lock, s.opts.Branch, s.local.path, shellQuote(lock))
	}
	if err != nil {
		return err
	}
	cur, err := repo.Storer.Reference(name)
	switch {
	case errors.Is(err, plumbing.ErrReferenceNotFound) && old == "":
	case err != nil:
		_ = os.Remove(lock)
		return fmt.Errorf("read branch %s of %s: %w", s.opts.Branch, s.local.path, err)
	case cur.Hash().String() != old:
		_ = os.Remove(lock)
		return fmt.Errorf("%w: branch %s of %s moved to %s meanwhile", ErrConcurrentUpdates, s.opts.Branch, s.local.path, cur.Hash())
	}
	if err := os.Rename(lock, file); err != nil {
		_ = os.Remove(lock)
		return err
	}
	return nil
}

// checkoutPaths brings paths in the worktree and the index to their state
// in commit: each file is written to a temporary file and renamed, and the
// index is renamed into place (atomicIndexStorage), so a crash leaves every
// file and the index either old or new. Running it twice is harmless.
func (s *session) checkoutPaths(repo *git.Repository, wt *git.Worktree, commit plumbing.Hash, paths []string) error {
	c, err := repo.CommitObject(commit)
	if err != nil {
		return err
	}
	tree, err := c.Tree()
	if err != nil {
		return err
	}
	fs := wt.Filesystem
	for _, p := range paths {
		f, err := tree.File(p)
		if errors.Is(err, object.ErrFileNotFound) {
			if _, err := fs.Lstat(p); err == nil {
				if err := fs.Remove(p); err != nil {
					return err
				}
			}
			if _, err := wt.Remove(p); err != nil && !errors.Is(err, index.ErrEntryNotFound) {
				return fmt.Errorf("remove %s from the index: %w", p, err)
			}
			continue
		}
		if err != nil {
			return err
		}
		content, err := f.Contents()
		if err != nil {
			return err
		}
		perm := os.FileMode(0o644)
		if f.Mode == filemode.Executable {
			perm = 0o755
		}
		if err := writeWorktreeFile(fs, p, []byte(content), perm, f.Mode == filemode.Symlink); err != nil {
			return fmt.Errorf("update %s: %w", p, err)
		}
		if _, err := wt.Add(p); err != nil {
			return fmt.Errorf("add %s to the index: %w", p, err)
		}
	}
	return nil
}

// tempPrefix starts the names of temporary files checkoutPaths writes
// next to the files it replaces.
const tempPrefix = ".notesctl-tmp-"

func writeWorktreeFile(fs billy.Filesystem, name string, data []byte, perm os.FileMode, symlink bool) error {
	dir := pathpkg.Dir(name)
	if dir != "." {
		if err := fs.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	tmp := pathpkg.Join(dir, fmt.Sprintf("%s%d-%s", tempPrefix, os.Getpid(), pathpkg.Base(name)))
	_ = fs.Remove(tmp)
	var err error
	if symlink {
		err = fs.Symlink(string(data), tmp)
	} else {
		var f billy.File
		if f, err = fs.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm); err == nil {
			_, err = f.Write(data)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
	}
	if err == nil {
		err = fs.Rename(tmp, name)
	}
	if err != nil {
		_ = fs.Remove(tmp)
	}
	return err
}

// removeTempSiblings removes temporary files an interrupted checkoutPaths
// left next to name.
func removeTempSiblings(fs billy.Filesystem, name string) {
	dir := pathpkg.Dir(name)
	infos, err := fs.ReadDir(dir)
	if err != nil {
		return
	}
	for _, fi := range infos {
		if n := fi.Name(); strings.HasPrefix(n, tempPrefix) && strings.HasSuffix(n, "-"+pathpkg.Base(name)) {
			_ = fs.Remove(pathpkg.Join(dir, n))
		}
	}
}

// atomicIndexStorage is the repository storage with SetIndex writing the
// index to a temporary file and renaming it into place: go-git truncates
// and rewrites the index in place, which a crash can leave half written.
type atomicIndexStorage struct{ *filesystem.Storage }

func (s atomicIndexStorage) SetIndex(idx *index.Index) error {
	var b bytes.Buffer
	if err := index.NewEncoder(&b).Encode(idx); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.Filesystem().Root(), "index"), b.Bytes())
}

// snapshotBranch copies the files of the branch tip into memory. A missing
// branch gives an empty filesystem, an empty CommitInfo and a nil tree.
func snapshotBranch(repo *git.Repository, branch plumbing.ReferenceName) (billy.Filesystem, CommitInfo, *object.Tree, error) {
	fs := memfs.New()
	ref, err := repo.Reference(branch, true)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return fs, CommitInfo{}, nil, nil
	}
	if err != nil {
		return nil, CommitInfo{}, nil, err
	}
	c, err := repo.CommitObject(ref.Hash())
	if err != nil {
		return nil, CommitInfo{}, nil, err
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, CommitInfo{}, nil, err
	}
	err = tree.Files().ForEach(func(f *object.File) error {
		content, err := f.Contents()
		if err != nil {
			return err
		}
		if f.Mode == filemode.Symlink {
			return fs.Symlink(content, f.Name)
		}
		perm := os.FileMode(0o644)
		if f.Mode == filemode.Executable {
			perm = 0o755
		}
		return writeBillyFile(fs, f.Name, []byte(content), perm)
	})
	if err != nil {
		return nil, CommitInfo{}, nil, err
	}
	return fs, commitInfo(c), tree, nil
}

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

// fileChange is one path that differs between an edited snapshot and the
// tree it was taken from.
type fileChange struct {
	path    string
	data    []byte
	perm    os.FileMode
	symlink bool
	deleted bool
}

// diffTree lists the files of fs that differ from tree (nil: empty), sorted.
func diffTree(fs billy.Filesystem, tree *object.Tree) ([]fileChange, error) {
	var changes []fileChange
	seen := map[string]bool{}
	err := util.Walk(fs, "/", func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.IsDir() {
			return nil
		}
		rel := strings.TrimPrefix(filepath.ToSlash(p), "/")
		seen[rel] = true
		var entry *object.TreeEntry
		if tree != nil {
			entry, _ = tree.FindEntry(rel)
		}
		c := fileChange{path: rel, perm: 0o644}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := fs.Readlink(p)
			if err != nil {
				return err
			}
			c.data, c.symlink = []byte(target), true
		} else {
			c.data, err = util.ReadFile(fs, p)
			if err != nil {
				return err
			}
			if fi.Mode().Perm()&0o111 != 0 {
				c.perm = 0o755
			}
		}
		if entry != nil && entry.Hash == plumbing.ComputeHash(plumbing.BlobObject, c.data) &&
			(entry.Mode == filemode.Symlink) == c.symlink {
			return nil
		}
		if entry != nil && entry.Mode == filemode.Executable {
			c.perm = 0o755
		}
		changes = append(changes, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("compare edited files: %w", err)
	}
	if tree != nil {
		err = tree.Files().ForEach(func(f *object.File) error {
			if !seen[f.Name] {
				changes = append(changes, fileChange{path: f.Name, deleted: true})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].path < changes[j].path })
	return changes, nil
}
