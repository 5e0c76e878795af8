package registry

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notesctl/notesctl/internal/regserver"
)

// bearerRegistry puts token auth in front of a registry the way Docker
// Hub, ghcr.io and Distribution with a token server do: /v2/ answers 401
// with a Bearer challenge, /token hands out a token, every other request
// needs it. It counts pings, token requests and all requests, and delays
// each answer by rtt (a registry that is not on loopback).
type bearerRegistry struct {
	rtt                   time.Duration
	pings, tokens, total  atomic.Int64
	manifestGets, blobGet atomic.Int64
}

const benchToken = "t0ken-for-tests"

func (b *bearerRegistry) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.total.Add(1)
		if b.rtt > 0 {
			time.Sleep(b.rtt)
		}
		switch {
		case r.URL.Path == "/token":
			b.tokens.Add(1)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"token":%q}`, benchToken)
			return
		case r.URL.Path == "/v2/":
			b.pings.Add(1)
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/"):
			b.manifestGets.Add(1)
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/"):
			b.blobGet.Add(1)
		}
		if r.Header.Get("Authorization") != "Bearer "+benchToken {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, r.Host))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (b *bearerRegistry) reset() {
	for _, c := range []*atomic.Int64{&b.pings, &b.tokens, &b.total, &b.manifestGets, &b.blobGet} {
		c.Store(0)
	}
}

// TestVerifyOnePingOneToken: Verify and FetchLabels of a two-platform
// index authenticate once for all their requests, check blobs without
// downloading layers, and read a manifest by tag only once.
func TestVerifyOnePingOneToken(t *testing.T) {
	ctx := context.Background()
	reg := &bearerRegistry{}
	srv := regserver.InProcess(t, regserver.InProcessOptions{Wrap: reg.wrap})
	repo := srv.Host + "/acme/notes"
	pub, err := Publish(ctx, repo, Artifact{Index: testIndex(t, "auth")}, testOptions("v1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		call         func() error
		manifestGets int64 // manifests fetched
		blobGets     int64 // blobs downloaded
	}{
		// tag, then the index and both images by digest.
		{name: "Verify", call: func() error { return Verify(ctx, pub.Ref, testOptions()) }, manifestGets: 4},
		// tag (the index), one image, its config.
		{name: "FetchLabels", call: func() error { _, _, err := FetchLabels(ctx, repo+":v1", testOptions()); return err }, manifestGets: 2, blobGets: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg.reset()
			if err := tc.call(); err != nil {
				t.Fatal(err)
			}
			if reg.pings.Load() != 1 || reg.tokens.Load() != 1 {
				t.Errorf("%d pings and %d token requests, want 1 each", reg.pings.Load(), reg.tokens.Load())
			}
			if reg.manifestGets.Load() != tc.manifestGets || reg.blobGet.Load() != tc.blobGets {
				t.Errorf("%d manifest and %d blob downloads, want %d and %d", reg.manifestGets.Load(), reg.blobGet.Load(), tc.manifestGets, tc.blobGets)
			}
		})
	}
}

// BenchmarkVerify measures Verify (the pipeline's check before it commits
// to GitOps) and FetchLabels (the no-op decision's read) against the
// in-process registry behind token auth, with answers on loopback and
// delayed by 2 ms. Each call is a new session: ping, token, then the
// reads. req/op is the number of HTTP requests the registry saw per call.
func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	for _, rtt := range []time.Duration{0, 2 * time.Millisecond} {
		reg := &bearerRegistry{}
		srv := regserver.InProcess(b, regserver.InProcessOptions{Wrap: reg.wrap})
		arts := []struct {
			name string
			art  Artifact
		}{
			{"image-8-layers", Artifact{Image: testImage(b, 8, "bench")}},
			{"index-2-platforms", Artifact{Index: testIndex(b, "bench")}},
		}
		for _, a := range arts {
			repo := srv.Host + "/bench/" + a.name
			pub, err := Publish(ctx, repo, a.art, testOptions("v1"))
			if err != nil {
				b.Fatal(err)
			}
			for _, op := range []struct {
				name string
				call func() error
			}{
				{"Verify", func() error { return Verify(ctx, pub.Ref, testOptions()) }},
				{"FetchLabels", func() error { _, _, err := FetchLabels(ctx, repo+":v1", testOptions()); return err }},
			} {
				b.Run(fmt.Sprintf("%s/%s/rtt=%s", op.name, a.name, rtt), func(b *testing.B) {
					reg.rtt = rtt
					defer func() { reg.rtt = 0 }()
					reg.reset()
					b.ReportAllocs()
					for b.Loop() {
						if err := op.call(); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(reg.total.Load())/float64(b.N), "req/op")
				})
			}
		}
	}
}
