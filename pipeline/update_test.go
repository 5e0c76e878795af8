package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"

	"github.com/notesctl/notesctl/manifests"
	"github.com/notesctl/notesctl/manifests/gitops"
)

func TestPolicyFromRef(t *testing.T) {
	for _, c := range []struct {
		id, ref string
		want    manifests.Policy
		err     string
	}{
		{id: "flux-system:notes", ref: "docker.io/acme/notes:v2",
			want: manifests.Policy{Namespace: "flux-system", Name: "notes", Image: "docker.io/acme/notes", Tag: "v2"}},
		{id: "apps:web", ref: "127.0.0.1:5000/acme/notes:" + tagA + "@" + digestA,
			want: manifests.Policy{Namespace: "apps", Name: "web", Image: "127.0.0.1:5000/acme/notes", Tag: tagA, Digest: digestA}},
		{id: "flux-system:notes", ref: "nginx:1.27", want: manifests.Policy{Namespace: "flux-system", Name: "notes", Image: "nginx", Tag: "1.27"}},
		{id: "flux-system:notes", ref: "ghcr.io/acme/notes", err: "no tag"},
		{id: "flux-system:notes", ref: "ghcr.io/acme/notes@" + digestA, err: "no tag"},
		{id: "flux-system:notes", ref: "ghcr.io/acme/notes:v1@sha256:short", err: "want REPOSITORY:TAG[@DIGEST]"},
		{id: "notes", ref: "ghcr.io/acme/notes:v1", err: "want NAMESPACE:NAME"},
		{id: "Flux:notes", ref: "ghcr.io/acme/notes:v1", err: "want NAMESPACE:NAME"},
	} {
		got, err := PolicyFromRef(c.id, c.ref)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("PolicyFromRef(%q, %q) = %+v, %v; want an error with %q", c.id, c.ref, got, err, c.err)
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("PolicyFromRef(%q, %q) = %+v, %v; want %+v", c.id, c.ref, got, err, c.want)
		}
	}
}

// TestUpdateCommitsLikeARelease: an update goes through the same commit
// and message template as a release, with the image as written.
func TestUpdateCommitsLikeARelease(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gitops")
	if err := initScaffold(dir, manifests.ScaffoldOptions{Image: "docker.io/acme/notes", GitURL: "file://" + dir}); err != nil {
		t.Fatal(err)
	}
	p, err := PolicyFromRef("flux-system:notes", "docker.io/acme/notes:v2@"+digestA)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := Update(ctx, UpdateOptions{GitOps: gitops.Options{URL: dir}, Policies: []manifests.Policy{p}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Commit == "" || len(res.Changes) != 1 || res.Changes[0].New != "docker.io/acme/notes:v2@"+digestA {
		t.Fatalf("update result %+v", res)
	}
	repo, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	head, err := repo.Head()
	if err != nil {
		t.Fatal(err)
	}
	c, err := repo.CommitObject(head.Hash())
	if err != nil {
		t.Fatal(err)
	}
	want, err := renderMessage("", MessageData{
		Image: "docker.io/acme/notes:v2@" + digestA, Images: []string{"docker.io/acme/notes:v2@" + digestA},
		Repository: "docker.io/acme/notes", Tag: "v2", Digest: digestA, Policy: "flux-system:notes",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Hash.String() != res.Commit || c.Message != want {
		t.Errorf("commit %s message:\n%s\nwant the release template's:\n%s", c.Hash, c.Message, want)
	}
	if strings.Contains(c.Message, "Source-Commit:") {
		t.Errorf("an update has no source commit, yet the message names one:\n%s", c.Message)
	}

	// Again: nothing changes, nothing is committed.
	again, err := Update(ctx, UpdateOptions{GitOps: gitops.Options{URL: dir}, Policies: []manifests.Policy{p}}, nil)
	if err != nil || again.Commit != "" || len(again.Changes) != 0 {
		t.Errorf("second update: %+v, %v", again, err)
	}

	// A directory dry run writes nothing.
	deployment := filepath.Join(dir, "apps", "notes", "deployment.yaml")
	before, _ := os.ReadFile(deployment)
	q, _ := PolicyFromRef("flux-system:notes", "docker.io/acme/notes:v3")
	dry, err := Update(ctx, UpdateOptions{Dir: dir, Policies: []manifests.Policy{q}, DryRun: true}, nil)
	if err != nil || len(dry.Changes) != 1 || !strings.Contains(dry.Diff, "docker.io/acme/notes:v3") {
		t.Errorf("dry run: %+v, %v", dry, err)
	}
	if after, _ := os.ReadFile(deployment); string(after) != string(before) {
		t.Error("a dry run wrote the file")
	}
}

// TestDefaultMessageOfARelease pins the release message: the template's
// conditional parts leave it as it was.
func TestDefaultMessageOfARelease(t *testing.T) {
	ref := "ghcr.io/acme/notes:" + tagA + "@" + digestA
	got, err := renderMessage("", MessageData{Image: ref, Images: []string{ref}, Repository: "ghcr.io/acme/notes", Tag: tagA, Commit: "b9060af2d8b1", Policy: "flux-system:notes"})
	if err != nil {
		t.Fatal(err)
	}
	want := "Deploy ghcr.io/acme/notes:" + tagA + "\n\nUpdate flux-system:notes to " + ref + "\n\nSource-Commit: b9060af2d8b1\nImage: " + ref + "\n"
	if got != want {
		t.Errorf("message:\n%q\nwant\n%q", got, want)
	}
}
