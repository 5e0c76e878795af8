package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/notesctl/notesctl/internal/testimage"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// checkGolden compares got with the golden file, or rewrites it with -update.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test -update if the change is intended)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

var testMeta = Metadata{
	Source:           "https://github.com/example/notes",
	Revision:         "b9060af2d8b1c6e5f7a3940e1d2c3b4a5f6e7d8c",
	Version:          "main-b9060af-1746598316-hugo0.145.0",
	Title:            "Notes",
	Generator:        "hugo",
	GeneratorVersion: "0.145.0",
}

func mustBuild(t *testing.T, site fstest.MapFS, opts BuildOptions) (Artifact, *BuildReport) {
	t.Helper()
	if opts.Created.IsZero() {
		opts.Created = testTime
	}
	if opts.Meta == (Metadata{}) {
		opts.Meta = testMeta
	}
	art, rep, err := Build(context.Background(), site, opts)
	if err != nil {
		t.Fatal(err)
	}
	if (art.Image == nil) == (art.Index == nil) {
		t.Fatalf("artifact %+v: want exactly one of image and index", art)
	}
	if art.Image != nil {
		if err := validate.Image(art.Image); err != nil {
			t.Fatalf("invalid image: %v", err)
		}
	} else if err := validate.Index(art.Index); err != nil {
		t.Fatalf("invalid index: %v", err)
	}
	d, err := art.Digest()
	if err != nil || d != rep.Digest {
		t.Fatalf("report digest %s, artifact digest %s (%v)", rep.Digest, d, err)
	}
	return art, rep
}

func rawJSON(t *testing.T, f func() ([]byte, error)) []byte {
	t.Helper()
	raw, err := f()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		t.Fatal(err)
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}

// TestBuildGolden pins the digest of a scratch build of a fixed site, so any
// drift in the layer encoding, config or manifest shows up. The manifest
// and config are golden too, to show what changed.
func TestBuildGolden(t *testing.T) {
	art, rep := mustBuild(t, testSite(), BuildOptions{Base: BaseScratch})
	checkGolden(t, "testdata/golden/scratch.digest", []byte(rep.Digest.String()+"\n"))
	checkGolden(t, "testdata/golden/scratch.manifest.json", rawJSON(t, art.Image.RawManifest))
	checkGolden(t, "testdata/golden/scratch.config.json", rawJSON(t, art.Image.RawConfigFile))
}

// TestBuildSameDigestFromDisk builds the same site from memory and from
// disk (shuffled write order, random modes and mtimes).
func TestBuildSameDigestFromDisk(t *testing.T) {
	_, want := mustBuild(t, testSite(), BuildOptions{Base: BaseScratch})
	dir := t.TempDir()
	writeShuffled(t, dir, testSite(), 7)
	art, rep, err := Build(context.Background(), os.DirFS(dir), BuildOptions{Base: BaseScratch, Created: testTime, Meta: testMeta})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Digest != want.Digest {
		t.Fatalf("digest from disk %s, from memory %s", rep.Digest, want.Digest)
	}
	if err := validate.Image(art.Image); err != nil {
		t.Fatal(err)
	}
}

func TestBuildScratch(t *testing.T) {
	for _, tc := range []struct {
		name      string
		platforms []string
		want      []string
	}{
		{"default platform", nil, []string{"linux/amd64"}},
		{"one platform", []string{"linux/arm64"}, []string{"linux/arm64"}},
		{"two platforms", []string{"linux/amd64", "linux/arm/v7", "linux/amd64"}, []string{"linux/amd64", "linux/arm/v7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			art, rep := mustBuild(t, testSite(), BuildOptions{Base: BaseScratch, Platforms: tc.platforms})
			if !slices.Equal(rep.Platforms, tc.want) {
				t.Fatalf("platforms %v, want %v", rep.Platforms, tc.want)
			}
			if rep.BaseName != "" || rep.BaseDigest != "" {
				t.Errorf("scratch base reported as %q %q", rep.BaseName, rep.BaseDigest)
			}
			for i, img := range artifactImages(t, art) {
				cfg, err := img.ConfigFile()
				if err != nil {
					t.Fatal(err)
				}
				if got := cfg.Platform().String(); got != tc.want[i] {
					t.Errorf("image %d config platform %s, want %s", i, got, tc.want[i])
				}
				// assets, day1's page bucket, pages (see testSite).
				if len(cfg.RootFS.DiffIDs) != 3 || len(cfg.History) != 3 {
					t.Errorf("image %d: %d layers, %d history entries; want only our 3", i, len(cfg.RootFS.DiffIDs), len(cfg.History))
				}
				if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
					t.Errorf("image %d media type %s", i, mt)
				}
			}
		})
	}
}

