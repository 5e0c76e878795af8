package gitops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-git/go-billy/v5/util"

	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/manifests"
)

func TestCommitRemotes(t *testing.T) {
	gitserver.RequireGit(t)
	seedDir := gitopsSeed(t)
	tests := []struct {
		name  string
		setup func(t *testing.T) (Options, string)
	}{
		{"gittestserver http basic auth", func(t *testing.T) (Options, string) {
			srv := gitserver.StartFluxServer(t, "bob", "s3cret-pass", false)
			opts := gitopsOptions(srv.HTTPURL + "/gitops.git")
			opts.Username, opts.Password = "bob", "s3cret-pass"
			return opts, srv.RepoPath("gitops.git")
		}},
		{"http-backend basic auth", func(t *testing.T) (Options, string) {
			srv := gitserver.StartHTTPBackend(t, "bob", "s3cret-pass")
			opts := gitopsOptions(srv.RepoURL("gitops.git"))
			opts.Username, opts.Password = "bob", "s3cret-pass"
			return opts, srv.RepoPath("gitops.git")
		}},
		{"http-backend credentials in URL", func(t *testing.T) (Options, string) {
			srv := gitserver.StartHTTPBackend(t, "bob", "s3cret-pass")
			opts := gitopsOptions(strings.Replace(srv.RepoURL("gitops.git"), "http://", "http://bob:s3cret-pass@", 1))
			return opts, srv.RepoPath("gitops.git")
		}},
		{"gittestserver ssh known_hosts", func(t *testing.T) (Options, string) {
			srv := gitserver.StartFluxServer(t, "", "", true)
			key, _ := gitserver.WriteSSHKey(t, "key-pass")
			opts := gitopsOptions(srv.SSHURL + "/gitops.git")
			opts.SSHKeyFile, opts.SSHKeyPassphrase = key, "key-pass"
			opts.KnownHostsFile = srv.KnownHostsFile(t, nil)
			return opts, srv.RepoPath("gitops.git")
		}},
		{"local bare path", func(t *testing.T) (Options, string) {
			dir := filepath.Join(t.TempDir(), "gitops.git")
			return gitopsOptions(dir), dir
		}},
		{"local bare file URL", func(t *testing.T) (Options, string) {
			dir := filepath.Join(t.TempDir(), "gitops.git")
			return gitopsOptions("file://" + dir), dir
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, bare := tt.setup(t)
			seed := gitserver.SeedBareRepo(t, bare, "main", seedDir)
			var logs bytes.Buffer
			opts.Logger = func(format string, args ...any) { fmt.Fprintf(&logs, format+"\n", args...) }
			const tag = "main-b9060af-1746598316-hugo0.145.0"

			res, err := Commit(context.Background(), opts, gitopsSetTag(tag))
			if err != nil {
				t.Fatalf("Commit: %v", err)
			}
			head := gitopsVerifyCommit(t, bare, seed, tag)
			want := CommitResult{Hash: head, Changed: true, Attempts: 1, Branch: "main", Files: []string{gitopsDeployPath}}
			if fmt.Sprint(*res) != fmt.Sprint(want) {
				t.Errorf("result = %+v, want %+v", *res, want)
			}
			if strings.Contains(logs.String(), "s3cret-pass") || strings.Contains(logs.String(), "key-pass") {
				t.Errorf("log leaks a secret:\n%s", logs.String())
			}

			// Same tag again: nothing to commit, nothing pushed.
			res, err = Commit(context.Background(), opts, gitopsSetTag(tag))
			if err != nil {
				t.Fatalf("second Commit: %v", err)
			}
			if res.Changed || res.Hash != head || len(res.Files) != 0 {
				t.Errorf("second Commit = %+v, want unchanged at %s", *res, head)
			}
			if got := gitserver.Git(t, bare, "rev-parse", "main"); got != head {
				t.Errorf("branch moved to %s on a no-op commit", got)
			}

			fs, info, err := Checkout(context.Background(), opts)
			if err != nil {
				t.Fatalf("Checkout: %v", err)
			}
			if info.Hash != head || !strings.HasPrefix(info.Message, "notes: set image tag "+tag) || info.Author != "Release Bot <release@example.com>" {
				t.Errorf("Checkout info = %+v", info)
			}
			b, err := util.ReadFile(fs, gitopsDeployPath)
			if err != nil {
				t.Fatal(err)
			}
			if got := gitopsTagIn(t, string(b)); got != tag {
				t.Errorf("Checkout sees tag %q, want %q", got, tag)
			}
		})
	}
}

