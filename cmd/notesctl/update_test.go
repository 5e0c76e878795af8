package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/notesctl/notesctl/internal/gitserver"
)

// TestUpdateGoesThroughPipeline: update --gitops commits with the release's
// message template (and --message over the same fields), keeping the
// image as written.
func TestUpdateGoesThroughPipeline(t *testing.T) {
	site := newSite(t)
	mustSucceed(t, notesctl(t, site, nil, "", "release", "--local"))
	gitops := filepath.Join(site, ".notesctl", "gitops")

	const ref = "docker.io/acme/notes:v2"
	r := notesctl(t, site, nil, "", "update", "--gitops", gitops, "--image", ref)
	mustSucceed(t, r)
	msg := gitserver.Git(t, gitops, "log", "-1", "--format=%B")
	want := "Deploy " + ref + "\n\nUpdate flux-system:notes to " + ref + "\n\nImage: " + ref
	if strings.TrimSpace(msg) != want {
		t.Errorf("update commit message:\n%s\nwant the release template's:\n%s", msg, want)
	}
	if head := gitserver.Git(t, gitops, "rev-parse", "HEAD"); strings.TrimSpace(r.stdout) != head {
		t.Errorf("update printed %q, HEAD is %s", r.stdout, head)
	}

	r = notesctl(t, site, nil, "", "update", "--gitops", gitops, "--image", "docker.io/acme/notes:v3",
		"--message", "notes {{.Tag}} for {{.Policy}} ({{len .Changes}} change)")
	mustSucceed(t, r)
	if msg := gitserver.Git(t, gitops, "log", "-1", "--format=%B"); strings.TrimSpace(msg) != "notes v3 for flux-system:notes (1 change)" {
		t.Errorf("--message commit message: %q", msg)
	}
}
