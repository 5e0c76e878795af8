package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/notesctl/notesctl/internal/regserver"
)

// fastRetry keeps failure tests quick while still exercising backoff.
var fastRetry = RetryPolicy{Attempts: 4, Base: 10 * time.Millisecond, Max: 50 * time.Millisecond, MaxElapsed: 10 * time.Second}

func testOptions(tags ...string) PublishOptions {
	return PublishOptions{
		Tags:     tags,
		Keychain: Keychain(KeychainOptions{NoDefault: true}),
		Retry:    fastRetry,
	}
}

// testImage returns a random image with the given number of layers and a
// label, so FetchLabels has something to read.
func testImage(t testing.TB, layers int64, label string) v1.Image {
	t.Helper()
	return testPlatformImage(t, layers, label, "amd64")
}

func testPlatformImage(t testing.TB, layers int64, label, arch string) v1.Image {
	t.Helper()
	img, err := random.Image(2048, layers)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.Labels = map[string]string{LabelRevision: label}
	cf.OS, cf.Architecture = "linux", arch
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// testIndex returns a two-platform index of random images.
func testIndex(t testing.TB, label string) v1.ImageIndex {
	t.Helper()
	var adds []mutate.IndexAddendum
	for _, arch := range []string{"amd64", "arm64"} {
		img := testPlatformImage(t, 2, label, arch)
		adds = append(adds, mutate.IndexAddendum{
			Add: img,
			Descriptor: v1.Descriptor{
				MediaType: types.DockerManifestSchema2,
				Platform:  &v1.Platform{OS: "linux", Architecture: arch},
			},
		})
	}
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
}

func blobCount(t *testing.T, art Artifact) int {
	t.Helper()
	blobs, err := artifactBlobs(art)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for h := range blobs {
		if !isManifestDigest(t, art, h) {
			n++
		}
	}
	return n
}

// isManifestDigest reports whether h is a manifest (not a blob upload).
func isManifestDigest(t *testing.T, art Artifact, h v1.Hash) bool {
	t.Helper()
	d, _ := art.Digest()
	if h == d {
		return true
	}
	if art.Index != nil {
		im, err := art.Index.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range im.Manifests {
			if m.Digest == h {
				return true
			}
		}
	}
	return false
}

func validatePulled(t *testing.T, ref string, art Artifact, ropts ...remote.Option) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r, ropts...)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	want, _ := art.Digest()
	if desc.Digest != want {
		t.Fatalf("pulled digest %s, want %s", desc.Digest, want)
	}
	if art.Index != nil {
		idx, err := desc.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Index(idx); err != nil {
			t.Fatalf("pulled index does not validate: %v", err)
		}
		return
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("pulled image does not validate: %v", err)
	}
}

