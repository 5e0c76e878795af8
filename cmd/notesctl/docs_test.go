package main

// Every command a user reads, in README.md's code blocks and in each
// command's --help Example, is run here in an offline form, so that none
// can rot. The commands are extracted from the documents, not copied: a
// command added or changed there that has no executable form in
// docScenarios fails TestDocCommandsRun, and so does a form whose command
// is no longer documented.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/spf13/cobra"

	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/internal/regserver"
)

// docCommand is one command line of the documents: continuation lines
// joined, the comment dropped, white space collapsed.
type docCommand struct {
	line  string
	where string // README.md:LINE or "notesctl X --help"
}

// runsNotesctl matches a shell line that runs notesctl (after variables,
// or at the end of a pipe), including "go run ./cmd/notesctl".
var runsNotesctl = regexp.MustCompile(`(^|[\s|])(notesctl|go run \./cmd/notesctl)(\s|$)`)

// shellCommands returns the notesctl command lines of shell text; first is
// the line number of text's first line.
func shellCommands(text, where string, first int) []docCommand {
	var out []docCommand
	var cur []string
	start := 0
	for i, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(stripComment(l))
		if len(cur) == 0 {
			start = first + i
		}
		cont := strings.HasSuffix(l, `\`)
		l = strings.TrimSpace(strings.TrimSuffix(l, `\`))
		if l != "" {
			cur = append(cur, l)
		}
		if cont || len(cur) == 0 {
			continue
		}
		line := strings.Join(strings.Fields(strings.Join(cur, " ")), " ")
		cur = nil
		if runsNotesctl.MatchString(line) {
			w := where
			if first > 0 {
				w = fmt.Sprintf("%s:%d", where, start)
			}
			out = append(out, docCommand{line: line, where: w})
		}
	}
	return out
}

// stripComment drops a shell comment: a # at the start of the line or
// after white space, outside quotes.
func stripComment(l string) string {
	var quote rune
	for i, r := range l {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'':
			quote = r
		case r == '#' && (i == 0 || l[i-1] == ' ' || l[i-1] == '\t'):
			return l[:i]
		}
	}
	return l
}

// readmeCommands extracts the commands of README.md's fenced code blocks.
func readmeCommands(t *testing.T) []docCommand {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []docCommand
	var block []string
	in, start := false, 0
	for i, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			if in {
				out = append(out, shellCommands(strings.Join(block, "\n"), "README.md", start)...)
			}
			in, block, start = !in, nil, i+2
			continue
		}
		if in {
			block = append(block, l)
		}
	}
	return out
}

// exampleCommands extracts the commands of every Example in the command tree.
func exampleCommands(cmd *cobra.Command) []docCommand {
	out := shellCommands(cmd.Example, cmd.CommandPath()+" --help", 0)
	for _, c := range cmd.Commands() {
		out = append(out, exampleCommands(c)...)
	}
	return out
}

// docEnv is where a scenario runs its commands: the working directory,
// the environment, and the substitutions that turn a documented command
// into its offline form (a local registry for ghcr.io, a local git server
// for github.com, ...), applied in order.
type docEnv struct {
	dir   string
	env   []string
	subst []string // old, new, old, new, ...
}

var (
	envAssignment = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)
	varName       = regexp.MustCompile(`^\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)
)

// run runs a documented command line in its offline form.
func (e *docEnv) run(t *testing.T, line string) result {
	t.Helper()
	for i := 0; i+1 < len(e.subst); i += 2 {
		line = strings.ReplaceAll(line, e.subst[i], e.subst[i+1])
	}
	vars := map[string]string{}
	for _, kv := range e.env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	words := shellWords(t, line, vars)
	env := slices.Clone(e.env)
	stdin := ""
	if i := slices.Index(words, "|"); i >= 0 {
		if words[0] != "echo" {
			t.Fatalf("%q: only `echo ... | notesctl` pipes are understood", line)
		}
		stdin = strings.Join(words[1:i], " ") + "\n"
		words = words[i+1:]
	}
	for len(words) > 0 && envAssignment.MatchString(words[0]) {
		env = append(env, words[0])
		words = words[1:]
	}
	switch {
	case len(words) > 0 && words[0] == "notesctl":
		words = words[1:]
	case len(words) > 3 && strings.Join(words[:3], " ") == "go run ./cmd/notesctl":
		// The binary TestMain built from this package is what go run builds.
		words = words[3:]
	default:
		t.Fatalf("%q does not run notesctl", line)
	}
	return notesctl(t, e.dir, env, stdin, words...)
}

