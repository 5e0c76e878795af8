package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/notesctl/notesctl/internal/regserver"
	"github.com/notesctl/notesctl/internal/sitegit"
)

// actionsEnv is the environment a runner gives a step.
func actionsEnv(t *testing.T, gitea bool, withFiles bool, inputs map[string]string) ([]string, string, string) {
	t.Helper()
	dir := t.TempDir()
	out, summary := filepath.Join(dir, "output"), filepath.Join(dir, "summary")
	env := []string{
		"GITHUB_ACTIONS=true", "CI=true", "GITHUB_REF_NAME=main", "GITHUB_REPOSITORY=acme/notes",
		"GITHUB_WORKSPACE=" + dir, "RUNNER_TEMP=" + dir,
	}
	if gitea {
		env = append(env, "GITEA_ACTIONS=true")
	}
	if withFiles {
		for _, f := range []string{out, summary} {
			if err := os.WriteFile(f, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		env = append(env, "GITHUB_OUTPUT="+out, "GITHUB_STEP_SUMMARY="+summary)
	}
	for k, v := range inputs {
		env = append(env, "INPUT_"+strings.ToUpper(k)+"="+v)
	}
	return env, out, summary
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func TestActionsStep(t *testing.T) {
	const regPass, gitToken = "reg-Pa55-word-xyz", "gitops-T0ken-abc"
	reg := regserver.InProcess(t, regserver.InProcessOptions{Wrap: requireBasicAuth("bot", regPass)})
	site := newSite(t)
	gitops := filepath.Join(t.TempDir(), "gitops")
	inputs := map[string]string{
		"site": site, "images": reg.Host + "/acme/notes", "base": "scratch",
		"gitops-repo": gitops, "registry-username": "bot", "registry-password": regPass,
		"gitops-token": gitToken, "tags": reg.Host + "/acme/notes:latest\nstable",
	}
	env, outFile, summaryFile := actionsEnv(t, false, true, inputs)
	env = append(env, "NOTESCTL_INIT=true") // the GitOps path is new
	r := notesctl(t, site, env, "", "release")
	mustSucceed(t, r)

	outputs := readFile(t, outFile)
	summary := readFile(t, summaryFile)
	for _, want := range []string{"image<<", "digest<<", "tag<<", "changed<<", "pages<<", "gitops-commit<<"} {
		if !strings.Contains(outputs, want) {
			t.Errorf("output %q missing from GITHUB_OUTPUT:\n%s", strings.TrimSuffix(want, "<<"), outputs)
		}
	}
	if !regexp.MustCompile(`(?m)^true$`).MatchString(outputs) {
		t.Errorf("changed output is not true:\n%s", outputs)
	}
	// metadata: docker/build-push-action's keys, holding the same digest and
	// every pushed tag.
	var meta map[string]any
	if err := json.Unmarshal([]byte(outputValue(t, outputs, "metadata")), &meta); err != nil {
		t.Fatalf("metadata output is not JSON: %v\n%s", err, outputs)
	}
	if d := outputValue(t, outputs, "digest"); meta["containerimage.digest"] != d || d == "" {
		t.Errorf("metadata containerimage.digest = %v, digest output = %q", meta["containerimage.digest"], d)
	}
	names, _ := meta["image.name"].(string)
	for _, tag := range []string{outputValue(t, outputs, "tag"), "latest", "stable"} {
		if !strings.Contains(","+names+",", ","+reg.Host+"/acme/notes:"+tag+",") {
			t.Errorf("metadata image.name %q lacks tag %s", names, tag)
		}
	}
	for _, want := range []string{"| Image |", "| Digest |", "| Pages |", "| GitOps commit |", "| Stage | Duration |", "| render |"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
	for _, want := range []string{"::add-mask::" + regPass, "::add-mask::" + gitToken, "::group::render", "::endgroup::"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	// Secrets appear only in the add-mask commands, nowhere else.
	for _, secret := range []string{regPass, gitToken} {
		rest := strings.ReplaceAll(r.all(), "::add-mask::"+secret, "")
		if strings.Contains(rest, secret) || strings.Contains(outputs, secret) || strings.Contains(summary, secret) {
			t.Errorf("secret %q leaked", secret)
		}
	}
	// The extra tags were pushed.
	for _, tag := range []string{"latest", "stable"} {
		resp, err := http.Head(reg.URL + "/v2/acme/notes/manifests/" + tag)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusOK {
			t.Errorf("tag %s: HEAD answered %s", tag, resp.Status)
		}
	}
}

// requireBasicAuth puts basic auth in front of the in-process registry.
func requireBasicAuth(user, pass string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

func TestActionsRenderErrorAnnotations(t *testing.T) {
	site := newSite(t)
	talk := firstTalk(t, site)
	data, _ := os.ReadFile(talk)
	broken := strings.Replace(string(data), "\n---\n", "\n---\n\n{{< no-such-shortcode >}}\n", 1)
	os.WriteFile(talk, []byte(broken), 0o644)
	if _, err := sitegit.CommitAll(site, "break a page", sitegit.Epoch.Add(3600e9)); err != nil {
		t.Fatal(err)
	}
	for _, gitea := range []bool{false, true} {
		name := "github"
		if gitea {
			name = "gitea"
		}
		t.Run(name, func(t *testing.T) {
			// Gitea without output/summary files: no crash, a clear failure.
			env, _, _ := actionsEnv(t, gitea, !gitea, map[string]string{
				"site": site, "images": "registry.invalid/acme/notes", "base": "scratch",
				"gitops-repo": filepath.Join(t.TempDir(), "gitops"),
			})
			env = append(env, "NOTESCTL_INIT=true")
			r := notesctl(t, site, env, "", "release")
			if r.code != 1 {
				t.Fatalf("exit %d, want 1", r.code)
			}
			rel, _ := filepath.Rel(site, talk)
			// Workflow command fields come in any order.
			var annotation string
			for _, line := range strings.Split(r.stdout, "\n") {
				if strings.HasPrefix(line, "::error ") && strings.Contains(line, "no-such-shortcode") {
					annotation = line
				}
			}
			for _, field := range []string{"file=" + filepath.ToSlash(rel), "line=", "col=", "title=notesctl render"} {
				if !strings.Contains(annotation, field) {
					t.Errorf("annotation %q lacks %s", annotation, field)
				}
			}
			if strings.Contains(r.all(), "panic") {
				t.Error("notesctl panicked")
			}
		})
	}
}

func firstTalk(t *testing.T, site string) string {
	t.Helper()
	var talk string
	filepath.Walk(filepath.Join(site, "content"), func(p string, info os.FileInfo, err error) error {
		if talk == "" && err == nil && !info.IsDir() && strings.HasSuffix(p, ".md") && !strings.HasSuffix(p, "_index.md") {
			talk = p
		}
		return nil
	})
	return talk
}

// TestFluxReceiverWebhook checks the call the way Flux's notification
// controller checks a generic-hmac receiver: X-Signature is
// "sha256=" + hex(HMAC-SHA256(token, body)).
func TestFluxReceiverWebhook(t *testing.T) {
	const token = "receiver-token-123"
	var mu sync.Mutex
	var valid, invalid int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(token))
		mac.Write(body)
		want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		mu.Lock()
		defer mu.Unlock()
		if r.Method != http.MethodPost || !hmac.Equal([]byte(r.Header.Get("X-Signature")), []byte(want)) {
			invalid++
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		valid++
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	site := newSite(t)
	r := notesctl(t, site, []string{"NOTESCTL_FLUX_WEBHOOK_TOKEN=" + token}, "", "release", "--local", "--flux-webhook", srv.URL+"/hook/abc")
	mustSucceed(t, r)
	if valid != 1 || invalid != 0 {
		t.Errorf("receiver saw %d valid and %d invalid calls, want 1 and 0", valid, invalid)
	}
	if strings.Contains(r.all(), token) {
		t.Error("the receiver token appears in the output")
	}

	// A wrong token is a failed release step, with the receiver's answer.
	editPage(t, site, 5)
	r = notesctl(t, site, []string{"NOTESCTL_FLUX_WEBHOOK_TOKEN=wrong-token"}, "", "release", "--local", "--flux-webhook", srv.URL+"/hook/abc")
	if r.code == 0 || !strings.Contains(r.stderr, "401") {
		t.Errorf("wrong token: exit %d, stderr %q", r.code, r.stderr)
	}
}

// outputValue reads one output from a GITHUB_OUTPUT file (NAME<<DELIMITER
// lines, as go-githubactions writes them).
func outputValue(t *testing.T, file, name string) string {
	t.Helper()
	lines := strings.Split(file, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, name+"<<") {
			continue
		}
		delim := strings.TrimPrefix(l, name+"<<")
		var val []string
		for _, v := range lines[i+1:] {
			if v == delim {
				return strings.Join(val, "\n")
			}
			val = append(val, v)
		}
	}
	t.Fatalf("output %s not in GITHUB_OUTPUT:\n%s", name, file)
	return ""
}
