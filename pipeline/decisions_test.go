package pipeline

import (
	"context"
	"strings"
	"testing"

	"github.com/go-git/go-billy/v5/memfs"
	"github.com/go-git/go-billy/v5/util"

	"github.com/notesctl/notesctl/manifests"
	"github.com/notesctl/notesctl/registry"
	"github.com/notesctl/notesctl/render"
)

// Table tests of the small decisions a release and a rollback take from
// what the GitOps repository holds.

const (
	digestA = "sha256:4a5b6c7d8e9f00112233445566778899aabbccddeeff00112233445566778899"
	digestB = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
	tagA    = "main-b9060af-1746598316-hugo0.145.0"
)

func TestTagOf(t *testing.T) {
	for _, c := range []struct {
		field, value, want string
	}{
		{manifests.FieldImage, "ghcr.io/acme/notes:" + tagA, tagA},
		{manifests.FieldImage, "ghcr.io/acme/notes:" + tagA + "@" + digestA, tagA},
		{manifests.FieldImage, "127.0.0.1:5000/acme/notes:" + tagA + "@" + digestA, tagA},
		{manifests.FieldImage, "127.0.0.1:5000/acme/notes", ""},
		{manifests.FieldImage, "127.0.0.1:5000/acme/notes@" + digestA, ""},
		{manifests.FieldImage, "docker.io/nginx", ""},
		{manifests.FieldImage, "nginx:1.27", "1.27"},
		{manifests.FieldImage, "ghcr.io/acme/notes:${TAG}", ""},
		{manifests.FieldImage, "", ""},
		{manifests.FieldTag, tagA, tagA},
		{manifests.FieldName, "ghcr.io/acme/notes", ""},
		{manifests.FieldDigest, digestA, ""},
	} {
		if got := tagOf(manifests.Found{Field: c.field, Value: c.value}); got != c.want {
			t.Errorf("tagOf(%q %q) = %q, want %q", c.field, c.value, got, c.want)
		}
	}
}

func TestMatches(t *testing.T) {
	ref := "ghcr.io/acme/notes:" + tagA + "@" + digestA
	for _, c := range []struct {
		ref, to string
		want    bool
	}{
		{ref, ref, true},
		{ref, tagA, true},
		{ref, digestA, true},
		{ref, digestB, false},
		{ref, "b9060af", true},
		{ref, "b9060af0123456789", true}, // a longer commit prefix than the tag's
		{ref, "b9060a", false},           // too short to be a commit
		{ref, "c9060af", false},
		{ref, "main", false},
		{"ghcr.io/acme/notes:v2", "v2", true},
		{"ghcr.io/acme/notes", "notes", false},
		{"ghcr.io/acme/notes@" + digestA, digestA, true},
		{"not a reference", "b9060af", false},
	} {
		if got := matches(c.ref, c.to); got != c.want {
			t.Errorf("matches(%q, %q) = %v, want %v", c.ref, c.to, got, c.want)
		}
	}
}

func TestIsLocalPath(t *testing.T) {
	for _, c := range []struct {
		loc  string
		want bool
	}{
		{"gitops", true},
		{"./gitops", true},
		{"../gitops", true},
		{"/srv/gitops", true},
		{".notesctl/gitops", true},
		{"file:///srv/gitops", true},
		{"./a:b", true},
		{`C:\gitops`, true},
		{"https://github.com/acme/gitops.git", false},
		{"http://127.0.0.1:3000/acme/gitops.git", false},
		{"ssh://git@github.com/acme/gitops.git", false},
		{"git://example.org/gitops.git", false},
		{"git@github.com:acme/gitops.git", false},
		{"example.org:gitops.git", false},
	} {
		if got := IsLocalPath(c.loc); got != c.want {
			t.Errorf("IsLocalPath(%q) = %v, want %v", c.loc, got, c.want)
		}
	}
}