// shellWords splits a line as sh would for the forms the documents use:
// words, '...' and "..." quoting, $NAME expansion from vars outside single
// quotes. Command substitution is refused: a scenario substitutes it.
func shellWords(t *testing.T, line string, vars map[string]string) []string {
	t.Helper()
	if strings.Contains(line, "$(") || strings.Contains(line, "`") {
		t.Fatalf("%q: command substitution has no offline form; substitute it in the scenario", line)
	}
	var words []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote == '\'' && c != '\'':
			cur.WriteByte(c)
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '\'' || c == '"'):
			quote, inWord = c, true
		case c == '$':
			m := varName.FindStringSubmatch(line[i+1:])
			if m == nil {
				cur.WriteByte(c)
				break
			}
			v, ok := vars[m[1]]
			if !ok {
				t.Fatalf("%q uses $%s, which the scenario does not set", line, m[1])
			}
			cur.WriteString(v)
			i += len(m[0])
			inWord = true
		case quote == 0 && (c == ' ' || c == '\t'):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// docStep is one step of a scenario: a documented command (run in the
// scenario's offline form) or a preparation between commands.
type docStep struct {
	cmd   string                                  // a documented command line, exactly as extracted
	do    func(t *testing.T, e *docEnv)           // or a preparation
	check func(t *testing.T, e *docEnv, r result) // optional, after cmd; success is always checked
}

type docScenario struct {
	name  string
	setup func(t *testing.T) *docEnv
	steps []docStep
}

