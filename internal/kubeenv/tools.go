package kubeenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notesctl/notesctl/internal/testenv"
)

// DefaultVersionKey names the cache directory tools/kube/build.sh fills by
// default; it must equal VERSION_KEY in that script (a test checks it).
const DefaultVersionKey = "kube-v1.35.4-flux-v1.9.6-r2"

// Environment variables that locate the tools.
const (
	// EnvTools names the directory holding kube-apiserver, etcd and the
	// Flux controllers.
	EnvTools = "NOTESCTL_KUBE_TOOLS"
	// EnvCRDs names the directory holding the Flux CRDs (*.yaml).
	EnvCRDs = "NOTESCTL_KUBE_CRDS"
	// EnvToolsCache overrides the cache root ($HOME/.cache/notesctl-tools),
	// as it does for tools/kube/build.sh.
	EnvToolsCache = "NOTESCTL_TOOLS_CACHE"
)

// BuildCommand is what a developer runs to fill the default cache.
const BuildCommand = "bash tools/kube/build.sh"

// Tools is the set of binaries and CRDs a kube test environment runs.
type Tools struct {
	// BinDir holds the binaries.
	BinDir string
	// CRDDir holds the CRD manifests.
	CRDDir string
}

// Binary names inside Tools.BinDir.
const (
	binEtcd                = "etcd"
	binAPIServer           = "kube-apiserver"
	binSourceController    = "source-controller"
	binKustomizeController = "kustomize-controller"
	binImageReflector      = "image-reflector-controller"
	binImageAutomation     = "image-automation-controller"
	binNotification        = "notification-controller"
)

// binaries lists the binaries a run with opts needs.
func (o Options) binaries() []string {
	need := []string{binEtcd, binAPIServer}
	if o.Flux || o.ImageAutomation || o.Notification {
		need = append(need, binSourceController, binKustomizeController)
	}
	if o.ImageAutomation {
		need = append(need, binImageReflector, binImageAutomation)
	}
	if o.Notification {
		need = append(need, binNotification)
	}
	return need
}

// Path returns the path of the named binary.
func (t Tools) Path(name string) string { return filepath.Join(t.BinDir, name) }

// DefaultCacheDir is the cache directory build.sh fills without arguments.
func DefaultCacheDir() (string, error) {
	root := os.Getenv(EnvToolsCache)
	if root == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("locate the tools cache: %w (set %s or %s)", err, EnvToolsCache, EnvTools)
		}
		root = filepath.Join(home, ".cache", "notesctl-tools")
	}
	return filepath.Join(root, DefaultVersionKey), nil
}

// FindTools locates the tools: NOTESCTL_KUBE_TOOLS and NOTESCTL_KUBE_CRDS
// when set, else the default cache directory. It checks that the binaries a
// run needs (the Flux controllers only when flux is set) are executable files
// and that the CRD directory holds manifests.
func FindTools(flux bool) (Tools, error) {
	return findTools(Options{Flux: flux}.binaries())
}

func findTools(need []string) (Tools, error) {
	var tools Tools
	tools.BinDir = os.Getenv(EnvTools)
	tools.CRDDir = os.Getenv(EnvCRDs)
	if tools.BinDir == "" || tools.CRDDir == "" {
		cache, err := DefaultCacheDir()
		if err != nil {
			return tools, err
		}
		if tools.BinDir == "" {
			tools.BinDir = filepath.Join(cache, "bin")
		}
		if tools.CRDDir == "" {
			tools.CRDDir = filepath.Join(cache, "crds")
		}
	}
	var problems []string
	for _, name := range need {
		fi, err := os.Stat(tools.Path(name))
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", tools.Path(name), errors.Unwrap(err)))
		case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
			problems = append(problems, fmt.Sprintf("%s: not an executable file", tools.Path(name)))
		}
	}
	crds, err := filepath.Glob(filepath.Join(tools.CRDDir, "*.yaml"))
	if err == nil && len(crds) == 0 {
		problems = append(problems, fmt.Sprintf("no CRD manifests (*.yaml) in %s", tools.CRDDir))
	}
	if len(problems) > 0 {
		return tools, fmt.Errorf("kube test tools missing in %s (%s): %s", tools.BinDir, tools.CRDDir, strings.Join(problems, "; "))
	}
	return tools, nil
}

// requireTools returns the tools or ends the test: a skip, or a failure when
// NOTESCTL_REQUIRE_TOOLS=1, naming the command that builds them.
func requireTools(t testing.TB, opts Options) Tools {
	t.Helper()
	tools, err := findTools(opts.binaries())
	if err == nil {
		return tools
	}
	testenv.Missing(t, "%v\nbuild them with `%s` from the repository root (set %s/%s to use other directories)",
		err, BuildCommand, EnvTools, EnvCRDs)
	return tools
}
