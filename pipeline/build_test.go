package pipeline

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notesctl/notesctl/internal/sitegit"
	"github.com/notesctl/notesctl/registry"
)

var update = flag.Bool("update", false, "rewrite golden files")

// fixtureRepo copies testdata/site into a repository committed at a fixed
// time by a fixed author, so its commit hash is the same everywhere.
func fixtureRepo(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := sitegit.Fixture(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestFixtureDigestIsReproducible builds testdata/site twice, from two
// directories at two wall-clock times, and compares the digest with the
// golden one: a change in Hugo's output, the layer format or the labels
// shows up here.
func TestFixtureDigestIsReproducible(t *testing.T) {
	build := func() *BuildResult {
		t.Helper()
		site := fixtureRepo(t)
		res, err := Build(context.Background(), BuildOptions{
			SiteDir: site, Image: "notes.example.org/notes", Base: "scratch",
			To: "oci:" + filepath.Join(t.TempDir(), "layout"),
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first := build()
	time.Sleep(1100 * time.Millisecond) // a different wall-clock second
	second := build()
	if first.Digest != second.Digest {
		t.Fatalf("two builds of the same commit differ: %s vs %s", first.Digest, second.Digest)
	}
	if n := len(first.Layers); first.BytesUploaded == 0 || n < 3 || first.Layers[0].Name != registry.LayerAssets || first.Layers[n-1].Name != registry.LayerPages {
		t.Errorf("build result = %+v", first)
	}
	golden := filepath.Join("testdata", "fixture.digest")
	got := first.Tag + "@" + first.Digest + "\n"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./pipeline -run TestFixtureDigest -update)", err)
	}
	if got != string(want) {
		t.Errorf("fixture image drifted:\n got %s want %s(if intended, rerun with -update)", got, want)
	}
	if !strings.HasPrefix(first.Tag, "main-") || !strings.HasSuffix(first.Tag, "-1746598316-hugo0.145.0") {
		t.Errorf("tag %q", first.Tag)
	}
}

// TestBuildRemovesThePublishDir: the rendered site goes to a temporary
// directory on disk (not memory) for the image stage, and is removed
// afterwards, when the build succeeds and when it fails.
func TestBuildRemovesThePublishDir(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	site := fixtureRepo(t)
	if _, err := Build(context.Background(), BuildOptions{
		SiteDir: site, Image: "notes.example.org/notes", Base: "scratch",
		To: "oci:" + filepath.Join(t.TempDir(), "layout"),
	}, nil); err != nil {
		t.Fatal(err)
	}
	// A failing image stage: a base that does not exist.
	if _, err := Build(context.Background(), BuildOptions{
		SiteDir: site, Image: "notes.example.org/notes", Base: "oci:" + filepath.Join(t.TempDir(), "missing"),
		To: "oci:" + filepath.Join(t.TempDir(), "layout"),
	}, nil); err == nil {
		t.Fatal("a build on a missing base succeeded")
	}
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		if strings.HasPrefix(e.Name(), "notesctl-public-") {
			t.Errorf("%s is left in the temporary directory", e.Name())
		}
	}
}
