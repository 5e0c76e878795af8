package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	appsv1 "k8s.io/api/apps/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
)

// EnvBenchPreview turns TestPreviewFluxTimes on: the number of rounds.
const EnvBenchPreview = "NOTESCTL_BENCH_PREVIEW"

// TestPreviewFluxTimes is the harness of bench/preview.sh (skipped unless
// NOTESCTL_BENCH_PREVIEW=N): on the real source- and kustomize-controller,
// the time from a push to a pull request (a new site commit) to the
// preview Deployment carrying its image, applied by the scaffolded previews
// Kustomization: notesctl preview (render, push, GitOps commit), then
// reconcile.fluxcd.io/requestedAt on the GitRepository and the previews
// Kustomization, as release --wait does. Each line "PREVIEWBENCH round
// seconds" is one measurement; the last line is the median.
func TestPreviewFluxTimes(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv(EnvBenchPreview))
	if rounds <= 0 {
		t.Skipf("set %s=N to run the preview benchmark (bench/preview.sh)", EnvBenchPreview)
	}
	f := startFlux(t)
	scaffold := t.TempDir()
	mustSucceed(t, notesctl(t, scaffold, nil, "", "manifests", "init", "--dir", ".", "--image", f.image, "--git-url", f.gitopsURL))
	applyFile(t, f.env, filepath.Join(scaffold, "flux", "notes", "previews.yaml"))
	ctx := context.Background()
	applied := func(commit string) func() (bool, string) {
		return func() (bool, string) {
			ks := &kustomizev1.Kustomization{}
			if err := f.env.Client.Get(ctx, types.NamespacedName{Namespace: "flux-system", Name: "notes-previews"}, ks); err != nil {
				return false, err.Error()
			}
			ready := apimeta.FindStatusCondition(ks.Status.Conditions, meta.ReadyCondition)
			if ready == nil || ready.Status != "True" || !strings.Contains(ks.Status.LastAppliedRevision, commit) {
				return false, describe(ks)
			}
			return true, ""
		}
	}
	var times []float64
	for round := 1; round <= rounds; round++ {
		editPage(t, f.site, round)
		start := time.Now()
		r := notesctl(t, f.site, nil, "", "--output", "json", "preview", "--pr", "12", "--preview-domain", "preview.example.org",
			"--image", f.image, "--base", "scratch", "--gitops", f.gitopsURL)
		mustSucceed(t, r)
		var res struct {
			Commit string `json:"gitopsCommit"`
			Build  struct {
				Image string `json:"image"`
			} `json:"build"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatal(err)
		}
		requestReconcile(t, f.env.Client)
		waitFor(t, 120*time.Second, "the preview applied", applied(res.Commit))
		dep := &appsv1.Deployment{}
		if err := f.env.Client.Get(ctx, types.NamespacedName{Namespace: "notes-pr-12", Name: "notes-pr-12"}, dep); err != nil {
			t.Fatal(err)
		}
		if got := dep.Spec.Template.Spec.Containers[0].Image; got != res.Build.Image {
			t.Fatalf("round %d: the preview runs %s, want %s", round, got, res.Build.Image)
		}
		d := time.Since(start).Seconds()
		times = append(times, d)
		t.Logf("PREVIEWBENCH %d %.2f", round, d)
	}
	sort.Float64s(times)
	t.Logf("PREVIEWBENCH median %.2f", times[len(times)/2])
}
