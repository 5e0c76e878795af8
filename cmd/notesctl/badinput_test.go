package main

// Bad input: every directory under testdata/bad is one case of input a user
// can get wrong (a broken page, a bad flag, a GitOps repository without
// markers, wrong credentials...). Each case runs the notesctl binary on a
// fresh copy of the fixture site, with fresh servers where it needs them,
// and must fail cleanly: the expected exit code, an error that names the
// bad input, nothing pushed, nothing committed, and no secret in any output.
//
// A case directory holds case.yaml (see badCase) and optionally
//
//	site/    files added to or replacing files of the fixture site
//	gitops/  the files of the GitOps repository (default: badDeployment)
//
// Adding a directory adds a test.

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/internal/regserver"
	"github.com/notesctl/notesctl/internal/testenv"
	"github.com/notesctl/notesctl/internal/testimage"
)

// badCase is one testdata/bad/<name>/case.yaml. Strings in args, env,
// stdin, secrets and error may use the placeholders of (*badEnv).vars as
// ${NAME}; in error they stand for their regexp-quoted value.
type badCase struct {
	// Description says what the bad input is.
	Description string `yaml:"description"`
	// Args are the notesctl arguments.
	Args []string `yaml:"args"`
	// Env is added to the hermetic environment notesctl runs in.
	Env map[string]string `yaml:"env"`
	// Stdin is notesctl's standard input.
	Stdin string `yaml:"stdin"`
	// Exit is the expected exit code (non-zero).
	Exit int `yaml:"exit"`
	// Error is a regexp the error on stderr must match; it names the input.
	Error string `yaml:"error"`
	// Secrets must appear in no output (stdout, stderr, GITHUB_OUTPUT,
	// GITHUB_STEP_SUMMARY), apart from Actions' own ::add-mask:: commands.
	Secrets []string `yaml:"secrets"`
	// Registry is "", "inprocess" (a fresh go-containerregistry registry)
	// or "distribution" (the shared CNCF Distribution, htpasswd + TLS).
	Registry string `yaml:"registry"`
	// GitOps is "", "local" (a work tree on disk) or "http" (a bare
	// repository behind git http-backend with basic auth).
	GitOps string `yaml:"gitops"`
	// Actions runs notesctl as a GitHub Actions step would (runner
	// variables, GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files).
	Actions bool `yaml:"actions"`
	// Site changes the fixture beyond the files in site/.
	Site sitePatch `yaml:"site"`
}

type sitePatch struct {
	// Delete removes files (relative to the site).
	Delete []string `yaml:"delete"`
	// Symlinks maps link paths to their targets.
	Symlinks map[string]string `yaml:"symlinks"`
	// Sparse maps paths to sizes of sparse files (all zeros) made at run
	// time, so that no large file is committed to notesctl.
	Sparse map[string]int64 `yaml:"sparse"`
	// RawNames maps percent-encoded file names (e.g. caf%E9.md for a
	// Latin-1 byte) to contents: names that are not valid UTF-8 and cannot
	// be files in notesctl's own repository.
	RawNames map[string]string `yaml:"raw-names"`
	// Dirty leaves the changes uncommitted in the work tree.
	Dirty bool `yaml:"dirty"`
}

// badDeployment is the GitOps repository of cases without gitops/: one
// Deployment with the setter marker of the default policy.
const badDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: notes
  namespace: notes
spec:
  template:
    spec:
      containers:
        - name: notes
          image: registry.example.org/notes:main-0000000-1600000000-hugo0.145.0 # {"$imagepolicy": "flux-system:notes"}
