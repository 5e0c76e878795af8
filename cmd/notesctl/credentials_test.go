package main

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/internal/regserver"
	"github.com/notesctl/notesctl/internal/testimage"
)

// authLog is a registry's view of the credentials it was offered.
type authLog struct {
	mu   sync.Mutex
	seen []string // "user:password" of each request with basic auth
}

func (l *authLog) users() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]bool{}
	for _, s := range l.seen {
		out[s] = true
	}
	return out
}

// recordAuth puts basic auth for user:pass in front of a registry and logs
// every credential offered to it, accepted or not.
func recordAuth(log *authLog, user, pass string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if ok {
				log.mu.Lock()
				log.seen = append(log.seen, u+":"+p)
				log.mu.Unlock()
			}
			if !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

// TestExplicitCredentialsOnlyForImageRegistry: --username/--password-stdin
// and NOTESCTL_REGISTRY_* go to the registry of --image; the base image's
// registry gets the docker config's credentials and never sees the
// explicit ones.
func TestExplicitCredentialsOnlyForImageRegistry(t *testing.T) {
	const pushUser, pushPass = "pusher", "push-Pa55-explicit"
	const baseUser, basePass = "reader", "base-Pa55-dockercfg"
	var pushLog, baseLog authLog
	push := regserver.InProcess(t, regserver.InProcessOptions{Wrap: recordAuth(&pushLog, pushUser, pushPass)})
	base := regserver.InProcess(t, regserver.InProcessOptions{Wrap: recordAuth(&baseLog, baseUser, basePass)})

	baseRef := base.Host + "/library/nginx:1.27"
	img, err := testimage.Image(v1.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(baseRef)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: baseUser, Password: basePass})); err != nil {
		t.Fatal(err)
	}
	baseLog.mu.Lock()
	baseLog.seen = nil
	baseLog.mu.Unlock()

	// The docker config holds the base registry's credentials only.
	dockerDir := t.TempDir()
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{
		base.Host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(baseUser + ":" + basePass))},
	}})
	if err := os.WriteFile(filepath.Join(dockerDir, "config.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name  string
		env   []string
		stdin string
		args  []string
	}{
		{"env", []string{"NOTESCTL_REGISTRY_USERNAME=" + pushUser, "NOTESCTL_REGISTRY_PASSWORD=" + pushPass}, "", nil},
		{"flags", nil, pushPass + "\n", []string{"--username", pushUser, "--password-stdin"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pushLog.mu.Lock()
			pushLog.seen = nil
			pushLog.mu.Unlock()
			baseLog.mu.Lock()
			baseLog.seen = nil
			baseLog.mu.Unlock()
			site := newSite(t)
			env := append([]string{"DOCKER_CONFIG=" + dockerDir}, c.env...)
			args := append([]string{"build", "--image", push.Host + "/acme/notes", "--base", baseRef}, c.args...)
			mustSucceed(t, notesctl(t, site, env, c.stdin, args...))

			if seen := baseLog.users(); seen[pushUser+":"+pushPass] || !seen[baseUser+":"+basePass] || len(seen) != 1 {
				t.Errorf("the base registry was offered %v; want only the docker config's %s", seen, baseUser)
			}
			if seen := pushLog.users(); !seen[pushUser+":"+pushPass] || len(seen) != 1 {
				t.Errorf("the --image registry was offered %v; want only the explicit %s", seen, pushUser)
			}
		})
	}
}

// TestStatusAndRollbackUseExplicitCredentials: status and rollback offer
// the explicit credentials to the registry of the image the GitOps
// repository deploys, and read its labels and tags with them.
func TestStatusAndRollbackUseExplicitCredentials(t *testing.T) {
	const user, pass = "reader", "read-Pa55-explicit"
	var log authLog
	reg := regserver.InProcess(t, regserver.InProcessOptions{Wrap: recordAuth(&log, user, pass)})
	site := newSite(t)
	gitops := filepath.Join(t.TempDir(), "gitops")
	creds := []string{"NOTESCTL_REGISTRY_USERNAME=" + user, "NOTESCTL_REGISTRY_PASSWORD=" + pass}
	image := reg.Host + "/acme/notes"
	mustSucceed(t, notesctl(t, site, creds, "", "release", "--image", image, "--base", "scratch", "--gitops", gitops, "--init"))
	older := gitserver.Git(t, site, "rev-parse", "HEAD")
	siteCommits(t, site, 1, 1)
	mustSucceed(t, notesctl(t, site, creds, "", "release", "--image", image, "--base", "scratch", "--gitops", gitops))

	r := notesctl(t, site, creds, "", "status", "--gitops", gitops, "--output", "json")
	mustSucceed(t, r)
	var st struct {
		Image    struct{ SiteCommit string }
		Problems []string
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.Image.SiteCommit == "" || len(st.Problems) > 0 {
		t.Errorf("status did not read the image's labels with the explicit credentials: %+v", st)
	}

	// Without them the registry refuses, and status says so.
	r = notesctl(t, site, nil, "", "status", "--gitops", gitops, "--output", "json")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "problems") {
		t.Errorf("status without credentials reported no problem:\n%s", r.stdout)
	}

	// rollback finds the older release's site commit in the image labels
	// (the GitOps history has it too; the label read needs the credentials).
	r = notesctl(t, site, creds, "", "rollback", "--gitops", gitops, "--to", older[:7])
	mustSucceed(t, r)
	if msg := gitserver.Git(t, gitops, "log", "-1", "--format=%B"); !strings.Contains(msg, "Source-Commit: "+older) {
		t.Errorf("rollback commit does not name the site commit %s read from the labels:\n%s", older, msg)
	}
}