// artifactImages returns the image of art, or the images its index lists.
func artifactImages(t *testing.T, art Artifact) []v1.Image {
	t.Helper()
	if art.Image != nil {
		return []v1.Image{art.Image}
	}
	im, err := art.Index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Image
	for _, d := range im.Manifests {
		img, err := art.Index.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, img)
	}
	return out
}

// checkOnBase asserts img is the test base plus our two layers, with the
// base config kept and our labels, annotations and history added.
func checkOnBase(t *testing.T, img v1.Image, rep *BuildReport, wantPlatform string) {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	if c.User != testimage.User || c.WorkingDir != testimage.WorkingDir ||
		!slices.Equal(c.Entrypoint, testimage.Entrypoint) || !slices.Equal(c.Cmd, testimage.Cmd) ||
		!slices.Equal(c.Env, testimage.Env) || c.StopSignal != "SIGQUIT" {
		t.Errorf("%s: base config not kept: %+v", wantPlatform, c)
	}
	if _, ok := c.ExposedPorts[testimage.ExposedPort]; !ok {
		t.Errorf("%s: exposed port %s lost", wantPlatform, testimage.ExposedPort)
	}
	if got := cfg.Platform().String(); got != wantPlatform {
		t.Errorf("config platform %s, want %s", got, wantPlatform)
	}
	if !cfg.Created.Equal(testTime) {
		t.Errorf("%s: config created %s, want %s", wantPlatform, cfg.Created, testTime)
	}
	if c.Labels[testimage.LabelKey] != testimage.LabelValue {
		t.Errorf("%s: base label %s lost", wantPlatform, testimage.LabelKey)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		LabelRevision:   testMeta.Revision,
		LabelBaseDigest: rep.BaseDigest,
		LabelCreated:    "2025-05-07T06:11:56Z",
		LabelGenerator:  "hugo",
	} {
		if c.Labels[k] != v || m.Annotations[k] != v {
			t.Errorf("%s: %s label %q, annotation %q, want %q", wantPlatform, k, c.Labels[k], m.Annotations[k], v)
		}
	}
	// One base layer, then (the test base runs nginx) serving, assets,
	// day1's page bucket, then pages (the site's root).
	if rep.Serving != ServingNginx || len(rep.Layers) != 4 || rep.Layers[0].Name != LayerServing ||
		rep.Layers[2].Name != PageLayerName(pageBucket("day1/index.html", nil)) || rep.Layers[3].Name != LayerPages {
		t.Errorf("%s: serving %q, layers %+v; want serving, assets, a page bucket, pages", wantPlatform, rep.Serving, rep.Layers)
	}
	if len(m.Layers) != 5 || len(cfg.History) != 5 {
		t.Fatalf("%s: %d layers, %d history entries; want base + 4", wantPlatform, len(m.Layers), len(cfg.History))
	}
	for i, lr := range rep.Layers {
		if m.Layers[i+1].Digest != lr.Digest || cfg.RootFS.DiffIDs[i+1] != lr.DiffID {
			t.Errorf("%s: layer %d is %s, report says %s", wantPlatform, i+1, m.Layers[i+1].Digest, lr.Digest)
		}
		h := cfg.History[i+1]
		if !h.Created.Equal(testTime) || !strings.HasPrefix(h.CreatedBy, "notesctl: "+lr.Name+" layer") {
			t.Errorf("%s: history %+v", wantPlatform, h)
		}
	}
	if cfg.History[0].CreatedBy != "testimage: nginx-like root filesystem" {
		t.Errorf("%s: base history lost: %+v", wantPlatform, cfg.History[0])
	}
}

