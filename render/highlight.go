package render

import (
	"fmt"
	"math"
	"reflect"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/alecthomas/chroma/v2"
	"github.com/alecthomas/chroma/v2/lexers"
)

// Syntax highlighting without a clock.
//
// Hugo highlights code with Chroma, whose lexers match with regexp2 and give
// every rule a wall-clock MatchTimeout of 250 ms. A match that times out is
// not an error: the lexer emits the character at that position as an Error
// token, which Hugo renders in the style's error colour. The timeout counts
// wall time, including time the goroutine spends descheduled, so on a
// loaded machine (many builds on few cores) a trivial match now and then
// "times out", and the same commit renders to different bytes and a
// different image digest. notesctl promises the same digest for the same
// commit on any machine, so every lexer's rules get regexp2's "no timeout"
// value before Hugo highlights anything.
//
// Chroma compiles a lexer's regexps lazily, on first use, and keeps them in
// an unexported field; there is no option for the timeout (chroma v2.15.0,
// the version Hugo v0.145.0 pins). So each lexer is compiled here, once per
// process, and its compiled rules are reached by reflection.
// TestHighlightHasNoTimeouts fails if a Chroma upgrade changes that layout.
//
// A regexp with catastrophic backtracking on some input now runs to the end
// instead of giving up after 250 ms: a slow render rather than one that
// depends on the machine's load.

// noMatchTimeout is regexp2's "never time out" (regexp2.DefaultMatchTimeout;
// regexp2 compares against exactly this value).
const noMatchTimeout = time.Duration(math.MaxInt64)

// removeHighlightTimeouts compiles every Chroma lexer and lifts its match
// timeouts, once per process; later calls wait for the first and return
// its result.
var removeHighlightTimeouts = sync.OnceValue(func() error {
	return untimeLexers(highlightLexers())
})

// highlightLexers are the lexers Hugo can highlight with: the registry that
// a code block's language is looked up in (and that lexers delegating to
// another language use), and the fallback used when guessing fails.
func highlightLexers() []chroma.Lexer {
	return append(append([]chroma.Lexer{}, lexers.GlobalLexerRegistry.Lexers...), lexers.Fallback)
}

// untimeLexers lifts the match timeouts of every regexp lexer reachable
// from roots, compiling them as needed.
func untimeLexers(roots []chroma.Lexer) error {
	var found []*chroma.RegexLexer
	seen := map[chroma.Lexer]bool{}
	for _, l := range roots {
		if err := collectRegexLexers(l, seen, &found); err != nil {
			return err
		}
	}
	// Compiling is most of the cost (a quarter of a CPU second for all of
	// Chroma's lexers), and each lexer compiles under its own lock.
	work := make(chan *chroma.RegexLexer)
	errs := make(chan error, len(found))
	var wg sync.WaitGroup
	for range max(1, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for l := range work {
				if err := untimeRegexLexer(l); err != nil {
					errs <- err
				}
			}
		})
	}
	for _, l := range found {
		work <- l
	}
	close(work)
	wg.Wait()
	close(errs)
	return <-errs // nil when none
}

// collectRegexLexers finds the regexp lexers in l: l itself, or the lexers
// a wrapper (delegating, remapping, content-type switching) holds.
func collectRegexLexers(l chroma.Lexer, seen map[chroma.Lexer]bool, found *[]*chroma.RegexLexer) error {
	if l == nil || seen[l] {
		return nil
	}
	seen[l] = true
	if rl, ok := l.(*chroma.RegexLexer); ok {
		*found = append(*found, rl)
		return nil
	}
	v := reflect.ValueOf(l)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("chroma lexer %s: unexpected type %T, cannot turn off its match timeouts", l.Config().Name, l)
	}
	s := v.Elem()
	lexerType := reflect.TypeFor[chroma.Lexer]()
	inner := 0
	for i := range s.NumField() {
		f := s.Field(i)
		if f.Kind() != reflect.Interface || !f.Type().Implements(lexerType) || f.IsNil() {
			continue
		}
		// An unexported field cannot be read through reflect directly; s
		// is addressable (it is what l points to), so read it in place.
		sub := reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Interface().(chroma.Lexer)
		if err := collectRegexLexers(sub, seen, found); err != nil {
			return err
		}
		inner++
	}
	if inner == 0 {
		return fmt.Errorf("chroma lexer %s: %T holds no lexer, cannot turn off its match timeouts", l.Config().Name, l)
	}
	return nil
}

// compiledRulesType is the type of RegexLexer's compiled rules, the field
// untimeRegexLexer edits.
var compiledRulesType = reflect.TypeFor[map[string][]*chroma.CompiledRule]()

// untimeRegexLexer compiles l and sets no timeout on each of its rules.
func untimeRegexLexer(l *chroma.RegexLexer) error {
	// Tokenise compiles the rules (once; later calls reuse them). A lexer
	// that does not compile is left alone: Hugo reports that error itself
	// should a page use it.
	if _, err := l.Tokenise(nil, ""); err != nil {
		return nil
	}
	rules := reflect.ValueOf(l).Elem().FieldByName("rules")
	if !rules.IsValid() || rules.Type() != compiledRulesType {
		return fmt.Errorf("chroma lexer %s: no compiled rules of type %s, cannot turn off its match timeouts (was chroma upgraded?)", l.Config().Name, compiledRulesType)
	}
	for it := rules.MapRange(); it.Next(); {
		state := it.Value()
		for i := range state.Len() {
			rule := (*chroma.CompiledRule)(state.Index(i).UnsafePointer())
			if rule != nil && rule.Regexp != nil {
				rule.Regexp.MatchTimeout = noMatchTimeout
			}
		}
	}
	return nil
}
