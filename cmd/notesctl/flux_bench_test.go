package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	appsv1 "k8s.io/api/apps/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// EnvBenchFlux turns TestFluxRolloutTimes on: the number of rounds.
const EnvBenchFlux = "NOTESCTL_BENCH_FLUX"

// TestFluxRolloutTimes is the harness of bench/flux.sh (skipped unless
// NOTESCTL_BENCH_FLUX=N): on the real controllers, the time from a site
// commit to the Deployment spec carrying the new image,
//
//	(a) notesctl release --wait (requestedAt on the GitRepository and the
//	    Kustomization); also when the command returns (after Flux's health
//	    check and the rollout);
//	(b) notesctl release --flux-webhook through the scaffolded Receiver;
//	(c) notesctl build, then Flux alone: a Receiver call (as a registry or
//	    CI webhook would make) makes image-reflector-controller scan,
//	    the ImagePolicy moves, image-automation-controller commits, and the
//	    GitRepository fetches at its scaffolded interval (1m).
//
// The Flux objects run with the scaffold's intervals, except the
// ImageRepository at 1m (scaffold: 5m). Each line "FLUXBENCH case round
// seconds" is one measurement.
func TestFluxRolloutTimes(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv(EnvBenchFlux))
	if rounds <= 0 {
		t.Skipf("set %s=N to run the Flux rollout benchmark (bench/flux.sh)", EnvBenchFlux)
	}
	f := startImageFlux(t, fluxIntervals{git: time.Minute, imageRepository: time.Minute, automation: 30 * time.Minute})
	hook := f.receiverURL(t)
	page := 0
	edit := func() {
		page++
		editPage(t, f.site, page)
	}
	// untilImage returns when the Deployment spec carries an image other
	// than old, and which.
	untilImage := func(old string, limit time.Duration) string {
		var got string
		waitForFast(t, limit, "the Deployment spec to change from "+old, func() (bool, string) {
			got = deploymentImage(t, f.env)
			return got != old, got
		})
		return got
	}
	// settle waits until Flux is quiet: the Kustomization applied the
	// GitOps head and its health check is over (kustomize-controller polls
	// it every 5s, and a reconcile request waits behind it), so that every
	// case starts from the same state.
	settle := func() {
		waitFor(t, 120*time.Second, "Flux to settle", func() (bool, string) {
			ks := kustomization(t, f.env)
			ready := apimeta.FindStatusCondition(ks.Status.Conditions, meta.ReadyCondition)
			reconciling := apimeta.FindStatusCondition(ks.Status.Conditions, meta.ReconcilingCondition)
			return ready != nil && ready.Status == metav1.ConditionTrue && reconciling == nil &&
				ks.Status.LastAppliedRevision == "main@sha1:"+f.gitopsHead(t), describe(ks)
		})
	}
	results := map[string][]float64{}
	record := func(name string, round int, d time.Duration) {
		results[name] = append(results[name], d.Seconds())
		fmt.Printf("FLUXBENCH %s %d %.3f\n", name, round, d.Seconds())
	}
	// A first release, untimed: the registry and the caches are warm.
	edit()
	mustSucceed(t, notesctl(t, f.site, nil, "", "release", "--image", f.image, "--base", "scratch", "--gitops", f.gitopsURL,
		"--wait", "--kubeconfig", f.env.Kubeconfig, "--timeout", "120s"))
	for round := 1; round <= rounds; round++ {
		settle()
		// (a): the spec change is timed by a watcher next to the command;
		// the command itself returns once Flux reports the Kustomization
		// Ready (its wait: true health check) and the rollout is done.
		edit()
		old := deploymentImage(t, f.env)
		start := time.Now()
		changed := make(chan time.Duration, 1)
		stop := make(chan struct{})
		go func() {
			for {
				d := &appsv1.Deployment{}
				err := f.env.Client.Get(context.Background(), types.NamespacedName{Namespace: "notes", Name: "notes"}, d)
				if err == nil && d.Spec.Template.Spec.Containers[0].Image != old {
					changed <- time.Since(start)
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
		r := notesctl(t, f.site, nil, "", "release", "--image", f.image, "--base", "scratch", "--gitops", f.gitopsURL,
			"--wait", "--kubeconfig", f.env.Kubeconfig, "--timeout", "120s")
		returned := time.Since(start)
		mustSucceed(t, r)
		select {
		case d := <-changed:
			record("a-release-wait", round, d)
		case <-time.After(5 * time.Second):
			close(stop)
			t.Fatalf("release --wait returned, but the Deployment spec did not change")
		}
		record("a-release-wait-returns", round, returned)

		// (b)
		settle()
		edit()
		old = deploymentImage(t, f.env)
		start = time.Now()
		r = notesctl(t, f.site, []string{"NOTESCTL_FLUX_WEBHOOK_TOKEN=" + receiverToken}, "", "release", "--image", f.image, "--base", "scratch",
			"--gitops", f.gitopsURL, "--flux-webhook", hook)
		mustSucceed(t, r)
		untilImage(old, 120*time.Second)
		record("b-release-webhook", round, time.Since(start))

		// (c)
		settle()
		edit()
		old = deploymentImage(t, f.env)
		start = time.Now()
		mustSucceed(t, notesctl(t, f.site, nil, "", "build", "--image", f.image, "--base", "scratch"))
		postReceiver(t, hook, receiverToken)
		untilImage(old, 180*time.Second)
		record("c-build-flux-automation", round, time.Since(start))
	}
	names := make([]string, 0, len(results))
	for name := range results {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v := append([]float64(nil), results[name]...)
		sort.Float64s(v)
		fmt.Printf("FLUXBENCH-MEDIAN %s %.3f (min %.3f, max %.3f, n=%d)\n", name, v[len(v)/2], v[0], v[len(v)-1], len(v))
	}
}

// waitForFast is waitFor polling every 50ms, for timings.
func waitForFast(t *testing.T, d time.Duration, what string, ok func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for time.Now().Before(deadline) {
		var done bool
		if done, last = ok(); done {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last seen: %s", what, last)
}

// postReceiver calls a generic-hmac Receiver as a registry webhook would.
func postReceiver(t *testing.T, url, token string) {
	t.Helper()
	body := []byte(`{"event":"push"}`)
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write(body)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("Receiver answered %s", resp.Status)
	}
}
