package registry

import (
	"strings"
	"testing"
)

const testDigest = "sha256:4a5b6c7d8e9f00112233445566778899aabbccddeeff00112233445566778899"

func TestParseRefKeepsSpelling(t *testing.T) {
	for _, c := range []struct {
		in                string
		repo, tag, digest string
		host              string
	}{
		{in: "docker.io/acme/notes:v1", repo: "docker.io/acme/notes", tag: "v1", host: "index.docker.io"},
		{in: "docker.io/nginx", repo: "docker.io/nginx", host: "index.docker.io"},
		{in: "nginx:1.27-alpine", repo: "nginx", tag: "1.27-alpine", host: "index.docker.io"},
		{in: "index.docker.io/library/nginx:1.27", repo: "index.docker.io/library/nginx", tag: "1.27", host: "index.docker.io"},
		{in: "ghcr.io/acme/notes:main-b9060af-1746598316-hugo0.145.0@" + testDigest, repo: "ghcr.io/acme/notes", tag: "main-b9060af-1746598316-hugo0.145.0", digest: testDigest, host: "ghcr.io"},
		{in: "ghcr.io/acme/notes@" + testDigest, repo: "ghcr.io/acme/notes", digest: testDigest, host: "ghcr.io"},
		{in: "127.0.0.1:5000/acme/notes", repo: "127.0.0.1:5000/acme/notes", host: "127.0.0.1:5000"},
		{in: "127.0.0.1:5000/acme/notes:v2@" + testDigest, repo: "127.0.0.1:5000/acme/notes", tag: "v2", digest: testDigest, host: "127.0.0.1:5000"},
		{in: "localhost:5000/notes:latest", repo: "localhost:5000/notes", tag: "latest", host: "localhost:5000"},
		{in: "notes.local/notes", repo: "notes.local/notes", host: "notes.local"},
	} {
		t.Run(c.in, func(t *testing.T) {
			r, err := ParseRef(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if r.Repository != c.repo || r.Tag != c.tag || r.Digest != c.digest {
				t.Errorf("ParseRef(%q) = {%q %q %q}, want {%q %q %q}", c.in, r.Repository, r.Tag, r.Digest, c.repo, c.tag, c.digest)
			}
			if r.String() != c.in {
				t.Errorf("String() = %q, want the input back", r.String())
			}
			if r.RegistryHost() != c.host {
				t.Errorf("RegistryHost() = %q, want %q", r.RegistryHost(), c.host)
			}
		})
	}
}

func TestParseRefRejects(t *testing.T) {
	for _, in := range []string{
		"", " ghcr.io/x", "ghcr.io/x:", "https://ghcr.io/x", "ghcr.io/X/notes", "ghcr.io/x@sha256:short",
		"ghcr.io/x:a:b", "ghcr.io/x:${TAG}", "ghcr.io/x@" + testDigest + "@" + testDigest,
	} {
		if r, err := ParseRef(in); err == nil {
			t.Errorf("ParseRef(%q) = %+v, want an error", in, r)
		} else if in != "" && !strings.Contains(err.Error(), in) {
			t.Errorf("ParseRef(%q): error %q does not name the input", in, err)
		}
	}
}

func TestParseRepository(t *testing.T) {
	r, err := ParseRepository("docker.io/acme/notes")
	if err != nil || r.String() != "docker.io/acme/notes" {
		t.Fatalf("ParseRepository = %q, %v", r.String(), err)
	}
	if got := r.WithTag("v1").WithDigest(testDigest).String(); got != "docker.io/acme/notes:v1@"+testDigest {
		t.Errorf("WithTag+WithDigest = %q", got)
	}
	if got := r.Context().Name(); got != "index.docker.io/acme/notes" {
		t.Errorf("Context().Name() = %q: the canonical form is for the registry", got)
	}
	for _, in := range []string{"ghcr.io/acme/notes:v1", "ghcr.io/acme/notes@" + testDigest} {
		if _, err := ParseRepository(in); err == nil {
			t.Errorf("ParseRepository(%q): want an error", in)
		}
	}
}

func TestSameRepository(t *testing.T) {
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"docker.io/library/nginx:1", "nginx:2", true},
		{"docker.io/acme/x", "index.docker.io/acme/x@" + testDigest, true},
		{"ghcr.io/acme/x", "ghcr.io/acme/y", false},
		{"127.0.0.1:5000/x", "localhost:5000/x", false},
	} {
		a, errA := ParseRef(c.a)
		b, errB := ParseRef(c.b)
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if got := SameRepository(a, b); got != c.same {
			t.Errorf("SameRepository(%q, %q) = %v, want %v", c.a, c.b, got, c.same)
		}
	}
}
