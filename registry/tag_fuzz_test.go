package registry

import (
	"regexp"
	"strconv"
	"testing"
)

// fluxDefaultPolicy is the filter of the ImagePolicy notesctl scaffolds for
// the main branch: Flux extracts $ts and orders numerically.
var fluxDefaultPolicy = regexp.MustCompile(ReleaseTagPattern("main"))

// releaseVersion is a generator version that makes a release tag.
var releaseVersion = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)

// FuzzRenderTag checks RenderTag on any template and data:
//   - it never panics;
//   - a nil error means the tag matches the OCI tag grammar, and rendering
//     again gives the same tag;
//   - with the default template and branch "main", a tag it returns reads
//     back with ParseTag as the timestamp it was given, and so does the
//     scaffolded Flux pattern for a clean hugo x.y.z build (Flux must order
//     releases by commit time); a dirty build never matches that pattern.
func FuzzRenderTag(f *testing.F) {
	const sha = "b9060af2d8b1c6e5f7a3940e1d2c3b4a5f6e7d8c"
	seeds := []struct {
		tmpl, branch, sha, short string
		ts                       int64
		gen, ver                 string
		dirty                    bool
	}{
		{"", "main", sha, "", 1746598316, "hugo", "0.145.0", false},
		{"", "main", sha, "", 1746598316, "hugo", "0.145.0", true},
		{"", "main", sha, "b9060af2d8", 1, "hugo", "0.145.0-DEV", false},
		{"", "main", sha, "", 9223372036854775807, "hugo", "0.145.0", false},
		{"", "feature/x", sha, "", 1746598316, "hugo", "0.145.0", false},
		{"", "main", "", "", 1746598316, "hugo", "0.145.0", false},
		{"", "main", sha, "", -1, "hugo", "0.145.0", false},
		{"", "main", "ZZZZZZZ", "", 1746598316, "hugo", "0.145.0", false},
		{"", "main", sha, "abc", 1746598316, "hugo", "0.145.0", false},
		{"", "main", sha, "", 1746598316, "Hugo", "0.145.0", false},
		{"", "main", sha, "", 1746598316, "hugo-x", "0.145.0", false},
		{"", "main", sha, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789a", 1746598316, "hugo", "0.145.0", false},
		{"", "main", sha, "", 1746598316, "hugohugohugohugohugohugohugohugohugohugohugohugohugohugohugohugohugohugohugohugohugohugohugohugohugo", "0.145.0", false},
		{"", "main", sha, "", 1, "hugo", "0-abcd-1-hugo1", false},
		{"", "main", sha, "", 1746598316, "hugo", "0.145.0-dirty", false},
		{"", "main", sha, "", 1746598316, "hugo", "v0.145.0", false},
		{DefaultTagTemplate, "main", sha, "", 1746598316, "hugo", "0.145.0", false},
		{"{{.GeneratorVersion}}-{{.ShortSHA}}", "main", sha, "", 1746598316, "hugo", "0.145.0", false},
		{`{{lower .Branch | replace "/" "_"}}-{{trunc 4 .SHA}}`, "Release/V2", sha, "", 1746598316, "hugo", "0.145.0", false},
		{`{{trunc -1 .SHA}}`, "main", sha, "", 1746598316, "hugo", "0.145.0", false},
		{`{{upper .Branch}}-{{.Timestamp}}`, "main", sha, "", 1746598316, "hugo", "0.145.0", false},
		{"{{if .Dirty}}dev{{else}}rel{{end}}-{{.Timestamp}}", "main", sha, "", 1746598316, "hugo", "0.145.0", true},
		{"{{.Branch}} ünï", "main", sha, "", 1746598316, "hugo", "0.145.0", false},
		{"-.-{{.Branch}}", "main", sha, "", 1746598316, "hugo", "0.145.0", false},
		{"...", "main", sha, "", 1746598316, "hugo", "0.145.0", false},
		{"{{.Branch", "main", sha, "", 1746598316, "hugo", "0.145.0", false},
		{"{{.Tag}}", "main", sha, "", 1746598316, "hugo", "0.145.0", false},
		{"{{nope .Branch}}", "main", sha, "", 1746598316, "hugo", "0.145.0", false},
		{`{{printf "%s-%d" .Branch .Timestamp}}`, "main", sha, "", 1746598316, "hugo", "0.145.0", false},
		{`{{template "x"}}`, "main", sha, "", 1746598316, "hugo", "0.145.0", false},
		{`{{define "x"}}{{.Branch}}{{end}}{{template "x" .}}`, "main", sha, "", 1746598316, "hugo", "0.145.0", false},
		{`{{with $x := .SHA}}{{$x}}{{end}}`, "main", sha, "", 1746598316, "hugo", "0.145.0", false},
		{`{{range 3}}{{.}}{{end}}`, "main", sha, "", 1746598316, "hugo", "0.145.0", false},
		{`{{index .Branch 0}}`, "main", sha, "", 1746598316, "hugo", "0.145.0", false},
		{`{{slice .SHA 1 3}}`, "main", sha, "", 1746598316, "hugo", "0.145.0", false},
		{"{{.Branch}}\x00\xff", "main\n", sha, "", 1746598316, "hugo", "0.145.0", false},
	}
	for _, s := range seeds {
		f.Add(s.tmpl, s.branch, s.sha, s.short, s.ts, s.gen, s.ver, s.dirty)
	}
	f.Fuzz(func(t *testing.T, tmpl, branch, sha, short string, ts int64, gen, ver string, dirty bool) {
		d := TagData{Branch: branch, SHA: sha, ShortSHA: short, Timestamp: ts, Generator: gen, GeneratorVersion: ver, Dirty: dirty}
		tag, err := RenderTag(tmpl, d)
		if err != nil {
			if tag != "" {
				t.Fatalf("RenderTag(%q) = %q with error %v", tmpl, tag, err)
			}
		} else {
			if !ociTag.MatchString(tag) {
				t.Fatalf("RenderTag(%q, %+v) = %q: not an OCI tag", tmpl, d, tag)
			}
			again, err := RenderTag(tmpl, d)
			if err != nil || again != tag {
				t.Fatalf("RenderTag(%q) is not deterministic: %q, then %q, %v", tmpl, tag, again, err)
			}
		}

		// The default scheme, on main: what Flux and ParseTag read back.
		d.Branch = "main"
		tag, err = RenderTag("", d)
		if err != nil {
			return
		}
		if !ociTag.MatchString(tag) {
			t.Fatalf("default tag %q for %+v: not an OCI tag", tag, d)
		}
		b, _, got, _, ok := ParseTag(tag)
		if !ok || got != ts || b != "main" {
			t.Fatalf("default tag %q for %+v: ParseTag = branch %q, ts %d, ok %v; want main, %d", tag, d, b, got, ok, ts)
		}
		m := fluxDefaultPolicy.FindStringSubmatch(tag)
		if dirty || gen != "hugo" || !releaseVersion.MatchString(ver) {
			if m != nil && dirty {
				t.Fatalf("dirty tag %q matches the release pattern", tag)
			}
			return
		}
		if m == nil || m[1] != strconv.FormatInt(ts, 10) {
			t.Fatalf("default tag %q for %+v: Flux's pattern reads %q, want %d", tag, d, m, ts)
		}
	})
}
