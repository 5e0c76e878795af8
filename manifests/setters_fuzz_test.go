package manifests

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzUpdateFile checks the engine's promise on arbitrary input: it never
// panics, and when it rewrites a file the result parses, has the same
// documents, and differs only in the marked scalars, each of which now reads
// as the policy's string.
func FuzzUpdateFile(f *testing.F) {
	inputs, _ := filepath.Glob(filepath.Join("testdata", "update", "*", "input", "*.y*ml"))
	for _, p := range inputs {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, "v1.2.3")
	}
	for _, s := range []string{
		"a: b # {\"$imagepolicy\": \"flux-system:notes:tag\"}\n",
		"- 'x' # {\"$imagepolicy\": \"flux-system:notes\"}\n- y\n",
		"k: |2- # {\"$imagepolicy\": \"flux-system:notes:tag\"}\n    x\n   y\n",
		"k: [a, b # {\"$imagepolicy\": \"flux-system:notes:tag\"}\n ]\n",
		"k: a\n  b\n\n  c # {\"$imagepolicy\": \"flux-system:notes:tag\"}\n",
		"\xef\xbb\xbfk: v # {\"$imagepolicy\": \"flux-system:notes:tag\"}\r\n",
	} {
		f.Add([]byte(s), "1.10")
	}
	f.Fuzz(func(t *testing.T, data []byte, tag string) {
		p := notesPolicy
		if tagPattern.MatchString(tag) {
			p.Tag = tag
		}
		out, changes, err := UpdateFile("f.yaml", data, []Policy{p})
		if err != nil {
			var pe *ParseError
			if out != nil || changes != nil {
				t.Fatalf("error %v with output", err)
			}
			if !errors.As(err, &pe) && !strings.Contains(err.Error(), "explicit tag") {
				// Anything else means the engine gave up on a file that
				// parses: a gap worth a regression case.
				t.Fatalf("UpdateFile: %v", err)
			}
			return
		}
		if len(changes) == 0 {
			if string(out) != string(data) {
				t.Fatalf("no changes reported but output differs")
			}
			return
		}
		checkOnlyMarkedChanged(t, "f.yaml", data, out, []Policy{p})
		// Applying again is a no-op.
		again, more, err := UpdateFile("f.yaml", out, []Policy{p})
		if err != nil || len(more) != 0 || string(again) != string(out) {
			t.Fatalf("second pass: %d changes, err %v", len(more), err)
		}
	})
}
