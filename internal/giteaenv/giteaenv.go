// Package giteaenv runs a real Gitea server and a real Gitea Actions runner
// (act_runner in host mode: job steps run as processes on this machine) for
// tests, on random 127.0.0.1 ports, with an admin user and its API token.
// It creates repositories, pushes to them, sets Actions secrets, publishes
// releases with assets and follows workflow runs, jobs and job logs through
// Gitea's API. The binaries come from tools/gitea/build.sh (FindTools).
package giteaenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Owner is the admin user that owns every repository the environment creates.
const Owner = "notesbot"

// RunnerLabel is the one label the runner offers: jobs with
// runs-on: ubuntu-latest run on the host.
const RunnerLabel = "ubuntu-latest:host"

// Options configures Start.
type Options struct {
	// RunnerEnv is added to the runner's environment, which host-mode job
	// steps inherit (PATH, HOME, GOPATH... pass through by default).
	RunnerEnv []string
	// Logf receives progress lines (default: t.Logf).
	Logf func(format string, args ...any)
	// NoRunner starts Gitea alone, for tests of its API that run no
	// workflow.
	NoRunner bool
}

// Env is a running Gitea + runner.
type Env struct {
	// URL is Gitea's root URL, http://127.0.0.1:PORT (no trailing slash).
	URL string
	// Token is the admin's API token (scope all). A secret: never log it.
	Token string
	// Password is the admin's password.
	Password string
	// Dir holds Gitea's data and the runner's state.
	Dir string

	tools  Tools
	gitea  *process
	runner *process
	client *http.Client
	logf   func(string, ...any)
}

// Start starts Gitea and a registered runner; both are stopped when the test
// ends, and their logs are printed if it failed.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	tools := RequireTools(t)
	e := &Env{tools: tools, Dir: t.TempDir(), client: &http.Client{Timeout: 30 * time.Second}, logf: opts.Logf}
	if e.logf == nil {
		e.logf = t.Logf
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*process{e.runner, e.gitea} {
				if p != nil {
					t.Logf("--- %s log (last 60 lines):\n%s", p.name, p.log.tail(60))
				}
			}
		}
		if err := e.Stop(); err != nil {
			t.Errorf("stopping gitea: %v", err)
		}
	})
	start := time.Now()
	if err := e.startGitea(); err != nil {
		t.Fatalf("gitea: %v", err)
	}
	e.logf("giteaenv: gitea %s ready in %s", e.URL, since(start))
	if opts.NoRunner {
		return e
	}
	start = time.Now()
	if err := e.startRunner(opts.RunnerEnv); err != nil {
		t.Fatalf("gitea runner: %v", err)
	}
	e.logf("giteaenv: runner (%s) ready in %s", RunnerLabel, since(start))
	return e
}

