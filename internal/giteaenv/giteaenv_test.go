package giteaenv

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestVersionKeyMatchesBuildScript(t *testing.T) {
	script, err := os.ReadFile("../../tools/gitea/build.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^VERSION_KEY=(\S+)$`).FindSubmatch(script)
	if m == nil || string(m[1]) != DefaultVersionKey {
		t.Fatalf("tools/gitea/build.sh VERSION_KEY = %q, giteaenv.DefaultVersionKey = %q", m, DefaultVersionKey)
	}
}

// gitRepo makes a work tree with files committed on main.
func gitRepo(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"}, {"add", "-A"},
		{"-c", "user.name=Test", "-c", "user.email=test@example.org", "-c", "commit.gpgsign=false", "commit", "-q", "-m", "init"},
	} {
		if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return dir
}

// TestWorkflowRunsWithSecretsAndReleases is the environment's own check: a
// pushed workflow runs on the host runner, a secret reaches it masked, and a
// release asset is served at the GitHub-shaped download URL.
func TestWorkflowRunsWithSecretsAndReleases(t *testing.T) {
	e := Start(t, Options{})
	const secret = "s3cret-Value-4711"
	e.CreateRepo(t, "hello")
	e.SetSecret(t, "hello", "GREETING_TOKEN", secret)
	dir := gitRepo(t, map[string]string{
		".gitea/workflows/hello.yml": `name: hello
on: [push]
jobs:
  hello:
    runs-on: ubuntu-latest
    steps:
      - run: echo "hello from $GITHUB_REPOSITORY at $GITHUB_SHA token=${{ secrets.GREETING_TOKEN }}"
`,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	e.Push(t, dir, "hello", "main")
	run, err := e.WaitRun(ctx, "hello", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("run %d: %s/%s in %s", run.ID, run.Status, run.Conclusion, since(start))
	jobs, err := e.Jobs("hello", run.ID)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("jobs: %v %+v", err, jobs)
	}
	log, err := e.JobLog("hello", jobs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if run.Conclusion != "success" {
		t.Fatalf("run concluded %q; log:\n%s", run.Conclusion, log)
	}
	if !strings.Contains(log, "hello from "+Owner+"/hello at "+run.HeadSHA+" token=***") {
		t.Errorf("job log lacks the masked greeting:\n%s", log)
	}
	if strings.Contains(log, secret) {
		t.Errorf("secret in the job log:\n%s", log)
	}

	rel := e.CreateRelease(t, "hello", "v1.0.0", "main")
	e.UploadAsset(t, "hello", rel.ID, "asset.txt", []byte("asset bytes\n"))
	resp, err := http.Get(e.URL + "/" + Owner + "/hello/releases/download/v1.0.0/asset.txt")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "asset bytes\n" {
		t.Errorf("download: %s %q", resp.Status, body)
	}
	resp, err = http.Get(e.URL + "/" + Owner + "/hello/releases/download/v9.9.9/asset.txt")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("download from a missing release: %s, want 404", resp.Status)
	}
}
