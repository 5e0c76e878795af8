package testimage

import (
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func TestImagesAreValidAndDeterministic(t *testing.T) {
	for _, tc := range []struct {
		name  string
		image func(v1.Platform) (v1.Image, error)
		want  types.MediaType
	}{
		{"oci", Image, types.OCIManifestSchema1},
		{"docker", DockerImage, types.DockerManifestSchema2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var digests []v1.Hash
			for _, p := range Platforms {
				a, err := tc.image(p)
				if err != nil {
					t.Fatal(err)
				}
				b, err := tc.image(p)
				if err != nil {
					t.Fatal(err)
				}
				if err := validate.Image(a); err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				da, _ := a.Digest()
				db, _ := b.Digest()
				if da != db {
					t.Fatalf("%s: digests differ between calls: %s vs %s", p, da, db)
				}
				digests = append(digests, da)
				if mt, _ := a.MediaType(); mt != tc.want {
					t.Errorf("%s: media type %s, want %s", p, mt, tc.want)
				}
				cfg, err := a.ConfigFile()
				if err != nil {
					t.Fatal(err)
				}
				c := cfg.Config
				if c.User != User || c.WorkingDir != WorkingDir || !slices.Equal(c.Entrypoint, Entrypoint) ||
					!slices.Equal(c.Cmd, Cmd) || !slices.Equal(c.Env, Env) || c.Labels[LabelKey] != LabelValue {
					t.Errorf("%s: config %+v does not hold the documented values", p, c)
				}
				if _, ok := c.ExposedPorts[ExposedPort]; !ok {
					t.Errorf("%s: port %s not exposed", p, ExposedPort)
				}
				if cfg.OS != p.OS || cfg.Architecture != p.Architecture {
					t.Errorf("config platform %s/%s, want %s", cfg.OS, cfg.Architecture, p)
				}
			}
			if digests[0] == digests[1] {
				t.Errorf("platform images share digest %s", digests[0])
			}
		})
	}
}

func TestLayouts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		write     func(testing.TB) (string, v1.Hash)
		wantIndex bool
	}{
		{"single", SingleLayout, false},
		{"multi", MultiLayout, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, digest := tc.write(t)
			_, again := tc.write(t)
			if digest != again {
				t.Fatalf("digest changed between layouts: %s vs %s", digest, again)
			}
			idx, err := layout.ImageIndexFromPath(dir)
			if err != nil {
				t.Fatal(err)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			if len(im.Manifests) != 1 {
				t.Fatalf("index.json lists %d manifests, want 1", len(im.Manifests))
			}
			d := im.Manifests[0]
			if d.Digest != digest || d.Annotations["org.opencontainers.image.ref.name"] != RefName {
				t.Fatalf("descriptor %+v, want digest %s named %s", d, digest, RefName)
			}
			if d.MediaType.IsIndex() != tc.wantIndex {
				t.Fatalf("media type %s, want index=%v", d.MediaType, tc.wantIndex)
			}
			if !tc.wantIndex {
				img, err := idx.Image(digest)
				if err != nil {
					t.Fatal(err)
				}
				if err := validate.Image(img); err != nil {
					t.Fatal(err)
				}
				return
			}
			child, err := idx.ImageIndex(digest)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Index(child); err != nil {
				t.Fatal(err)
			}
			cm, err := child.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range cm.Manifests {
				got = append(got, m.Platform.String())
			}
			if !slices.Equal(got, []string{"linux/amd64", "linux/arm64"}) {
				t.Fatalf("platforms %v, want linux/amd64, linux/arm64", got)
			}
		})
	}
}

func TestWriteLayoutRejectsAmbiguousEntry(t *testing.T) {
	if _, err := WriteLayout(t.TempDir(), Entry{Name: "x"}); err == nil {
		t.Fatal("an entry with neither image nor index was accepted")
	}
}
