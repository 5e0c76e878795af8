package registry

import (
	"maps"
	"strings"
	"testing"
	"time"
)

func TestMetadataLabels(t *testing.T) {
	full := Metadata{
		Source:           "https://github.com/example/notes",
		Revision:         "b9060af2d8b1c6e5f7a3940e1d2c3b4a5f6e7d8c-dirty",
		Created:          time.Date(2025, 5, 7, 8, 11, 56, 0, time.FixedZone("CEST", 2*3600)),
		Version:          "main-b9060af-1746598316-hugo0.145.0",
		Title:            "Notes",
		Generator:        "hugo",
		GeneratorVersion: "0.145.0",
		BaseName:         "docker.io/nginxinc/nginx-unprivileged:1.27-alpine",
		BaseDigest:       "sha256:" + strings.Repeat("ab", 32),
	}
	for _, tc := range []struct {
		name string
		meta Metadata
		want map[string]string
	}{
		{"full", full, map[string]string{
			LabelSource:           "https://github.com/example/notes",
			LabelRevision:         full.Revision,
			LabelCreated:          "2025-05-07T06:11:56Z",
			LabelVersion:          full.Version,
			LabelTitle:            "Notes",
			LabelGenerator:        "hugo",
			LabelGeneratorVersion: "0.145.0",
			LabelBaseName:         full.BaseName,
			LabelBaseDigest:       full.BaseDigest,
		}},
		{"empty values left out", Metadata{Revision: "abc", Generator: "hugo"}, map[string]string{
			LabelRevision: "abc", LabelGenerator: "hugo",
		}},
		{"nothing", Metadata{}, map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.meta.Labels(); !maps.Equal(got, tc.want) {
				t.Errorf("Labels() = %v\nwant %v", got, tc.want)
			}
		})
	}
	t.Run("round trip", func(t *testing.T) {
		got, ok := MetadataFromLabels(full.Labels())
		want := full
		want.Created = full.Created.UTC()
		if !ok || got != want {
			t.Errorf("MetadataFromLabels = %+v, %v\nwant %+v", got, ok, want)
		}
	})
}

func TestMetadataFromLabelsNotOurs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		labels map[string]string
	}{
		{"nil", nil},
		{"someone else's image", map[string]string{LabelRevision: "abc", "maintainer": "x"}},
		{"no revision", map[string]string{LabelGenerator: "hugo"}},
		{"bad created", map[string]string{LabelGenerator: "hugo", LabelRevision: "abc", LabelCreated: "yesterday"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if m, ok := MetadataFromLabels(tc.labels); ok {
				t.Errorf("MetadataFromLabels(%v) = %+v, ok; want not ok", tc.labels, m)
			}
		})
	}
}

// TestSourceLabelHasNoCredentials: labels are public; the source URL
// loses its user info whatever form it has (the forms are
// redact.StripUserinfo's tests).
func TestSourceLabelHasNoCredentials(t *testing.T) {
	for in, want := range map[string]string{
		"https://x-access-token:ghs_abc@github.com/o/r.git": "https://github.com/o/r.git",
		"https://u:p%zz@host/o/r":                           "https://host/o/r",
		"git@github.com:o/r.git":                            "git@github.com:o/r.git",
	} {
		if got := (Metadata{Source: in}).Labels()[LabelSource]; got != want {
			t.Errorf("source label of %q = %q, want %q", in, got, want)
		}
	}
}

func TestPlatformsLabel(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
		err  bool
	}{
		{in: nil, want: ""},
		{in: []string{"linux/amd64"}, want: "linux/amd64"},
		{in: []string{"linux/arm64/v8", "linux/amd64", "linux/arm64/v8"}, want: "linux/arm64/v8,linux/amd64"},
		{in: []string{"amd64"}, err: true},
	} {
		got, err := PlatformsLabel(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("PlatformsLabel(%q) = %q, %v; want %q (error: %v)", c.in, got, err, c.want, c.err)
		}
	}
}
