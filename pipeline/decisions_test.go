package pipeline

import (
	"testing"

	"github.com/notesctl/notesctl/manifests"
)

// Table tests of the small decisions a release and a rollback take from
// what the GitOps repository holds.

const (
	digestA = "sha256:4a5b6c7d8e9f00112233445566778899aabbccddeeff00112233445566778899"
	digestB = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
	tagA    = "main-b9060af-1746598316-hugo0.145.0"
)

func TestTagOf(t *testing.T) {
	for _, c := range []struct {
		field, value, want string
	}{
		{manifests.FieldImage, "ghcr.io/acme/notes:" + tagA, tagA},
		{manifests.FieldImage, "ghcr.io/acme/notes:" + tagA + "@" + digestA, tagA},
		{manifests.FieldImage, "127.0.0.1:5000/acme/notes:" + tagA + "@" + digestA, tagA},
		{manifests.FieldImage, "127.0.0.1:5000/acme/notes", ""},
		{manifests.FieldImage, "127.0.0.1:5000/acme/notes@" + digestA, ""},
		{manifests.FieldImage, "docker.io/nginx", ""},
		{manifests.FieldImage, "nginx:1.27", "1.27"},
		{manifests.FieldImage, "ghcr.io/acme/notes:${TAG}", ""},
		{manifests.FieldImage, "", ""},
		{manifests.FieldTag, tagA, tagA},
		{manifests.FieldName, "ghcr.io/acme/notes", ""},
		{manifests.FieldDigest, digestA, ""},
	} {
		if got := tagOf(manifests.Found{Field: c.field, Value: c.value}); got != c.want {
			t.Errorf("tagOf(%q %q) = %q, want %q", c.field, c.value, got, c.want)
		}
	}
}

func TestMatches(t *testing.T) {
	ref := "ghcr.io/acme/notes:" + tagA + "@" + digestA
	for _, c := range []struct {
		ref, to string
		want    bool
	}{
		{ref, ref, true},
		{ref, tagA, true},
		{ref, digestA, true},
		{ref, digestB, false},
		{ref, "b9060af", true},
		{ref, "b9060af0123456789", true}, // a longer commit prefix than the tag's
		{ref, "b9060a", false},           // too short to be a commit
		{ref, "c9060af", false},
		{ref, "main", false},
		{"ghcr.io/acme/notes:v2", "v2", true},
		{"ghcr.io/acme/notes", "notes", false},
		{"ghcr.io/acme/notes@" + digestA, digestA, true},
		{"not a reference", "b9060af", false},
	} {
		if got := matches(c.ref, c.to); got != c.want {
			t.Errorf("matches(%q, %q) = %v, want %v", c.ref, c.to, got, c.want)
		}
	}
}

func TestIsLocalPath(t *testing.T) {
	for _, c := range []struct {
		loc  string
		want bool
	}{
		{"gitops", true},
		{"./gitops", true},
		{"../gitops", true},
		{"/srv/gitops", true},
		{".notesctl/gitops", true},
		{"file:///srv/gitops", true},
		{"./a:b", true},
		{`C:\gitops`, true},
		{"https://github.com/acme/gitops.git", false},
		{"http://127.0.0.1:3000/acme/gitops.git", false},
		{"ssh://git@github.com/acme/gitops.git", false},
		{"git://example.org/gitops.git", false},
		{"git@github.com:acme/gitops.git", false},
		{"example.org:gitops.git", false},
	} {
		if got := IsLocalPath(c.loc); got != c.want {
			t.Errorf("IsLocalPath(%q) = %v, want %v", c.loc, got, c.want)
		}
	}
}
