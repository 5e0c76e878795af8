package main

import (
	"strings"
	"testing"
)

// TestAppRedact: the command's one redactor scrubs the secrets it was
// given and URL credentials it was not told about (an error echoing a
// remote URL with a token in it).
func TestAppRedact(t *testing.T) {
	a := &app{}
	a.addSecret("hunter22\n")
	for _, tt := range []struct{ in, leak string }{
		{"wrong password hunter22", "hunter22"},
		{`Get "https://ghp_tok3nvalue@github.com/acme/gitops.git/info/refs": EOF`, "ghp_tok3nvalue"},
		{"push to https://bot:pa55w0rd@git.example.org/gitops.git failed", "pa55w0rd"},
	} {
		if got := a.redact(tt.in); strings.Contains(got, tt.leak) {
			t.Errorf("redact(%q) = %q, still shows %q", tt.in, got, tt.leak)
		}
	}
}
