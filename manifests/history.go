package manifests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/memfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Deployed is what a policy's markers held after one commit of the GitOps
// history.
type Deployed struct {
	Commit  string    `json:"commit"`
	Time    time.Time `json:"time"`
	Subject string    `json:"subject"`
	Found   []Found   `json:"found"`
}

// Ref is the whole image reference the markers hold, if any marker holds
// one; else the name:tag@digest assembled from the field markers.
func (d Deployed) Ref() string {
	var name, tag, digest string
	for _, f := range d.Found {
		switch f.Field {
		case FieldImage:
			return f.Value
		case FieldName:
			name = f.Value
		case FieldTag:
			tag = f.Value
		case FieldDigest:
			digest = f.Value
		}
	}
	ref := name
	if tag != "" {
		ref += ":" + tag
	}
	if digest != "" {
		ref += "@" + digest
	}
	return ref
}

// History walks the GitOps branch from its tip, newest first, and returns
// each commit (up to limit scanned, 0 = 200) after which the policy's
// markers held something other than before. It needs the full history, so
// it clones without depth.
func History(ctx context.Context, opts GitOpsOptions, policyID string, limit int) ([]Deployed, error) {
	if limit <= 0 {
		limit = 200
	}
	s, err := newSession(opts)
	if err != nil {
		return nil, err
	}
	var repo *git.Repository
	if s.local != nil {
		if repo, err = git.PlainOpen(s.local.path); err != nil {
			return nil, fmt.Errorf("open %s: %w", s.display, err)
		}
		if _, err := repo.Reference(s.branchRef(), true); errors.Is(err, plumbing.ErrReferenceNotFound) {
			return nil, nil // as for a clone of a missing branch
		}
	} else {
		if repo, _, err = s.cloneDepth(ctx, true, 0); err != nil {
			return nil, err
		}
		if repo == nil {
			return nil, nil
		}
	}
	ref, err := repo.Reference(s.branchRef(), true)
	if err != nil {
		return nil, fmt.Errorf("%s: branch %s: %w", s.display, s.opts.Branch, err)
	}
	iter, err := repo.Log(&git.LogOptions{From: ref.Hash(), Order: git.LogOrderCommitterTime})
	if err != nil {
		return nil, fmt.Errorf("%s: log: %w", s.display, err)
	}
	defer iter.Close()
	var states []Deployed
	for n := 0; n < limit; n++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, err := iter.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: log: %w", s.display, err)
		}
		found, err := foundAt(c, policyID)
		if err != nil {
			return nil, fmt.Errorf("%s: commit %s: %w", s.display, c.Hash.String()[:7], err)
		}
		states = append(states, Deployed{
			Commit: c.Hash.String(), Time: c.Committer.When.UTC(),
			Subject: strings.SplitN(c.Message, "\n", 2)[0], Found: found,
		})
	}
	// Keep the commits that changed the state: newest first, each compared
	// with the next older one.
	var out []Deployed
	for i, st := range states {
		if len(st.Found) == 0 {
			continue
		}
		if i+1 < len(states) && states[i+1].Ref() == st.Ref() {
			continue
		}
		out = append(out, st)
	}
	return out, nil
}

// foundAt reads the policy's marker values in one commit's tree.
func foundAt(c *object.Commit, policyID string) ([]Found, error) {
	tree, err := c.Tree()
	if err != nil {
		return nil, err
	}
	fsys := memfs.New()
	err = tree.Files().ForEach(func(f *object.File) error {
		if !scannable(f.Name) {
			return nil
		}
		content, err := f.Contents()
		if err != nil {
			return err
		}
		if !strings.Contains(content, "$imagepolicy") {
			return nil
		}
		return writeMem(fsys, f.Name, content)
	})
	if err != nil {
		return nil, err
	}
	return Current(fsys, "", policyID)
}

func scannable(name string) bool {
	base := name[strings.LastIndex(name, "/")+1:]
	return strings.HasSuffix(base, ".yaml") || strings.HasSuffix(base, ".yml") || base == "Kustomization"
}

func writeMem(fsys billy.Filesystem, name, content string) error {
	f, err := fsys.Create(name)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, content); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
