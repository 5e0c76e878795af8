package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	yaml "go.yaml.in/yaml/v3"
)

// DefaultConfigName is the config file notesctl reads from the site
// directory when --config is not given.
const DefaultConfigName = ".notesctl.yaml"

// configHelp documents the precedence and the keys.
const configHelp = `Every flag of a command can also be set by an environment variable and by
the config file. The first of these that is set wins:

  1. the flag on the command line            --web-root /srv/www
  2. under GitHub/Gitea Actions, the step input (see action.yml)
  3. an environment variable NOTESCTL_<FLAG>  NOTESCTL_WEB_ROOT=/srv/www
  4. the config file, key = flag name        web-root: /srv/www
  5. the default shown in --help

The config file is --config FILE, or .notesctl.yaml in the site directory
(--site, default the current directory). List flags take a YAML list or a
comma-separated string. Unknown keys are an error (file:line), and so are
secrets: passwords and tokens are read only from the environment
(NOTESCTL_REGISTRY_PASSWORD, NOTESCTL_GITOPS_PASSWORD,
NOTESCTL_FLUX_WEBHOOK_TOKEN, GITHUB_TOKEN) or from standard input
(--password-stdin).

Example .notesctl.yaml:

  image: ghcr.io/acme/notes
  base: docker.io/nginxinc/nginx-unprivileged:1.27-alpine
  platform: [linux/amd64, linux/arm64]
  gitops: https://github.com/acme/gitops.git
  gitops-branch: main
  policy: flux-system:notes
  hugo-version: ">=0.145.0, <0.146.0"
  verify-key: cosign.pub   # deploy only images signed with this cosign key
`

func configHelpTopic() *cobra.Command {
	return &cobra.Command{
		Use:   "config",
		Short: "How flags, NOTESCTL_* variables and .notesctl.yaml combine",
		Long:  configHelp,
	}
}

// secretKeys may never be in the config file: no flag takes a secret, so
// without this check they would pass as mere unknown keys. The value says
// where the secret goes instead.
var secretKeys = map[string]string{
	"password":               "NOTESCTL_REGISTRY_PASSWORD (or pipe it to --password-stdin)",
	"registry-password":      "NOTESCTL_REGISTRY_PASSWORD (or pipe it to --password-stdin)",
	"gitops-password":        "NOTESCTL_GITOPS_PASSWORD",
	"gitops-token":           "NOTESCTL_GITOPS_PASSWORD",
	"flux-webhook-token":     "NOTESCTL_FLUX_WEBHOOK_TOKEN",
	"github-token":           "GITHUB_TOKEN",
	"ssh-key-passphrase":     "NOTESCTL_SSH_KEY_PASSPHRASE",
	"signing-key-passphrase": "NOTESCTL_SIGNING_KEY_PASSPHRASE",
}

// unboundFlags are not read from env or file.
var unboundFlags = map[string]bool{"config": true, "help": true, "password-stdin": true}

// envName is the environment variable for a flag.
func envName(flag string) string {
	return "NOTESCTL_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// fileValue is one key of the config file, with where it was.
type fileValue struct {
	values []string
	line   int
}

type configFile struct {
	path   string
	values map[string]fileValue
}

// loadConfig reads a config file. A missing default file is no error; a
// missing explicit one is.
func loadConfig(path string, explicit bool) (*configFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !explicit {
			return &configFile{path: path, values: map[string]fileValue{}}, nil
		}
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	cf := &configFile{path: path, values: map[string]fileValue{}}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		return nil, fmt.Errorf("config file %s: %v", path, err)
	}
	// yaml.Unmarshal would read the first document and drop the rest
	// unread: settings after a "---" line would be silently ignored.
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("config file %s: %v", path, err)
		}
		if !emptyDocument(&next) {
			return nil, fmt.Errorf("%s:%d: the config file holds more than one YAML document; notesctl reads one", path, next.Line)
		}
	}
	if emptyDocument(&doc) {
		return cf, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: the config file must be a mapping of flag names to values", path, root.Line)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		fv := fileValue{line: k.Line}
		switch v.Kind {
		case yaml.ScalarNode:
			fv.values = []string{v.Value}
		case yaml.SequenceNode:
			for _, item := range v.Content {
				if item.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("%s:%d: %s: list items must be plain values", path, item.Line, k.Value)
				}
				fv.values = append(fv.values, item.Value)
			}
		default:
			return nil, fmt.Errorf("%s:%d: %s: want a value or a list", path, v.Line, k.Value)
		}
		if _, dup := cf.values[k.Value]; dup {
			return nil, fmt.Errorf("%s:%d: %s is set twice", path, k.Line, k.Value)
		}
		cf.values[k.Value] = fv
	}
	return cf, nil
}

