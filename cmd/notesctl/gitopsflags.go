package main

import (
	"fmt"
	"net/mail"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/notesctl/notesctl/manifests"
	"github.com/notesctl/notesctl/manifests/gitops"
)

// gitopsFlags are the flags update and release share.
type gitopsFlags struct {
	url, branch     string
	username        string
	sshKey          string
	knownHosts      string
	insecureHostKey bool
	author          string
	signingKey      string
	message         string
	policy          string
	maxPushAttempts int
	skipUnparseable bool
	forge           string
}

func (g *gitopsFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&g.url, "gitops", "", "GitOps repository: https://…, ssh://…, git@host:path, or a local path")
	f.StringVar(&g.branch, "gitops-branch", "main", "GitOps branch to commit to")
	f.StringVar(&g.username, "gitops-username", "", "HTTPS user name for the GitOps repository (password/token in NOTESCTL_GITOPS_PASSWORD; default user \"git\" when only a token is set)")
	f.StringVar(&g.sshKey, "ssh-key", "", "SSH private key file for the GitOps repository (default: SSH agent)")
	f.StringVar(&g.knownHosts, "known-hosts", "", "known_hosts file to check the SSH host key (default ~/.ssh/known_hosts)")
	f.BoolVar(&g.insecureHostKey, "insecure-skip-host-key-check", false, "accept any SSH host key (prints a warning; never the default)")
	f.StringVar(&g.author, "author", "notesctl <notesctl@localhost>", `author and committer of the GitOps commit, "Name <email>"`)
	f.StringVar(&g.signingKey, "signing-key", "", "armored OpenPGP private key file to sign the GitOps commit (passphrase in NOTESCTL_SIGNING_KEY_PASSPHRASE)")
	f.StringVar(&g.message, "message", "", "Go template for the commit message over .Image .Repository .Tag .Digest .Commit .ShortCommit .Branch .Policy .Changes")
	f.StringVar(&g.policy, "policy", "flux-system:notes", "Flux ImagePolicy the setter markers name, NAMESPACE:NAME")
	f.IntVar(&g.maxPushAttempts, "max-push-attempts", 5, "how often to re-apply and push when the GitOps branch moved meanwhile")
	f.StringVar(&g.forge, "forge", "", "the forge's API for pull requests and comments: gitea (also Forgejo) or github (default: read from the URL; under Actions GITEA_ACTIONS says)")
}

// registerUpdate registers the flags of the commands that update markers.
func (g *gitopsFlags) registerUpdate(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&g.skipUnparseable, "skip-unparseable", false, "update the other files when files with setter marker text do not parse as YAML or are templates (default: an error naming them)")
}

func (g *gitopsFlags) options(a *app) (gitops.Options, error) {
	o := gitops.Options{
		URL: g.url, Branch: g.branch, Username: g.username,
		SSHKeyFile: g.sshKey, KnownHostsFile: g.knownHosts, InsecureSkipHostKeyCheck: g.insecureHostKey,
		SigningKeyFile: g.signingKey, MaxAttempts: g.maxPushAttempts,
		Logger: func(format string, args ...any) {
			fmt.Fprintf(a.stderr, "notesctl: %s\n", a.redact(fmt.Sprintf(format, args...)))
		},
	}
	o.Password = a.getenv("NOTESCTL_GITOPS_PASSWORD")
	if o.Password != "" && o.Username == "" {
		o.Username = "git"
	}
	o.SSHKeyPassphrase = a.getenv("NOTESCTL_SSH_KEY_PASSPHRASE")
	o.SigningKeyPassphrase = a.getenv("NOTESCTL_SIGNING_KEY_PASSPHRASE")
	a.addSecret(o.Password)
	a.addSecret(o.SSHKeyPassphrase)
	a.addSecret(o.SigningKeyPassphrase)
	// A password in the URL is a secret even when the URL does not parse
	// (then no redaction of the URL can find it).
	pw := urlPassword(g.url)
	a.addSecret(pw)
	if unescaped, err := url.PathUnescape(pw); err == nil {
		a.addSecret(unescaped)
	}
	if u := manifests.RedactURL(g.url); u != g.url || pw != "" {
		// Credentials in the URL work, but they end up in shell history
		// and process lists; say so once.
		fmt.Fprintf(a.stderr, "notesctl: warning: --gitops %s carries credentials; prefer NOTESCTL_GITOPS_PASSWORD\n", a.redact(u))
	}
	if g.author != "" {
		addr, err := mail.ParseAddress(g.author)
		if err != nil {
			return o, fmt.Errorf("--author %q: want \"Name <email>\": %v", g.author, err)
		}
		o.AuthorName, o.AuthorEmail = addr.Name, addr.Address
		if o.AuthorName == "" {
			o.AuthorName = addr.Address
		}
	}
	return o, nil
}

// urlPassword returns the password in a URL's user info, read as text so
// that it is found in URLs that do not parse too: the authority runs to the
// first '/', '?' or '#' after "://", the user info to its last '@'.
func urlPassword(raw string) string {
	i := strings.Index(raw, "://")
	if i < 0 {
		return ""
	}
	authority := raw[i+3:]
	if j := strings.IndexAny(authority, "/?#"); j >= 0 {
		authority = authority[:j]
	}
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return ""
	}
	_, pw, _ := strings.Cut(authority[:at], ":")
	return pw
}
