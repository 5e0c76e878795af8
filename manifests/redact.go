package manifests

import "github.com/notesctl/notesctl/internal/redact"

// RedactURL masks the credentials of a repository URL for messages; see
// redact.URL.
func RedactURL(rawURL string) string { return redact.URL(rawURL) }

// RedactText scrubs URL credentials and the given secrets from free text;
// see redact.Text.
func RedactText(s string, secrets ...string) string { return redact.Text(s, secrets...) }