// emptyDocument reports a document with no content or only a null ("---"
// alone, "~", "null").
func emptyDocument(doc *yaml.Node) bool {
	if len(doc.Content) == 0 {
		return true
	}
	n := doc.Content[0]
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// bind fills every flag not set on the command line from the Actions
// inputs, the environment, then the config file, and reports unknown or
// secret keys in the file. siteDir locates the default config file.
func (a *app) bind(cmd *cobra.Command, siteDir string, inputs map[string]string) error {
	path, explicit := a.configFile, a.configFile != ""
	if !explicit {
		if siteDir == "" {
			siteDir = "."
		}
		path = filepath.Join(siteDir, DefaultConfigName)
	}
	cf, err := loadConfig(path, explicit)
	if err != nil {
		return err
	}
	var secrets []string
	for k := range cf.values {
		if secretKeys[k] != "" {
			secrets = append(secrets, k)
		}
	}
	if len(secrets) > 0 {
		sort.Slice(secrets, func(i, j int) bool { return cf.values[secrets[i]].line < cf.values[secrets[j]].line })
		k := secrets[0]
		return fmt.Errorf("%s:%d: %s is a secret and is not read from the config file; set %s instead", cf.path, cf.values[k].line, k, secretKeys[k])
	}
	flags := cmd.Flags()
	var known []string
	var bindErr error
	flags.VisitAll(func(f *pflag.Flag) {
		if bindErr != nil || unboundFlags[f.Name] {
			return
		}
		known = append(known, f.Name)
		if f.Changed {
			return
		}
		if v, ok := inputs[f.Name]; ok && v != "" {
			bindErr = setFlag(f, splitList(f, v), "input "+f.Name)
			return
		}
		if v := a.getenv(envName(f.Name)); v != "" {
			bindErr = setFlag(f, splitList(f, v), envName(f.Name))
			return
		}
		if fv, ok := cf.values[f.Name]; ok {
			bindErr = setFlag(f, fv.values, fmt.Sprintf("%s:%d", cf.path, fv.line))
		}
	})
	if bindErr != nil {
		return bindErr
	}
	// Keys for other commands are fine (one file serves all commands), but
	// a key no command knows is a typo worth reporting.
	all := allFlagNames(cmd.Root())
	var unknown []string
	for k := range cf.values {
		if !all[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		k := unknown[0]
		return fmt.Errorf("%s:%d: unknown key %q (keys are flag names: see %s --help)", cf.path, cf.values[k].line, k, cmd.CommandPath())
	}
	return nil
}

func allFlagNames(root *cobra.Command) map[string]bool {
	out := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) { out[f.Name] = true })
		c.PersistentFlags().VisitAll(func(f *pflag.Flag) { out[f.Name] = true })
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return out
}

func isList(f *pflag.Flag) bool {
	t := f.Value.Type()
	return strings.HasSuffix(t, "Slice") || strings.HasSuffix(t, "Array")
}

// splitList splits comma- or newline-separated values for list flags
// (Actions inputs are usually one item per line).
func splitList(f *pflag.Flag, v string) []string {
	if !isList(f) {
		return []string{v}
	}
	var out []string
	for _, line := range strings.FieldsFunc(v, func(r rune) bool { return r == '\n' || r == ',' }) {
		if s := strings.TrimSpace(line); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func setFlag(f *pflag.Flag, values []string, source string) error {
	if !isList(f) && len(values) != 1 {
		return fmt.Errorf("%s: %s takes one value, not a list", source, f.Name)
	}
	for _, v := range values {
		if err := f.Value.Set(v); err != nil {
			return fmt.Errorf("%s: invalid value for %s: %v", source, f.Name, err)
		}
	}
	f.Changed = true
	return nil
}
