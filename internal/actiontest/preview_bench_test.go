package actiontest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/notesctl/notesctl/internal/giteaenv"
	"github.com/notesctl/notesctl/internal/sitegit"
)

// TestBenchPreviewFlux is bench/preview.sh's harness, not a test: it runs
// only with NOTESCTL_BENCH_PREVIEW=N (timed rounds). On a warm Gitea +
// runner and the real Flux source- and kustomize-controller following the
// GitOps repository on that Gitea, it times from the git push to the
// workflow run's completion as Gitea reports it, where the action runs with
// wait: true, so a run completes when Flux has applied its GitOps commit
// and the Deployment runs the image:
//
//	preview  a push to an open pull request: notesctl preview --wait
//	release  a push to main: notesctl release --wait (the target's yardstick)
//
// interleaved, each on a new commit. Lines "bench-preview: ..." are the
// results; every round also checks the Deployment's image against the
// run's image output.
func TestBenchPreviewFlux(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("NOTESCTL_BENCH_PREVIEW"))
	if n <= 0 {
		t.Skip("a benchmark: run bench/preview.sh (NOTESCTL_BENCH_PREVIEW=N)")
	}
	h := newHarness(t, giteaenv.Options{})
	// Flux follows the GitOps repository on the Gitea: the scaffold's
	// GitRepository, its Kustomization and the previews Kustomization.
	env := h.startFlux(t, "gitrepository.yaml", "sync.yaml", "previews.yaml")

	previewWF, err := os.ReadFile(filepath.Join(repoRoot(t), "testdata/workflows/gitea-preview.yml"))
	if err != nil {
		t.Fatal(err)
	}
	const repo = "bench-previews"
	when := sitegit.Epoch
	next := func() time.Time { when = when.Add(time.Hour); return when }
	site := h.siteRepo(t, repo, release, next(), func(dir string) {
		wf := strings.Replace(string(previewWF), "uses: notesbot/notesctl@main", "uses: "+giteaenv.Owner+"/"+actionRepo+"@"+release, 1)
		if err := os.WriteFile(filepath.Join(dir, ".gitea/workflows/preview.yml"), []byte(wf), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	g := h.gitea
	g.SetVariable(t, repo, "PREVIEW_DOMAIN", "preview.example.org")
	h.waitOnFlux(t, repo, env)

	edit := func(i int) { editPage(t, site, i, next()) }
	// runs checks that Deployment key runs the run's image output.
	runs := func(r jobResult, key types.NamespacedName) {
		t.Helper()
		r.mustConclude(t, "success")
		dep := &appsv1.Deployment{}
		if err := env.Client.Get(context.Background(), key, dep); err != nil {
			t.Fatalf("Deployment %s after the run: %v", key, err)
		}
		if got, want := dep.Spec.Template.Spec.Containers[0].Image, r.outputs["IMAGE"]; got != want || want == "" {
			t.Fatalf("Deployment %s runs %q after the run, want its image %q", key, got, want)
		}
	}
	// push pushes branch and returns the run it starts and its time.
	push := func(branch string, open bool) (jobResult, time.Duration) {
		t.Helper()
		after, err := g.LastRunID(repo)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		g.Push(t, site, repo, branch)
		if open {
			g.OpenPR(t, repo, branch, "main", "A change to review")
		}
		r := h.wait(t, repo, after)
		return r, time.Since(start)
	}

	// Round 0, untimed: main's first release, then the pull request opens.
	r, _ := push("main", false)
	runs(r, types.NamespacedName{Namespace: "notes", Name: "notes"})
	giteaenv.Git(t, site, "checkout", "-q", "-b", "fix")
	edit(0)
	r, _ = push("fix", true)
	prs, err := g.PullRequests(repo, "open")
	if err != nil || len(prs) != 1 {
		t.Fatalf("pull requests: %+v, %v", prs, err)
	}
	previewKey := types.NamespacedName{Namespace: fmt.Sprintf("notes-pr-%d", prs[0].Number), Name: fmt.Sprintf("notes-pr-%d", prs[0].Number)}
	runs(r, previewKey)

	times := map[string][]time.Duration{}
	for i := 1; i <= n; i++ {
		giteaenv.Git(t, site, "checkout", "-q", "main")
		edit(i)
		r, d := push("main", false)
		runs(r, types.NamespacedName{Namespace: "notes", Name: "notes"})
		times["release"] = append(times["release"], d)
		t.Logf("bench-preview: release %d %.2f s", i, d.Seconds())

		giteaenv.Git(t, site, "checkout", "-q", "fix")
		edit(100 + i)
		r, d = push("fix", false)
		runs(r, previewKey)
		times["preview"] = append(times["preview"], d)
		t.Logf("bench-preview: preview %d %.2f s", i, d.Seconds())
	}
	median := map[string]float64{}
	for _, name := range []string{"release", "preview"} {
		m, lo, hi := spread(times[name])
		median[name] = m
		t.Logf("bench-preview: %s median %.2f s (min %.2f, max %.2f, n=%d)", name, m, lo, hi, len(times[name]))
	}
	t.Logf("bench-preview: preview/release %.2fx (target <= 2x)", median["preview"]/median["release"])
}
