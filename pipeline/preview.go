package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/util"

	"github.com/notesctl/notesctl/manifests"
	"github.com/notesctl/notesctl/manifests/gitops"
	"github.com/notesctl/notesctl/pipeline/rollout"
)

// PreviewOptions are the inputs of a preview, a close or a TTL sweep.
type PreviewOptions struct {
	// Build is the PR head's build; its BaseURL and TagTemplate are set by
	// Preview. Unused by Close and Expire.
	Build  BuildOptions
	GitOps gitops.Options
	// Number is the pull request.
	Number int
	// Domain is the preview domain: the preview is served at
	// https://pr-<n>.<Domain>/.
	Domain string
	// AppPath is the app's directory in the GitOps repository; default
	// ./apps/notes.
	AppPath string
	// Wait, when set, follows the GitOps commit into the cluster (Preview
	// and ClosePreview): Flux's previews Kustomization (Wait.Kustomization)
	// applies it, and the preview's Deployment runs the image, or is pruned.
	Wait *rollout.Options
}

// PreviewResult is what a preview, close or sweep did.
type PreviewResult struct {
	Number int          `json:"number,omitempty"`
	URL    string       `json:"previewURL,omitempty"`
	Build  *BuildResult `json:"build,omitempty"`
	// Dir is the overlay directory in the GitOps repository.
	Dir string `json:"dir,omitempty"`
	// Namespace is the preview's own (deployed or closed), when known.
	Namespace string `json:"namespace,omitempty"`
	Commit    string `json:"gitopsCommit,omitempty"`
	// Changed says whether the GitOps repository changed.
	Changed bool `json:"changed"`
	// Closed lists the previews removed (Close, Expire).
	Closed []int    `json:"closed,omitempty"`
	Files  []string `json:"files,omitempty"`
	// Diff is the change to previews/, unified.
	Diff string `json:"diff,omitempty"`
	// Rollout is what --wait saw applied.
	Rollout *rollout.Result `json:"rollout,omitempty"`
}

// Preview renders the pull request's head with the preview's baseURL,
// pushes it with the preview tag, and writes the preview overlay into the
// GitOps repository (one commit; none when the overlay is already there).
func Preview(ctx context.Context, opts PreviewOptions, sink Sink) (*PreviewResult, error) {
	if opts.Number <= 0 {
		return nil, fmt.Errorf("preview: --pr %d: want the pull request's number", opts.Number)
	}
	if strings.TrimSpace(opts.Domain) == "" {
		return nil, errors.New("preview: no preview domain: pass --preview-domain (e.g. preview.example.org; the preview is served at https://pr-<n>.<domain>/)")
	}
	host := manifests.PreviewHost(opts.Number, opts.Domain)
	res := &PreviewResult{Number: opts.Number, URL: manifests.PreviewURL(opts.Number, opts.Domain), Dir: manifests.PreviewDir(opts.Number)}
	b := opts.Build
	b.BaseURL = res.URL
	if b.TagTemplate == "" {
		b.TagTemplate = manifests.PreviewTagTemplate(opts.Number)
	}
	// The overlay is checked against the GitOps repository before anything
	// is built: a repository without previews/ fails fast.
	if err := previewPrecheck(ctx, opts); err != nil {
		return nil, err
	}
	built, err := Build(ctx, b, sink)
	if err != nil {
		return nil, err
	}
	res.Build = built
	r := newRunner(sink)
	var namespace string // the preview's own
	err = r.stage(StageUpdate, func() (string, error) {
		cr, err := gitops.Commit(ctx, opts.GitOps, func(fs billy.Filesystem, _ gitops.CommitInfo) (string, bool, error) {
			po, err := previewOverlay(fs, opts, built, host)
			if err != nil {
				return "", false, err
			}
			namespace = manifests.PreviewNamespace(po.Namespace, po.Number)
			before := snapshotDir(fs, manifests.PreviewsDir)
			if _, err := manifests.WritePreview(fs, po); err != nil {
				return "", false, err
			}
			res.Diff = dirDiff(before, snapshotDir(fs, manifests.PreviewsDir))
			msg := fmt.Sprintf("Preview pull request #%d: %s\n\nPreview-URL: %s\nSource-Commit: %s\nImage: %s\n",
				opts.Number, built.Tag, res.URL, built.Commit, built.Image)
			return msg, true, nil
		})
		if err != nil {
			return "", err
		}
		res.Commit, res.Changed, res.Files = cr.Hash, cr.Changed, cr.Files
		if !cr.Changed {
			return fmt.Sprintf("%s already deploys %s", res.Dir, built.Tag), nil
		}
		return fmt.Sprintf("commit %s writes %s", shortHash(cr.Hash), res.Dir), nil
	})
	if err != nil {
		return res, err
	}
	// Unchanged, the tip still may not be applied yet: it is waited for too.
	res.Namespace = namespace
	if opts.Wait != nil && res.Commit != "" {
		target := rollout.Target{Branch: gitopsBranch(opts.GitOps), Commit: res.Commit, Image: built.Image, Namespace: namespace}
		if res.Rollout, err = waitRollout(ctx, r, *opts.Wait, opts.GitOps, target); err != nil {
			return res, err
		}
	}
	return res, nil
}

func previewPrecheck(ctx context.Context, opts PreviewOptions) error {
	fs, _, err := gitops.Checkout(ctx, opts.GitOps)
	if err != nil {
		return err
	}
	if _, err := fs.Stat(manifests.PreviewsDir + "/kustomization.yaml"); err != nil {
		return fmt.Errorf("preview: the GitOps repository has no %s/kustomization.yaml: add it with `resources: []`, and a Flux Kustomization that applies ./%s with prune: true (notesctl manifests init into an empty directory writes both: previews/kustomization.yaml and flux/NAME/previews.yaml)", manifests.PreviewsDir, manifests.PreviewsDir)
	}
	_, err = manifests.ReadApp(fs, appPath(opts))
	return err
}

