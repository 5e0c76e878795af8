package main

// Hardening tests, part 3: races. Twenty releases of twenty commits of one
// site run at once against one registry and one GitOps branch. All must
// succeed; every image must be complete; the branch history stays linear;
// every release either committed its image or saw that a newer one was
// already deployed; and the branch ends on the newest commit's image.

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/notesctl/notesctl/internal/gitserver"
	"github.com/notesctl/notesctl/internal/regserver"
)

const raceReleases = 20

func TestRaceReleases(t *testing.T) {
	t.Parallel()
	reg := regserver.Distribution(t, regserver.DistributionOptions{User: hardRegUser, Password: hardRegPass})
	gs := gitserver.StartHTTPBackend(t, hardGitUser, hardGitPass)
	image := reg.Host + "/acme/notes"
	scaffold := t.TempDir()
	mustSucceed(t, notesctl(t, scaffold, nil, "", "manifests", "init", "--dir", ".", "--image", image, "--git-url", gs.RepoURL("gitops.git")))
	bare := gs.RepoPath("gitops.git")
	first := gitserver.SeedBareRepo(t, bare, "main", scaffold)

	site := newSite(t)
	commits := siteCommits(t, site, 1, raceReleases)
	env := []string{
		"NOTESCTL_REGISTRY_USERNAME=" + hardRegUser, "NOTESCTL_REGISTRY_PASSWORD=" + hardRegPass,
		"NOTESCTL_GITOPS_PASSWORD=" + hardGitPass,
	}
	results := make([]result, raceReleases)
	var wg sync.WaitGroup
	for i, c := range commits {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Every push a release loses means another release committed in
			// between, and each commits at most once: raceReleases attempts
			// always suffice. The default (5) is for ordinary contention; a
			// loaded CI machine can make the newest release lose more often.
			results[i] = notesctl(t, site, env, "", "release", "--site", site, "--revision", c,
				"--branch", "main", "--image", image, "--base", "scratch", "--gitops", gs.RepoURL("gitops.git"), "--gitops-username", hardGitUser,
				"--max-push-attempts", fmt.Sprint(raceReleases), "--output", "json")
		}()
	}
	wg.Wait()

	committed, yielded, attempts, repushes := 0, 0, 0, 0
	var newest releaseJSON
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("release %d of %s failed with exit %d:\n%s", i+1, commits[i][:7], r.code, r.stderr)
			continue
		}
		got := parseRelease(t, r)
		if i == raceReleases-1 {
			newest = got
		}
		// The image is complete, under its tag.
		pullVerifyAt(t, image+":"+got.Build.Tag+"@"+got.Build.Digest, &authn.Basic{Username: hardRegUser, Password: hardRegPass})
		attempts += strings.Count(r.stderr, "lost a race")
		repushes += strings.Count(r.stderr, "for a blob it does not see")
		switch n := countDeploys(t, bare, got.Build.Tag); {
		case got.GitOps.Changed && n == 1:
			committed++
			if msg := gitserver.Git(t, bare, "log", "-1", "--format=%B", got.GitOps.Commit); !strings.Contains(msg, "Image: "+got.Build.Image) {
				t.Errorf("release %d reports commit %s, which does not deploy %s:\n%s", i+1, got.GitOps.Commit, got.Build.Image, msg)
			}
		case !got.GitOps.Changed && n == 0 && strings.Contains(r.stderr, "newer than "+got.Build.Tag+": not overwriting it"):
			yielded++
		default:
			t.Errorf("release %d (%s): changed=%v, %d commits deploy it; it neither committed nor saw a newer release:\n%s",
				i+1, got.Build.Tag, got.GitOps.Changed, n, r.stderr)
		}
	}
	assertLinear(t, bare, first)
	if n := gitserver.Git(t, bare, "rev-list", "--count", first+"..main"); n != fmt.Sprint(committed) {
		t.Errorf("%s commits on the branch, %d releases report one", n, committed)
	}
	if newest.Build.Image == "" {
		t.Fatal("the newest release did not finish")
	}
	if d := deployedIn(t, bare, "main"); d != newest.Build.Image {
		t.Errorf("the branch deploys %s, want the newest release %s", d, newest.Build.Image)
	}
	t.Logf("%d releases raced: %d committed, %d found a newer release deployed, %d GitOps pushes lost a race and were retried, %d manifests pushed again, lost: 0",
		raceReleases, committed, yielded, attempts, repushes)
}
