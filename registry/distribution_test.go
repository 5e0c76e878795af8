package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/notesctl/notesctl/internal/regserver"
)

// TestPublishDistribution pushes to the real CNCF Distribution registry
// with htpasswd authentication and TLS from a self-signed CA.
func TestPublishDistribution(t *testing.T) {
	const user, pass = "notes", "s3cr3t-Pa55word"
	ds := regserver.Distribution(t, regserver.DistributionOptions{User: user, Password: pass, TLS: true})
	ctx := context.Background()
	repo := ds.Host + "/acme/notes"
	opts := func(tags ...string) PublishOptions {
		o := testOptions(tags...)
		o.Keychain = Keychain(KeychainOptions{Username: user, Password: pass, NoDefault: true})
		o.CAFile = ds.CAFile
		return o
	}
	pull := []remote.Option{
		remote.WithAuth(&authn.Basic{Username: user, Password: pass}),
		remote.WithTransport(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: ds.CAPool, MinVersion: tls.VersionTLS12}}),
	}

	t.Run("image with CA file", func(t *testing.T) {
		art := Artifact{Image: testImage(t, 3, "dist")}
		ds.Uploads.Reset()
		pub, err := Publish(ctx, repo, art, opts("main-1", "latest"))
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if got := ds.Uploads.Bytes(); got == 0 || pub.BytesUploaded != got || pub.BlobsUploaded != 4 {
			t.Errorf("Published = %+v; server received %d bytes", pub, got)
		}
		validatePulled(t, pub.Ref, art, pull...)
		validatePulled(t, repo+":latest", art, pull...)
		if err := Verify(ctx, pub.Ref, opts()); err != nil {
			t.Errorf("Verify: %v", err)
		}
		labels, _, err := FetchLabels(ctx, repo+":main-1", opts())
		if err != nil || labels[LabelRevision] != "dist" {
			t.Errorf("FetchLabels = %v, %v", labels, err)
		}

		ds.Uploads.Reset()
		again, err := Publish(ctx, repo, art, opts("main-1", "latest"))
		if err != nil {
			t.Fatal(err)
		}
		if !again.AlreadyPresent || again.BytesUploaded != 0 || ds.Uploads.Bytes() != 0 {
			t.Errorf("second push = %+v, server received %d bytes; want nothing", again, ds.Uploads.Bytes())
		}
	})

	t.Run("index with root CA pool", func(t *testing.T) {
		art := Artifact{Index: testIndex(t, "dist-index")}
		o := opts("index-1")
		o.CAFile, o.RootCAs = "", ds.CAPool
		pub, err := Publish(ctx, repo, art, o)
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		validatePulled(t, pub.Ref, art, pull...)
		if err := Verify(ctx, pub.Ref, o); err != nil {
			t.Errorf("Verify: %v", err)
		}
	})

	t.Run("Distribution's own TLS endpoint", func(t *testing.T) {
		art := Artifact{Image: testImage(t, 1, "direct")}
		pub, err := Publish(ctx, ds.Backend+"/acme/direct", art, opts("v1"))
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if err := Verify(ctx, pub.Ref, opts()); err != nil {
			t.Errorf("Verify: %v", err)
		}
	})

	t.Run("untrusted certificate fails", func(t *testing.T) {
		o := opts("v1")
		o.CAFile = ""
		_, err := Publish(ctx, repo, Artifact{Image: testImage(t, 1, "x")}, o)
		var unknown x509.UnknownAuthorityError
		if err == nil || !errors.As(err, &unknown) || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
			t.Fatalf("Publish without the CA = %v, want a TLS verification error", err)
		}
	})

	t.Run("insecure skips verification", func(t *testing.T) {
		o := opts("insecure")
		o.CAFile, o.Insecure = "", true
		if _, err := Publish(ctx, repo, Artifact{Image: testImage(t, 1, "x")}, o); err != nil {
			t.Fatalf("Publish with Insecure: %v", err)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		const wrong = "not-the-Pa55word"
		o := opts("v1")
		o.Keychain = Keychain(KeychainOptions{Username: user, Password: wrong, NoDefault: true})
		_, err := Publish(ctx, repo, Artifact{Image: testImage(t, 1, "x")}, o)
		if err == nil || !strings.Contains(err.Error(), "authentication failed") {
			t.Fatalf("Publish with a wrong password = %v, want an authentication error", err)
		}
		if strings.Contains(err.Error(), wrong) {
			t.Fatalf("error leaks the password: %v", err)
		}
	})

	t.Run("missing blob fails Verify", func(t *testing.T) {
		img := testImage(t, 2, "gone")
		pub, err := Publish(ctx, repo, Artifact{Image: img}, opts("gone"))
		if err != nil {
			t.Fatal(err)
		}
		layers, _ := img.Layers()
		h, _ := layers[0].Digest()
		req, _ := http.NewRequest(http.MethodDelete, "https://"+ds.Host+"/v2/acme/notes/blobs/"+h.String(), nil)
		req.SetBasicAuth(user, pass)
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ds.CAPool, MinVersion: tls.VersionTLS12}}}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("DELETE blob: %s", resp.Status)
		}
		if err := Verify(ctx, pub.Ref, opts()); err == nil || !strings.Contains(err.Error(), h.String()) {
			t.Fatalf("Verify = %v, want missing blob %s", err, h)
		}
	})
}
