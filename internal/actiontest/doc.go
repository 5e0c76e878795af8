// Package actiontest runs action.yml for real: a site repository on a test
// Gitea (internal/giteaenv) whose workflow uses the notesctl action from that
// same Gitea, a CNCF Distribution registry with htpasswd and TLS, and the
// GitOps repository on the Gitea. It also checks that tools/release/release.sh
// is reproducible. Helpers here are shared with nothing else; the package has
// only tests.
package actiontest
