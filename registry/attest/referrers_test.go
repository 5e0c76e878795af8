package attest

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/notesctl/notesctl/internal/regserver"
	"github.com/notesctl/notesctl/registry"
)

// regTarget is a registry under test with what a test needs to reach it.
type regTarget struct {
	name      string
	repo      string
	opts      registry.PublishOptions
	pull      []remote.Option
	api       bool // the registry serves the referrers API
	schemeURL string
}

func registries(t *testing.T) []regTarget {
	t.Helper()
	const user, pass = "notes", "s3cr3t-Pa55word"
	withAPI := regserver.InProcess(t, regserver.InProcessOptions{Referrers: true})
	noAPI := regserver.InProcess(t, regserver.InProcessOptions{})
	ds := regserver.Distribution(t, regserver.DistributionOptions{User: user, Password: pass, TLS: true})
	dsOpts := registry.PublishOptions{
		Keychain: registry.Keychain(registry.KeychainOptions{Username: user, Password: pass, NoDefault: true}),
		CAFile:   ds.CAFile,
	}
	return []regTarget{
		{name: "ggcr with referrers API", repo: withAPI.Host + "/acme/notes", api: true, schemeURL: withAPI.URL},
		{name: "ggcr without referrers API", repo: noAPI.Host + "/acme/notes", schemeURL: noAPI.URL},
		{
			name: "Distribution htpasswd TLS", repo: ds.Host + "/acme/notes", opts: dsOpts,
			pull: []remote.Option{
				remote.WithAuth(&authn.Basic{Username: user, Password: pass}),
				remote.WithTransport(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: ds.CAPool, MinVersion: tls.VersionTLS12}}),
			},
			schemeURL: "https://" + ds.Host,
		},
	}
}

// pushSubject pushes a random image as the subject and returns its descriptor.
func pushSubject(t *testing.T, r regTarget) v1.Descriptor {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	ref, err := name.ParseReference(r.repo + ":subject")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, r.pull...); err != nil {
		t.Fatalf("push subject: %v", err)
	}
	d, err := partial.Descriptor(img)
	if err != nil {
		t.Fatal(err)
	}
	return *d
}

func TestAttachRegistries(t *testing.T) {
	ctx := context.Background()
	for _, r := range registries(t) {
		t.Run(r.name, func(t *testing.T) {
			subject := pushSubject(t, r)
			target, err := NewTarget(ctx, r.repo, r.opts)
			if err != nil {
				t.Fatal(err)
			}
			checkAttach(t, target, subject)

			// Which path was taken: the registry's API or the fallback tag.
			fallback, ferr := name.NewTag(r.repo + ":" + FallbackTag(subject.Digest))
			if ferr != nil {
				t.Fatal(ferr)
			}
			_, err = remote.Head(fallback, r.pull...)
			if r.api && err == nil {
				t.Errorf("registry with the referrers API got the fallback tag %s", fallback)
			}
			if !r.api {
				if err != nil {
					t.Fatalf("registry without the referrers API: fallback tag %s: %v", fallback, err)
				}
				idx, err := remote.Index(fallback, r.pull...)
				if err != nil {
					t.Fatal(err)
				}
				im, err := idx.IndexManifest()
				if err != nil {
					t.Fatal(err)
				}
				if len(im.Manifests) != 2 || im.MediaType != types.OCIImageIndex {
					t.Errorf("fallback index = %+v, want the 2 referrers", im)
				}
			}
		})
	}
}