func TestPublishInProcess(t *testing.T) {
	tests := []struct {
		name string
		art  func(t *testing.T) Artifact
	}{
		{"image", func(t *testing.T) Artifact { return Artifact{Image: testImage(t, 3, "rev-image")} }},
		{"index", func(t *testing.T) Artifact { return Artifact{Index: testIndex(t, "rev-index")} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			srv := regserver.InProcess(t, regserver.InProcessOptions{})
			art := tt.art(t)
			digest, _ := art.Digest()
			repo := srv.Host + "/acme/notes"
			opts := testOptions("main-1", "latest")
			var progressed int64
			opts.Progress = func(complete, total int64) { progressed = complete }
			// Per layer: every layer is reported, in order, up to its size,
			// under its name when it has one.
			layerDone := map[v1.Hash]int64{}
			names := map[v1.Hash]string{}
			layers := artifactLayers(t, art)
			names[layers[0]] = "first"
			opts.LayerNames = names
			var layerErrs []string
			opts.LayerProgress = func(u LayerUpload) {
				if u.Done < layerDone[u.Digest] || u.Done > u.Total {
					layerErrs = append(layerErrs, fmt.Sprintf("%s: %d after %d of %d", u.Name, u.Done, layerDone[u.Digest], u.Total))
				}
				if want := names[u.Digest]; want != "" && u.Name != want || want == "" && u.Name != u.Digest.Hex[:12] {
					layerErrs = append(layerErrs, fmt.Sprintf("layer %s reported as %q", u.Digest, u.Name))
				}
				layerDone[u.Digest] = u.Done
			}

			pub, err := Publish(ctx, repo, art, opts)
			if err != nil {
				t.Fatalf("Publish: %v", err)
			}
			if want := repo + ":main-1@" + digest.String(); pub.Ref != want {
				t.Errorf("Ref = %q, want %q", pub.Ref, want)
			}
			if pub.AlreadyPresent {
				t.Error("first push reported AlreadyPresent")
			}
			if pub.Digest != digest || pub.Repository != repo || strings.Join(pub.Tags, ",") != "main-1,latest" {
				t.Errorf("Published = %+v", pub)
			}
			if got := srv.Uploads.Bytes(); got == 0 || pub.BytesUploaded != got {
				t.Errorf("BytesUploaded = %d, server received %d", pub.BytesUploaded, got)
			}
			if want := blobCount(t, art); pub.BlobsUploaded != want || pub.BlobsSkipped != 0 {
				t.Errorf("BlobsUploaded/Skipped = %d/%d, want %d/0", pub.BlobsUploaded, pub.BlobsSkipped, want)
			}
			if progressed == 0 {
				t.Error("Progress was never called")
			}
			if len(layerErrs) > 0 {
				t.Errorf("layer progress: %s", strings.Join(layerErrs, "; "))
			}
			for _, h := range layers {
				if d, ok := layerDone[h]; !ok || d != layerSize(t, art, h) {
					t.Errorf("layer %s: %d bytes reported (seen %v), want all %d", h, d, ok, layerSize(t, art, h))
				}
			}
			if len(layerDone) != len(layers) {
				t.Errorf("%d layers reported, the artifact has %d", len(layerDone), len(layers))
			}
			clear(layerDone)
			validatePulled(t, pub.Ref, art)
			validatePulled(t, repo+":latest", art)
			if err := Verify(ctx, pub.Ref, opts); err != nil {
				t.Errorf("Verify: %v", err)
			}
			labels, h, err := FetchLabels(ctx, repo+":latest", opts)
			if err != nil {
				t.Fatalf("FetchLabels: %v", err)
			}
			if h != digest || labels[LabelRevision] != "rev-"+tt.name {
				t.Errorf("FetchLabels = %v, %s; want revision rev-%s, %s", labels, h, tt.name, digest)
			}

			// Second push of the same artifact: nothing goes over the wire.
			srv.Uploads.Reset()
			again, err := Publish(ctx, repo, art, opts)
			if err != nil {
				t.Fatalf("second Publish: %v", err)
			}
			if !again.AlreadyPresent || again.BytesUploaded != 0 || again.BlobsUploaded != 0 {
				t.Errorf("second Publish = %+v, want AlreadyPresent with 0 bytes", again)
			}
			if got := srv.Uploads.Bytes(); got != 0 {
				t.Errorf("second push sent %d blob bytes to the server", got)
			}
			if len(layerDone) != 0 {
				t.Errorf("second push reported uploads of %d layers, want none", len(layerDone))
			}
			// Nor a manifest, for the first tag or the extra one.
			if got := srv.Uploads.ManifestPuts(); got != 0 {
				t.Errorf("second push wrote %d manifests", got)
			}
		})
	}
}

