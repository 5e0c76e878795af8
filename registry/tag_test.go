package registry

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var tagData = TagData{
	Branch:           "main",
	SHA:              "b9060af2d8b1c6e5f7a3940e1d2c3b4a5f6e7d8c",
	Timestamp:        1746598316,
	Generator:        "hugo",
	GeneratorVersion: "0.145.0",
}

func withData(f func(*TagData)) TagData {
	d := tagData
	f(&d)
	return d
}

// ociTag is the tag grammar of the OCI distribution spec.
var ociTag = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

func TestRenderTag(t *testing.T) {
	for _, tc := range []struct {
		name string
		tmpl string
		data TagData
		want string
	}{
		{"default", "", tagData, "main-b9060af-1746598316-hugo0.145.0"},
		{"default dirty", "", withData(func(d *TagData) { d.Dirty = true }), "main-b9060af-1746598316-hugo0.145.0-dirty"},
		{"default branch with slash", "", withData(func(d *TagData) { d.Branch = "feature/x" }), "feature-x-b9060af-1746598316-hugo0.145.0"},
		{"default upper-case SHA", "", withData(func(d *TagData) { d.SHA = strings.ToUpper(d.SHA) }), "main-b9060af-1746598316-hugo0.145.0"},
		{"default given short SHA", "", withData(func(d *TagData) { d.ShortSHA = "b9060af2d8" }), "main-b9060af2d8-1746598316-hugo0.145.0"},
		{"default branch with leading dot", "", withData(func(d *TagData) { d.Branch = ".hidden" }), "hidden-b9060af-1746598316-hugo0.145.0"},
		{"custom", "{{.GeneratorVersion}}-{{.ShortSHA}}", tagData, "0.145.0-b9060af"},
		{"custom full SHA", "sha-{{.SHA}}", tagData, "sha-b9060af2d8b1c6e5f7a3940e1d2c3b4a5f6e7d8c"},
		{"custom funcs", `{{lower .Branch | replace "/" "_"}}-{{trunc 4 .SHA}}`, withData(func(d *TagData) { d.Branch = "Release/V2" }), "release_v2-b906"},
		{"custom conditional", `{{if .Dirty}}dev{{else}}rel{{end}}-{{.Timestamp}}`, withData(func(d *TagData) { d.Dirty = true }), "dev-1746598316"},
		{"sanitized spaces and unicode", "{{.Branch}} ünï", tagData, "main--n-"},
		{"leading dash and dot removed", "-.-{{.Branch}}", tagData, "main"},
		{"leading underscore kept", "_{{.Branch}}", tagData, "_main"},
		{"cut at 128", "{{.Branch}}", withData(func(d *TagData) { d.Branch = strings.Repeat("b", 200) }), strings.Repeat("b", 128)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RenderTag(tc.tmpl, tc.data)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("RenderTag(%q) = %q, want %q", tc.tmpl, got, tc.want)
			}
			if !ociTag.MatchString(got) {
				t.Errorf("%q is not a valid OCI tag", got)
			}
		})
	}
}

func TestRenderTagErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		tmpl string
		data TagData
		want []string
	}{
		{"parse error", "{{.Branch", tagData, []string{`tag template "{{.Branch"`}},
		{"unknown field", "{{.Tag}}", tagData, []string{`tag template "{{.Tag}}"`, "Tag"}},
		{"unknown function", "{{nope .Branch}}", tagData, []string{`"{{nope .Branch}}"`, "nope"}},
		{"empty result", "{{if .Dirty}}x{{end}}", tagData, []string{`tag template "{{if .Dirty}}x{{end}}"`, "no valid tag"}},
		{"only invalid leading chars", "...", tagData, []string{"no valid tag"}},
		{"default without branch", "", withData(func(d *TagData) { d.Branch = "" }), []string{"branch"}},
		{"default without SHA", "", withData(func(d *TagData) { d.SHA = "" }), []string{"commit SHA"}},
		{"default without time", "", withData(func(d *TagData) { d.Timestamp = 0 }), []string{"commit timestamp"}},
		{"default without generator", "", withData(func(d *TagData) { d.GeneratorVersion = "" }), []string{"generator"}},
		{"default non-hex SHA", "", withData(func(d *TagData) { d.ShortSHA = "zzzzzzz" }), []string{`"zzzzzzz"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RenderTag(tc.tmpl, tc.data)
			if err == nil {
				t.Fatalf("RenderTag(%q) = %q, want an error", tc.tmpl, got)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// fluxPattern is the ImagePolicy filter the design documents for "main".
var fluxPattern = regexp.MustCompile(`^main-[a-f0-9]+-(?P<ts>[0-9]+)`)

func TestParseTag(t *testing.T) {
	for _, tc := range []struct {
		tag                     string
		ok                      bool
		branch, sha, genVersion string
		ts                      int64
	}{
		{"main-b9060af-1746598316-hugo0.145.0", true, "main", "b9060af", "0.145.0", 1746598316},
		{"main-b9060af-1746598316-hugo0.145.0-dirty", true, "main", "b9060af", "0.145.0", 1746598316},
		{"feature-x-0123abc-1700000000-hugo0.146.0-DEV", true, "feature-x", "0123abc", "0.146.0-DEV", 1700000000},
		{"fix-abc1234-1-deadbee-1746598316-hugo0.145.0", true, "fix-abc1234-1", "deadbee", "0.145.0", 1746598316},
		{"main-b9060af2d8-1746598316-hugo0.145.0", true, "main", "b9060af2d8", "0.145.0", 1746598316},
		{"latest", false, "", "", "", 0},
		{"main-b9060af-1746598316", false, "", "", "", 0},
		{"main-B9060AF-1746598316-hugo0.145.0", false, "", "", "", 0},
		{"main-b9060af-17465x8316-hugo0.145.0", false, "", "", "", 0},
		{"-b9060af-1746598316-hugo0.145.0", false, "", "", "", 0},
		{"main-b9060af-99999999999999999999-hugo0.145.0", false, "", "", "", 0},
	} {
		t.Run(tc.tag, func(t *testing.T) {
			branch, sha, ts, gv, ok := ParseTag(tc.tag)
			if ok != tc.ok || branch != tc.branch || sha != tc.sha || ts != tc.ts || gv != tc.genVersion {
				t.Errorf("ParseTag = %q %q %d %q %v, want %q %q %d %q %v", branch, sha, ts, gv, ok,
					tc.branch, tc.sha, tc.ts, tc.genVersion, tc.ok)
			}
		})
	}
}

// TestDefaultTagRoundTrip: every default tag parses back, and for main
// Flux's pattern extracts the same timestamp, so Flux and ParseTag agree on
// release order.
func TestDefaultTagRoundTrip(t *testing.T) {
	for _, d := range []TagData{
		tagData,
		withData(func(d *TagData) { d.Dirty = true }),
		withData(func(d *TagData) { d.Timestamp = 1 }),
		withData(func(d *TagData) { d.Branch = "feature/x-1" }),
		withData(func(d *TagData) { d.GeneratorVersion = "0.146.0+extended" }),
	} {
		tag, err := RenderTag("", d)
		if err != nil {
			t.Fatal(err)
		}
		branch, sha, ts, _, ok := ParseTag(tag)
		if !ok || branch != SanitizeTag(d.Branch) || sha != d.SHA[:7] || ts != d.Timestamp {
			t.Errorf("%q parsed as %q %q %d %v", tag, branch, sha, ts, ok)
		}
		if d.Branch != "main" {
			continue
		}
		m := fluxPattern.FindStringSubmatch(tag)
		if m == nil || m[1] != strconv.FormatInt(d.Timestamp, 10) {
			t.Errorf("Flux pattern on %q gives %v", tag, m)
		}
	}
}

// TestDefaultTagLongBranch: a long branch name is shortened so that the
// commit, the timestamp and the generator version stay in the tag.
func TestDefaultTagLongBranch(t *testing.T) {
	d := TagData{Branch: "feature/" + strings.Repeat("very-long-branch-name-", 8), SHA: "b9060af0123456789", Timestamp: 1746598316, Generator: "hugo", GeneratorVersion: "0.145.0"}
	tag, err := RenderTag("", d)
	if err != nil {
		t.Fatal(err)
	}
	if len(tag) > 128 || !strings.HasSuffix(tag, "-b9060af-1746598316-hugo0.145.0") || !strings.HasPrefix(tag, "feature-very-long-branch-name-") {
		t.Errorf("tag = %q (%d chars)", tag, len(tag))
	}
	if _, sha, ts, _, ok := ParseTag(tag); !ok || sha != "b9060af" || ts != 1746598316 {
		t.Errorf("ParseTag(%q) = %s %d %v", tag, sha, ts, ok)
	}
}

// TestReleaseTagPattern pins which tags the scaffolded Flux ImagePolicy may
// deploy: clean release builds of its branch, nothing else.
func TestReleaseTagPattern(t *testing.T) {
	clean := func(branch string, dirty bool) string {
		tag, err := RenderTag("", TagData{Branch: branch, SHA: "b9060afdeadbeef", Timestamp: 1746598316, Generator: "hugo", GeneratorVersion: "0.145.0", Dirty: dirty})
		if err != nil {
			t.Fatal(err)
		}
		return tag
	}
	tests := []struct {
		branch, tag string
		ts          string // "" means no match
	}{
		{"main", clean("main", false), "1746598316"},
		{"main", "main-0c1d2e3-1746690000-hugo0.145.0", "1746690000"},
		{"main", "main-0c1d2e3-1746690000-hugo0.146.10", "1746690000"},
		{"main", clean("main", true), ""}, // dirty
		{"main", "main-0c1d2e3-1746690000-hugo0.145.0-dirty", ""},
		{"main", "main-0c1d2e3-1746690000-hugo0.145.0-rc1", ""},
		{"main", "pr-12-0c1d2e3-1746690000-hugo0.145.0", ""},
		{"main", "pr-12-main-0c1d2e3-1746690000-hugo0.145.0", ""},
		{"main", "xmain-0c1d2e3-1746690000-hugo0.145.0", ""},
		{"main", "mainline-0c1d2e3-1746690000-hugo0.145.0", ""},
		{"main", "main-x-0c1d2e3-1746690000-hugo0.145.0", ""},   // branch main-x
		{"main", "main-abc-0c1d2e3-1746690000-hugo0.145.0", ""}, // branch main-abc: hex-looking
		{"main", "main-0-1234567-1746690000-hugo0.145.0", ""},   // branch main-0
		{"main", "main-0c1d2e3-1746690000", ""},
		{"main", "main-0c1d2e3-1746690000-hugo", ""},
		{"main", "main-0c1d2e3-1746690000-hugo0.145.0.sig", ""},
		{"main", "main-0c1d2e3-1746690000-hugo0.145.0\n", ""},
		{"main", "main", ""},
		{"main", "latest", ""},
		{"main", "sha256-0c1d2e3.sig", ""},
		{"release/2025", clean("release/2025", false), "1746598316"},
		{"release/2025", "release-2025-0c1d2e3-1746690000-hugo0.145.0", "1746690000"},
		{"release/2025", "release-2025-0c1d2e3-1746690000-hugo0.145.0-dirty", ""},
		{"release/2025", "main-0c1d2e3-1746690000-hugo0.145.0", ""},
		{"feature-x", clean("feature-x", false), "1746598316"},
		{"feature-x", "feature-x-y-0c1d2e3-1746690000-hugo0.145.0", ""},
		{"v1.2", "v1.2-0c1d2e3-1746690000-hugo0.145.0", "1746690000"},
		{"v1.2", "v1x2-0c1d2e3-1746690000-hugo0.145.0", ""}, // the dot is literal
	}
	for _, tt := range tests {
		pattern := ReleaseTagPattern(tt.branch)
		re := regexp.MustCompile(pattern)
		m := re.FindStringSubmatch(tt.tag)
		got := ""
		if m != nil {
			got = m[re.SubexpIndex("ts")]
		}
		if got != tt.ts {
			t.Errorf("%s on %q: ts %q, want %q", pattern, tt.tag, got, tt.ts)
		}
		// A tag the pattern accepts is one ParseTag reads the same way.
		if m != nil {
			if _, _, ts, _, ok := ParseTag(tt.tag); !ok || strconv.FormatInt(ts, 10) != got {
				t.Errorf("ParseTag(%q) = ts %d, ok %v; the pattern extracts %s", tt.tag, ts, ok, got)
			}
		}
	}
}
