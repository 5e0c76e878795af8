package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/notesctl/notesctl/internal/gitserver"
)

// TestReleaseSuperseded: a release of a commit older (by commit time) than
// the release deployed is pushed but not deployed, and says so as its own
// outcome in the text, the JSON and the Actions outputs, with exit 0.
func TestReleaseSuperseded(t *testing.T) {
	site := newSite(t)
	older := gitserver.Git(t, site, "rev-parse", "HEAD")
	newer := siteCommits(t, site, 1, 1)[0]
	mustSucceed(t, notesctl(t, site, nil, "", "release", "--local"))

	r := notesctl(t, site, nil, "", "release", "--local", "--revision", older)
	mustSucceed(t, r)
	if !regexp.MustCompile(`(?m)^gitops: superseded: .* already deploys \S+:main-` + newer[:7] + `-`).MatchString(r.stdout) {
		t.Errorf("text output does not say the release was superseded by %s:\n%s", newer[:7], r.stdout)
	}

	r = notesctl(t, site, nil, "", "release", "--local", "--revision", older, "--output", "json")
	mustSucceed(t, r)
	var res struct {
		Outcome string
		GitOps  struct{ Superseded string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != "superseded" || !strings.Contains(res.GitOps.Superseded, newer[:7]) {
		t.Errorf("JSON outcome %q, superseded by %q; want superseded by the release of %s", res.Outcome, res.GitOps.Superseded, newer[:7])
	}

	env, outFile, summaryFile := actionsEnv(t, false, true, map[string]string{"site": site})
	r = notesctl(t, site, env, "", "release", "--local", "--revision", older)
	mustSucceed(t, r)
	outputs := readFile(t, outFile)
	for _, want := range []string{`outcome<<\S+\nsuperseded\n`, `superseded-by<<\S+\n\S+:main-` + newer[:7] + `-`, `changed<<\S+\nfalse\n`} {
		if !regexp.MustCompile(want).MatchString(outputs) {
			t.Errorf("GITHUB_OUTPUT lacks %q:\n%s", want, outputs)
		}
	}
	if summary := readFile(t, summaryFile); !strings.Contains(summary, "superseded") {
		t.Errorf("step summary does not say superseded:\n%s", summary)
	}
}
