package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestRollbackAndStatus: two releases, a rollback to the first by site
// commit, and status agreeing with the GitOps repository and the image.
func TestRollbackAndStatus(t *testing.T) {
	site := newSite(t)
	mustSucceed(t, notesctl(t, site, nil, "", "release", "--local"))
	first := gitOut(t, site, "rev-parse", "HEAD")
	editPage(t, site, 1)
	r := notesctl(t, site, nil, "", "release", "--local")
	mustSucceed(t, r)
	second := imageLine.FindStringSubmatch(r.stdout)[1]

	status := func() map[string]any {
		t.Helper()
		r := notesctl(t, site, nil, "", "status", "--local", "-o", "json")
		mustSucceed(t, r)
		var st map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := status()
	if got := st["gitops"].(map[string]any)["image"]; got != second {
		t.Fatalf("status image = %v, want %s", got, second)
	}

	// Roll back by site commit (7 hex digits).
	r = notesctl(t, site, nil, "", "rollback", "--local", "--to", first[:7])
	mustSucceed(t, r)
	gitops := filepath.Join(site, ".notesctl/gitops")
	msg := gitOut(t, gitops, "log", "-1", "--format=%B")
	if !strings.HasPrefix(msg, "Roll back flux-system:notes to main-"+first[:7]) || !strings.Contains(msg, "Rollback-From: "+second) {
		t.Errorf("rollback commit message:\n%s", msg)
	}
	st = status()
	img := st["gitops"].(map[string]any)["image"].(string)
	if !strings.Contains(img, ":main-"+first[:7]+"-") {
		t.Errorf("after rollback status shows %s", img)
	}
	if got := st["image"].(map[string]any)["siteCommit"]; got != first {
		t.Errorf("image label site commit = %v, want %s", got, first)
	}
	assertImageLineCommit(t, gitops, img)

	// By tag, back to the second release; and an unknown release fails
	// clearly without committing.
	secondTag := strings.SplitN(strings.SplitN(second, ":", 2)[1], "@", 2)[0]
	mustSucceed(t, notesctl(t, site, nil, "", "rollback", "--local", "--to", secondTag))
	before := gitOut(t, gitops, "rev-parse", "HEAD")
	r = notesctl(t, site, nil, "", "rollback", "--local", "--to", "deadbeef")
	if r.code == 0 || !strings.Contains(r.stderr, `no release "deadbeef"`) {
		t.Errorf("unknown release: exit %d, %s", r.code, r.stderr)
	}
	if after := gitOut(t, gitops, "rev-parse", "HEAD"); after != before {
		t.Error("a failed rollback committed")
	}
}
