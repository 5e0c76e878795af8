package render

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/chroma/v2"
	"github.com/alecthomas/chroma/v2/lexers"
	"github.com/dlclark/regexp2"
)

// TestHighlightHasNoTimeouts: after a render, no rule of any lexer Hugo
// can highlight with has a match timeout. (Chroma gives each 250 ms, and a
// timed-out match changes the output; see highlight.go.) It also fails when
// a Chroma upgrade moves the fields highlight.go edits.
func TestHighlightHasNoTimeouts(t *testing.T) {
	mustRender(t, newSiteRepo(t, "testdata/mini", nil))
	var found []*chroma.RegexLexer
	seen := map[chroma.Lexer]bool{}
	for _, l := range highlightLexers() {
		if err := collectRegexLexers(l, seen, &found); err != nil {
			t.Fatal(err)
		}
	}
	if len(found) < 200 {
		t.Fatalf("found %d regexp lexers, Chroma has more than 250", len(found))
	}
	rules, timed := 0, 0
	for _, l := range found {
		if _, err := l.Tokenise(nil, ""); err != nil {
			continue // does not compile; not usable either
		}
		v := reflect.ValueOf(l).Elem().FieldByName("rules")
		for it := v.MapRange(); it.Next(); {
			for i := range it.Value().Len() {
				r := (*chroma.CompiledRule)(it.Value().Index(i).UnsafePointer())
				rules++
				if r.Regexp.MatchTimeout != noMatchTimeout {
					if timed == 0 {
						t.Errorf("lexer %s, state %s, rule %d (%s): match timeout %s", l.Config().Name, it.Key(), i, r.Pattern, r.Regexp.MatchTimeout)
					}
					timed++
				}
			}
		}
	}
	if timed > 0 {
		t.Errorf("%d of %d lexer rules have a match timeout", timed, rules)
	}
}

// slowPattern backtracks through 2^n paths on "x"*n before its second
// branch matches "x"*n + "z".
const slowPattern = `(?:(?:x+x+)+y|x+z)`

// A lexer for TestHighlightIgnoresMatchTime, registered before any render
// (and so before highlight.go's one pass over the registry).
var _ = lexers.Register(chroma.MustNewLexer(
	&chroma.Config{Name: "notesctl-slowmatch"},
	func() chroma.Rules {
		return chroma.Rules{"root": {
			{Pattern: slowPattern, Type: chroma.Keyword},
			{Pattern: `(?s).`, Type: chroma.Text},
		}}
	},
))

// slowInputLength finds an n for which slowPattern takes at least d to
// match "x"*n + "z" on this machine.
func slowInputLength(t *testing.T, d time.Duration) int {
	re := regexp2.MustCompile(`\G`+slowPattern, 0)
	for n := 16; n < 40; n++ {
		start := time.Now()
		if _, err := re.FindRunesMatchStartingAt([]rune(strings.Repeat("x", n)+"z"), 0); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) >= d {
			return n
		}
	}
	t.Fatalf("slowPattern never took %s", d)
	return 0
}

// TestHighlightIgnoresMatchTime: how long a highlighter's regexp takes to
// match does not change what a code block renders to. The block's one
// token needs a match that takes about a second here; with Chroma's 250 ms
// timeout it falls apart into text tokens, and a loaded machine makes
// ordinary matches that slow.
func TestHighlightIgnoresMatchTime(t *testing.T) {
	n := slowInputLength(t, 600*time.Millisecond)
	token := strings.Repeat("x", n) + "z"
	site := mustRender(t, newSiteRepo(t, "testdata/mini", map[string]string{
		"content/day1/code.md": fmt.Sprintf("---\ntitle: Code\n---\n\n```notesctl-slowmatch\n%s\n```\n", token),
	}))
	html := readAll(t, site.Files)["day1/code/index.html"]
	if !strings.Contains(html, "<code") {
		t.Fatalf("no code block in the page:\n%s", html)
	}
	if !strings.Contains(html, ">"+token+"</span>") {
		t.Errorf("the code block is not one keyword token of %d characters:\n%s", len(token), html)
	}
}
