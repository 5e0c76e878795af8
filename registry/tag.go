package registry

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template"
)

// DefaultTagTemplate is the tag used when no template is given, e.g.
// "main-b9060af-1746598316-hugo0.145.0". Flux sorts these tags with
// ReleaseTagPattern (`extract: $ts`, a numerical policy). A dirty build gets a
// "-dirty" suffix ("main-b9060af-1746598316-hugo0.145.0-dirty"), which
// ReleaseTagPattern never matches: a dirty image is never deployed by Flux.
const DefaultTagTemplate = "{{.Branch}}-{{.ShortSHA}}-{{.Timestamp}}-{{.Generator}}{{.GeneratorVersion}}{{if .Dirty}}-dirty{{end}}"

// ReleaseTagPattern is the Flux ImagePolicy filter (a Go regexp, as
// image-reflector-controller compiles it) that matches exactly the clean
// release tags DefaultTagTemplate renders for branch, with the commit time
// in the group "ts". It is anchored at both ends, so a "-dirty" build, a tag
// of another branch (also one that starts with branch, like "mainline" or
// "main-x"), a pull-request preview ("pr-<n>-...") or any other suffix does
// not match. The branch is sanitized as RenderTag sanitizes it.
//
// Why the branch cannot leak into the match: the hex SHA, the digits and
// the version contain no '-', so with both anchors the pattern splits a tag
// into exactly <branch>-<sha>-<ts>-hugo<x.y.z>.
func ReleaseTagPattern(branch string) string {
	return "^" + regexp.QuoteMeta(SanitizeTag(branch)) + `-[a-f0-9]{4,64}-(?P<ts>[0-9]{1,19})-hugo[0-9]+\.[0-9]+\.[0-9]+$`
}

// maxTagLen is the longest tag the OCI distribution spec allows.
const maxTagLen = 128

// TagData is what a tag template sees.
type TagData struct {
	// Branch is the source branch as git names it, e.g. "feature/x"; the
	// rendered tag is sanitized, so it becomes "feature-x".
	Branch string
	// SHA is the full commit hash, lower-case hex.
	SHA string
	// ShortSHA is the abbreviated commit hash; when empty, RenderTag uses the
	// first 7 characters of SHA.
	ShortSHA string
	// Timestamp is the commit time (or SOURCE_DATE_EPOCH) in Unix seconds.
	Timestamp int64
	// Generator is the site generator's name, e.g. "hugo".
	Generator string
	// GeneratorVersion is the generator's version, e.g. "0.145.0".
	GeneratorVersion string
	// Dirty is set when the build is of a modified work tree.
	Dirty bool
}

// tagFuncs are the functions tag templates may call, beyond text/template's
// built-ins: {{lower .Branch}}, {{upper .X}}, {{trunc 12 .SHA}} (first n
// characters) and {{replace "/" "_" .Branch}}.
var tagFuncs = template.FuncMap{
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"trunc": func(n int, s string) string {
		if n < 0 {
			return s
		}
		r := []rune(s)
		if len(r) > n {
			return string(r[:n])
		}
		return s
	},
	"replace": func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
}

