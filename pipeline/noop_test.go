package pipeline

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/notesctl/notesctl/internal/testimage"
	"github.com/notesctl/notesctl/manifests/gitops"
	"github.com/notesctl/notesctl/render"
)

// writeBase (re)writes an OCI layout holding one base image under
// testimage.RefName; a different release gives a different digest, as a
// base tag that moved to a rebuilt image does.
func writeBase(t *testing.T, dir, release string) {
	t.Helper()
	img, err := testimage.Image(testimage.Platforms[0])
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.Config.Labels["base.release"] = release
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := testimage.WriteLayout(dir, testimage.Entry{Name: testimage.RefName, Image: img}); err != nil {
		t.Fatal(err)
	}
}

// TestNoOpKeysOnTheWholeImage: a release of the deployed commit is a no-op
// only while nothing else that goes into the image changed; a base tag
// that now names a rebuilt base (nginx security fixes), another web root
// or other platforms give a new image and a new GitOps commit, and the
// result says why.
func TestNoOpKeysOnTheWholeImage(t *testing.T) {
	site := fixtureRepo(t)
	gitops := filepath.Join(t.TempDir(), "gitops")
	baseDir := filepath.Join(t.TempDir(), "base")
	writeBase(t, baseDir, "1")
	base := "oci:" + baseDir + ":" + testimage.RefName
	const image = "docker.io/acme/notes"
	withBase := func(o *ReleaseOptions) { o.Build.Base = base }

	first := localRelease(t, site, gitops, image, withBase)
	if first.Skipped || !first.GitOps.Changed || first.Outcome != OutcomeReleased {
		t.Fatalf("first release: skipped=%v changed=%v outcome=%q", first.Skipped, first.GitOps.Changed, first.Outcome)
	}

	again := localRelease(t, site, gitops, image, withBase)
	if !again.Skipped || again.Outcome != OutcomeNoOp || !strings.Contains(again.Reason, "already deploys") {
		t.Fatalf("same commit, same base: skipped=%v outcome=%q reason=%q; want a no-op", again.Skipped, again.Outcome, again.Reason)
	}

	for _, c := range []struct {
		name   string
		edit   func(*ReleaseOptions)
		reason string
	}{
		{"base rebuilt", func(o *ReleaseOptions) { writeBase(t, baseDir, "2"); withBase(o) }, "base image"},
		{"web root", func(o *ReleaseOptions) { withBase(o); o.Build.WebRoot = "/srv/www" }, "web root"},
		{"platforms", func(o *ReleaseOptions) {
			withBase(o)
			o.Build.WebRoot = "/srv/www"
			o.Build.Platforms = []string{"linux/amd64"}
		}, "platforms"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := deployedImage(t, gitops)
			res := localRelease(t, site, gitops, image, c.edit)
			if res.Skipped || !res.GitOps.Changed {
				t.Fatalf("skipped=%v changed=%v reason=%q; want a new image deployed", res.Skipped, res.GitOps.Changed, res.Reason)
			}
			if !strings.Contains(res.Reason, c.reason) {
				t.Errorf("reason %q does not name the %s", res.Reason, c.reason)
			}
			if after := deployedImage(t, gitops); after == before || after != res.Build.Image {
				t.Errorf("deployed %s -> %s, want %s", before, after, res.Build.Image)
			}
			// And once built, the same inputs are a no-op again.
			again := localRelease(t, site, gitops, image, c.edit)
			if !again.Skipped {
				t.Errorf("the same release again was not a no-op: %q", again.Reason)
			}
		})
	}
}

func deployedImage(t *testing.T, gitops string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(gitops, "apps", "notes", "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.Index(line, "image: "); i >= 0 && strings.Contains(line, "$imagepolicy") {
			return strings.Fields(line[i+len("image: "):])[0]
		}
	}
	t.Fatalf("no image line in deployment.yaml:\n%s", data)
	return ""
}

// TestNoOpDecisionSkipsTheWorkTree: the no-op decision reads no files of
// the work tree (issue #15), so uncommitted changes do not stop a release
// of a commit that is deployed already, and they are still never
// released: a release that has work to do refuses them before it pushes
// or commits anything.
func TestNoOpDecisionSkipsTheWorkTree(t *testing.T) {
	site := fixtureRepo(t)
	gitopsDir := filepath.Join(t.TempDir(), "gitops")
	const image = "docker.io/acme/notes"
	first := localRelease(t, site, gitopsDir, image, nil)
	if first.Skipped {
		t.Fatalf("first release skipped: %s", first.Reason)
	}
	talk := filepath.Join(site, "content", "_index.md")
	if err := os.WriteFile(talk, []byte("---\ntitle: Not committed\n---\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	again := localRelease(t, site, gitopsDir, image, nil)
	if !again.Skipped || again.Outcome != OutcomeNoOp {
		t.Fatalf("a release of the deployed commit with a dirty work tree: skipped=%v reason=%q; want a no-op", again.Skipped, again.Reason)
	}

	// Another image (a web root) needs a render: the work tree is checked
	// then, and nothing moves.
	layout := filepath.Join(site, ".notesctl", "image", "index.json")
	indexBefore, _ := os.ReadFile(layout)
	deployed := deployedImage(t, gitopsDir)
	_, err := Release(context.Background(), ReleaseOptions{
		Build: BuildOptions{
			SiteDir: site, Image: image, Base: "scratch", WebRoot: "/srv/www",
			To: "oci:" + filepath.Join(site, ".notesctl", "image"),
		},
		GitOps: gitops.Options{URL: gitopsDir},
	}, nil)
	var dirty *render.DirtyError
	if !errors.As(err, &dirty) || !strings.Contains(err.Error(), "content/_index.md") {
		t.Fatalf("a release that renders, with a dirty work tree: err = %v; want the dirty tree refused", err)
	}
	if after := deployedImage(t, gitopsDir); after != deployed {
		t.Errorf("the GitOps repository moved to %s", after)
	}
	if indexAfter, _ := os.ReadFile(layout); string(indexAfter) != string(indexBefore) {
		t.Errorf("the image layout changed:\n%s\nwas\n%s", indexAfter, indexBefore)
	}
}
