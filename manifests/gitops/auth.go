package gitops

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/notesctl/notesctl/manifests"
)

// httpAuth is basic authentication from the options, else from the URL's
// user info; a token alone goes with tokenUsername. nil: anonymous.
func (s *session) httpAuth(ep *transport.Endpoint) transport.AuthMethod {
	opts := s.opts
	user, pass := opts.Username, opts.Password
	if user == "" && pass == "" {
		user, pass = ep.User, ep.Password
	}
	if user != "" && pass == "" && ep.User != "" && ep.Password == "" && opts.Username == "" {
		// https://TOKEN@host/...: the user part is the token.
		user, pass = tokenUsername, user
		s.secrets = append(s.secrets, pass)
	}
	if pass != "" && user == "" {
		user = tokenUsername
	}
	if user != "" || pass != "" {
		return &githttp.BasicAuth{Username: user, Password: pass}
	}
	return nil
}

func (s *session) sshAuth(ep *transport.Endpoint) (transport.AuthMethod, error) {
	user := ep.User
	if user == "" {
		user = "git"
	}
	var helper *gitssh.HostKeyCallbackHelper
	var auth transport.AuthMethod
	if s.opts.SSHKeyFile != "" {
		keys, err := gitssh.NewPublicKeysFromFile(user, s.opts.SSHKeyFile, s.opts.SSHKeyPassphrase)
		if err != nil {
			return nil, fmt.Errorf("gitops: SSH key %s: %v", s.opts.SSHKeyFile, manifests.RedactText(err.Error(), s.secrets...))
		}
		helper, auth = &keys.HostKeyCallbackHelper, keys
	} else {
		if os.Getenv("SSH_AUTH_SOCK") == "" {
			return nil, fmt.Errorf("gitops: no SSH key for %s: set an SSH key file or start an SSH agent", s.display)
		}
		agent, err := gitssh.NewSSHAgentAuth(user)
		if err != nil {
			return nil, fmt.Errorf("gitops: SSH agent for %s: %w", s.display, err)
		}
		helper, auth = &agent.HostKeyCallbackHelper, agent
	}
	if s.opts.InsecureSkipHostKeyCheck {
		s.logf("WARNING: SSH host key checking is disabled for %s; the connection can be intercepted", s.display)
		helper.HostKeyCallback = ssh.InsecureIgnoreHostKey() //nolint:gosec // explicitly requested
		return auth, nil
	}
	known := s.opts.KnownHostsFile
	if known == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("gitops: no known_hosts file for %s: %w", s.display, err)
		}
		known = filepath.Join(home, ".ssh", "known_hosts")
	}
	if _, err := os.Stat(known); err != nil {
		return nil, fmt.Errorf("%w for %s: cannot read known_hosts file: %v", ErrHostKey, s.display, err)
	}
	db, err := gitssh.NewKnownHostsDb(known)
	if err != nil {
		return nil, fmt.Errorf("gitops: known_hosts file %s: %w", known, err)
	}
	port := ep.Port
	if port == 0 {
		port = 22
	}
	hostPort := net.JoinHostPort(ep.Host, fmt.Sprint(port))
	helper.HostKeyCallback = db.HostKeyCallback()
	// Offer only the key types known_hosts holds for this host, so that a
	// server with several host keys presents the one we can check.
	helper.HostKeyAlgorithms = db.HostKeyAlgorithms(hostPort)
	s.opts.KnownHostsFile = known
	return auth, nil
}

func loadSigningKey(file, passphrase string) (*openpgp.Entity, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("gitops: signing key: %w", err)
	}
	defer f.Close()
	ring, err := openpgp.ReadArmoredKeyRing(f)
	if err != nil {
		return nil, fmt.Errorf("gitops: signing key %s: not an armored OpenPGP key: %v", file, err)
	}
	for _, e := range ring {
		if e.PrivateKey == nil {
			continue
		}
		if err := e.DecryptPrivateKeys([]byte(passphrase)); err != nil {
			return nil, fmt.Errorf("gitops: signing key %s: cannot decrypt (wrong or missing passphrase?): %v", file, manifests.RedactText(err.Error(), passphrase))
		}
		return e, nil
	}
	return nil, fmt.Errorf("gitops: signing key %s holds no private key", file)
}