// RenderTag renders a tag from a Go text/template over TagData; an empty
// template means DefaultTagTemplate. The result is sanitized to the OCI tag
// grammar [A-Za-z0-9_][A-Za-z0-9._-]{0,127}: every other character becomes
// '-', leading '.' and '-' are dropped and the tag is cut at 128 characters.
// A template that does not parse, refers to a field TagData lacks, or renders
// to nothing usable is an error naming the template.
func RenderTag(tmpl string, d TagData) (string, error) {
	if d.ShortSHA == "" && d.SHA != "" {
		d.ShortSHA = strings.ToLower(d.SHA)
		if len(d.ShortSHA) > 7 {
			d.ShortSHA = d.ShortSHA[:7]
		}
	}
	isDefault := tmpl == ""
	if isDefault {
		if err := checkDefaultTagData(d); err != nil {
			return "", err
		}
		tmpl = DefaultTagTemplate
		// A long branch name is shortened rather than the tag cut at 128
		// characters: the commit, timestamp and generator must survive.
		suffix := len(fmt.Sprintf("-%s-%d-%s%s", d.ShortSHA, d.Timestamp, d.Generator, d.GeneratorVersion))
		if d.Dirty {
			suffix += len("-dirty")
		}
		if b := SanitizeTag(d.Branch); len(b)+suffix > maxTagLen && maxTagLen-suffix >= 16 {
			d.Branch = strings.TrimRight(b[:maxTagLen-suffix], "-.")
		}
	}
	t, err := template.New("tag").Option("missingkey=error").Funcs(tagFuncs).Parse(tmpl)
	if err != nil {
		return "", fmt.Errorf("tag template %q: %w", tmpl, err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return "", fmt.Errorf("tag template %q: %w", tmpl, err)
	}
	tag := SanitizeTag(buf.String())
	if tag == "" {
		return "", fmt.Errorf("tag template %q rendered %q, which leaves no valid tag characters", tmpl, buf.String())
	}
	if isDefault {
		// Flux orders the default tags by the timestamp it reads back; a
		// tag that reads back otherwise (a generator name that is not
		// lower-case letters, a short SHA of fewer than 4 or more than 64
		// characters, a tag cut at 128 characters) would be misordered.
		branch, sha, ts, _, ok := ParseTag(tag)
		if !ok || branch != SanitizeTag(d.Branch) || sha != d.ShortSHA || ts != d.Timestamp {
			return "", fmt.Errorf("default tag %q does not read back as <branch>-<short SHA>-<timestamp>-<generator><version> (branch %q, short SHA %q, generator %q, version %q); pass a tag template", tag, d.Branch, d.ShortSHA, d.Generator, d.GeneratorVersion)
		}
	}
	return tag, nil
}

// checkDefaultTagData makes sure the default tag is complete, so that
// ParseTag and Flux's pattern can read it back.
func checkDefaultTagData(d TagData) error {
	var missing []string
	if d.Branch == "" {
		missing = append(missing, "branch (detached HEAD?)")
	}
	if d.ShortSHA == "" {
		missing = append(missing, "commit SHA")
	} else if !isLowerHex(d.ShortSHA) {
		return fmt.Errorf("default tag: short commit SHA %q is not lower-case hex", d.ShortSHA)
	}
	if d.Timestamp <= 0 {
		missing = append(missing, "commit timestamp")
	}
	if d.Generator == "" || d.GeneratorVersion == "" {
		missing = append(missing, "generator name and version")
	}
	if len(missing) > 0 {
		return fmt.Errorf("default tag needs %s; set them or pass a tag template", strings.Join(missing, ", "))
	}
	return nil
}

func isLowerHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return s != ""
}

// SanitizeTag maps s onto the OCI tag grammar as RenderTag does; it returns
// "" when nothing valid is left.
func SanitizeTag(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '_', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	tag := strings.TrimLeft(b.String(), ".-")
	if len(tag) > maxTagLen {
		tag = tag[:maxTagLen]
	}
	return tag
}

// defaultTagRE matches DefaultTagTemplate's output. The branch is greedy so
// that a branch with dashes ("feature-x") stays whole; the generator is a
// lower-case name directly followed by its version.
var defaultTagRE = regexp.MustCompile(`^(.+)-([a-f0-9]{4,64})-([0-9]{1,19})-([a-z]+)([0-9][A-Za-z0-9._-]*?)(-dirty)?$`)

// ParseTag reads a tag in the default scheme back into its parts: the
// (sanitized) branch, the short SHA, the commit timestamp and the generator
// version. A "-dirty" suffix is accepted and not part of genVersion. ok is
// false for tags in any other shape. Every tag it accepts also matches Flux's
// `^<branch>-[a-f0-9]+-(?P<ts>[0-9]+)` with the same timestamp.
func ParseTag(tag string) (branch string, sha string, ts int64, genVersion string, ok bool) {
	m := defaultTagRE.FindStringSubmatch(tag)
	if m == nil {
		return "", "", 0, "", false
	}
	ts, err := strconv.ParseInt(m[3], 10, 64)
	if err != nil {
		return "", "", 0, "", false
	}
	return m[1], m[2], ts, m[5], true
}