func TestBuildOnLayoutBase(t *testing.T) {
	single, singleDigest := testimage.SingleLayout(t)
	multi, multiDigest := testimage.MultiLayout(t)
	multiIdx, err := testimage.Index()
	if err != nil {
		t.Fatal(err)
	}
	mm, err := multiIdx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	arm64Digest := mm.Manifests[1].Digest

	for _, tc := range []struct {
		name       string
		base       string
		platforms  []string
		wantIndex  bool
		want       []string
		wantDigest v1.Hash
		wantName   string
	}{
		{"single", "oci:" + single, nil, false, []string{"linux/amd64"}, singleDigest, testimage.RefName},
		{"single by digest", "oci:" + single + "@" + singleDigest.String(), nil, false, []string{"linux/amd64"}, singleDigest, testimage.RefName},
		{"single by name", "oci:" + single + ":" + testimage.RefName, nil, false, []string{"linux/amd64"}, singleDigest, testimage.RefName},
		{"single by tag of its name", "oci:" + single + ":1.27", nil, false, []string{"linux/amd64"}, singleDigest, testimage.RefName},
		{"single with its platform", "oci:" + single, []string{"linux/amd64"}, false, []string{"linux/amd64"}, singleDigest, testimage.RefName},
		{"multi", "oci:" + multi, nil, true, []string{"linux/amd64", "linux/arm64"}, multiDigest, testimage.RefName},
		{"multi filtered", "oci:" + multi, []string{"linux/arm64"}, true, []string{"linux/arm64"}, multiDigest, testimage.RefName},
		{"multi filtered with v8 variant", "oci:" + multi, []string{"linux/arm64/v8"}, true, []string{"linux/arm64"}, multiDigest, testimage.RefName},
		{"multi both, reordered", "oci:" + multi, []string{"linux/arm64", "linux/amd64"}, true, []string{"linux/amd64", "linux/arm64"}, multiDigest, testimage.RefName},
		{"platform of a multi by digest", "oci:" + multi + "@" + arm64Digest.String(), nil, false, []string{"linux/arm64"}, arm64Digest, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			art, rep := mustBuild(t, testSite(), BuildOptions{Base: tc.base, Platforms: tc.platforms})
			if (art.Index != nil) != tc.wantIndex {
				t.Fatalf("index=%v, want %v", art.Index != nil, tc.wantIndex)
			}
			if rep.BaseDigest != tc.wantDigest.String() || rep.BaseName != tc.wantName {
				t.Errorf("base %q %q, want %q %q", rep.BaseName, rep.BaseDigest, tc.wantName, tc.wantDigest)
			}
			if !slices.Equal(rep.Platforms, tc.want) {
				t.Errorf("platforms %v, want %v", rep.Platforms, tc.want)
			}
			imgs := artifactImages(t, art)
			if len(imgs) != len(tc.want) {
				t.Fatalf("%d images, want %d", len(imgs), len(tc.want))
			}
			for i, img := range imgs {
				checkOnBase(t, img, rep, tc.want[i])
			}
			if art.Index == nil {
				return
			}
			im, err := art.Index.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			if im.MediaType != types.OCIImageIndex || im.Annotations[LabelVersion] != testMeta.Version {
				t.Errorf("index media type %s, annotations %v", im.MediaType, im.Annotations)
			}
			for i, d := range im.Manifests {
				if d.Platform == nil || d.Platform.String() != tc.want[i] {
					t.Errorf("index entry %d platform %v, want %s", i, d.Platform, tc.want[i])
				}
			}
		})
	}
}