// TestCommitEmptyRepository: an empty repository checks out empty, and
// the first commit creates the branch, over HTTP and written in place into
// a bare repository given as a path (then with no git on PATH).
func TestCommitEmptyRepository(t *testing.T) {
	gitserver.RequireGit(t)
	srv := gitserver.StartHTTPBackend(t, "", "")
	for _, way := range []string{"http", "in place"} {
		t.Run(way, func(t *testing.T) {
			name := strings.ReplaceAll(way, " ", "-") + ".git"
			bare := srv.RepoPath(name)
			gitserver.InitBareRepo(t, bare, "main")
			opts := gitopsOptions(srv.RepoURL(name))
			if way == "in place" {
				opts = gitopsOptions(bare)
			}

			fs, info, err := Checkout(context.Background(), opts)
			if err != nil {
				t.Fatalf("Checkout of an empty repository: %v", err)
			}
			if info.Hash != "" {
				t.Errorf("Checkout of an empty repository: hash %q, want empty", info.Hash)
			}
			if entries, _ := fs.ReadDir("/"); len(entries) != 0 {
				t.Errorf("Checkout of an empty repository has %d entries", len(entries))
			}

			const tag = "main-b9060af-1746598316-hugo0.145.0"
			var res *CommitResult
			t.Run("commit", func(t *testing.T) {
				if way == "in place" {
					t.Setenv("PATH", t.TempDir()) // no git to start
				}
				res, err = Commit(context.Background(), opts, gitopsSetTag(tag))
			})
			if err != nil {
				t.Fatalf("Commit: %v", err)
			}
			gitserver.Git(t, bare, "fsck", "--strict", "--no-progress")
			if got := gitserver.Git(t, bare, "rev-list", "--count", "main"); got != "1" {
				t.Errorf("commits = %s, want 1", got)
			}
			if got := gitserver.Git(t, bare, "rev-parse", "main"); got != res.Hash {
				t.Errorf("main = %s, result hash %s", got, res.Hash)
			}
			if got := gitopsTagIn(t, gitserver.Git(t, bare, "show", "main:"+gitopsDeployPath)); got != tag {
				t.Errorf("tag = %q", got)
			}
		})
	}
}

func TestCommitMissingBranch(t *testing.T) {
	gitserver.RequireGit(t)
	bare := filepath.Join(t.TempDir(), "gitops.git")
	gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
	opts := gitopsOptions(bare)
	opts.Branch = "production"
	_, err := Commit(context.Background(), opts, gitopsSetTag("main-b9060af-1746598316-hugo0.145.0"))
	if !errors.Is(err, ErrBranchNotFound) || !strings.Contains(err.Error(), `"production"`) {
		t.Fatalf("err = %v, want ErrBranchNotFound naming the branch", err)
	}
	_, info, err := Checkout(context.Background(), opts)
	if err != nil || info.Hash != "" {
		t.Fatalf("Checkout of a missing branch = %+v, %v; want empty info and no error", info, err)
	}
}