func TestImageKeyDiffers(t *testing.T) {
	deployed := imageKey{
		Revision: "b9060af2d8b1", GeneratorVersion: "0.145.0", Source: "https://github.com/acme/notes",
		BaseName: "docker.io/nginxinc/nginx-unprivileged:1.27-alpine", BaseDigest: digestA,
		WebRoot: "/usr/share/nginx/html", LayerFormat: "1",
	}
	for _, c := range []struct {
		name string
		edit func(*imageKey)
		want string // in the reason; "" = no difference
	}{
		{"same", func(*imageKey) {}, ""},
		{"commit", func(k *imageKey) { k.Revision = "c0ffee000000" }, "site commit changed"},
		{"hugo", func(k *imageKey) { k.GeneratorVersion = "0.146.0" }, "Hugo version changed: the deployed image has 0.145.0, this release 0.146.0"},
		{"base tag moved", func(k *imageKey) { k.BaseDigest = digestB }, "base image digest changed: the deployed image has " + digestA + ", this release " + digestB},
		{"other base", func(k *imageKey) { k.BaseName = "docker.io/nginxinc/nginx-unprivileged:1.28-alpine" }, "base image changed"},
		{"web root", func(k *imageKey) { k.WebRoot = "/srv/www" }, "web root changed"},
		{"platforms", func(k *imageKey) { k.Platforms = "linux/arm64" }, "platforms changed: the deployed image has every platform of the base, this release linux/arm64"},
		{"layer format", func(k *imageKey) { k.LayerFormat = "2" }, "layer format changed"},
		{"built before the labels existed", func(k *imageKey) { k.LayerFormat = "" }, "layer format changed: the deployed image has 1, this release none"},
		{"source", func(k *imageKey) { k.Source = "https://github.com/acme/other" }, "source repository changed"},
	} {
		want := deployed
		c.edit(&want)
		got := want.differs(deployed)
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%s: differs = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestOutcome(t *testing.T) {
	for _, c := range []struct {
		res  ReleaseResult
		want string
	}{
		{ReleaseResult{GitOps: GitOpsResult{Changed: true, Commit: "abc"}}, OutcomeReleased},
		{ReleaseResult{}, OutcomeUnchanged},
		{ReleaseResult{GitOps: GitOpsResult{Superseded: "ghcr.io/acme/notes:" + tagA}}, OutcomeSuperseded},
		{ReleaseResult{DryRun: true, GitOps: GitOpsResult{Superseded: "x"}}, OutcomeDryRun},
	} {
		if got := outcome(&c.res); got != c.want {
			t.Errorf("outcome(%+v) = %q, want %q", c.res, got, c.want)
		}
	}
}

func TestNewerRelease(t *testing.T) {
	const repo = "ghcr.io/acme/notes"
	ours := "main-b9060af-1746598316-hugo0.145.0"
	whole := func(ref string) string {
		return "image: " + ref + ` # {"$imagepolicy": "flux-system:notes"}`
	}
	split := func(name, tag string) string {
		return "image:\n            repository: " + name + ` # {"$imagepolicy": "flux-system:notes:name"}` +
			"\n            tag: " + tag + ` # {"$imagepolicy": "flux-system:notes:tag"}`
	}
	for _, c := range []struct {
		name, deployed, ours, want string
	}{
		{"newer deployed", whole(repo + ":main-c0ffee0-1746601916-hugo0.145.0@" + digestA), ours, repo + ":main-c0ffee0-1746601916-hugo0.145.0@" + digestA},
		{"older deployed", whole(repo + ":main-0123abc-1600000000-hugo0.145.0"), ours, ""},
		{"same time: the later release wins", whole(repo + ":main-fedcba9-1746598316-hugo0.144.0"), ours, ""},
		{"our own tag", whole(repo + ":" + ours + "@" + digestA), ours, ""},
		{"newer dirty build", whole(repo + ":main-c0ffee0-1746601916-hugo0.145.0-dirty"), ours, repo + ":main-c0ffee0-1746601916-hugo0.145.0-dirty"},
		{"deployed tag of another scheme", whole(repo + ":v2"), ours, ""},
		{"our tag of another scheme", whole(repo + ":main-c0ffee0-1746601916-hugo0.145.0"), "v3", ""},
		{"placeholder", whole(repo + ":latest"), ours, ""},
		{"split markers", split(repo, "main-c0ffee0-1746601916-hugo0.145.0"), ours, repo + ":main-c0ffee0-1746601916-hugo0.145.0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fsys := memfs.New()
			doc := "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: notes\nspec:\n  template:\n    spec:\n      containers:\n        - name: web\n          " + c.deployed + "\n"
			if err := util.WriteFile(fsys, "deployment.yaml", []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := newerRelease(fsys, manifests.Policy{Namespace: "flux-system", Name: "notes", Image: repo, Tag: c.ours})
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("newerRelease = %q, want %q", got, c.want)
			}
		})
	}
}

// TestDeployedReleaseDecisions covers the decisions taken before any image
// is read; TestNoOpKeysOnTheWholeImage covers the rest on real layouts.
func TestDeployedReleaseDecisions(t *testing.T) {
	repo, err := registry.ParseRepository("ghcr.io/acme/notes")
	if err != nil {
		t.Fatal(err)
	}
	clean := &plannedBuild{src: &render.Source{Commit: "b9060af2d8b1c6e5f7a3940e1d2c3b4a5f6e7d8c"}, tag: tagA, repo: repo}
	dirty := &plannedBuild{src: &render.Source{Commit: clean.src.Commit, Dirty: true}, tag: tagA + "-dirty", repo: repo}
	image := func(v string) manifests.Found { return manifests.Found{Field: manifests.FieldImage, Value: v} }
	for _, c := range []struct {
		name   string
		p      *plannedBuild
		found  []manifests.Found
		reason string
	}{
		{"dirty", dirty, []manifests.Found{image("ghcr.io/acme/notes:" + tagA + "-dirty")}, "dirty work tree is always made again"},
		{"another release deployed", clean, []manifests.Found{image("ghcr.io/acme/notes:main-0123abc-1600000000-hugo0.145.0")}, "deploys ghcr.io/acme/notes:main-0123abc-1600000000-hugo0.145.0, not " + tagA},
		{"placeholder", clean, []manifests.Found{image("ghcr.io/acme/notes:latest")}, "not " + tagA},
		{"split markers of another release", clean, []manifests.Found{
			{Field: manifests.FieldName, Value: "ghcr.io/acme/notes"}, {Field: manifests.FieldTag, Value: "v1"},
		}, "deploys ghcr.io/acme/notes:v1, not"},
		{"nothing readable", clean, nil, "deploys none, not"},
	} {
		ref, reason, ok := deployedRelease(context.Background(), ReleaseOptions{}, c.p, c.found)
		if ok || ref != "" || !strings.Contains(reason, c.reason) {
			t.Errorf("%s: deployedRelease = %q, %q, %v; want not deployed, because %q", c.name, ref, reason, ok, c.reason)
		}
	}
}
