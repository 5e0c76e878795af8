package registry

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/notesctl/notesctl/internal/redact"
	"github.com/notesctl/notesctl/internal/regserver"
)

func TestKeychainPrecedence(t *testing.T) {
	dockerDir := t.TempDir()
	cfg := fmt.Sprintf(`{"auths":{"reg.example.com":{"auth":%q}}}`, base64.StdEncoding.EncodeToString([]byte("docker:dockerpw")))
	if err := os.WriteFile(filepath.Join(dockerDir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dockerDir)
	t.Setenv("GITHUB_TOKEN", "ghtoken")
	t.Setenv("GITHUB_ACTOR", "octocat")

	explicit := KeychainOptions{Username: "ci", Password: "cipw"}
	tests := []struct {
		name     string
		opts     KeychainOptions
		repo     string
		user, pw string // empty: anonymous
	}{
		{"explicit wins over docker config", explicit, "reg.example.com/acme/notes", "ci", "cipw"},
		{"explicit wins over GITHUB_TOKEN", explicit, "ghcr.io/acme/notes", "ci", "cipw"},
		{"docker config", KeychainOptions{}, "reg.example.com/acme/notes", "docker", "dockerpw"},
		{"GITHUB_TOKEN for ghcr.io", KeychainOptions{}, "ghcr.io/acme/notes", "octocat", "ghtoken"},
		{"nothing for others", KeychainOptions{}, "quay.io/acme/notes", "", ""},
		{"explicit limited to another registry", KeychainOptions{Username: "ci", Password: "cipw", Registry: "other.example.com"}, "reg.example.com/acme/notes", "docker", "dockerpw"},
		{"explicit limited to this registry", KeychainOptions{Username: "ci", Password: "cipw", Registry: "reg.example.com"}, "reg.example.com/acme/notes", "ci", "cipw"},
		{"docker.io aliases", KeychainOptions{Username: "ci", Password: "cipw", Registry: "docker.io"}, "index.docker.io/library/nginx", "ci", "cipw"},
		{"NoDefault ignores docker config", KeychainOptions{NoDefault: true}, "reg.example.com/acme/notes", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, err := name.NewRepository(tt.repo)
			if err != nil {
				t.Fatal(err)
			}
			auth, err := Keychain(tt.opts).Resolve(repo)
			if err != nil {
				t.Fatal(err)
			}
			if tt.user == "" {
				if auth != authn.Anonymous {
					t.Fatalf("got %v, want anonymous", auth)
				}
				return
			}
			cfg, err := auth.Authorization()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Username != tt.user || cfg.Password != tt.pw {
				t.Errorf("got user %q, want %q (password match: %v)", cfg.Username, tt.user, cfg.Password == tt.pw)
			}
		})
	}
}

func TestKeychainOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts KeychainOptions
		want string // empty: valid
	}{
		{"empty", KeychainOptions{}, ""},
		{"both", KeychainOptions{Username: "u", Password: "p"}, ""},
		{"password only", KeychainOptions{Password: "hunter2"}, "without a username"},
		{"username only", KeychainOptions{Username: "u"}, `username "u" given without a password`},
		{"bad registry", KeychainOptions{Username: "u", Password: "p", Registry: "bad host/x"}, `credentials registry "bad host/x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
			if tt.opts.Password != "" && strings.Contains(err.Error(), tt.opts.Password) {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

// leakyAuth wraps a registry with basic auth whose 401 answers echo the
// credentials they received, as a careless registry or proxy might.
func leakyAuth(user, pass string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if ok && u == user && p == pass {
				h.ServeHTTP(w, r)
				return
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials %s:%s (header %s)"}]}`, u, p, r.Header.Get("Authorization"))
		})
	}
}

func TestPublishRedactsSecrets(t *testing.T) {
	const user, pass, wrong = "bob", "right-pa55word", "wrong-pa55word"
	srv := regserver.InProcess(t, regserver.InProcessOptions{Wrap: leakyAuth(user, pass)})
	repo := srv.Host + "/acme/notes"
	art := Artifact{Image: testImage(t, 1, "x")}
	ctx := context.Background()

	opts := testOptions("v1")
	opts.Keychain = Keychain(KeychainOptions{Username: user, Password: wrong, NoDefault: true})
	_, err := Publish(ctx, repo, art, opts)
	if err == nil {
		t.Fatal("Publish with a wrong password succeeded")
	}
	msg := err.Error()
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + wrong))
	if strings.Contains(msg, wrong) || strings.Contains(msg, basic) {
		t.Fatalf("error leaks the password: %s", msg)
	}
	if !strings.Contains(msg, "401") || !strings.Contains(msg, "authentication failed") {
		t.Errorf("error = %s, want a clear authentication failure", msg)
	}
	// Verify and FetchLabels use GET, whose 401 body echoes the secret.
	for _, check := range []func() error{
		func() error { return Verify(ctx, repo+":v1", opts) },
		func() error { _, _, err := FetchLabels(ctx, repo+":v1", opts); return err },
	} {
		err := check()
		if err == nil {
			t.Fatal("Verify/FetchLabels with a wrong password succeeded")
		}
		if msg := err.Error(); strings.Contains(msg, wrong) || strings.Contains(msg, basic) ||
			!strings.Contains(msg, "bad credentials bob:"+redact.Marker) || !strings.Contains(msg, "authentication failed") {
			t.Errorf("error = %s, want UNAUTHORIZED with the secret redacted", msg)
		}
	}

	opts.Keychain = Keychain(KeychainOptions{Username: user, Password: pass, NoDefault: true})
	pub, err := Publish(ctx, repo, art, opts)
	if err != nil {
		t.Fatalf("Publish with the right password: %v", err)
	}
	if err := Verify(ctx, pub.Ref, opts); err != nil {
		t.Errorf("Verify: %v", err)
	}
}