// docScenarios holds the executable form of every documented command.
var docScenarios = []docScenario{
	{
		name:  "version",
		setup: func(t *testing.T) *docEnv { return &docEnv{dir: t.TempDir()} },
		steps: []docStep{{cmd: "notesctl version"}},
	},
	{
		// README quick start: testdata/mksite.sh itself makes the site.
		name: "quick start",
		setup: func(t *testing.T) *docEnv {
			out, err := exec.Command("../../testdata/mksite.sh", filepath.Join(t.TempDir(), "site")).Output()
			if err != nil {
				t.Fatalf("testdata/mksite.sh: %v", err)
			}
			return &docEnv{dir: t.TempDir(), subst: []string{`"$(./testdata/mksite.sh)"`, strings.TrimSpace(string(out))}}
		},
		steps: []docStep{{cmd: `go run ./cmd/notesctl release --local --site "$(./testdata/mksite.sh)"`, check: wantImageLine}},
	},
	{
		// Offline, in the site repository: OCI layout and local GitOps repo
		// under .notesctl; the fixture's own commit and tag stand in for
		// the documents' b9060af.
		name:  "local",
		setup: func(t *testing.T) *docEnv { return &docEnv{dir: newSite(t)} },
		steps: []docStep{
			{cmd: "notesctl release --local", check: func(t *testing.T, e *docEnv, r result) {
				wantImageLine(t, e, r)
				e.subst = append(e.subst, "b9060af", gitOut(t, e.dir, "rev-parse", "--short=7", "HEAD"))
			}},
			{cmd: "notesctl status --local"},
			{do: func(t *testing.T, e *docEnv) {
				editPage(t, e.dir, 1)
				mustSucceed(t, e.run(t, "notesctl release --local"))
			}},
			{cmd: "notesctl rollback --local --to b9060af", check: func(t *testing.T, e *docEnv, r result) {
				first := e.subst[len(e.subst)-1]
				if !strings.Contains(r.stdout, first) {
					t.Errorf("rollback does not deploy %s:\n%s", first, r.stdout)
				}
			}},
		},
	},
	{
		// A data-only image into an OCI layout, in the site repository.
		name:  "build into a layout",
		setup: func(t *testing.T) *docEnv { return &docEnv{dir: newSite(t)} },
		steps: []docStep{{cmd: "notesctl build --image notes.local/notes --base scratch --to oci:./out/image", check: func(t *testing.T, e *docEnv, r result) {
			if _, err := os.Stat(filepath.Join(e.dir, "out/image/index.json")); err != nil {
				t.Error(err)
			}
		}}},
	},
	{
		// ghcr.io is the in-process registry, git@github.com a git
		// http-backend whose repository holds the scaffold; the default
		// base (docker.io) is replaced by scratch through NOTESCTL_BASE.
		name: "registry and git server",
		setup: func(t *testing.T) *docEnv {
			reg := regserver.InProcess(t, regserver.InProcessOptions{})
			gs := gitserver.StartHTTPBackend(t, "", "")
			gitops := seedGitOps(t, gs, reg.Host+"/acme/notes")
			return &docEnv{dir: newSite(t), env: []string{"NOTESCTL_BASE=scratch"}, subst: []string{
				"notesctl release ... --dry-run", "notesctl release --image ghcr.io/acme/notes --gitops git@github.com:acme/gitops.git --dry-run",
				"ghcr.io/acme/notes", reg.Host + "/acme/notes",
				"git@github.com:acme/gitops.git", gitops,
			}}
		},
		steps: []docStep{
			{cmd: "notesctl build --image ghcr.io/acme/notes", check: wantDigestRef},
			{cmd: "notesctl build --site . --image ghcr.io/acme/notes", check: wantDigestRef},
			{cmd: "notesctl release ... --dry-run"},
			{cmd: "notesctl release --image ghcr.io/acme/notes --gitops git@github.com:acme/gitops.git", check: wantImageLine},
			{cmd: "notesctl update --gitops git@github.com:acme/gitops.git --set flux-system:notes=ghcr.io/acme/notes:main-b9060af-1746598316-hugo0.145.0@sha256:0d3b2b1f8c6a1f3f6bb1c3d5ad1f8e1e4c7b9a8d2e5f60718293a4b5c6d7e8f9"},
		},
	},
	{
		// CI with explicit credentials: a registry that wants user ci and
		// the token as password.
		name: "build with --password-stdin",
		setup: func(t *testing.T) *docEnv {
			const token = "ci-t0ken-value"
			reg := regserver.InProcess(t, regserver.InProcessOptions{Wrap: basicAuth("ci", token)})
			return &docEnv{dir: newSite(t), env: []string{"TOKEN=" + token, "NOTESCTL_BASE=scratch"}, subst: []string{
				"registry.example.org/notes", reg.Host + "/notes",
			}}
		},
		steps: []docStep{{cmd: `echo "$TOKEN" | notesctl build --image registry.example.org/notes --username ci --password-stdin`, check: wantDigestRef}},
	},
	{
		// CI: ghcr.io is the in-process registry, github.com a git server
		// that wants the token, flux.example.org a receiver checking the
		// HMAC.
		name: "release from CI with a Flux receiver",
		setup: func(t *testing.T) *docEnv {
			const token, hook = "gitops-t0ken", "hook-s3cret"
			reg := regserver.InProcess(t, regserver.InProcessOptions{})
			gs := gitserver.StartHTTPBackend(t, "git", token) // the user notesctl sends with a token alone
			gitops := seedGitOps(t, gs, reg.Host+"/acme/notes")
			receiver := hmacReceiver(t, hook)
			e := &docEnv{dir: newSite(t), env: []string{"TOKEN=" + token, "HOOK=" + hook, "NOTESCTL_BASE=scratch"}, subst: []string{
				"ghcr.io/acme/notes", reg.Host + "/acme/notes",
				"https://github.com/acme/gitops.git", gitops,
				"https://flux.example.org/hook/abc", receiver.url + "/hook/abc",
			}}
			t.Cleanup(func() {
				if n := receiver.valid.Load(); n != 1 {
					t.Errorf("the Flux receiver saw %d signed calls, want 1", n)
				}
			})
			return e
		},
		steps: []docStep{{cmd: "NOTESCTL_GITOPS_PASSWORD=$TOKEN NOTESCTL_FLUX_WEBHOOK_TOKEN=$HOOK notesctl release --image ghcr.io/acme/notes --gitops https://github.com/acme/gitops.git --flux-webhook https://flux.example.org/hook/abc", check: wantImageLine}},
	},
	{
		// A dry run against a GitOps checkout beside the site.
		name: "dry run against ../gitops",
		setup: func(t *testing.T) *docEnv {
			root := t.TempDir()
			site := filepath.Join(root, "site")
			if err := os.Mkdir(site, 0o755); err != nil {
				t.Fatal(err)
			}
			copySite(t, site)
			gitops := filepath.Join(root, "gitops")
			gs := filepath.Join(root, "gitops.git")
			gitserver.SeedBareRepo(t, gs, "main", scaffold(t, "ghcr.io/acme/notes", "https://github.com/acme/gitops.git"))
			gitserver.CloneWorktree(t, gs, gitops, "main")
			reg := regserver.InProcess(t, regserver.InProcessOptions{})
			return &docEnv{dir: site, env: []string{"NOTESCTL_BASE=scratch"}, subst: []string{"ghcr.io/acme/notes", reg.Host + "/acme/notes"}}
		},
		steps: []docStep{{cmd: "notesctl release --image ghcr.io/acme/notes --gitops ../gitops --dry-run", check: func(t *testing.T, e *docEnv, r result) {
			if n := gitOut(t, filepath.Join(e.dir, "../gitops"), "rev-list", "--count", "HEAD"); n != "1" {
				t.Errorf("a dry run committed: %s commits", n)
			}
		}}},
	},
	{
		// The first release into a GitOps repository that does not exist
		// yet: --init scaffolds it at ../gitops and commits the release.
		name: "first release with --init",
		setup: func(t *testing.T) *docEnv {
			root := t.TempDir()
			site := filepath.Join(root, "site")
			if err := os.Mkdir(site, 0o755); err != nil {
				t.Fatal(err)
			}
			copySite(t, site)
			reg := regserver.InProcess(t, regserver.InProcessOptions{})
			return &docEnv{dir: site, env: []string{"NOTESCTL_BASE=scratch"}, subst: []string{"ghcr.io/acme/notes", reg.Host + "/acme/notes"}}
		},
		steps: []docStep{{cmd: "notesctl release --image ghcr.io/acme/notes --gitops ../gitops --init", check: func(t *testing.T, e *docEnv, r result) {
			gitops := filepath.Join(e.dir, "../gitops")
			if n := gitOut(t, gitops, "rev-list", "--count", "HEAD"); n != "2" {
				t.Errorf("want the scaffold and the release commit, got %s commits", n)
			}
			b, _ := os.ReadFile(findFile(t, gitops, "deployment.yaml"))
			if !strings.Contains(string(b), "/acme/notes:main-") {
				t.Errorf("deployment.yaml does not deploy the release:\n%s", b)
			}
		}}},
	},
	{
		// A GitOps directory: scaffold, then edits in place (no registry
		// is contacted).
		name:  "GitOps directory",
		setup: func(t *testing.T) *docEnv { return &docEnv{dir: t.TempDir()} },
		steps: []docStep{
			{cmd: "notesctl manifests init --dir ./gitops --image ghcr.io/acme/notes --host notes.example.org --receiver --git-url https://github.com/acme/gitops.git"},
			{cmd: "notesctl update --dir ./gitops --image ghcr.io/acme/notes:main-b9060af-1746598316-hugo0.145.0", check: func(t *testing.T, e *docEnv, r result) {
				b, _ := os.ReadFile(findFile(t, filepath.Join(e.dir, "gitops"), "deployment.yaml"))
				if !strings.Contains(string(b), "ghcr.io/acme/notes:main-b9060af-1746598316-hugo0.145.0") {
					t.Errorf("deployment.yaml does not deploy the image:\n%s", b)
				}
			}},
			{cmd: "notesctl update --dir ./gitops --image ghcr.io/acme/notes:v2 --dry-run"},
		},
	},
	{
		// In a clone of the GitOps repository: --git-url is its origin.
		name: "manifests init in a GitOps clone",
		setup: func(t *testing.T) *docEnv {
			dir := t.TempDir()
			gitserver.Git(t, dir, "init", "-q", "-b", "main")
			gitserver.Git(t, dir, "remote", "add", "origin", "https://github.com/acme/gitops.git")
			return &docEnv{dir: dir}
		},
		steps: []docStep{{cmd: "notesctl manifests init --dir ./gitops --image ghcr.io/acme/notes --host notes.example.org", check: func(t *testing.T, e *docEnv, r result) {
			b, _ := os.ReadFile(findFile(t, filepath.Join(e.dir, "gitops"), "gitrepository.yaml"))
			if !strings.Contains(string(b), "url: https://github.com/acme/gitops.git") {
				t.Errorf("GitRepository does not clone the origin:\n%s", b)
			}
		}}},
	},
	{
		// A pull-request preview: ghcr.io is the in-process registry,
		// github.com a git server whose GitOps repository holds the scaffold
		// (with previews/).
		name: "preview",
		setup: func(t *testing.T) *docEnv {
			reg := regserver.InProcess(t, regserver.InProcessOptions{})
			gs := gitserver.StartHTTPBackend(t, "", "")
			gitops := seedGitOps(t, gs, reg.Host+"/acme/notes")
			return &docEnv{dir: newSite(t), env: []string{"NOTESCTL_BASE=scratch"}, subst: []string{
				"ghcr.io/acme/notes", reg.Host + "/acme/notes",
				"https://github.com/acme/gitops.git", gitops,
			}}
		},
		steps: []docStep{{cmd: "notesctl preview --pr 12 --preview-domain preview.example.org --image ghcr.io/acme/notes --gitops https://github.com/acme/gitops.git", check: func(t *testing.T, e *docEnv, r result) {
			if !strings.Contains(r.stdout, "preview-url: https://pr-12.preview.example.org/\n") || !strings.Contains(r.stdout, "/acme/notes:pr-12-") {
				t.Errorf("preview output lacks the URL or the pr- tag:\n%s", r.stdout)
			}
		}}},
	},
	{
		// --gitops-pr: github.com/acme/gitops.git is a git server, and the
		// forge API an in-memory GitHub pull-request API (the URL no longer
		// says GitHub, so the form names the forge).
		name: "release --gitops-pr",
		setup: func(t *testing.T) *docEnv {
			reg := regserver.InProcess(t, regserver.InProcessOptions{})
			gs := gitserver.StartHTTPBackend(t, "", "")
			gitopsURL := gs.RepoURL("acme/gitops.git")
			gitserver.SeedBareRepo(t, gs.RepoPath("acme/gitops.git"), "main", scaffold(t, reg.Host+"/acme/notes", gitopsURL))
			api := httptest.NewServer(&fakeGitHubPulls{})
			t.Cleanup(api.Close)
			return &docEnv{dir: newSite(t), env: []string{"TOKEN=forge-t0ken", "NOTESCTL_BASE=scratch", "NOTESCTL_FORGE_API_URL=" + api.URL + "/"}, subst: []string{
				"ghcr.io/acme/notes", reg.Host + "/acme/notes",
				"https://github.com/acme/gitops.git", gitopsURL + " --forge github",
			}}
		},
		steps: []docStep{{cmd: "NOTESCTL_FORGE_TOKEN=$TOKEN notesctl release --image ghcr.io/acme/notes --gitops https://github.com/acme/gitops.git --gitops-pr --auto-merge", check: func(t *testing.T, e *docEnv, r result) {
			if !strings.Contains(r.stdout, "gitops-pr: https://github.com/acme/gitops/pull/1 (#1, open)") {
				t.Errorf("no pull request:\n%s", r.stdout)
			}
		}}},
	},
	{
		// Previews offline, beside release --local: open, close, expire.
		name: "preview --local",
		setup: func(t *testing.T) *docEnv {
			e := &docEnv{dir: newSite(t)}
			mustSucceed(t, e.run(t, "notesctl release --local"))
			return e
		},
		steps: []docStep{
			{cmd: "notesctl preview --local --pr 12 --preview-domain preview.example.org", check: func(t *testing.T, e *docEnv, r result) {
				b, err := os.ReadFile(filepath.Join(e.dir, ".notesctl/gitops/previews/pr-12/kustomization.yaml"))
				if err != nil || !strings.Contains(string(b), "newTag: pr-12-") {
					t.Errorf("no preview overlay (%v):\n%s", err, b)
				}
			}},
			{cmd: "notesctl preview --local --close 12", check: func(t *testing.T, e *docEnv, r result) {
				if _, err := os.Stat(filepath.Join(e.dir, ".notesctl/gitops/previews/pr-12/kustomization.yaml")); !os.IsNotExist(err) {
					t.Errorf("previews/pr-12 is still there after --close (%v)", err)
				}
			}},
			{do: func(t *testing.T, e *docEnv) {
				mustSucceed(t, e.run(t, "notesctl preview --local --pr 12 --preview-domain preview.example.org"))
			}},
			// The fixture's commits are from 2025: older than a week.
			{cmd: "notesctl preview --local --ttl 168h", check: func(t *testing.T, e *docEnv, r result) {
				if !strings.Contains(r.stdout, "closed: #12") {
					t.Errorf("--ttl did not close the old preview:\n%s", r.stdout)
				}
			}},
		},
	},
	{
		// --wait and the cluster: a real kube-apiserver with Flux's
		// source- and kustomize-controller (startFlux); ghcr.io is the
		// in-process registry, github.com the git server Flux pulls from,
		// ~/.kube/config the test cluster's kubeconfig.
		name: "cluster",
		setup: func(t *testing.T) *docEnv {
			f := startFlux(t)
			return &docEnv{dir: f.site, env: []string{"KUBECONFIG=" + f.env.Kubeconfig}, subst: []string{
				"notesctl release ... --wait", "notesctl release --image " + f.image + " --base scratch --gitops " + f.gitopsURL + " --wait",
				"git@github.com:acme/gitops.git", f.gitopsURL,
				"https://github.com/acme/gitops.git", f.gitopsURL,
				"~/.kube/config", f.env.Kubeconfig,
			}}
		},
		steps: []docStep{
			{cmd: "notesctl release ... --wait", check: func(t *testing.T, e *docEnv, r result) {
				m := imageLine.FindStringSubmatch(r.stdout)
				if m == nil {
					t.Fatalf("no image line:\n%s", r.stdout)
				}
				tag := tagOfRef(m[1])
				e.subst = append(e.subst, "main-b9060af-1746598316-hugo0.145.0", tag)
			}},
			{do: func(t *testing.T, e *docEnv) {
				editPage(t, e.dir, 1)
				mustSucceed(t, e.run(t, "notesctl release ... --wait"))
			}},
			{cmd: "notesctl rollback --gitops git@github.com:acme/gitops.git --to main-b9060af-1746598316-hugo0.145.0 --wait"},
			{cmd: "notesctl status --gitops https://github.com/acme/gitops.git --kubeconfig ~/.kube/config -o json", check: func(t *testing.T, e *docEnv, r result) {
				var st struct{ InSync *bool }
				if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.InSync == nil || !*st.InSync {
					t.Errorf("status after the rollback is not in sync (%v):\n%s", err, r.stdout)
				}
			}},
		},
	},
}

