package manifests

import "testing"

func TestRedactURL(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"https://user:s3cret@github.com/acme/gitops.git", "https://user:xxxxx@github.com/acme/gitops.git"},
		{"https://ghp_abcdef123456@github.com/acme/gitops.git", "https://xxxxx@github.com/acme/gitops.git"},
		{"http://x-access-token:tok%2Fen@127.0.0.1:8080/r.git", "http://x-access-token:xxxxx@127.0.0.1:8080/r.git"},
		{"https://github.com/acme/gitops.git", "https://github.com/acme/gitops.git"},
		{"ssh://git@github.com/acme/gitops.git", "ssh://git@github.com/acme/gitops.git"},
		{"ssh://git:pw@github.com:2222/acme/gitops.git", "ssh://git:xxxxx@github.com:2222/acme/gitops.git"},
		{"git@github.com:acme/gitops.git", "git@github.com:acme/gitops.git"},
		{"/srv/git/gitops.git", "/srv/git/gitops.git"},
		{"file:///srv/git/gitops.git", "file:///srv/git/gitops.git"},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := RedactURL(tt.in); got != tt.want {
				t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRedactText(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		secrets []string
		want    string
	}{
		{
			name: "url in message",
			in:   `Get "https://bob:hunter22@example.com/info/refs": EOF`,
			want: `Get "https://bob:xxxxx@example.com/info/refs": EOF`,
		},
		{
			name: "token user",
			in:   "clone https://ghp_tok3n@github.com/a/b failed",
			want: "clone https://xxxxx@github.com/a/b failed",
		},
		{
			name:    "verbatim secret",
			in:      "remote said: wrong password hunter22",
			secrets: []string{"hunter22"},
			want:    "remote said: wrong password xxxxx",
		},
		{
			name:    "short secret ignored",
			in:      "abc",
			secrets: []string{"a", ""},
			want:    "abc",
		},
		{
			name: "ssh user kept",
			in:   "ssh://git@host/repo",
			want: "ssh://git@host/repo",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RedactText(tt.in, tt.secrets...); got != tt.want {
				t.Errorf("RedactText(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