func TestAttachLayout(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "image")
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{registry.AnnotationRefName: "main-1"})); err != nil {
		t.Fatal(err)
	}
	subject, err := partial.Descriptor(img)
	if err != nil {
		t.Fatal(err)
	}
	target, err := NewTarget(ctx, "oci:"+dir, registry.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkAttach(t, target, *subject)

	// index.json: the image's tag and the fallback tag, nothing else.
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	im, err := v1.ParseIndexManifest(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range im.Manifests {
		names = append(names, d.Annotations[registry.AnnotationRefName])
	}
	if want := "main-1," + FallbackTag(subject.Digest); strings.Join(names, ",") != want {
		t.Errorf("index.json names = %v, want %s", names, want)
	}
	// The layout stays valid for ggcr (every blob present, digests right).
	li, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := validateIndex(li); err != nil {
		t.Errorf("layout invalid after attaching: %v", err)
	}

	// A missing layout lists nothing; attaching creates it.
	none, err := List(ctx, layoutTarget{path: filepath.Join(t.TempDir(), "missing")}, subject.Digest)
	if err != nil || len(none) != 0 {
		t.Errorf("List of a missing layout = %v, %v", none, err)
	}
	fresh := layoutTarget{path: filepath.Join(t.TempDir(), "fresh")}
	if _, err := Attach(ctx, fresh, *subject, "application/x-test", []byte("x"), "text/plain", nil); err != nil {
		t.Fatalf("attach into a new layout: %v", err)
	}
}

// checkAttach attaches two artifacts (the second twice) and reads them back.
func checkAttach(t *testing.T, target Target, subject v1.Descriptor) {
	t.Helper()
	ctx := context.Background()
	a, err := Attach(ctx, target, subject, "application/spdx+json", []byte(`{"spdxVersion":"SPDX-2.3"}`), "application/spdx+json", map[string]string{"org.example": "1"})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	b, err := Attach(ctx, target, subject, "application/vnd.in-toto+json", []byte(`{"_type":"x"}`), "application/vnd.in-toto+json", nil)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	b2, err := Attach(ctx, target, subject, "application/vnd.in-toto+json", []byte(`{"_type":"x"}`), "application/vnd.in-toto+json", nil)
	if err != nil {
		t.Fatalf("Attach again: %v", err)
	}
	if b2.Digest != b.Digest {
		t.Errorf("attaching the same bytes again gave %s, then %s", b.Digest, b2.Digest)
	}
	got, err := List(ctx, target, subject.Digest)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	// Sorted by artifact type: application/spdx+json first.
	if len(got) != 2 || got[0].Digest != a.Digest || got[1].Digest != b.Digest {
		t.Fatalf("List = %+v, want [%s %s]", got, a.Digest, b.Digest)
	}
	if got[0].ArtifactType != "application/spdx+json" || got[0].Annotations["org.example"] != "1" || got[0].Size != a.Size {
		t.Errorf("listed descriptor = %+v, want %+v", got[0], a)
	}
	found, err := Find(ctx, target, subject.Digest, "application/spdx+json")
	if err != nil || len(found) != 1 {
		t.Fatalf("Find = %v, %v", found, err)
	}
	ref, err := Fetch(ctx, target, found[0], subject.Digest)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if string(ref.Blob) != `{"spdxVersion":"SPDX-2.3"}` || ref.Manifest.Subject.Digest != subject.Digest || ref.Manifest.ArtifactType != "application/spdx+json" {
		t.Errorf("Fetch = %+v", ref)
	}
	if ref.Manifest.Config.MediaType != types.OCIEmptyJSON {
		t.Errorf("config media type = %s", ref.Manifest.Config.MediaType)
	}
	other := subject.Digest
	other.Hex = strings.Repeat("0", 64)
	if _, err := Fetch(ctx, target, found[0], other); err == nil {
		t.Error("Fetch for another subject succeeded")
	}
	if empty, err := List(ctx, target, other); err != nil || len(empty) != 0 {
		t.Errorf("List of a subject without referrers = %v, %v", empty, err)
	}
}

func validateIndex(idx v1.ImageIndex) error {
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, d := range im.Manifests {
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return err
			}
			if err := validateIndex(child); err != nil {
				return err
			}
		default:
			img, err := idx.Image(d.Digest)
			if err != nil {
				return err
			}
			if _, err := img.RawConfigFile(); err != nil {
				return err
			}
			ls, err := img.Layers()
			if err != nil {
				return err
			}
			for _, l := range ls {
				rc, err := l.Compressed()
				if err != nil {
					return err
				}
				rc.Close()
			}
		}
	}
	return nil
}

func TestReferrerManifestDeterministic(t *testing.T) {
	subject := v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: digestOf([]byte("s")), Size: 10, Annotations: map[string]string{"ignored": "x"}}
	a1, d1, err := ReferrerManifest(subject, "application/x", []byte("blob"), "text/plain", map[string]string{"b": "2", "a": "1"})
	if err != nil {
		t.Fatal(err)
	}
	a2, d2, err := ReferrerManifest(subject, "application/x", []byte("blob"), "text/plain", map[string]string{"a": "1", "b": "2"})
	if err != nil {
		t.Fatal(err)
	}
	if string(a1) != string(a2) || d1.Digest != d2.Digest {
		t.Errorf("same inputs, different manifests:\n%s\n%s", a1, a2)
	}
	if strings.Contains(string(a1), "ignored") {
		t.Errorf("subject annotations copied into the manifest: %s", a1)
	}
	for _, tc := range []struct {
		name    string
		subject v1.Descriptor
		at, mt  string
	}{
		{"no artifact type", subject, "", "text/plain"},
		{"no media type", subject, "application/x", ""},
		{"no subject", v1.Descriptor{}, "application/x", "text/plain"},
	} {
		if _, _, err := ReferrerManifest(tc.subject, tc.at, []byte("b"), tc.mt, nil); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}