func TestDocCommandsRun(t *testing.T) {
	docs := append(readmeCommands(t), exampleCommands((&app{getenv: func(string) string { return "" }}).rootCommand())...)
	if len(docs) < 20 {
		t.Fatalf("found only %d documented commands; is the extraction broken?", len(docs))
	}
	formed := map[string]bool{}
	for _, s := range docScenarios {
		for _, st := range s.steps {
			if st.cmd != "" {
				formed[st.cmd] = true
			}
		}
	}
	documented := map[string]bool{}
	for _, d := range docs {
		documented[d.line] = true
		if !formed[d.line] {
			t.Errorf("%s: %q has no executable form in docScenarios", d.where, d.line)
		}
	}
	for line := range formed {
		if !documented[line] {
			t.Errorf("docScenarios runs %q, which no document shows any more", line)
		}
	}
	if t.Failed() {
		return
	}
	for _, s := range docScenarios {
		t.Run(s.name, func(t *testing.T) {
			e := s.setup(t)
			for _, st := range s.steps {
				if st.do != nil {
					st.do(t, e)
					continue
				}
				r := e.run(t, st.cmd)
				if r.code != 0 {
					t.Fatalf("%s\nexit %d\nstdout:\n%s\nstderr:\n%s", st.cmd, r.code, r.stdout, r.stderr)
				}
				if st.check != nil {
					st.check(t, e, r)
				}
			}
		})
	}
}

