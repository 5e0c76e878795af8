package kubeenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// fluxController describes how to run one Flux controller.
type fluxController struct {
	name string
	// kind is the controllerKind whose "Starting workers" log line means
	// the controller reconciles.
	kind string
	// args builds the controller-specific flags from extra free ports.
	extraPorts int
	args       func(ports []int) []string
}

// startFlux creates the flux-system namespace and starts source-controller
// and kustomize-controller, and the image and notification controllers the
// options ask for. It returns the names of the controllers started.
func (e *Env) startFlux() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), e.opts.StartTimeout)
	defer cancel()
	if err := createNamespace(ctx, e.Client, FluxNamespace); err != nil {
		return nil, err
	}
	storage := filepath.Join(e.dir, "source-controller-storage")
	// source-controller exits at start if its storage directory is missing.
	if err := os.MkdirAll(storage, 0o755); err != nil {
		return nil, err
	}
	controllers := []fluxController{
		{
			name:       binSourceController,
			kind:       "GitRepository",
			extraPorts: 1,
			args: func(ports []int) []string {
				e.SourceControllerStorageURL = "http://" + loopback(ports[0])
				return []string{
					"--storage-path=" + storage,
					"--storage-addr=" + loopback(ports[0]),
					"--storage-adv-addr=" + loopback(ports[0]),
				}
			},
		},
		{
			name: binKustomizeController,
			kind: "Kustomization",
			args: func([]int) []string {
				return []string{
					"--no-remote-bases=true",
					// A Kustomization whose source is not ready yet is
					// retried after this (default 30s).
					"--requeue-dependency=5s",
				}
			},
		},
	}
	if e.opts.ImageAutomation {
		db := filepath.Join(e.dir, "image-reflector-db")
		if err := os.MkdirAll(db, 0o755); err != nil {
			return nil, err
		}
		controllers = append(controllers,
			fluxController{
				name: binImageReflector,
				kind: "ImageRepository",
				args: func([]int) []string {
					return []string{
						"--storage-path=" + db,
						// The default (256 MiB) is mapped into memory.
						"--storage-value-log-file-size=" + strconv.Itoa(16<<20),
						"--requeue-dependency=5s",
					}
				},
			},
			fluxController{name: binImageAutomation, kind: "ImageUpdateAutomation", args: func([]int) []string { return nil }},
		)
	}
	if e.opts.Notification {
		controllers = append(controllers, fluxController{
			name:       binNotification,
			kind:       "Receiver",
			extraPorts: 2,
			args: func(ports []int) []string {
				e.ReceiverURL = "http://" + loopback(ports[0])
				return []string{
					"--receiverAddr=" + loopback(ports[0]),
					"--events-addr=" + loopback(ports[1]),
				}
			},
		})
	}
	var names []string
	for _, fc := range controllers {
		if err := e.startFluxController(fc); err != nil {
			return names, err
		}
		names = append(names, fc.name)
	}
	return names, nil
}

func (e *Env) startFluxController(fc fluxController) error {
	tmp := filepath.Join(e.dir, fc.name+"-tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	return e.startWithRetry(fc.name, 2+fc.extraPorts, func(ports []int) (*process, error) {
		health := loopback(ports[1])
		args := append([]string{
			"--metrics-addr=" + loopback(ports[0]),
			"--health-addr=" + health,
			"--log-encoding=json",
			"--log-level=info",
		}, fc.args(ports[2:])...)
		p, err := startProcess(fc.name, e.Tools.Path(fc.name), args, []string{
			"KUBECONFIG=" + e.Kubeconfig,
			"RUNTIME_NAMESPACE=" + FluxNamespace,
			// Temporary clones and downloads go where cleanup finds them.
			"TMPDIR=" + tmp,
		})
		if err != nil {
			return nil, err
		}
		if err := e.waitHTTP(p, "http://"+health+"/readyz", nil, func(status int, _ []byte) bool {
			return status == http.StatusOK
		}); err != nil {
			return p, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), e.opts.StartTimeout)
		defer cancel()
		kind := fmt.Sprintf(`"controllerKind":%q`, fc.kind)
		return p, p.waitForLog(ctx, "the "+fc.kind+" workers to start", func(line string) bool {
			return strings.Contains(line, `"Starting workers"`) && strings.Contains(line, kind)
		})
	})
}
