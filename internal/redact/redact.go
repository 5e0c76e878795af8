// Package redact is notesctl's one redactor: it keeps credentials out of
// messages, logs, outputs and image labels. Every room uses it (cmd,
// pipeline, render, registry, manifests), so it sits in internal/, below
// all of them, and needs nothing but the standard library.
package redact

import (
	"cmp"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Marker replaces a secret. It is the marker net/url uses for passwords,
// so a redacted URL reads the same whoever printed it.
const Marker = "xxxxx"

// MinSecretLen is the shortest secret replaced in free text: shorter
// values would mangle unrelated words, and are not worth protecting by
// substitution.
const MinSecretLen = 3

// URL returns rawURL with its credentials masked, for errors and logs. A
// password is masked and the user name kept; a user name without a
// password in an http(s) URL is masked too, because tokens are commonly
// passed that way (https://TOKEN@host/...). SSH user names (git@host:path,
// ssh://git@host/...) carry no secret and are kept. Strings that are not
// URLs (local paths) are returned unchanged; a URL that does not parse is
// scrubbed as text.
func URL(rawURL string) string {
	if !strings.Contains(rawURL, "://") {
		// scp-like (git@host:path) or a local path: no place for a password.
		return rawURL
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return Text(rawURL)
	}
	if u.User == nil {
		return rawURL
	}
	name := u.User.Username()
	_, hasPassword := u.User.Password()
	switch {
	case hasPassword:
		u.User = url.UserPassword(name, Marker)
	case u.Scheme == "http" || u.Scheme == "https":
		u.User = url.User(Marker)
	default:
		return rawURL
	}
	return u.String()
}

// StripUserinfo drops the user info from a URL ("https://user:token@host/x"
// becomes "https://host/x"), for places that are public and should not
// even show a marker, such as image labels. It works on the text, so URLs
// that url.Parse rejects lose their user info too; scp-like forms
// ("git@host:org/repo") carry no password and are kept.
func StripUserinfo(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	rest := s[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return s
	}
	return s[:i+3] + rest[at+1:]
}

// userinfoRE matches the user-info part of a URL embedded in free text.
var userinfoRE = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.\-]*://)([^/\s@]+)@`)

// Text scrubs URL credentials from free text (as URL does) and replaces
// every secret given verbatim that is at least MinSecretLen long, longest
// first so that a secret containing another is replaced whole.
func Text(s string, secrets ...string) string {
	s = userinfoRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := userinfoRE.FindStringSubmatch(m)
		scheme, info := sub[1], sub[2]
		if name, _, ok := strings.Cut(info, ":"); ok {
			return scheme + name + ":" + Marker + "@"
		}
		if strings.HasPrefix(scheme, "http") {
			return scheme + Marker + "@"
		}
		return m
	})
	for _, secret := range longestFirst(secrets) {
		s = strings.ReplaceAll(s, secret, Marker)
	}
	return s
}

// longestFirst returns the secrets worth replacing, without duplicates,
// longest first.
func longestFirst(secrets []string) []string {
	var keep []string
	for _, s := range secrets {
		if len(s) >= MinSecretLen && !slices.Contains(keep, s) {
			keep = append(keep, s)
		}
	}
	slices.SortStableFunc(keep, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	return keep
}

// Secrets is a set of secret values that a command has seen (passwords,
// tokens, their encodings) and scrubs, with URL credentials, from
// everything it shows. The zero value and nil are empty sets.
type Secrets struct{ list []string }

// New returns a set holding secrets.
func New(secrets ...string) *Secrets {
	r := &Secrets{}
	r.Add(secrets...)
	return r
}

// Add puts secrets into the set; surrounding white space is not part of a
// secret (values read from stdin or files end in a newline).
func (r *Secrets) Add(secrets ...string) {
	for _, s := range secrets {
		if s = strings.TrimSpace(s); s != "" {
			r.list = append(r.list, s)
		}
	}
}

// String returns s scrubbed.
func (r *Secrets) String(s string) string {
	if r == nil {
		return Text(s)
	}
	return Text(s, r.list...)
}

// Error returns err with a scrubbed message; errors.Is and errors.As still
// reach its cause. An error with nothing to scrub is returned as it is.
func (r *Secrets) Error(err error) error {
	if err == nil {
		return nil
	}
	if msg := r.String(err.Error()); msg != err.Error() {
		return WithMessage(err, msg)
	}
	return err
}

// Logf wraps a printf-style logger so that every line is scrubbed; nil
// stays nil.
func (r *Secrets) Logf(logf func(string, ...any)) func(string, ...any) {
	if logf == nil {
		return nil
	}
	return func(format string, args ...any) {
		logf("%s", r.String(fmt.Sprintf(format, args...)))
	}
}

// WithMessage returns an error that reads msg and unwraps to err: for a
// message scrubbed by other means than a Secrets set.
func WithMessage(err error, msg string) error { return &redactedError{msg: msg, err: err} }

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
