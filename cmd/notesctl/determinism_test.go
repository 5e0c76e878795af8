package main

// The digest contract under load: the same commit built by many notesctl
// processes at once, on a machine kept busy, gives one digest. Hugo
// renders in parallel goroutines and its highlighter used to give up on
// regexp matches after 250 ms of wall time (render/highlight.go), so a
// build that was descheduled at the wrong moment rendered other bytes.

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/notesctl/notesctl/internal/sitegit"
)

var (
	stressBuilds = flag.Int("determinism.builds", 8, "TestBuildDigestUnderLoad: concurrent builds per round")
	stressRounds = flag.Int("determinism.rounds", 2, "TestBuildDigestUnderLoad: rounds")
	stressLines  = flag.Int("determinism.lines", 250, "TestBuildDigestUnderLoad: lines in each of the four code listings of each of eight pages")
)

// listingsPage is a talk page with long code listings in a few languages:
// highlighting them is most of the render, which is where a build that is
// descheduled mid-match used to differ.
func listingsPage(n, lines int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "---\ntitle: Listings %d\nweight: %d\ntags: [gitops]\n---\n\nConfiguration and code shown in the talk.\n", n, 90+n)
	for _, lang := range []string{"text", "yaml", "go", "bash"} {
		fmt.Fprintf(&b, "\n```%s\n", lang)
		for i := range lines {
			switch lang {
			case "go":
				fmt.Fprintf(&b, "x%d := compute(%d, \"n%d\") // step %d\n", i, i*7, i%13, i)
			case "bash":
				fmt.Fprintf(&b, "kubectl get pods -n ns-%d -o name | grep -c web-%d # %d\n", i%17, i, i)
			default:
				fmt.Fprintf(&b, "key%d: value-%d # note %d\n", i, i*7, i%13)
			}
		}
		b.WriteString("```\n")
	}
	return b.String()
}

