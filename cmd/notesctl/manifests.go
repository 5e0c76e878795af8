package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/spf13/cobra"

	"github.com/notesctl/notesctl/internal/redact"
	"github.com/notesctl/notesctl/manifests"
)

func (a *app) manifestsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manifests",
		Short: "Scaffold the GitOps manifests of the notes site",
	}
	cmd.AddCommand(a.manifestsInitCommand())
	return cmd
}

// scaffoldFlags are the flags of manifests init, also used by release
// --local when it creates the GitOps repository.
type scaffoldFlags struct {
	name, namespace, host string
	receiver              bool
	gitURL, path          string
	siteBranch            string
}

func (s *scaffoldFlags) register(cmd *cobra.Command, prefix string) {
	f := cmd.Flags()
	f.StringVar(&s.name, prefix+"name", "notes", "name of the Deployment, Service and Flux objects")
	f.StringVar(&s.namespace, prefix+"namespace", "notes", "namespace the site runs in")
	f.StringVar(&s.host, prefix+"host", "", "host name for an Ingress (none when empty)")
	f.BoolVar(&s.receiver, prefix+"receiver", false, "add a Flux Receiver (generic-hmac) so releases can trigger reconciliation")
	f.StringVar(&s.gitURL, prefix+"git-url", "", "URL Flux clones the GitOps repository from (GitRepository .spec.url)")
	f.StringVar(&s.path, prefix+"path", "", "path in the GitOps repository that Flux applies")
	f.StringVar(&s.siteBranch, prefix+"site-branch", "main", "site branch whose tags the ImagePolicy picks")
}

func (s *scaffoldFlags) options(image, policy string) manifests.ScaffoldOptions {
	return manifests.ScaffoldOptions{
		Name: s.name, Namespace: s.namespace, Image: image, Host: s.host, Policy: policy,
		Receiver: s.receiver, GitURL: s.gitURL, Path: s.path, Branch: s.siteBranch,
	}
}

func (a *app) manifestsInitCommand() *cobra.Command {
	var sf scaffoldFlags
	var dir, image, policy string
	var force bool
	cmd := &cobra.Command{
		Use:   "init --dir DIR --image REPO",
		Short: "Write the Kubernetes and Flux objects that deploy the notes site",
		Long: `init writes a kustomize tree for the notes site into DIR: Namespace,
Deployment (non-root, read-only root fs, probes; its image line carries the
Flux setter marker), Service, optional Ingress, and the Flux objects that
deploy it and follow new tags: GitRepository, Kustomization, ImageRepository,
ImagePolicy (numerical on the commit time in notesctl's tags),
ImageUpdateAutomation, and with --receiver a Receiver.

--git-url is the URL Flux clones the GitOps repository from. It defaults to
the origin remote of the git repository DIR is in (credentials dropped,
git@host:path written as ssh://git@host/path).

Existing files are never overwritten unless --force.`,
		Example: `  notesctl manifests init --dir ./gitops --image ghcr.io/acme/notes --host notes.example.org --receiver \
      --git-url https://github.com/acme/gitops.git

  # in a clone of the GitOps repository, --git-url defaults to its origin remote
  notesctl manifests init --dir ./gitops --image ghcr.io/acme/notes --host notes.example.org`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.bind(cmd, ".", nil); err != nil {
				return err
			}
			if dir == "" || image == "" {
				return fmt.Errorf("manifests init needs --dir and --image")
			}
			if sf.gitURL == "" {
				u, err := originGitURL(dir)
				if err != nil {
					return err
				}
				sf.gitURL = u
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("--dir %s: %w", dir, err)
			}
			so := sf.options(image, policy)
			so.Force = force
			written, err := manifests.Scaffold(osfs.New(dir), "", so)
			if err != nil {
				return err
			}
			for _, w := range written {
				fmt.Fprintln(a.stdout, w)
			}
			return nil
		},
	}
	sf.register(cmd, "")
	cmd.Flags().StringVar(&dir, "dir", "", "directory to write the manifests into")
	cmd.Flags().StringVar(&image, "image", "", "image repository the Deployment runs, e.g. ghcr.io/acme/notes")
	cmd.Flags().StringVar(&policy, "policy", "flux-system:notes", "the ImagePolicy, NAMESPACE:NAME, that the setter marker names")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	return cmd
}

// originGitURL returns, as Flux's GitRepository takes it, the origin remote
// of the git repository that holds dir (or will: dir may not exist yet).
// It only reads the repository.
func originGitURL(dir string) (string, error) {
	need := fmt.Sprintf("manifests init needs --git-url, the URL Flux clones the GitOps repository from (e.g. --git-url https://github.com/acme/gitops.git); it defaults to the origin remote of the git repository that holds --dir %s", dir)
	at, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("%s: %w", need, err)
	}
	for {
		if _, err := os.Stat(at); err == nil {
			break
		}
		parent := filepath.Dir(at)
		if parent == at {
			break
		}
		at = parent
	}
	repo, err := git.PlainOpenWithOptions(at, &git.PlainOpenOptions{DetectDotGit: true, EnableDotGitCommonDir: true})
	if err != nil {
		return "", fmt.Errorf("%s, and it is not in a git repository", need)
	}
	remote, err := repo.Remote("origin")
	if err != nil || len(remote.Config().URLs) == 0 {
		return "", fmt.Errorf("%s, and its repository has no origin remote", need)
	}
	origin := remote.Config().URLs[0]
	u := fluxGitURL(origin)
	if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "ssh://") {
		return "", fmt.Errorf("%s, and its origin %s is not an http(s) or ssh URL Flux can clone", need, redact.URL(origin))
	}
	return u, nil
}

// fluxGitURL turns a git remote URL into the form Flux's GitRepository
// accepts: http(s) without user info (Flux takes credentials from a
// Secret), and scp-like git@host:path as ssh://git@host/path.
func fluxGitURL(remote string) string {
	if strings.Contains(remote, "://") {
		if strings.HasPrefix(remote, "ssh://") {
			return remote
		}
		return redact.StripUserinfo(remote)
	}
	at := strings.Index(remote, "@")
	colon := strings.Index(remote, ":")
	if at > 0 && colon > at && !strings.Contains(remote[:colon], "/") {
		return "ssh://" + remote[:colon] + "/" + strings.TrimPrefix(remote[colon+1:], "/")
	}
	return remote
}
