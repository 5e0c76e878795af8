package manifests

import (
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"testing"
)

func TestUnifiedDiff(t *testing.T) {
	tests := []struct {
		name, a, b string
		context    int
		want       string
	}{
		{"equal", "a\nb\n", "a\nb\n", 3, ""},
		{"one line", "a\nb\nc\n", "a\nB\nc\n", 3,
			"--- a\n+++ b\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"},
		{"from empty", "", "x\ny\n", 3,
			"--- a\n+++ b\n@@ -0,0 +1,2 @@\n+x\n+y\n"},
		{"to empty", "x\n", "", 3,
			"--- a\n+++ b\n@@ -1 +0,0 @@\n-x\n"},
		{"no final newline", "a\nb", "a\nc", 3,
			"--- a\n+++ b\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n"},
		{"final newline added", "a\nb", "a\nb\n", 3,
			"--- a\n+++ b\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n"},
		{"crlf", "a\r\nb\r\n", "a\r\nc\r\n", 3,
			"--- a\n+++ b\n@@ -1,2 +1,2 @@\n a\r\n-b\r\n+c\r\n"},
		{"pure insert zero context", "a\nb\n", "a\nx\nb\n", 0,
			"--- a\n+++ b\n@@ -1,0 +2 @@\n+x\n"},
		{"two hunks", "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "1\nX\n3\n4\n5\n6\n7\n8\nY\n10\n", 1,
			"--- a\n+++ b\n@@ -1,3 +1,3 @@\n 1\n-2\n+X\n 3\n@@ -8,3 +8,3 @@\n 8\n-9\n+Y\n 10\n"},
		{"close changes share a hunk", "1\n2\n3\n4\n5\n", "X\n2\n3\n4\nY\n", 2,
			"--- a\n+++ b\n@@ -1,5 +1,5 @@\n-1\n+X\n 2\n 3\n 4\n-5\n+Y\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := UnifiedDiff("a", "b", []byte(tt.a), []byte(tt.b), tt.context)
			if got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
			if got != "" {
				if applied := applyUnified(t, tt.a, got); applied != tt.b {
					t.Errorf("patch gives %q, want %q", applied, tt.b)
				}
			}
		})
	}
}

// TestUnifiedDiffApplies diffs random edits of random files and applies the
// patch back: the result must be the new file, and the script minimal
// enough that unchanged lines are never shown as changed.
func TestUnifiedDiffApplies(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 300; i++ {
		a := randomLines(rng, rng.Intn(30))
		b := append([]string(nil), a...)
		for e := rng.Intn(6); e > 0; e-- {
			switch pos := rng.Intn(len(b) + 1); rng.Intn(3) {
			case 0:
				b = append(b[:pos], append([]string{"new" + strconv.Itoa(rng.Intn(5)) + "\n"}, b[pos:]...)...)
			case 1:
				if pos < len(b) {
					b = append(b[:pos], b[pos+1:]...)
				}
			default:
				if pos < len(b) {
					b[pos] = "changed\n"
				}
			}
		}
		as, bs := strings.Join(a, ""), strings.Join(b, "")
		if rng.Intn(4) == 0 {
			bs = strings.TrimSuffix(bs, "\n")
		}
		d := UnifiedDiff("a", "b", []byte(as), []byte(bs), rng.Intn(4))
		if (d == "") != (as == bs) {
			t.Fatalf("case %d: diff %q for a=%q b=%q", i, d, as, bs)
		}
		if d != "" {
			if got := applyUnified(t, as, d); got != bs {
				t.Fatalf("case %d: patch of %q gives %q, want %q\n%s", i, as, got, bs, d)
			}
		}
	}
}

func randomLines(rng *rand.Rand, n int) []string {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = fmt.Sprintf("l%d\n", rng.Intn(8))
	}
	return lines
}

// applyUnified applies a unified diff produced by UnifiedDiff to a,
// checking hunk headers and context lines on the way.
func applyUnified(t *testing.T, a, diff string) string {
	t.Helper()
	src := splitLines(a)
	lines := strings.SplitAfter(diff, "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "--- ") || !strings.HasPrefix(lines[1], "+++ ") {
		t.Fatalf("bad header in\n%s", diff)
	}
	var out []string
	next := 0 // next unread line of src
	i := 2
	for i < len(lines) && lines[i] != "" {
		var aStart, aCount, bStart, bCount int
		h := lines[i]
		if !strings.HasPrefix(h, "@@ -") {
			t.Fatalf("expected hunk header, got %q", h)
		}
		parts := strings.Fields(h)
		aStart, aCount = parseRange(t, parts[1][1:])
		bStart, bCount = parseRange(t, parts[2][1:])
		from := aStart - 1
		if aCount == 0 {
			from = aStart
		}
		if from < next {
			t.Fatalf("hunk %q overlaps", h)
		}
		out = append(out, src[next:from]...)
		next = from
		i++
		gotA, gotB := 0, 0
		for i < len(lines) && lines[i] != "" && !strings.HasPrefix(lines[i], "@@") {
			l := lines[i]
			body := l[1:]
			if i+1 < len(lines) && lines[i+1] == "\\ No newline at end of file\n" {
				body = strings.TrimSuffix(body, "\n")
				i++
			}
			switch l[0] {
			case ' ', '-':
				if next >= len(src) || src[next] != body {
					t.Fatalf("context/removed line %q does not match %q", body, src[min(next, len(src)-1)])
				}
				next++
				gotA++
				if l[0] == ' ' {
					out = append(out, body)
					gotB++
				}
			case '+':
				out = append(out, body)
				gotB++
			default:
				t.Fatalf("bad line %q", l)
			}
			i++
		}
		if gotA != aCount || gotB != bCount {
			t.Fatalf("hunk %q has %d/%d lines", h, gotA, gotB)
		}
		_ = bStart
	}
	out = append(out, src[next:]...)
	return strings.Join(out, "")
}

func parseRange(t *testing.T, s string) (start, count int) {
	t.Helper()
	count = 1
	if a, b, ok := strings.Cut(s, ","); ok {
		s = a
		var err error
		if count, err = strconv.Atoi(b); err != nil {
			t.Fatal(err)
		}
	}
	start, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return start, count
}