func TestCommitWrongPassword(t *testing.T) {
	gitserver.RequireGit(t)
	const password = "correct-horse-battery"
	tests := []struct {
		name string
		url  func(base string) string
		user string
		pass string
	}{
		{"options", func(b string) string { return b }, "bob", "wrong-password-123"},
		{"in URL", func(b string) string { return strings.Replace(b, "http://", "http://bob:wrong-password-123@", 1) }, "", ""},
		{"token in URL", func(b string) string { return strings.Replace(b, "http://", "http://tok-wrong-password-123@", 1) }, "", ""},
		{"none", func(b string) string { return b }, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := gitserver.StartHTTPBackend(t, "bob", password)
			gitserver.SeedBareRepo(t, srv.RepoPath("gitops.git"), "main", "")
			opts := gitopsOptions(tt.url(srv.RepoURL("gitops.git")))
			opts.Username, opts.Password = tt.user, tt.pass
			_, err := Commit(context.Background(), opts, gitopsSetTag("x"))
			if !errors.Is(err, ErrAuthentication) {
				t.Fatalf("err = %v, want ErrAuthentication", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "authentication failed for "+manifests.RedactURL(opts.URL)) {
				t.Errorf("error does not name the redacted URL %s: %s", manifests.RedactURL(opts.URL), msg)
			}
			if strings.Contains(msg, "wrong-password-123") || strings.Contains(msg, password) {
				t.Errorf("error leaks the password: %s", msg)
			}
		})
	}
}

func TestCommitHookRejection(t *testing.T) {
	gitserver.RequireGit(t)
	srv := gitserver.StartHTTPBackend(t, "bob", "pw-1234")
	bare := srv.RepoPath("gitops.git")
	seed := gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
	gitserver.InstallHook(t, bare, "pre-receive", "#!/bin/sh\necho 'policy: main is protected, open a pull request' >&2\nexit 1\n")
	opts := gitopsOptions(srv.RepoURL("gitops.git"))
	opts.Username, opts.Password = "bob", "pw-1234"
	opts.MaxAttempts = 3
	res, err := Commit(context.Background(), opts, gitopsSetTag("main-b9060af-1746598316-hugo0.145.0"))
	if !errors.Is(err, ErrPushRejected) {
		t.Fatalf("Commit = %+v, %v; want ErrPushRejected", res, err)
	}
	if !strings.Contains(err.Error(), "policy: main is protected, open a pull request") {
		t.Errorf("error lacks the hook's message: %v", err)
	}
	if strings.Contains(err.Error(), "pw-1234") {
		t.Errorf("error leaks the password: %v", err)
	}
	if got := gitserver.Git(t, bare, "rev-parse", "main"); got != seed {
		t.Errorf("main moved to %s despite the hook", got)
	}
}

func TestCommitSSHHostKey(t *testing.T) {
	gitserver.RequireGit(t)
	srv := gitserver.StartFluxServer(t, "", "", true)
	seed := gitserver.SeedBareRepo(t, srv.RepoPath("gitops.git"), "main", gitopsSeed(t))
	key, _ := gitserver.WriteSSHKey(t, "")
	tests := []struct {
		name       string
		knownHosts func(t *testing.T) string
		want       string
	}{
		{"mismatch", func(t *testing.T) string { return srv.KnownHostsFile(t, gitserver.RandomHostKey(t)) }, "does not match"},
		{"unknown host", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "known_hosts")
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, "is not in"},
		{"missing file", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, "cannot read known_hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := gitopsOptions(srv.SSHURL + "/gitops.git")
			opts.SSHKeyFile = key
			opts.KnownHostsFile = tt.knownHosts(t)
			_, err := Commit(context.Background(), opts, gitopsSetTag("main-b9060af-1746598316-hugo0.145.0"))
			if !errors.Is(err, ErrHostKey) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), srv.SSHURL) {
				t.Fatalf("err = %v, want ErrHostKey containing %q and the URL", err, tt.want)
			}
		})
	}
	t.Run("insecure skip", func(t *testing.T) {
		opts := gitopsOptions(srv.SSHURL + "/gitops.git")
		opts.SSHKeyFile = key
		opts.InsecureSkipHostKeyCheck = true
		var warned bool
		opts.Logger = func(format string, args ...any) {
			if strings.Contains(fmt.Sprintf(format, args...), "WARNING: SSH host key checking is disabled") {
				warned = true
			}
		}
		if _, err := Commit(context.Background(), opts, gitopsSetTag("main-b9060af-1746598316-hugo0.145.0")); err != nil {
			t.Fatal(err)
		}
		if !warned {
			t.Error("no warning logged for disabled host key checking")
		}
		gitopsVerifyCommit(t, srv.RepoPath("gitops.git"), seed, "main-b9060af-1746598316-hugo0.145.0")
	})
}