func appPath(opts PreviewOptions) string {
	if opts.AppPath == "" {
		return "./apps/" + manifests.DefaultScaffoldName
	}
	return opts.AppPath
}

func previewOverlay(fs billy.Filesystem, opts PreviewOptions, b *BuildResult, host string) (manifests.PreviewOptions, error) {
	app, err := manifests.ReadApp(fs, appPath(opts))
	if err != nil {
		return manifests.PreviewOptions{}, err
	}
	return manifests.PreviewOptions{
		Number: opts.Number, AppPath: appPath(opts), Name: app.Name, Namespace: app.Namespace,
		Image: b.Repository, Tag: b.Tag, Digest: b.Digest, Host: host,
		Commit: b.Commit, CommitTime: b.CommitTime,
	}, nil
}

// ClosePreview removes pull request n's overlay from the GitOps repository
// (Flux prunes its objects). Closing a preview that is not there changes
// nothing and is no error: a PR closed twice, or never previewed.
func ClosePreview(ctx context.Context, opts PreviewOptions, sink Sink) (*PreviewResult, error) {
	if opts.Number <= 0 {
		return nil, fmt.Errorf("preview: --close %d: want the pull request's number", opts.Number)
	}
	return closePreviews(ctx, opts, sink, func([]manifests.PreviewInfo) []int { return []int{opts.Number} })
}

// ExpirePreviews closes every preview whose recorded commit time is older
// than ttl at now.
func ExpirePreviews(ctx context.Context, opts PreviewOptions, ttl time.Duration, now time.Time, sink Sink) (*PreviewResult, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("preview: --ttl %s: want a positive duration, e.g. 168h", ttl)
	}
	return closePreviews(ctx, opts, sink, func(all []manifests.PreviewInfo) []int {
		var old []int
		for _, p := range all {
			if now.Sub(p.CommitTime) > ttl {
				old = append(old, p.Number)
			}
		}
		return old
	})
}

func closePreviews(ctx context.Context, opts PreviewOptions, sink Sink, pick func([]manifests.PreviewInfo) []int) (*PreviewResult, error) {
	res := &PreviewResult{Number: opts.Number}
	r := newRunner(sink)
	var namespace string // the closed preview's, when the app is readable
	err := r.stage(StageUpdate, func() (string, error) {
		var closed []int
		cr, err := gitops.Commit(ctx, opts.GitOps, func(fs billy.Filesystem, _ gitops.CommitInfo) (string, bool, error) {
			closed = nil
			all, err := manifests.Previews(fs)
			if err != nil {
				return "", false, err
			}
			if app, err := manifests.ReadApp(fs, appPath(opts)); err == nil && opts.Number > 0 {
				namespace = manifests.PreviewNamespace(app.Namespace, opts.Number)
			}
			before := snapshotDir(fs, manifests.PreviewsDir)
			defer func() { res.Diff = dirDiff(before, snapshotDir(fs, manifests.PreviewsDir)) }()
			for _, n := range pick(all) {
				removed, err := manifests.RemovePreview(fs, n)
				if err != nil {
					return "", false, err
				}
				if removed {
					closed = append(closed, n)
				}
			}
			if len(closed) == 0 {
				return "", false, nil
			}
			sort.Ints(closed)
			var names []string
			for _, n := range closed {
				names = append(names, "#"+strconv.Itoa(n))
			}
			return fmt.Sprintf("Close the preview of pull request %s\n", strings.Join(names, ", ")), true, nil
		})
		if err != nil {
			return "", err
		}
		res.Commit, res.Changed, res.Files, res.Closed = cr.Hash, cr.Changed, cr.Files, closed
		if !cr.Changed {
			return "no preview to close", nil
		}
		return fmt.Sprintf("commit %s closes %d preview(s)", shortHash(cr.Hash), len(closed)), nil
	})
	res.Namespace = namespace
	if err != nil || opts.Wait == nil || res.Commit == "" {
		return res, err
	}
	// The wait ends when Flux applied the commit: its pruning removed the
	// preview's objects from the Kustomization's inventory ("applied no
	// Deployment in namespace ...").
	target := rollout.Target{Branch: gitopsBranch(opts.GitOps), Commit: res.Commit, Namespace: namespace}
	res.Rollout, err = waitRollout(ctx, r, *opts.Wait, opts.GitOps, target)
	return res, err
}

func shortHash(h string) string {
	if len(h) > 7 {
		return h[:7]
	}
	return h
}

// snapshotDir reads every file under dir (slash paths).
func snapshotDir(fs billy.Filesystem, dir string) map[string][]byte {
	out := map[string][]byte{}
	_ = util.Walk(fs, dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		if b, err := util.ReadFile(fs, p); err == nil {
			out[filepath.ToSlash(p)] = b
		}
		return nil
	})
	return out
}

// dirDiff is the unified diff from one snapshot to the other.
func dirDiff(a, b map[string][]byte) string {
	names := map[string]bool{}
	for n := range a {
		names[n] = true
	}
	for n := range b {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	var out strings.Builder
	for _, n := range sorted {
		if !bytes.Equal(a[n], b[n]) {
			out.WriteString(manifests.UnifiedDiff("a/"+n, "b/"+n, a[n], b[n], 3))
		}
	}
	return out.String()
}