// Stop stops the runner, then Gitea. Safe to call more than once.
func (e *Env) Stop() error {
	var errs []error
	for _, p := range []*process{e.runner, e.gitea} {
		if p != nil {
			if err := p.stop(10 * time.Second); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// passEnv is the part of the test's environment the servers inherit.
func passEnv(keys ...string) []string {
	var env []string
	for _, k := range keys {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func (e *Env) giteaEnv() []string {
	env := passEnv("PATH", "TMPDIR", "LANG")
	return append(env, "HOME="+filepath.Join(e.Dir, "home"), "GITEA_WORK_DIR="+filepath.Join(e.Dir, "gitea"),
		"GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT=true")
}

func (e *Env) appIni(port int) string {
	d := filepath.Join(e.Dir, "gitea")
	runUser := "root"
	if u, err := user.Current(); err == nil {
		runUser = u.Username
	}
	return fmt.Sprintf(`APP_NAME = notesctl tests
RUN_MODE = prod
RUN_USER = %[3]s
WORK_PATH = %[1]s
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = %[2]d
ROOT_URL = http://127.0.0.1:%[2]d/
DOMAIN = 127.0.0.1
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
STATIC_ROOT_PATH = %[4]s
APP_DATA_PATH = %[1]s/data

[database]
DB_TYPE = sqlite3
PATH = %[1]s/data/gitea.db
SQLITE_JOURNAL_MODE = WAL

[repository]
ROOT = %[1]s/repos
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
SECRET_KEY = %[5]s
INTERNAL_TOKEN = %[6]s
PASSWORD_HASH_ALGO = pbkdf2_hi

[oauth2]
ENABLED = false

[service]
DISABLE_REGISTRATION = true
REQUIRE_SIGNIN_VIEW = false

[actions]
ENABLED = true
DEFAULT_ACTIONS_URL = self

[session]
PROVIDER = memory

[cache]
ADAPTER = memory

[queue]
TYPE = channel

[indexer]
REPO_INDEXER_ENABLED = false

[mailer]
ENABLED = false

[cron]
ENABLED = false

[cron.update_checker]
ENABLED = false

[log]
MODE = console
LEVEL = warn
ROOT_PATH = %[1]s/log
`, d, port, runUser, e.tools.Static, randomHex(16), randomHex(32))
}

// gitea runs one gitea CLI command to completion.
func (e *Env) giteaCmd(args ...string) (string, error) {
	cfg := filepath.Join(e.Dir, "gitea", "app.ini")
	all := append([]string{"--config", cfg, "--work-path", filepath.Join(e.Dir, "gitea")}, args...)
	cmd := exec.Command(e.tools.Gitea, all...)
	cmd.Env = e.giteaEnv()
	cmd.Dir = e.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("gitea %s: %v\n%s", args[0], err, out)
	}
	return string(out), nil
}

var tokenLine = regexp.MustCompile(`Access token was successfully created\.\.\. ([0-9a-f]{40})`)

func (e *Env) startGitea() error {
	for _, d := range []string{"gitea/data", "gitea/log", "gitea/repos", "home"} {
		if err := os.MkdirAll(filepath.Join(e.Dir, d), 0o755); err != nil {
			return err
		}
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(e.Dir, "gitea", "app.ini"), []byte(e.appIni(port)), 0o600); err != nil {
			return err
		}
		if attempt == 0 {
			if _, err := e.giteaCmd("migrate"); err != nil {
				return err
			}
			e.Password = "pw-" + randomHex(12)
			out, err := e.giteaCmd("admin", "user", "create", "--admin", "--username", Owner,
				"--password", e.Password, "--email", Owner+"@example.org", "--must-change-password=false",
				"--access-token", "--access-token-name", "tests", "--access-token-scopes", "all")
			if err != nil {
				return err
			}
			m := tokenLine.FindStringSubmatch(out)
			if m == nil {
				return fmt.Errorf("no access token in the output of gitea admin user create")
			}
			e.Token = m[1]
		}
		e.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
		p, err := startProcess("gitea", e.Dir, e.tools.Gitea,
			[]string{"--config", filepath.Join(e.Dir, "gitea", "app.ini"), "--work-path", filepath.Join(e.Dir, "gitea"), "web"}, e.giteaEnv())
		if err != nil {
			return err
		}
		e.gitea = p
		lastErr = e.waitReady(p, e.URL+"/api/v1/version", 60*time.Second)
		if lastErr == nil {
			return nil
		}
		if !strings.Contains(p.log.String(), "address already in use") {
			return lastErr
		}
		_ = p.stop(5 * time.Second)
	}
	return lastErr
}

// waitReady polls url until it answers 200, the process exits, or timeout.
func (e *Env) waitReady(p *process, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.exited() {
			return p.exitError()
		}
		resp, err := e.client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %s; last output:\n%s", url, timeout, p.log.tail(40))
}

func (e *Env) startRunner(extraEnv []string) error {
	var reg struct {
		Token string `json:"token"`
	}
	if err := e.API(http.MethodPost, "/admin/actions/runners/registration-token", nil, &reg); err != nil {
		return fmt.Errorf("registration token: %w", err)
	}
	dir := filepath.Join(e.Dir, "runner")
	if err := os.MkdirAll(filepath.Join(dir, "work"), 0o755); err != nil {
		return err
	}
	cfg := filepath.Join(dir, "config.yaml")
	// Short fetch and report intervals: a test waits for every job.
	config := fmt.Sprintf(`log:
  level: info
runner:
  file: %[1]s/.runner
  capacity: 1
  timeout: 30m
  shutdown_timeout: 3s
  fetch_timeout: 5s
  fetch_interval: 1s
  fetch_interval_max: 1s
  log_report_interval: 1s
  log_report_max_latency: 500ms
  state_report_interval: 1s
  labels: [%[2]q]
cache:
  enabled: false
container:
  require_docker: false
host:
  workdir_parent: %[1]s/work
`, dir, RunnerLabel)
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		return err
	}
	env := append(passEnv("PATH", "HOME", "TMPDIR", "LANG", "GOPATH", "GOMODCACHE", "GOCACHE", "GOPROXY",
		"GOFLAGS", "GOTOOLCHAIN", "GONOSUMDB", "GOSUMDB", "GOPRIVATE"), extraEnv...)
	register := exec.Command(e.tools.Runner, "register", "-c", cfg, "--no-interactive", "--instance", e.URL,
		"--token", reg.Token, "--name", "notesctl-tests", "--labels", RunnerLabel)
	register.Dir, register.Env = dir, env
	if out, err := register.CombinedOutput(); err != nil {
		return fmt.Errorf("act_runner register: %v\n%s", err, out)
	}
	p, err := startProcess("act_runner", dir, e.tools.Runner, []string{"daemon", "-c", cfg}, env)
	if err != nil {
		return err
	}
	e.runner = p
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.log.String(), "declare successfully") {
		if p.exited() {
			return p.exitError()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("act_runner did not declare itself in 30s:\n%s", p.log.tail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// RunnerLog returns the runner's output so far.
func (e *Env) RunnerLog() string {
	if e.runner == nil {
		return ""
	}
	return e.runner.log.String()
}

// API calls Gitea's REST API at /api/v1+path as the admin. body is sent as
// JSON (nil: no body); the answer is decoded into out (nil: discarded).
func (e *Env) API(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.URL+"/api/v1"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return e.do(req, out)
}

func (e *Env) do(req *http.Request, out any) error {
	req.Header.Set("Authorization", "token "+e.Token)
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(data))
	}
	if out == nil {
		return nil
	}
	if s, ok := out.(*string); ok {
		*s = string(data)
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// CreateRepo creates an empty public repository Owner/name (default branch main).
func (e *Env) CreateRepo(t testing.TB, name string) {
	t.Helper()
	body := map[string]any{"name": name, "default_branch": "main", "private": false, "auto_init": false}
	if err := e.API(http.MethodPost, "/user/repos", body, nil); err != nil {
		t.Fatalf("create repository %s: %v", name, err)
	}
}

// CloneURL is the repository's HTTP URL without credentials.
func (e *Env) CloneURL(repo string) string { return e.URL + "/" + Owner + "/" + repo + ".git" }

// AuthURL is the repository's HTTP URL with the admin's token in it: for git
// only, never for a log line.
func (e *Env) AuthURL(repo string) string {
	u, _ := url.Parse(e.CloneURL(repo))
	u.User = url.UserPassword(Owner, e.Token)
	return u.String()
}

// Push runs git push of refspecs from the work tree dir to Owner/repo.
func (e *Env) Push(t testing.TB, dir, repo string, refspecs ...string) {
	t.Helper()
	args := append([]string{"-C", dir, "-c", "credential.helper=", "push", "--quiet", e.AuthURL(repo)}, refspecs...)
	cmd := exec.Command("git", args...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git push to %s: %v\n%s", repo, err, strings.ReplaceAll(string(out), e.Token, "***"))
	}
}

// SetSecret creates or updates an Actions secret of Owner/repo.
func (e *Env) SetSecret(t testing.TB, repo, name, value string) {
	t.Helper()
	if err := e.API(http.MethodPut, "/repos/"+Owner+"/"+repo+"/actions/secrets/"+name, map[string]string{"data": value}, nil); err != nil {
		t.Fatalf("set secret %s: %v", name, err)
	}
}

// Release is a published release.
type Release struct {
	ID      int64  `json:"id"`
	TagName string `json:"tag_name"`
}

// CreateRelease tags target (a branch or commit) as tag and publishes a release of it.
func (e *Env) CreateRelease(t testing.TB, repo, tag, target string) Release {
	t.Helper()
	var r Release
	body := map[string]any{"tag_name": tag, "target_commitish": target, "name": tag}
	if err := e.API(http.MethodPost, "/repos/"+Owner+"/"+repo+"/releases", body, &r); err != nil {
		t.Fatalf("create release %s: %v", tag, err)
	}
	return r
}

// UploadAsset attaches a file to a release under name.
func (e *Env) UploadAsset(t testing.TB, repo string, releaseID int64, name string, data []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("attachment", name)
	if err == nil {
		_, err = fw.Write(data)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	u := fmt.Sprintf("%s/api/v1/repos/%s/%s/releases/%d/assets?name=%s", e.URL, Owner, repo, releaseID, url.QueryEscape(name))
	req, err := http.NewRequest(http.MethodPost, u, &buf)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if err := e.do(req, nil); err != nil {
		t.Fatalf("upload asset %s: %v", name, err)
	}
}

// Run is a workflow run.
type Run struct {
	ID         int64  `json:"id"`
	HeadSHA    string `json:"head_sha"`
	HeadBranch string `json:"head_branch"`
	Event      string `json:"event"`
	Status     string `json:"status"`     // queued, in_progress, completed, ...
	Conclusion string `json:"conclusion"` // success, failure, ... once completed
	Path       string `json:"path"`
}

// Job is a job of a run.
type Job struct {
	ID         int64  `json:"id"`
	RunID      int64  `json:"run_id"`
	Name       string `json:"name"`
	Status     string `json:"status"`
	Conclusion string `json:"conclusion"`
}

// Runs lists the workflow runs of Owner/repo, newest first.
func (e *Env) Runs(repo string) ([]Run, error) {
	var out struct {
		Runs []Run `json:"workflow_runs"`
	}
	err := e.API(http.MethodGet, "/repos/"+Owner+"/"+repo+"/actions/runs?limit=50", nil, &out)
	return out.Runs, err
}

// Jobs lists the jobs of a run.
func (e *Env) Jobs(repo string, runID int64) ([]Job, error) {
	var out struct {
		Jobs []Job `json:"jobs"`
	}
	err := e.API(http.MethodGet, fmt.Sprintf("/repos/%s/%s/actions/runs/%d/jobs", Owner, repo, runID), nil, &out)
	return out.Jobs, err
}

// JobLog returns the plain log of a job.
func (e *Env) JobLog(repo string, jobID int64) (string, error) {
	var s string
	err := e.API(http.MethodGet, fmt.Sprintf("/repos/%s/%s/actions/jobs/%d/logs", Owner, repo, jobID), nil, &s)
	return s, err
}

// Dispatch starts workflow file (e.g. release.yml) on ref by workflow_dispatch.
func (e *Env) Dispatch(t testing.TB, repo, workflow, ref string) {
	t.Helper()
	if err := e.API(http.MethodPost, fmt.Sprintf("/repos/%s/%s/actions/workflows/%s/dispatches", Owner, repo, workflow),
		map[string]any{"ref": ref}, nil); err != nil {
		t.Fatalf("dispatch %s: %v", workflow, err)
	}
}

// WaitRun waits for a run of repo newer than afterID (0: any) to complete,
// and returns it.
func (e *Env) WaitRun(ctx context.Context, repo string, afterID int64) (Run, error) {
	var last string
	for {
		runs, err := e.Runs(repo)
		if err != nil {
			last = err.Error()
		}
		for _, r := range runs {
			if r.ID <= afterID {
				continue
			}
			last = fmt.Sprintf("run %d: %s", r.ID, r.Status)
			if r.Status == "completed" {
				return r, nil
			}
		}
		select {
		case <-ctx.Done():
			return Run{}, fmt.Errorf("waiting for a run of %s after #%d: %w (last seen: %s); runner log:\n%s",
				repo, afterID, context.Cause(ctx), last, e.runner.log.tail(30))
		case <-time.After(250 * time.Millisecond):
		}
		if e.runner.exited() {
			return Run{}, e.runner.exitError()
		}
	}
}

// LastRunID returns the newest run's ID (0 when there is none).
func (e *Env) LastRunID(repo string) (int64, error) {
	runs, err := e.Runs(repo)
	var max int64
	for _, r := range runs {
		if r.ID > max {
			max = r.ID
		}
	}
	return max, err
}

// SetVariable creates an Actions variable of Owner/repo (vars.NAME in workflows).
func (e *Env) SetVariable(t testing.TB, repo, name, value string) {
	t.Helper()
	if err := e.API(http.MethodPost, "/repos/"+Owner+"/"+repo+"/actions/variables/"+name, map[string]string{"value": value}, nil); err != nil {
		t.Fatalf("set variable %s: %v", name, err)
	}
}
