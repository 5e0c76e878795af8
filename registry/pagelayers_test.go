package registry

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"
)

// TestPageBucketRule pins the rule of "Page layers": sections stay
// together unless split, split sections go by their second element, and the
// bucket of a key never changes (a change here is a new LayerFormat).
func TestPageBucketRule(t *testing.T) {
	split := map[string]bool{"tags": true}
	for _, tc := range []struct{ a, b string }{
		{"day1/index.html", "day1/01_intro/index.html"},
		{"day1/01_intro/index.html", "day1/02_dns/deep/x.json"},
		{"tags/dns/index.html", "tags/dns/page/2/index.html"},
	} {
		if pageBucket(tc.a, split) != pageBucket(tc.b, split) {
			t.Errorf("%s and %s are in different buckets", tc.a, tc.b)
		}
	}
	// Pinned: sha256("day1"), first 8 bytes big-endian, mod 48.
	if got := pageBucket("day1/x", split); got != 14 {
		t.Errorf("bucket of day1/x = %d, want 14", got)
	}
	// A split section spreads its terms over several buckets.
	seen := map[int]bool{}
	for i := range 40 {
		seen[pageBucket(fmt.Sprintf("tags/t%d/index.html", i), split)] = true
	}
	if len(seen) < 10 {
		t.Errorf("40 terms of a split section fill only %d buckets", len(seen))
	}
	if PageLayerName(7) != "pages-07" || PageLayerName(47) != "pages-47" {
		t.Errorf("PageLayerName: %s %s", PageLayerName(7), PageLayerName(47))
	}
}

// TestPlanSplitsLargeSections: a section above SectionSplitBytes is spread
// by its second element; a small one stays in one layer.
func TestPlanSplitsLargeSections(t *testing.T) {
	site := fstest.MapFS{"index.html": {Data: []byte("home")}}
	big := make([]byte, 64<<10)
	for i := range SectionSplitBytes/len(big) + 2 {
		site[fmt.Sprintf("tags/t%d/index.html", i)] = &fstest.MapFile{Data: big}
	}
	for i := range 30 {
		site[fmt.Sprintf("day1/talk%d/index.html", i)] = &fstest.MapFile{Data: []byte("talk")}
	}
	plan, err := planLayers(site)
	if err != nil {
		t.Fatal(err)
	}
	holding := func(prefix string) int {
		n := 0
		for _, p := range plan {
			if strings.HasPrefix(p.name, LayerPages+"-") && len(p.files) > 0 && strings.HasPrefix(p.files[0], prefix) {
				n++
			}
		}
		return n
	}
	where := map[string]string{}
	for _, p := range plan {
		for _, f := range p.files {
			where[f] = p.name
		}
	}
	if where["index.html"] != LayerPages {
		t.Errorf("index.html in %s, want %s", where["index.html"], LayerPages)
	}
	day1 := where["day1/talk0/index.html"]
	for i := range 30 {
		if w := where[fmt.Sprintf("day1/talk%d/index.html", i)]; w != day1 {
			t.Errorf("day1/talk%d in %s, day1/talk0 in %s: a small section is split", i, w, day1)
		}
	}
	if n := holding("tags/"); n < 10 {
		t.Errorf("a %d MiB section is in only %d layers", SectionSplitBytes>>20, n)
	}
}

// TestLayersBounded: however many sections, at most PageBuckets + 2 layers.
func TestLayersBounded(t *testing.T) {
	site := fstest.MapFS{"index.html": {Data: []byte("home")}, "a.css": {Data: []byte("x")}}
	for i := range 2000 {
		site[fmt.Sprintf("s%d/index.html", i)] = &fstest.MapFile{Data: []byte("p")}
	}
	plan, err := planLayers(site)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != PageBuckets+2 {
		t.Errorf("%d layers for 2000 sections, want %d", len(plan), PageBuckets+2)
	}
}

// syntheticSite is a rendered site shaped like the generated notes sites:
// many day sections of talk pages with text that compresses like prose, a
// tags section, a home page.
func syntheticSite(sections, talks int) fstest.MapFS {
	r := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("the a cluster dns gateway route load balancer pod node talk notes kubernetes service mesh latency retry timeout flux git image layer registry cache edge")
	text := func(n int) []byte {
		var b bytes.Buffer
		for range n {
			b.WriteString(words[r.IntN(len(words))])
			b.WriteByte(' ')
		}
		return b.Bytes()
	}
	site := fstest.MapFS{"index.html": {Data: text(3000)}, "404.html": {Data: text(50)}, "css/notes.css": {Data: text(400)}}
	for s := range sections {
		site[fmt.Sprintf("day%d/index.html", s)] = &fstest.MapFile{Data: text(300)}
		for p := range talks {
			site[fmt.Sprintf("day%d/%02d_talk/index.html", s, p)] = &fstest.MapFile{Data: text(600)}
		}
	}
	for i := range 20 {
		site[fmt.Sprintf("tags/t%d/index.html", i)] = &fstest.MapFile{Data: text(2000)}
	}
	return site
}

// TestOnePageEditUploadsLittle: editing one talk of a 2000-page site
// changes layers that hold at most 5% of the compressed bytes. (bench/
// release.sh measures the same on a generated 10,000-page site.)
func TestOnePageEditUploadsLittle(t *testing.T) {
	if testing.Short() {
		t.Skip("compresses a 2000-page site twice")
	}
	site := syntheticSite(200, 10)
	before := mustLayers(t, site, "", testTime)
	site["day17/03_talk/index.html"].Data = append(bytes.Clone(site["day17/03_talk/index.html"].Data), "An edit."...)
	after := mustLayers(t, site, "", testTime.Add(60e9))
	old := map[string]bool{}
	var total int64
	for _, l := range before {
		d, _ := l.Layer.Digest()
		old[d.String()] = true
		n, _ := l.Layer.Size()
		total += n
	}
	var uploaded int64
	var changed []string
	for _, l := range after {
		if d, _ := l.Layer.Digest(); !old[d.String()] {
			n, _ := l.Layer.Size()
			uploaded += n
			changed = append(changed, l.Name)
		}
	}
	frac := float64(uploaded) / float64(total)
	t.Logf("%d layers; edit changed %v: %d of %d compressed bytes (%.2f%%)", len(after), changed, uploaded, total, 100*frac)
	if len(changed) != 2 || changed[len(changed)-1] != LayerPages {
		t.Errorf("changed layers %v, want the talk's bucket and %s (new commit time)", changed, LayerPages)
	}
	if frac > 0.05 {
		t.Errorf("a one-page edit changes %.1f%% of the compressed bytes, want at most 5%%", 100*frac)
	}
}

// TestLayersIndependentOfGOMAXPROCS: the workers only change the order
// layers are built in, never their bytes.
func TestLayersIndependentOfGOMAXPROCS(t *testing.T) {
	site := syntheticSite(40, 3)
	var digests []string
	for _, procs := range []int{1, 2, 7} {
		prev := runtime.GOMAXPROCS(procs)
		ls := mustLayers(t, site, "", testTime)
		runtime.GOMAXPROCS(prev)
		var b strings.Builder
		for _, l := range ls {
			d, _ := l.Layer.Digest()
			fmt.Fprintf(&b, "%s=%s ", l.Name, d)
		}
		digests = append(digests, b.String())
	}
	if digests[0] != digests[1] || digests[1] != digests[2] {
		t.Errorf("layers differ with GOMAXPROCS 1, 2, 7:\n%s\n%s\n%s", digests[0], digests[1], digests[2])
	}
}