`

// Credentials of the shared servers. Cases list them as secrets: they may
// be given to notesctl but must never be printed.
const (
	badRegUser   = "ci"
	badRegPass   = "Reg1stry-Pa55-bad-input"
	badGitUser   = "flux"
	badGitToken  = "G1t-T0ken-bad-input"
	badCaseFile  = "case.yaml"
	badCorpusDir = "../../testdata/bad"
)

// badShared are the servers and images cases share: starting a
// Distribution registry per case would take most of the time budget.
type badShared struct {
	dist    *regserver.DistributionServer
	distErr string
	git     *gitserver.HTTPBackend
	base    string
	multi   string
}

func (s *badShared) distribution(t *testing.T) *regserver.DistributionServer {
	t.Helper()
	if s.dist == nil {
		testenv.Missing(t, "no Distribution registry: %s", s.distErr)
	}
	return s.dist
}

func loadBadCases(t *testing.T) map[string]*badCase {
	t.Helper()
	entries, err := os.ReadDir(badCorpusDir)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]*badCase{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(badCorpusDir, e.Name(), badCaseFile))
		if err != nil {
			t.Fatalf("case %s: %v", e.Name(), err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		c := &badCase{}
		if err := dec.Decode(c); err != nil {
			t.Fatalf("case %s: %s: %v", e.Name(), badCaseFile, err)
		}
		switch {
		case c.Description == "" || len(c.Args) == 0 || c.Error == "":
			t.Fatalf("case %s: description, args and error are required", e.Name())
		case c.Exit == 0:
			t.Fatalf("case %s: exit must be the expected non-zero exit code", e.Name())
		case c.Registry != "" && c.Registry != "inprocess" && c.Registry != "distribution":
			t.Fatalf("case %s: registry %q: want inprocess or distribution", e.Name(), c.Registry)
		case c.GitOps != "" && c.GitOps != "local" && c.GitOps != "http":
			t.Fatalf("case %s: gitops %q: want local or http", e.Name(), c.GitOps)
		}
		cases[e.Name()] = c
	}
	return cases
}

func TestBadInput(t *testing.T) {
	gitserver.RequireGit(t)
	cases := loadBadCases(t)
	if len(cases) < 30 {
		t.Fatalf("testdata/bad holds %d cases, want at least 30", len(cases))
	}
	shared := &badShared{}
	shared.git = gitserver.StartHTTPBackend(t, badGitUser, badGitToken)
	for _, c := range cases {
		if c.Registry != "distribution" {
			continue
		}
		// One Distribution for every case that needs one, started here
		// (not in a parallel subtest) so that it stops with this test.
		if _, err := regserver.LookupDistribution(); err != nil && !testenv.ToolsRequired() {
			shared.distErr = err.Error()
		} else {
			shared.dist = regserver.Distribution(t, regserver.DistributionOptions{User: badRegUser, Password: badRegPass, TLS: true})
		}
		break
	}
	shared.base, _ = testimage.SingleLayout(t)
	shared.multi, _ = testimage.MultiLayout(t)

	names := make([]string, 0, len(cases))
	for name := range cases {
		names = append(names, name)
	}
	sort.Strings(names)
	var ran atomic.Int64
	start := time.Now()
	t.Cleanup(func() {
		t.Logf("bad input: %d of %d cases ran in %s", ran.Load(), len(names), time.Since(start).Round(time.Millisecond))
	})
	for _, name := range names {
		c := cases[name]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			runBadCase(t, shared, name, c)
			ran.Add(1)
		})
	}
}

// badEnv is one case's world: the site, the servers and what they held
// before notesctl ran.
type badEnv struct {
	name     string
	dir      string // the case directory
	site     string
	layout   string
	reg      *regserver.Server
	dist     *regserver.DistributionServer
	image    string // the repository the case may push to
	gitops   string // URL or path given to notesctl
	gitBare  string // bare repository behind gitops (http)
	gitTip   string
	vars     map[string]string
	outFile  string
	sumFile  string
	deadPort string
}

func runBadCase(t *testing.T, shared *badShared, name string, c *badCase) {
	e := &badEnv{name: name, dir: filepath.Join(badCorpusDir, name)}
	e.site = newSite(t)
	e.layout = filepath.Join(t.TempDir(), "layout")
	e.deadPort = deadPort(t)
	applySitePatch(t, e.dir, e.site, c.Site)

	repoPath := "bad/" + strings.ToLower(regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(name, "-"))
	e.vars = map[string]string{
		"SITE":         e.site,
		"LAYOUT":       e.layout,
		"BASE":         shared.base,
		"MULTIBASE":    shared.multi,
		"DEADPORT":     e.deadPort,
		"GIT_USER":     badGitUser,
		"GIT_TOKEN":    badGitToken,
		"REG_USER":     badRegUser,
		"REG_PASSWORD": badRegPass,
	}
	switch c.Registry {
	case "inprocess":
		e.reg = regserver.InProcess(t, regserver.InProcessOptions{})
		e.image = e.reg.Host + "/" + repoPath
		e.vars["REGISTRY"] = e.reg.Host
	case "distribution":
		e.dist = shared.distribution(t)
		e.image = e.dist.Host + "/" + repoPath
		e.vars["REGISTRY"] = e.dist.Host
		e.vars["CAFILE"] = e.dist.CAFile
	}
	if e.image != "" {
		e.vars["IMAGE"] = e.image
	}
	seed := filepath.Join(e.dir, "gitops")
	if _, err := os.Stat(seed); err != nil {
		seed = t.TempDir()
		if err := os.WriteFile(filepath.Join(seed, "deployment.yaml"), []byte(badDeployment), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	switch c.GitOps {
	case "local":
		bare := filepath.Join(t.TempDir(), "gitops.git")
		gitserver.SeedBareRepo(t, bare, "main", seed)
		e.gitops = filepath.Join(t.TempDir(), "gitops")
		gitserver.CloneWorktree(t, bare, e.gitops, "main")
		e.gitTip = gitOut(t, e.gitops, "rev-parse", "HEAD")
	case "http":
		repo := strings.ReplaceAll(repoPath, "/", "-") + ".git"
		e.gitBare = shared.git.RepoPath(repo)
		e.gitTip = gitserver.SeedBareRepo(t, e.gitBare, "main", seed)
		e.gitops = shared.git.RepoURL(repo)
	}
	if e.gitops != "" {
		e.vars["GITOPS"] = e.gitops
	}

	expand := func(s string) string { return expandBadVars(t, s, e.vars, false) }
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		args[i] = expand(a)
	}
	var env []string
	if c.Actions {
		env, e.outFile, e.sumFile = actionsEnv(t, false, true, nil)
	}
	keys := make([]string, 0, len(c.Env))
	for k := range c.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+expand(c.Env[k]))
	}
	want, err := regexp.Compile(expandBadVars(t, c.Error, e.vars, true))
	if err != nil {
		t.Fatalf("case error regexp: %v", err)
	}

	r := notesctl(t, e.site, env, expand(c.Stdin), args...)

	if r.code == 0 {
		t.Errorf("notesctl succeeded; want exit %d", c.Exit)
	} else if r.code != c.Exit {
		t.Errorf("exit %d, want %d", r.code, c.Exit)
	}
	if !want.MatchString(r.stderr) {
		t.Errorf("stderr does not match %s:\n%s", want, r.stderr)
	}
	if strings.Contains(r.all(), "panic:") || strings.Contains(r.all(), "goroutine ") {
		t.Errorf("notesctl panicked")
	}
	e.checkSecrets(t, c, r, expand)
	e.checkNothingPushed(t)
	e.checkNothingCommitted(t)
}

// expandBadVars replaces ${NAME} placeholders; an unknown name fails the
// test (a typo in a case must not pass as a literal). quote regexp-quotes
// the values, for the error pattern.
func expandBadVars(t *testing.T, s string, vars map[string]string, quote bool) string {
	t.Helper()
	return regexp.MustCompile(`\$\{([A-Z_]+)\}`).ReplaceAllStringFunc(s, func(m string) string {
		v, ok := vars[m[2:len(m)-1]]
		if !ok {
			t.Fatalf("case uses %s, which this case does not provide (registry/gitops not set?)", m)
		}
		if quote {
			return regexp.QuoteMeta(v)
		}
		return v
	})
}

// deadPort returns a loopback port that nothing listens on: one the kernel
// just handed out and that was closed again.
func deadPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	return port
}

// applySitePatch changes the fixture as the case says and commits the
// result with the git CLI, which takes any byte string as a path.
func applySitePatch(t *testing.T, caseDir, site string, p sitePatch) {
	t.Helper()
	over := filepath.Join(caseDir, "site")
	if _, err := os.Stat(over); err == nil {
		err := filepath.WalkDir(over, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(over, path)
			dst := filepath.Join(site, rel)
			if d.IsDir() {
				return os.MkdirAll(dst, 0o755)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(dst, data, 0o644)
		})
		if err != nil {
			t.Fatalf("site patch: %v", err)
		}
	}
	for _, rel := range p.Delete {
		if err := os.Remove(filepath.Join(site, rel)); err != nil {
			t.Fatalf("site patch: %v", err)
		}
	}
	for link, target := range p.Symlinks {
		if err := os.Symlink(target, filepath.Join(site, link)); err != nil {
			t.Fatalf("site patch: %v", err)
		}
	}
	for rel, size := range p.Sparse {
		f, err := os.Create(filepath.Join(site, rel))
		if err == nil {
			err = f.Truncate(size)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			t.Fatalf("site patch: sparse file %s: %v", rel, err)
		}
	}
	for enc, content := range p.RawNames {
		raw, err := url.PathUnescape(enc)
		if err != nil {
			t.Fatalf("site patch: raw name %q: %v", enc, err)
		}
		if err := os.WriteFile(filepath.Join(site, raw), []byte(content), 0o644); err != nil {
			t.Fatalf("site patch: %v", err)
		}
	}
	if p.Dirty {
		return
	}
	gitserver.Git(t, site, "add", "-A")
	when := "2025-05-07T07:11:56Z"
	env := []string{
		"GIT_AUTHOR_NAME=Notes Author", "GIT_AUTHOR_EMAIL=author@example.org", "GIT_AUTHOR_DATE=" + when,
		"GIT_COMMITTER_NAME=Notes Author", "GIT_COMMITTER_EMAIL=author@example.org", "GIT_COMMITTER_DATE=" + when,
	}
	if _, err := gitserver.GitE(site, env, "commit", "-q", "--allow-empty", "--no-gpg-sign", "-m", "bad input"); err != nil {
		t.Fatal(err)
	}
	if st := gitOut(t, site, "status", "--porcelain"); st != "" {
		t.Fatalf("site patch left the work tree dirty:\n%s", st)
	}
}

// checkSecrets looks for every secret of the case in every output.
func (e *badEnv) checkSecrets(t *testing.T, c *badCase, r result, expand func(string) string) {
	t.Helper()
	outputs := map[string]string{"stdout": r.stdout, "stderr": r.stderr}
	if e.outFile != "" {
		outputs["GITHUB_OUTPUT"] = readFile(t, e.outFile)
		outputs["GITHUB_STEP_SUMMARY"] = readFile(t, e.sumFile)
	}
	for _, s := range c.Secrets {
		secret := expand(s)
		if secret == "" {
			t.Fatalf("empty secret in case")
		}
		for where, text := range outputs {
			// Masking a secret is the one place the Actions log may hold it.
			text = strings.ReplaceAll(text, "::add-mask::"+secret, "")
			if strings.Contains(text, secret) {
				t.Errorf("secret %q appears in %s", secret, where)
			}
		}
	}
}

// checkNothingPushed checks the OCI layouts and the registry for manifests.
func (e *badEnv) checkNothingPushed(t *testing.T) {
	t.Helper()
	for _, dir := range []string{e.layout, filepath.Join(e.site, ".notesctl", "image")} {
		data, err := os.ReadFile(filepath.Join(dir, "index.json"))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var idx struct{ Manifests []json.RawMessage }
		if err := json.Unmarshal(data, &idx); err != nil {
			t.Fatalf("%s/index.json: %v", dir, err)
		}
		if len(idx.Manifests) > 0 {
			t.Errorf("OCI layout %s holds %d manifest(s) after a failed run: it published before it failed", dir, len(idx.Manifests))
		}
	}
	switch {
	case e.reg != nil:
		var cat struct{ Repositories []string }
		getJSON(t, http.DefaultClient, e.reg.URL+"/v2/_catalog", "", "", &cat)
		if len(cat.Repositories) > 0 {
			t.Errorf("registry holds %v after a failed run: it published before it failed", cat.Repositories)
		}
	case e.dist != nil:
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.dist.CAPool, MinVersion: tls.VersionTLS12}}}
		repo := strings.TrimPrefix(e.image, e.dist.Host+"/")
		var tags struct{ Tags []string }
		if getJSON(t, client, "https://"+e.dist.Host+"/v2/"+repo+"/tags/list", e.dist.User, e.dist.Password, &tags) && len(tags.Tags) > 0 {
			t.Errorf("registry holds %s:%v after a failed run: it published before it failed", repo, tags.Tags)
		}
	}
}

// getJSON GETs a registry API URL; a 404 (unknown repository) is reported
// as false.
func getJSON(t *testing.T, client *http.Client, u, user, pass string, v any) bool {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusNotFound {
		return false
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", u, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return true
}

// checkNothingCommitted compares the GitOps branch tip with the seed, and
// looks for release commits in the --local GitOps repository.
func (e *badEnv) checkNothingCommitted(t *testing.T) {
	t.Helper()
	switch {
	case e.gitBare != "":
		if tip := gitOut(t, e.gitBare, "rev-parse", "refs/heads/main"); tip != e.gitTip {
			t.Errorf("GitOps branch moved from %s to %s", e.gitTip, tip)
		}
	case e.gitops != "":
		if tip := gitOut(t, e.gitops, "rev-parse", "HEAD"); tip != e.gitTip {
			t.Errorf("GitOps branch moved from %s to %s", e.gitTip, tip)
		}
		if st := gitOut(t, e.gitops, "status", "--porcelain"); st != "" {
			t.Errorf("GitOps work tree changed:\n%s", st)
		}
	}
	// release --local scaffolds .notesctl/gitops (its own commit, with no
	// image) before it renders; a release commit must not follow.
	local := filepath.Join(e.site, ".notesctl", "gitops")
	if _, err := os.Stat(filepath.Join(local, ".git")); err == nil {
		if log := gitOut(t, local, "log", "--format=%B"); strings.Contains(log, "Source-Commit:") {
			t.Errorf("release --local committed an image update:\n%s", log)
		}
	}
}