// TestBuildLayerDigestsSharedAcrossPlatforms: the site layers are the same
// blobs on every platform, so they upload once.
func TestBuildLayerDigestsSharedAcrossPlatforms(t *testing.T) {
	multi, _ := testimage.MultiLayout(t)
	art, rep := mustBuild(t, testSite(), BuildOptions{Base: "oci:" + multi})
	for _, img := range artifactImages(t, art) {
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.Layers[1].Digest != rep.Layers[0].Digest || m.Layers[2].Digest != rep.Layers[1].Digest {
			t.Errorf("platform image layers %v differ from the report %v", m.Layers, rep.Layers)
		}
	}
}

func TestBuildDockerBase(t *testing.T) {
	img, err := testimage.DockerImage(testimage.Platforms[0])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := testimage.WriteLayout(dir, testimage.Entry{Image: img}); err != nil {
		t.Fatal(err)
	}
	art, rep := mustBuild(t, testSite(), BuildOptions{Base: "oci:" + dir})
	m, err := art.Image.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.DockerManifestSchema2 {
		t.Fatalf("manifest media type %s", m.MediaType)
	}
	for _, l := range m.Layers {
		if l.MediaType != types.DockerLayer {
			t.Errorf("layer %s has media type %s in a Docker manifest", l.Digest, l.MediaType)
		}
	}
	// The blobs are the same as on an OCI base; only the descriptors differ.
	if m.Layers[2].Digest != rep.Layers[1].Digest {
		t.Errorf("pages layer %s, report %s", m.Layers[2].Digest, rep.Layers[1].Digest)
	}
	checkOnBase(t, art.Image, rep, "linux/amd64")
}

// TestBuildDropsBaseAnnotations: the base manifest's annotations describe
// the base; the built manifest carries only ours, while base labels stay.
func TestBuildDropsBaseAnnotations(t *testing.T) {
	img, err := testimage.Image(testimage.Platforms[0])
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.Annotations(img, map[string]string{
		LabelVersion:                           "1.27.5",
		"org.opencontainers.image.description": "nginx",
	}).(v1.Image)
	dir := t.TempDir()
	if _, err := testimage.WriteLayout(dir, testimage.Entry{Image: img}); err != nil {
		t.Fatal(err)
	}
	art, rep := mustBuild(t, testSite(), BuildOptions{Base: "oci:" + dir})
	m, err := art.Image.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	want := testMeta
	want.Created = testTime
	want.BaseDigest = rep.BaseDigest
	want.WebRoot, want.LayerFormat = DefaultWebRoot, LayerFormat
	if !maps.Equal(m.Annotations, want.Labels()) {
		t.Errorf("annotations %v\nwant %v", m.Annotations, want.Labels())
	}
	checkOnBase(t, art.Image, rep, "linux/amd64")
}

