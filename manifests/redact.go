package manifests

import (
	"net/url"
	"regexp"
	"strings"
)

// redacted replaces secrets in URLs and messages. It is the same marker
// net/url uses for passwords, so output reads the same everywhere.
const redacted = "xxxxx"

// RedactURL returns rawURL with any credentials replaced, for use in errors
// and logs. A password is replaced and the user name kept; a user name without
// a password in an http(s) URL is replaced too, because tokens are commonly
// passed that way (https://TOKEN@host/...). SSH user names (git@host:path,
// ssh://git@host/...) carry no secret and are kept. Strings that are not URLs
// (local paths) are returned unchanged, except that anything that still looks
// like embedded credentials is scrubbed.
func RedactURL(rawURL string) string {
	if !strings.Contains(rawURL, "://") {
		// scp-like (git@host:path) or a local path: no place for a password.
		return rawURL
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		// Unparseable: scrub textually rather than echo it back.
		return RedactText(rawURL)
	}
	if u.User == nil {
		return rawURL
	}
	name := u.User.Username()
	_, hasPassword := u.User.Password()
	switch {
	case hasPassword:
		u.User = url.UserPassword(name, redacted)
	case u.Scheme == "http" || u.Scheme == "https":
		u.User = url.User(redacted)
	default:
		return rawURL
	}
	// url.String escapes nothing in "xxxxx", so the marker stays readable.
	return u.String()
}

// userinfoRE matches the user-info part of a URL embedded in free text.
var userinfoRE = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.\-]*://)([^/\s@]+)@`)

// RedactText scrubs URL credentials from free text such as a remote's error
// message and replaces every non-empty secret given verbatim.
func RedactText(s string, secrets ...string) string {
	s = userinfoRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := userinfoRE.FindStringSubmatch(m)
		scheme, info := sub[1], sub[2]
		if name, _, ok := strings.Cut(info, ":"); ok {
			return scheme + name + ":" + redacted + "@"
		}
		if strings.HasPrefix(scheme, "http") {
			return scheme + redacted + "@"
		}
		return m
	})
	for _, secret := range secrets {
		// Very short secrets would mangle unrelated text; they are also
		// not worth protecting by substitution.
		if len(secret) >= 4 {
			s = strings.ReplaceAll(s, secret, redacted)
		}
	}
	return s
}