// TestBuildDigestUnderLoad builds one commit first alone, then
// -determinism.builds times at once (GOMAXPROCS 1, 2 and 4, with this
// process spinning on every core), -determinism.rounds times, and wants one
// digest. A mismatch names the layer entries that differ, with the first
// differing line. Without the fix in render/highlight.go a round failed
// about one time in two or three (8 builds on 2 cores), so this is a guard
// that catches a regression often, not always; render's TestHighlight*
// tests fail every time. A longer run:
//
//	go test ./cmd/notesctl -run TestBuildDigestUnderLoad -args -determinism.rounds=5 -determinism.builds=12
func TestBuildDigestUnderLoad(t *testing.T) {
	// Not parallel: the load is the point, and other tests should not
	// slow down under it.
	site := newSite(t)
	// Hugo renders pages in parallel goroutines: several listing pages
	// keep several highlighting goroutines competing for each core.
	for i := range 8 {
		page := filepath.Join(site, "content", "day1", fmt.Sprintf("9%d_listings.md", i))
		if err := os.WriteFile(page, []byte(listingsPage(i, *stressLines)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sitegit.CommitAll(site, "add listings", sitegit.Epoch.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	ref := stressBuild(t, site, 0)
	if ref.err != nil {
		t.Fatal(ref.err)
	}
	t.Logf("reference build: %s in %s", ref.Digest, ref.took)

	var stop atomic.Bool
	var hogs sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		hogs.Go(func() {
			for n := 0; !stop.Load(); n++ {
			}
		})
	}
	defer func() { stop.Store(true); hogs.Wait() }()

	for round := range *stressRounds {
		builds := make([]stressResult, *stressBuilds)
		var wg sync.WaitGroup
		for i := range builds {
			// Most mismatches came from GOMAXPROCS=1 builds (one core for
			// all of Hugo's goroutines), so half of the builds get that.
			wg.Go(func() { builds[i] = stressBuild(t, site, []int{1, 2, 1, 4}[i%4]) })
		}
		wg.Wait()
		for i, b := range builds {
			switch {
			case b.err != nil:
				t.Errorf("round %d, build %d (GOMAXPROCS=%d): %v", round, i, b.procs, b.err)
			case b.Digest != ref.Digest:
				t.Errorf("round %d, build %d (GOMAXPROCS=%d, %s): digest %s, the reference build gave %s\n%s",
					round, i, b.procs, b.took, b.Digest, ref.Digest, diffLayouts(t, ref, b))
			}
		}
		if t.Failed() {
			return
		}
		t.Logf("round %d: %d concurrent builds, one digest", round, len(builds))
	}
}

// stressResult is one build of TestBuildDigestUnderLoad.
type stressResult struct {
	Digest, Tag string
	layout      string
	procs       int
	took        time.Duration
	err         error
}

// stressBuild builds HEAD of site into a new OCI layout with the options
// release --local uses; procs > 0 sets GOMAXPROCS.
func stressBuild(t *testing.T, site string, procs int) stressResult {
	r := stressResult{layout: t.TempDir(), procs: procs}
	var env []string
	if procs > 0 {
		env = append(env, fmt.Sprintf("GOMAXPROCS=%d", procs))
	}
	cmd := hardCmd(t, site, env, "build", "--image", localImage, "--base", "scratch", "--to", "oci:"+r.layout, "--output", "json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	r.took = time.Since(start)
	if err != nil {
		r.err = fmt.Errorf("%v\n%s", err, stderr.String())
		return r
	}
	if err := json.Unmarshal(out, &r); err != nil || r.Digest == "" {
		r.err = fmt.Errorf("build --output json: %v\n%s", err, out)
	}
	return r
}

// diffLayouts says how two builds differ: the layers whose digests differ
// and, in each, the entries that differ (header or content), with the
// first differing line of a text file.
func diffLayouts(t *testing.T, a, b stressResult) string {
	ia, ib := layoutImage(t, a.layout, a.Tag), layoutImage(t, b.layout, b.Tag)
	la, err := ia.Layers()
	if err != nil {
		return err.Error()
	}
	lb, err := ib.Layers()
	if err != nil {
		return err.Error()
	}
	var out strings.Builder
	if len(la) != len(lb) {
		fmt.Fprintf(&out, "%d layers, the reference has %d\n", len(lb), len(la))
	}
	sameLayers := len(la) == len(lb)
	for i := range min(len(la), len(lb)) {
		da, _ := la[i].Digest()
		db, _ := lb[i].Digest()
		if da == db {
			continue
		}
		sameLayers = false
		fmt.Fprintf(&out, "layer %d: %s, the reference has %s\n", i, db, da)
		ea, err := layerEntries(la[i])
		if err != nil {
			return err.Error()
		}
		eb, err := layerEntries(lb[i])
		if err != nil {
			return err.Error()
		}
		var names []string
		for n := range ea {
			names = append(names, n)
		}
		for n := range eb {
			if _, ok := ea[n]; !ok {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		for _, n := range names {
			x, okA := ea[n]
			y, okB := eb[n]
			switch {
			case !okA:
				fmt.Fprintf(&out, "  %s: only in this build\n", n)
			case !okB:
				fmt.Fprintf(&out, "  %s: only in the reference\n", n)
			case x.header != y.header:
				fmt.Fprintf(&out, "  %s: %s, the reference has %s\n", n, y.header, x.header)
				if x.sum != y.sum {
					fmt.Fprintf(&out, "    %s\n", firstDifference(x.data, y.data))
				}
			}
		}
	}
	if sameLayers {
		// The layers are the same, so the config (labels, times) differs.
		ca, _ := ia.RawConfigFile()
		cb, _ := ib.RawConfigFile()
		fmt.Fprintf(&out, "same layers, other config:\n  reference: %s\n  this:      %s\n", ca, cb)
	}
	return out.String()
}

// layerEntry is what the diff compares of a tar entry.
type layerEntry struct {
	header string // type, mode, owner, mtime, size, content sum
	sum    [sha256.Size]byte
	data   []byte
}

func layerEntries(l v1.Layer) (map[string]layerEntry, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	out := map[string]layerEntry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		e := layerEntry{sum: sha256.Sum256(data), data: data}
		e.header = fmt.Sprintf("type %c mode %o owner %d:%d mtime %s size %d sha256 %x",
			h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime.UTC().Format(time.RFC3339), h.Size, e.sum[:6])
		out[h.Name] = e
	}
}

// firstDifference shows the first line where b differs from a.
func firstDifference(a, b []byte) string {
	al, bl := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n      reference: %.300q\n      this:      %.300q", i+1, x, y)
		}
	}
	return "same lines"
}