func TestBuildBaseErrors(t *testing.T) {
	single, _ := testimage.SingleLayout(t)
	multi, _ := testimage.MultiLayout(t)
	img, err := testimage.Image(testimage.Platforms[1])
	if err != nil {
		t.Fatal(err)
	}
	two := t.TempDir()
	if _, err := testimage.WriteLayout(two, testimage.Entry{Name: "a", Image: img}, testimage.Entry{Name: "b", Image: img}); err != nil {
		t.Fatal(err)
	}
	nestedIdx, err := testimage.Index()
	if err != nil {
		t.Fatal(err)
	}
	nested := t.TempDir()
	outer := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: nestedIdx})
	if _, err := testimage.WriteLayout(nested, testimage.Entry{Index: outer}); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "nope")
	zero := "sha256:" + strings.Repeat("0", 64)

	for _, tc := range []struct {
		name      string
		base      string
		platforms []string
		want      []string
	}{
		{"unknown platform", "oci:" + multi, []string{"linux/s390x"}, []string{`"oci:` + multi + `"`, "no platform linux/s390x", "it has: linux/amd64, linux/arm64"}},
		{"unknown platform on single", "oci:" + single, []string{"linux/arm64"}, []string{"no platform linux/arm64", "it has: linux/amd64"}},
		{"two platforms on single", "oci:" + single, []string{"linux/amd64", "linux/arm64"}, []string{"no platform linux/arm64"}},
		{"wrong variant", "oci:" + multi, []string{"linux/amd64/v3"}, []string{"no platform linux/amd64/v3"}},
		{"bad platform", "oci:" + multi, []string{"linux"}, []string{`platform "linux"`}},
		{"missing layout", "oci:" + missing, nil, []string{`base image "oci:` + missing + `"`, "reading OCI image layout"}},
		{"unknown digest", "oci:" + single + "@" + zero, nil, []string{"no manifest with digest " + zero, "choices: sha256:"}},
		{"bad digest", "oci:" + single + "@sha256:xyz", nil, []string{"bad digest"}},
		{"unknown name", "oci:" + single + ":nope", nil, []string{`no manifest named "nope"`, "name " + testimage.RefName}},
		{"ambiguous layout", "oci:" + two, nil, []string{"holds 2 manifests", "name a", "name b"}},
		{"empty layout path", "oci:", nil, []string{"no layout path"}},
		{"nested index", "oci:" + nested, nil, []string{"nested index"}},
		{"malformed reference", "Not A/Ref::x", nil, []string{`base image "Not A/Ref::x"`, "not a valid image reference"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Build(context.Background(), testSite(), BuildOptions{Base: tc.base, Platforms: tc.platforms, Created: testTime})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	t.Run("layout by name picks among several", func(t *testing.T) {
		_, rep := mustBuild(t, testSite(), BuildOptions{Base: "oci:" + two + ":b"})
		if rep.BaseName != "b" {
			t.Errorf("base name %q, want b", rep.BaseName)
		}
	})
}

// startBaseRegistry starts an in-process registry on loopback and returns its host.
func startBaseRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestBuildOnRegistryBase(t *testing.T) {
	host := startBaseRegistry(t)
	idx, err := testimage.Index()
	if err != nil {
		t.Fatal(err)
	}
	// Registries' multi-platform images often carry attestation manifests
	// (platform unknown/unknown); they are not platforms to build on.
	att := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	att, err = mutate.AppendLayers(att, static.NewLayer([]byte(`{"_type":"https://in-toto.io/Statement/v0.1"}`), "application/vnd.in-toto+json"))
	if err != nil {
		t.Fatal(err)
	}
	withAtt := mutate.AppendManifests(idx, mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{
		Platform:    &v1.Platform{OS: "unknown", Architecture: "unknown"},
		Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest"},
	}})
	ref := host + "/library/nginx-test:1.27"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, withAtt); err != nil {
		t.Fatal(err)
	}
	single := host + "/library/nginx-single:1.27"
	img, err := testimage.Image(testimage.Platforms[0])
	if err != nil {
		t.Fatal(err)
	}
	rs, err := name.ParseReference(single)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(rs, img); err != nil {
		t.Fatal(err)
	}

	t.Run("index", func(t *testing.T) {
		art, rep := mustBuild(t, testSite(), BuildOptions{Base: ref})
		want, _ := withAtt.Digest()
		if rep.BaseName != ref || rep.BaseDigest != want.String() {
			t.Errorf("base %q %q, want %q %q", rep.BaseName, rep.BaseDigest, ref, want)
		}
		imgs := artifactImages(t, art)
		if !slices.Equal(rep.Platforms, []string{"linux/amd64", "linux/arm64"}) || len(imgs) != 2 {
			t.Fatalf("platforms %v, %d images", rep.Platforms, len(imgs))
		}
		for i, img := range imgs {
			checkOnBase(t, img, rep, rep.Platforms[i])
		}
	})
	t.Run("single", func(t *testing.T) {
		art, rep := mustBuild(t, testSite(), BuildOptions{Base: single})
		checkOnBase(t, art.Image, rep, "linux/amd64")
	})
	t.Run("same build, same digest", func(t *testing.T) {
		_, a := mustBuild(t, testSite(), BuildOptions{Base: ref})
		_, b := mustBuild(t, testSite(), BuildOptions{Base: ref})
		if a.Digest != b.Digest {
			t.Fatalf("digests %s and %s", a.Digest, b.Digest)
		}
	})
	for _, tc := range []struct {
		name string
		base string
		want string
	}{
		{"unknown repository", host + "/library/absent:1", `base image "` + host + `/library/absent:1"`},
		{"unreachable registry", "127.0.0.1:1/library/nginx:1", `base image "127.0.0.1:1/library/nginx:1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Build(context.Background(), testSite(), BuildOptions{Base: tc.base, Created: testTime})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %s", err, tc.want)
			}
		})
	}
	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, _, err := Build(ctx, testSite(), BuildOptions{Base: ref, Created: testTime})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
	})
}

func TestBuildMetadata(t *testing.T) {
	meta := testMeta
	meta.Source = "https://x-access-token:ghs_secret@github.com/example/notes.git"
	meta.BaseName = "docker.io/nginxinc/nginx-unprivileged:1.27-alpine"
	single, _ := testimage.SingleLayout(t)
	art, rep := mustBuild(t, testSite(), BuildOptions{Base: "oci:" + single, Meta: meta})
	cfg, err := art.Image.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	m, err := art.Image.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, labels := range []map[string]string{cfg.Config.Labels, m.Annotations} {
		got, ok := MetadataFromLabels(labels)
		if !ok {
			t.Fatalf("labels %v not read back as ours", labels)
		}
		want := meta
		want.Source = "https://github.com/example/notes.git"
		want.Created = testTime
		want.BaseDigest = rep.BaseDigest
		want.WebRoot, want.LayerFormat = DefaultWebRoot, LayerFormat
		if got != want {
			t.Errorf("read back %+v\nwant %+v", got, want)
		}
	}
	raw, _ := art.Image.RawConfigFile()
	rawM, _ := art.Image.RawManifest()
	if bytes.Contains(raw, []byte("ghs_secret")) || bytes.Contains(rawM, []byte("ghs_secret")) {
		t.Error("the token in the source URL reached the image")
	}
	if rep.BaseName != meta.BaseName {
		t.Errorf("report base name %q, want the caller's %q", rep.BaseName, meta.BaseName)
	}
}

func TestBuildRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		site fstest.MapFS
		opts BuildOptions
		want string
	}{
		{"bad web root", testSite(), BuildOptions{Base: BaseScratch, WebRoot: "www"}, `web root "www"`},
		{"bad path", fstest.MapFS{"../x.html": {}}, BuildOptions{Base: BaseScratch}, `site path ".."`},
		{"empty", fstest.MapFS{}, BuildOptions{Base: BaseScratch}, "site is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Build(context.Background(), tc.site, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %s", err, tc.want)
			}
		})
	}
}

func TestParseLayoutRef(t *testing.T) {
	existing := filepath.Join(t.TempDir(), "with:colon")
	if err := os.Mkdir(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	d := "sha256:" + strings.Repeat("a", 64)
	for _, tc := range []struct {
		ref                      string
		wantDir, wantDig, wantTg string
	}{
		{"oci:./base", "./base", "", ""},
		{"oci:/x/y:1.27", "/x/y", "", "1.27"},
		{"oci:/x/y@" + d, "/x/y", d, ""},
		{"oci:/x.y/z", "/x.y/z", "", ""},
		{"oci:" + existing, existing, "", ""},
		{"oci:" + existing + ":t", existing, "", "t"},
		{"oci:" + existing + ":nginx:1.27", existing, "", "nginx:1.27"},
		{"oci:/no/such/dir:nginx:1.27", "/no/such/dir:nginx", "", "1.27"},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			dir, dig, tag, err := parseLayoutRef(tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			if dir != tc.wantDir || dig != tc.wantDig || tag != tc.wantTg {
				t.Errorf("got %q %q %q, want %q %q %q", dir, dig, tag, tc.wantDir, tc.wantDig, tc.wantTg)
			}
		})
	}
	for _, bad := range []string{"oci:", "oci:/x:", "oci:/x@sha256:zz", "oci:@" + d} {
		if _, _, _, err := parseLayoutRef(bad); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("parseLayoutRef(%q) error %v, want one naming it", bad, err)
		}
	}
}