func TestPublishSharedLayersUploadsOnlyNewLayer(t *testing.T) {
	ctx := context.Background()
	srv := regserver.InProcess(t, regserver.InProcessOptions{})
	repo := srv.Host + "/acme/notes"
	base := testImage(t, 3, "one")
	if _, err := Publish(ctx, repo, Artifact{Image: base}, testOptions("one")); err != nil {
		t.Fatal(err)
	}
	extra, err := random.Layer(4096, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	next, err := mutate.AppendLayers(base, extra)
	if err != nil {
		t.Fatal(err)
	}
	srv.Uploads.Reset()
	pub, err := Publish(ctx, repo, Artifact{Image: next}, testOptions("two"))
	if err != nil {
		t.Fatal(err)
	}
	layerSize, _ := extra.Size()
	m, _ := next.Manifest()
	want := layerSize + m.Config.Size // the new layer and the new config
	if got := srv.Uploads.Bytes(); got != want {
		t.Errorf("server received %d blob bytes, want %d (layer %d + config %d)", got, want, layerSize, m.Config.Size)
	}
	if pub.BytesUploaded != want || pub.BlobsUploaded != 2 || pub.BlobsSkipped != 3 {
		t.Errorf("Published = %+v, want %d bytes, 2 uploaded, 3 skipped", pub, want)
	}
}

func TestVerifyDetectsMissingBlob(t *testing.T) {
	ctx := context.Background()
	srv := regserver.InProcess(t, regserver.InProcessOptions{})
	repo := srv.Host + "/acme/notes"
	img := testImage(t, 2, "x")
	pub, err := Publish(ctx, repo, Artifact{Image: img}, testOptions("v1"))
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	gone, _ := layers[1].Digest()
	srv.DeleteBlob(t, "acme/notes", gone)

	err = Verify(ctx, pub.Ref, testOptions())
	if err == nil || !strings.Contains(err.Error(), gone.String()) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Verify = %v, want an error naming missing blob %s", err, gone)
	}
	if err := Verify(ctx, repo+"@sha256:"+strings.Repeat("0", 64), testOptions()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Verify of unknown digest = %v, want ErrNotFound", err)
	}
	if _, _, err := FetchLabels(ctx, repo+":nope", testOptions()); !errors.Is(err, ErrNotFound) {
		t.Errorf("FetchLabels of unknown tag = %v, want ErrNotFound", err)
	}
}

