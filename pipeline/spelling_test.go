package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notesctl/notesctl/manifests"
	"github.com/notesctl/notesctl/manifests/gitops"
)

// localRelease releases the fixture site into an OCI layout and a local
// GitOps repository scaffolded for image, and returns the result and the
// GitOps repository's path.
func localRelease(t *testing.T, site, gitopsDir, image string, edit func(*ReleaseOptions)) *ReleaseResult {
	t.Helper()
	opts := ReleaseOptions{
		Build: BuildOptions{
			SiteDir: site, Image: image, Base: "scratch",
			To: "oci:" + filepath.Join(site, ".notesctl", "image"),
		},
		GitOps:   gitops.Options{URL: gitopsDir},
		Scaffold: &manifests.ScaffoldOptions{Image: image},
	}
	if edit != nil {
		edit(&opts)
	}
	res, err := Release(context.Background(), opts, nil)
	if err != nil {
		t.Fatalf("release of %s: %v", image, err)
	}
	return res
}

// TestReleaseKeepsImageSpelling: the repository the user names is the one
// the GitOps files, the result and the messages carry, not the canonical
// form go-containerregistry computes (index.docker.io/..., library/...).
func TestReleaseKeepsImageSpelling(t *testing.T) {
	site := fixtureRepo(t)
	for _, image := range []string{"docker.io/acme/notes", "index.docker.io/acme/notes", "127.0.0.1:5000/acme/notes"} {
		t.Run(image, func(t *testing.T) {
			gitops := filepath.Join(t.TempDir(), "gitops")
			res := localRelease(t, site, gitops, image, nil)
			if res.Build.Repository != image || !strings.HasPrefix(res.Build.Image, image+":"+res.Build.Tag+"@sha256:") {
				t.Errorf("result names %q / %q, want the repository %q as given", res.Build.Repository, res.Build.Image, image)
			}
			data, err := os.ReadFile(filepath.Join(gitops, "apps", "notes", "deployment.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), "image: "+res.Build.Image+" # {\"$imagepolicy\"") {
				t.Errorf("deployment.yaml does not hold %s as written:\n%s", res.Build.Image, data)
			}
			for _, c := range res.GitOps.Changes {
				if c.New != res.Build.Image {
					t.Errorf("change %s:%d sets %q, want %q", c.File, c.Line, c.New, res.Build.Image)
				}
			}
		})
	}
}

// TestImageRepository covers --image parsing: spelling kept, tags,
// digests and Docker Hub's implicit library/ namespace refused.
func TestImageRepository(t *testing.T) {
	for _, c := range []struct {
		in, want, err string
	}{
		{in: "docker.io/acme/notes", want: "docker.io/acme/notes"},
		{in: "ghcr.io/acme/notes", want: "ghcr.io/acme/notes"},
		{in: "127.0.0.1:5000/notes", want: "127.0.0.1:5000/notes"},
		{in: "ghcr.io/acme/notes:v1", err: "without a tag"},
		{in: "ghcr.io/acme/notes@sha256:4a5b6c7d8e9f00112233445566778899aabbccddeeff00112233445566778899", err: "without a digest"},
		{in: "notes", err: "not a valid image repository"},
		{in: "ghcr.io/Acme/notes", err: "not a valid image repository"},
	} {
		got, err := imageRepository(c.in, false)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), c.in)):
			t.Errorf("imageRepository(%q) = %q, %v; want an error naming it with %q", c.in, got.String(), err, c.err)
		case c.err == "" && (err != nil || got.String() != c.want):
			t.Errorf("imageRepository(%q) = %q, %v; want %q", c.in, got.String(), err, c.want)
		}
	}
}
