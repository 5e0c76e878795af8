package actiontest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/notesctl/notesctl/internal/giteaenv"
	"github.com/notesctl/notesctl/internal/sitegit"
)

// TestBenchActions is bench/actions.sh's harness, not a test: it runs only
// with NOTESCTL_BENCH_ACTIONS=N (runs per workflow). On a warm Gitea + runner
// it times, from the push to the run's completion as Gitea reports it:
//
//	notesctl  the site workflow using the action on the prebuilt path
//	hugo      a workflow that checks out the same site and only runs hugo
//
// interleaved, each run on a new commit (an edited page). With
// NOTESCTL_BENCH_COLD=1 it also times one run on the source path with an
// empty Go build cache (the cost of @main on a fresh runner).
func TestBenchActions(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("NOTESCTL_BENCH_ACTIONS"))
	if n <= 0 {
		t.Skip("a benchmark: run bench/actions.sh (NOTESCTL_BENCH_ACTIONS=N)")
	}
	opts := giteaenv.Options{}
	cold := os.Getenv("NOTESCTL_BENCH_COLD") == "1"
	if cold {
		opts.RunnerEnv = []string{"GOCACHE=" + t.TempDir()}
	}
	h := newHarness(t, opts)
	hugoWF, err := os.ReadFile(filepath.Join(repoRoot(t), "testdata/workflows/gitea-hugo.yml"))
	if err != nil {
		t.Fatal(err)
	}
	when := sitegit.Epoch
	next := func() time.Time { when = when.Add(time.Hour); return when }

	notes := h.siteRepo(t, "bench-notes", release, next(), nil)
	hugo := h.siteRepo(t, "bench-hugo", release, next(), func(dir string) {
		os.Remove(filepath.Join(dir, ".gitea/workflows/release.yml"))
		if err := os.WriteFile(filepath.Join(dir, ".gitea/workflows/hugo.yml"), hugoWF, 0o644); err != nil {
			t.Fatal(err)
		}
	})
	repos := map[string]string{"notesctl": "bench-notes", "hugo": "bench-hugo"}
	dirs := map[string]string{"notesctl": notes, "hugo": hugo}
	times := map[string][]time.Duration{}
	edit := func(name string, i int) { editPage(t, dirs[name], i, next()) }
	order := []string{"notesctl", "hugo"}
	for i := 0; i <= n; i++ { // run 0 is the untimed warm-up
		for _, name := range order {
			if i > 0 {
				edit(name, i)
			}
			start := time.Now()
			r := h.push(t, repos[name], dirs[name])
			d := time.Since(start)
			r.mustConclude(t, "success")
			if name == "notesctl" && r.outputs["INSTALL_METHOD"] != "release" {
				t.Fatalf("notesctl run %d: install-method %q, want release", i, r.outputs["INSTALL_METHOD"])
			}
			if i > 0 {
				times[name] = append(times[name], d)
			}
			fmt.Printf("bench-actions: run %d %-8s %6.2fs %s\n", i, name, d.Seconds(), warmup(i))
		}
		order[0], order[1] = order[1], order[0] // alternate who goes first
	}
	for _, name := range []string{"notesctl", "hugo"} {
		median, lo, hi := spread(times[name])
		fmt.Printf("bench-actions: %-8s median %.2fs (min %.2fs, max %.2fs, n=%d)\n", name, median, lo, hi, len(times[name]))
	}
	if cold {
		dir := h.siteRepo(t, "bench-cold", "main", next(), nil)
		start := time.Now()
		r := h.push(t, "bench-cold", dir)
		d := time.Since(start)
		r.mustConclude(t, "success")
		built := ""
		for _, l := range strings.Split(r.log, "\n") {
			if strings.Contains(l, "notesctl install: built in") {
				built = l[strings.Index(l, "built in"):]
			}
		}
		fmt.Printf("bench-actions: cold source path (empty GOCACHE) %.2fs, go build %s (install-method=%s)\n", d.Seconds(), built, r.outputs["INSTALL_METHOD"])
	}
}

func warmup(i int) string {
	if i == 0 {
		return "(warm-up)"
	}
	return ""
}

// editPage appends a line to a page of the site in dir and commits it at
// at, so that every run renders, pushes an image and commits to GitOps.
func editPage(t *testing.T, dir string, i int, at time.Time) {
	t.Helper()
	p := filepath.Join(dir, "content/day1/01_keynote.md")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, append(b, fmt.Sprintf("\nEdit %d.\n", i)...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sitegit.CommitAll(dir, fmt.Sprintf("edit %d", i), at); err != nil {
		t.Fatal(err)
	}
}

// spread sorts ds and returns its median, minimum and maximum in seconds.
func spread(ds []time.Duration) (median, lo, hi float64) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2].Seconds(), ds[0].Seconds(), ds[len(ds)-1].Seconds()
}
