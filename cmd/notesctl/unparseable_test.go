package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notesctl/notesctl/internal/gitserver"
)

// TestSkipUnparseable: a GitOps file with marker text that does not parse
// fails a release before it renders, naming the file; --skip-unparseable,
// NOTESCTL_SKIP_UNPARSEABLE or skip-unparseable in .notesctl.yaml lets the
// other files be updated and says which were skipped.
func TestSkipUnparseable(t *testing.T) {
	t.Parallel()
	site := newSite(t)
	mustSucceed(t, notesctl(t, site, nil, "", "release", "--local"))
	gitops := filepath.Join(site, localGitOps)
	const bad = "chart/templates/deployment.yaml"
	if err := os.MkdirAll(filepath.Join(gitops, filepath.Dir(bad)), 0o755); err != nil {
		t.Fatal(err)
	}
	tmpl := "metadata:\n  name: {{ .Release.Name }}\nimage: notes.local/notes:old # {\"$imagepolicy\": \"flux-system:notes\"}\n"
	if err := os.WriteFile(filepath.Join(gitops, bad), []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	gitserver.Git(t, gitops, "add", bad)
	gitserver.Git(t, gitops, "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "-m", "add a chart")
	tip := gitOut(t, gitops, "rev-parse", "HEAD")

	editPage(t, site, 1)
	r := notesctl(t, site, nil, "", "release", "--local")
	if r.code == 0 || !strings.Contains(r.stderr, bad+":2:9") || !strings.Contains(r.stderr, "--skip-unparseable") {
		t.Fatalf("exit %d, want an error naming %s and --skip-unparseable", r.code, bad)
	}
	if strings.Contains(r.stderr, "render") {
		t.Errorf("the release rendered before it found the unparseable file")
	}
	if got := gitOut(t, gitops, "rev-parse", "HEAD"); got != tip {
		t.Errorf("the GitOps branch moved to %s", got)
	}
	// update refuses it too.
	r = notesctl(t, site, nil, "", "update", "--dir", gitops, "--image", "notes.local/notes:main-0000000-1746598316-hugo0.145.0", "--dry-run")
	if r.code == 0 || !strings.Contains(r.stderr, bad) {
		t.Errorf("update: exit %d, want an error naming %s", r.code, bad)
	}

	for i, opt := range []struct {
		args []string
		env  []string
		conf string
	}{
		{args: []string{"--skip-unparseable"}},
		{env: []string{"NOTESCTL_SKIP_UNPARSEABLE=true"}},
		{conf: "skip-unparseable: true\n"},
	} {
		if opt.conf != "" {
			if err := os.WriteFile(filepath.Join(site, ".notesctl.yaml"), []byte(opt.conf), 0o644); err != nil {
				t.Fatal(err)
			}
			gitserver.Git(t, site, "add", ".notesctl.yaml")
		}
		editPage(t, site, 2+i)
		r := notesctl(t, site, opt.env, "", append([]string{"release", "--local"}, opt.args...)...)
		mustSucceed(t, r)
		if !strings.Contains(r.stderr, "skipped "+bad) {
			t.Errorf("%v: the skipped file is not named", opt)
		}
		if got := gitOut(t, gitops, "show", "HEAD:"+bad); got != strings.TrimSuffix(tmpl, "\n") {
			t.Errorf("%v: the skipped file changed:\n%s", opt, got)
		}
		if gitOut(t, gitops, "rev-parse", "HEAD") == tip {
			t.Errorf("%v: nothing was committed", opt)
		}
		tip = gitOut(t, gitops, "rev-parse", "HEAD")
	}
}