func TestVerifyTagMustMatchDigest(t *testing.T) {
	ctx := context.Background()
	srv := regserver.InProcess(t, regserver.InProcessOptions{})
	repo := srv.Host + "/acme/notes"
	a, err := Publish(ctx, repo, Artifact{Image: testImage(t, 1, "a")}, testOptions("a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Publish(ctx, repo, Artifact{Image: testImage(t, 1, "b")}, testOptions("b"))
	if err != nil {
		t.Fatal(err)
	}
	err = Verify(ctx, repo+":a@"+b.Digest.String(), testOptions())
	if err == nil || !strings.Contains(err.Error(), "points at "+a.Digest.String()) {
		t.Fatalf("Verify with mismatched tag = %v", err)
	}
}

func TestPublishRejectsBadInput(t *testing.T) {
	img := testImage(t, 1, "x")
	tests := []struct {
		name, dest string
		art        Artifact
		tags       []string
		want       string
	}{
		{"no tags", "example.com/a/b", Artifact{Image: img}, nil, "at least one tag"},
		{"bad tag", "example.com/a/b", Artifact{Image: img}, []string{"-bad"}, `invalid tag "-bad"`},
		{"dest with tag", "example.com/a/b:v1", Artifact{Image: img}, []string{"v1"}, "without tag or digest"},
		{"dest with digest", "example.com/a/b@sha256:" + strings.Repeat("a", 64), Artifact{Image: img}, []string{"v1"}, "without tag or digest"},
		{"bad repo", "Example.com/A B", Artifact{Image: img}, []string{"v1"}, `"Example.com/A B" is not a valid repository`},
		{"empty artifact", "example.com/a/b", Artifact{}, []string{"v1"}, "neither an image nor an index"},
		{"empty layout path", "oci:", Artifact{Image: img}, []string{"v1"}, "needs a directory path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions(tt.tags...)
			_, err := Publish(context.Background(), tt.dest, tt.art, opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Publish = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func readLayoutIndex(t *testing.T, dir string) *v1.IndexManifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(b, &im); err != nil {
		t.Fatal(err)
	}
	return &im
}

func tagEntries(im *v1.IndexManifest) map[string][]v1.Hash {
	out := map[string][]v1.Hash{}
	for _, d := range im.Manifests {
		tag := d.Annotations[AnnotationRefName]
		out[tag] = append(out[tag], d.Digest)
	}
	return out
}

func TestPublishLayout(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		art  Artifact
	}{
		{"image", Artifact{Image: testImage(t, 2, "rev-1")}},
		{"index", Artifact{Index: testIndex(t, "rev-1")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out", "image")
			dest := LayoutPrefix + dir
			digest, _ := tt.art.Digest()
			opts := testOptions("main-1", "latest")

			pub, err := Publish(ctx, dest, tt.art, opts)
			if err != nil {
				t.Fatal(err)
			}
			if pub.AlreadyPresent || pub.BytesUploaded == 0 || pub.BlobsUploaded == 0 {
				t.Errorf("first layout publish = %+v", pub)
			}
			if want := dest + ":main-1@" + digest.String(); pub.Ref != want {
				t.Errorf("Ref = %q, want %q", pub.Ref, want)
			}
			again, err := Publish(ctx, dest, tt.art, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !again.AlreadyPresent || again.BytesUploaded != 0 || again.BlobsUploaded != 0 {
				t.Errorf("re-publish = %+v, want AlreadyPresent and nothing written", again)
			}
			entries := tagEntries(readLayoutIndex(t, dir))
			if len(entries) != 2 || len(entries["main-1"]) != 1 || len(entries["latest"]) != 1 || entries["latest"][0] != digest {
				t.Fatalf("index.json entries = %v, want one per tag", entries)
			}

			// Moving "latest" to another image replaces its entry.
			other := Artifact{Image: testImage(t, 1, "rev-2")}
			moved, err := Publish(ctx, dest, other, testOptions("latest"))
			if err != nil {
				t.Fatal(err)
			}
			entries = tagEntries(readLayoutIndex(t, dir))
			if len(entries["latest"]) != 1 || entries["latest"][0] != moved.Digest || entries["main-1"][0] != digest {
				t.Fatalf("after moving latest, entries = %v", entries)
			}

			idx, err := layout.ImageIndexFromPath(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Index(idx); err != nil {
				t.Fatalf("layout does not validate: %v", err)
			}
			for _, ref := range []string{pub.Ref, dest + ":main-1", dest + "@" + digest.String()} {
				if err := Verify(ctx, ref, opts); err != nil {
					t.Errorf("Verify(%s): %v", ref, err)
				}
			}
			labels, h, err := FetchLabels(ctx, dest+":main-1", opts)
			if err != nil || h != digest || labels[LabelRevision] != "rev-1" {
				t.Errorf("FetchLabels = %v, %s, %v", labels, h, err)
			}
			if _, _, err := FetchLabels(ctx, dest+":nope", opts); !errors.Is(err, ErrNotFound) {
				t.Errorf("FetchLabels(missing tag) = %v, want ErrNotFound", err)
			}
			if err := Verify(ctx, dest, opts); err == nil || !strings.Contains(err.Error(), "name one as") {
				t.Errorf("Verify of an ambiguous layout = %v", err)
			}
		})
	}
}

func TestVerifyLayoutDetectsMissingBlob(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	img := testImage(t, 2, "x")
	pub, err := Publish(ctx, LayoutPrefix+dir, Artifact{Image: img}, testOptions("v1"))
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	gone, _ := layers[0].Digest()
	if err := os.Remove(filepath.Join(dir, "blobs", gone.Algorithm, gone.Hex)); err != nil {
		t.Fatal(err)
	}
	err = Verify(ctx, pub.Ref, testOptions())
	if err == nil || !strings.Contains(err.Error(), gone.String()+" (") || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Verify = %v, want missing blob %s", err, gone)
	}
	// Re-publishing repairs the layout: only the lost blob is written again.
	again, err := Publish(ctx, LayoutPrefix+dir, Artifact{Image: img}, testOptions("v1"))
	if err != nil {
		t.Fatal(err)
	}
	size, _ := layers[0].Size()
	if again.AlreadyPresent || again.BlobsUploaded != 1 || again.BytesUploaded != size {
		t.Errorf("repairing publish = %+v, want 1 blob of %d bytes", again, size)
	}
	if err := Verify(ctx, pub.Ref, testOptions()); err != nil {
		t.Errorf("Verify after repair: %v", err)
	}
}

func TestParseLayoutTarget(t *testing.T) {
	h := "sha256:" + strings.Repeat("b", 64)
	tests := []struct {
		in, path, tag, digest string
		wantErr               bool
	}{
		{in: "out", path: "out"},
		{in: "./out/img:main-1", path: "./out/img", tag: "main-1"},
		{in: "out@" + h, path: "out", digest: h},
		{in: "out:v1@" + h, path: "out", tag: "v1", digest: h},
		{in: "out@sha256:zz", wantErr: true},
		{in: ":v1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseLayoutTarget(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			d := ""
			if got.digest != nil {
				d = got.digest.String()
			}
			if got.path != tt.path || got.tag != tt.tag || d != tt.digest {
				t.Errorf("got %+v (digest %s)", got, d)
			}
		})
	}
}

// artifactLayers lists the distinct layer digests of art's images.
func artifactLayers(t *testing.T, art Artifact) []v1.Hash {
	t.Helper()
	var imgs []v1.Image
	if art.Image != nil {
		imgs = append(imgs, art.Image)
	} else {
		im, err := art.Index.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range im.Manifests {
			img, err := art.Index.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			imgs = append(imgs, img)
		}
	}
	var out []v1.Hash
	seen := map[v1.Hash]bool{}
	for _, img := range imgs {
		ls, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			h, err := l.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if !seen[h] {
				seen[h] = true
				out = append(out, h)
			}
		}
	}
	return out
}

func layerSize(t *testing.T, art Artifact, h v1.Hash) int64 {
	t.Helper()
	var img v1.Image = art.Image
	if img == nil {
		im, err := art.Index.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range im.Manifests {
			i, err := art.Index.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := i.LayerByDigest(h); err == nil {
				img = i
				break
			}
		}
	}
	l, err := img.LayerByDigest(h)
	if err != nil {
		t.Fatal(err)
	}
	size, err := l.Size()
	if err != nil {
		t.Fatal(err)
	}
	return size
}

// TestLayerProgressKeepsCrossRepoMounts: watching the uploads does not hide
// a base's layers from go-containerregistry's cross-repository mount: a
// site image on a base pulled from another repository of the registry
// (CNCF Distribution) uploads only its own layer and config, and only its
// own layer is reported.
func TestLayerProgressKeepsCrossRepoMounts(t *testing.T) {
	ctx := context.Background()
	// Distribution keeps blobs per repository (the in-process registry
	// has one store for all, where every blob exists everywhere).
	srv := regserver.Distribution(t, regserver.DistributionOptions{})
	baseRef := srv.Host + "/library/base:1"
	if _, err := Publish(ctx, srv.Host+"/library/base", Artifact{Image: testImage(t, 3, "base")}, testOptions("1")); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(baseRef)
	if err != nil {
		t.Fatal(err)
	}
	base, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	site, err := random.Layer(4096, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, site)
	if err != nil {
		t.Fatal(err)
	}
	siteDigest, _ := site.Digest()
	reported := map[string]bool{}
	opts := testOptions("main-1")
	opts.LayerNames = map[v1.Hash]string{siteDigest: "pages"}
	opts.LayerProgress = func(u LayerUpload) { reported[u.Name] = true }
	srv.Uploads.Reset()
	if _, err := Publish(ctx, srv.Host+"/acme/notes", Artifact{Image: img}, opts); err != nil {
		t.Fatal(err)
	}
	size, _ := site.Size()
	m, _ := img.Manifest()
	if got, want := srv.Uploads.Bytes(), size+m.Config.Size; got != want {
		t.Errorf("the registry received %d blob bytes, want %d (the site layer and the config: the base's layers mounted)", got, want)
	}
	if len(reported) != 1 || !reported["pages"] {
		t.Errorf("layers reported: %v; want only the site layer", reported)
	}
}
