package redact

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestURL(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"https://user:s3cret@github.com/acme/gitops.git", "https://user:xxxxx@github.com/acme/gitops.git"},
		{"https://ghp_abcdef123456@github.com/acme/gitops.git", "https://xxxxx@github.com/acme/gitops.git"},
		{"http://x-access-token:tok%2Fen@127.0.0.1:8080/r.git", "http://x-access-token:xxxxx@127.0.0.1:8080/r.git"},
		{"https://github.com/acme/gitops.git", "https://github.com/acme/gitops.git"},
		{"ssh://git@github.com/acme/gitops.git", "ssh://git@github.com/acme/gitops.git"},
		{"ssh://git:pw@github.com:2222/acme/gitops.git", "ssh://git:xxxxx@github.com:2222/acme/gitops.git"},
		{"git@github.com:acme/gitops.git", "git@github.com:acme/gitops.git"},
		{"/srv/git/gitops.git", "/srv/git/gitops.git"},
		{"file:///srv/git/gitops.git", "file:///srv/git/gitops.git"},
		// url.Parse rejects the escape: scrubbed as text, never echoed.
		{"https://u:p%zz@host/o/r", "https://u:xxxxx@host/o/r"},
		{"", ""},
	} {
		if got := URL(tt.in); got != tt.want {
			t.Errorf("URL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestStripUserinfo(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"https://github.com/example/notes", "https://github.com/example/notes"},
		{"https://x-access-token:ghs_abc@github.com/o/r.git", "https://github.com/o/r.git"},
		{"https://user@gitea.local:3000/o/r", "https://gitea.local:3000/o/r"},
		{"https://u:p%zz@host/o/r", "https://host/o/r"},
		{"https://u:p@ss@host/o/r?ref=a@b", "https://host/o/r?ref=a@b"},
		{"ssh://git@github.com/o/r.git", "ssh://github.com/o/r.git"},
		{"git@github.com:o/r.git", "git@github.com:o/r.git"},
		{"https://host/path/with@sign", "https://host/path/with@sign"},
		{"", ""},
	} {
		if got := StripUserinfo(tt.in); got != tt.want {
			t.Errorf("StripUserinfo(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestText(t *testing.T) {
	for _, tt := range []struct {
		name    string
		in      string
		secrets []string
		want    string
	}{
		{name: "url in message", in: `Get "https://bob:hunter22@example.com/info/refs": EOF`, want: `Get "https://bob:xxxxx@example.com/info/refs": EOF`},
		{name: "token user", in: "clone https://ghp_tok3n@github.com/a/b failed", want: "clone https://xxxxx@github.com/a/b failed"},
		{name: "ssh user kept", in: "ssh://git@host/repo", want: "ssh://git@host/repo"},
		{name: "digest reference untouched", in: "http://127.0.0.1:5000/v2/acme/notes/manifests/sha256:ab@x", want: "http://127.0.0.1:5000/v2/acme/notes/manifests/sha256:ab@x"},
		{name: "verbatim secret", in: "remote said: wrong password hunter22", secrets: []string{"hunter22"}, want: "remote said: wrong password xxxxx"},
		{name: "every occurrence", in: "x abcdef y abc z abc", secrets: []string{"abc"}, want: "x xxxxxdef y xxxxx z xxxxx"},
		{name: "longest first", in: "x abcdef y abc z", secrets: []string{"", "abc", "abcdef", "abc"}, want: "x xxxxx y xxxxx z"},
		{name: "short secrets ignored", in: "abc", secrets: []string{"a", "ab", ""}, want: "abc"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Text(tt.in, tt.secrets...); got != tt.want {
				t.Errorf("Text(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestSecrets(t *testing.T) {
	r := New("abcdef", " abc\n")
	r.Add("")
	if got := r.String("x abcdef y abc z"); got != "x xxxxx y xxxxx z" {
		t.Errorf("String = %q", got)
	}
	var logged string
	r.Logf(func(f string, a ...any) { logged = fmt.Sprintf(f, a...) })("token=%s", "abcdef")
	if logged != "token=xxxxx" {
		t.Errorf("Logf = %q", logged)
	}
	if r.Logf(nil) != nil {
		t.Error("Logf(nil) must stay nil")
	}

	cause := context.Canceled
	for _, tt := range []struct {
		name string
		set  *Secrets
		err  error
		want string
		same bool // returned unchanged
	}{
		{name: "secret in message", set: r, err: fmt.Errorf("push with abc: %w", cause), want: "push with xxxxx: context canceled"},
		{name: "url credentials without secrets", set: New(), err: fmt.Errorf("get https://u:pw@h/x: %w", cause), want: "get https://u:xxxxx@h/x: context canceled"},
		{name: "nothing to scrub", set: r, err: cause, want: cause.Error(), same: true},
		{name: "nil set", set: nil, err: cause, want: cause.Error(), same: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.set.Error(tt.err)
			if got.Error() != tt.want || !errors.Is(got, cause) || (got == tt.err) != tt.same {
				t.Errorf("Error = %v (Is cause: %v, unchanged: %v), want %q", got, errors.Is(got, cause), got == tt.err, tt.want)
			}
		})
	}
	if r.Error(nil) != nil {
		t.Error("Error(nil) != nil")
	}
}