// TestCommitRace: writers racing on one branch all land, one after the
// other, with no merge and no loss: all pushing over HTTP (receive-pack),
// and half of them writing in place into the same bare repository by its
// path, which takes git's own ref lock (manifests/bare.go).
func TestCommitRace(t *testing.T) {
	gitserver.RequireGit(t)
	srv := gitserver.StartHTTPBackend(t, "bob", "race-pass")
	for _, mode := range []string{"http", "http and in place"} {
		t.Run(mode, func(t *testing.T) {
			name := strings.ReplaceAll(mode, " ", "-") + ".git"
			bare := srv.RepoPath(name)
			gitserver.SeedBareRepo(t, bare, "main", gitopsSeed(t))
			const writers = 8
			var (
				wg       sync.WaitGroup
				mu       sync.Mutex
				errs     []error
				attempts int
			)
			start := make(chan struct{})
			for i := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					opts := gitopsOptions(srv.RepoURL(name))
					opts.Username, opts.Password = "bob", "race-pass"
					if mode != "http" && i%2 == 0 {
						opts = gitopsOptions(bare)
					}
					opts.MaxAttempts = 30
					tag := fmt.Sprintf("main-%07x-%d-hugo0.145.0", 0xabc000+i, 1746598316+i)
					<-start
					res, err := Commit(context.Background(), opts, gitopsSetTag(tag))
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						errs = append(errs, fmt.Errorf("writer %d: %w", i, err))
						return
					}
					if !res.Changed {
						errs = append(errs, fmt.Errorf("writer %d: no change", i))
					}
					attempts += res.Attempts
				}()
			}
			close(start)
			wg.Wait()
			for _, err := range errs {
				t.Error(err)
			}
			t.Logf("%d writers needed %d attempts in total", writers, attempts)

			gitserver.Git(t, bare, "fsck", "--strict", "--no-progress")
			if got := gitserver.Git(t, bare, "rev-list", "--merges", "main"); got != "" {
				t.Errorf("history has merges: %s", got)
			}
			if got := gitserver.Git(t, bare, "rev-list", "--count", "main"); got != strconv.Itoa(writers+1) {
				t.Errorf("commits = %s, want %d", got, writers+1)
			}
			// Every tag landed exactly once, and each commit changed only the deployment.
			subjects := strings.Split(gitserver.Git(t, bare, "log", "--format=%s", "main~"+strconv.Itoa(writers)+"..main"), "\n")
			seen := map[string]bool{}
			for _, s := range subjects {
				seen[strings.TrimPrefix(s, "notes: set image tag ")] = true
			}
			if len(seen) != writers {
				t.Errorf("distinct tags in history = %d, want %d: %q", len(seen), writers, subjects)
			}
			last := strings.TrimPrefix(subjects[0], "notes: set image tag ")
			if got := gitopsTagIn(t, gitserver.Git(t, bare, "show", "main:"+gitopsDeployPath)); got != last {
				t.Errorf("final file holds %q, the last commit set %q", got, last)
			}
			for i := range writers {
				rev := "main~" + strconv.Itoa(i)
				if got := gitserver.Git(t, bare, "diff", "--name-only", rev+"~1", rev); got != gitopsDeployPath {
					t.Errorf("%s changed %q", rev, got)
				}
			}
		})
	}
}