// TestShellCommands pins the extraction the test above relies on.
func TestShellCommands(t *testing.T) {
	text := "# a comment\n" +
		"notesctl release --local                 # offline\n" +
		"NOTESCTL_X=$T \\\n  notesctl release --image a \\\n      --gitops b\n" +
		"echo \"$TOKEN\" | notesctl build --image c --password-stdin\n" +
		"go run ./cmd/notesctl version\n" +
		"go test ./...\n" +
		"- uses: notesctl/notesctl@main\n"
	var got []string
	for _, c := range shellCommands(text, "x", 1) {
		got = append(got, c.where+" "+c.line)
	}
	want := []string{
		"x:2 notesctl release --local",
		"x:3 NOTESCTL_X=$T notesctl release --image a --gitops b",
		`x:6 echo "$TOKEN" | notesctl build --image c --password-stdin`,
		"x:7 go run ./cmd/notesctl version",
	}
	if !slices.Equal(got, want) {
		t.Errorf("shellCommands =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	words := shellWords(t, `A=$X echo "a b" 'c $X' d$X`, map[string]string{"X": "1"})
	if !slices.Equal(words, []string{"A=1", "echo", "a b", "c $X", "d1"}) {
		t.Errorf("shellWords = %q", words)
	}
}

func wantImageLine(t *testing.T, _ *docEnv, r result) {
	t.Helper()
	if !imageLine.MatchString(r.stdout) {
		t.Errorf("no image line in the output:\n%s", r.stdout)
	}
}

func wantDigestRef(t *testing.T, _ *docEnv, r result) {
	t.Helper()
	if !regexp.MustCompile(`@sha256:[0-9a-f]{64}`).MatchString(r.stdout) {
		t.Errorf("build printed no repo:tag@digest:\n%s", r.stdout)
	}
}

// scaffold writes the manifests for image into a new directory.
func scaffold(t *testing.T, image, gitURL string) string {
	t.Helper()
	dir := t.TempDir()
	mustSucceed(t, notesctl(t, dir, nil, "", "manifests", "init", "--dir", ".", "--image", image, "--git-url", gitURL))
	return dir
}

// seedGitOps makes gitops.git on gs, holding the scaffold for image, and
// returns its URL.
func seedGitOps(t *testing.T, gs *gitserver.HTTPBackend, image string) string {
	t.Helper()
	url := gs.RepoURL("gitops.git")
	gitserver.SeedBareRepo(t, gs.RepoPath("gitops.git"), "main", scaffold(t, image, url))
	return url
}

// copySite puts the committed fixture site into dir.
func copySite(t *testing.T, dir string) {
	t.Helper()
	if err := os.CopyFS(dir, os.DirFS(newSite(t))); err != nil {
		t.Fatal(err)
	}
}

// basicAuth wraps a registry so that it wants the given credentials.
func basicAuth(user, pass string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); ok && u == user && p == pass {
				h.ServeHTTP(w, r)
				return
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
		})
	}
}

type receiver struct {
	url   string
	valid atomic.Int64
}

// hmacReceiver is a Flux generic-hmac Receiver: it counts POSTs signed
// with token.
func hmacReceiver(t *testing.T, token string) *receiver {
	t.Helper()
	rc := &receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(token))
		mac.Write(body)
		if r.Method != http.MethodPost || !hmac.Equal([]byte(r.Header.Get("X-Signature")), []byte("sha256="+hex.EncodeToString(mac.Sum(nil)))) {
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		rc.valid.Add(1)
	}))
	t.Cleanup(srv.Close)
	rc.url = srv.URL
	return rc
}
