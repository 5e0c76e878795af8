package kubeenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	imageautov1 "github.com/fluxcd/image-automation-controller/api/v1"
	imagev1 "github.com/fluxcd/image-reflector-controller/api/v1"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	notificationv1 "github.com/fluxcd/notification-controller/api/v1"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Scheme returns a new scheme with the types Env.Client knows.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme,
		appsv1.AddToScheme,
		networkingv1.AddToScheme,
		rbacv1.AddToScheme,
		apiextensionsv1.AddToScheme,
		sourcev1.AddToScheme,
		kustomizev1.AddToScheme,
		imagev1.AddToScheme,
		imageautov1.AddToScheme,
		notificationv1.AddToScheme,
	} {
		utilruntime.Must(add(s))
	}
	return s
}

// ReadCRDs reads every CustomResourceDefinition in the *.yaml and *.yml
// files of dir, in file name order.
func ReadCRDs(dir string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var files []string
	for _, pattern := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return nil, err
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("no *.yaml files in %s", dir)
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for doc := 1; ; doc++ {
			var crd apiextensionsv1.CustomResourceDefinition
			err := dec.Decode(&crd)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", f, doc, err)
			}
			if crd.Kind == "" && crd.Name == "" {
				continue // an empty document
			}
			if crd.Kind != "CustomResourceDefinition" || crd.APIVersion != apiextensionsv1.SchemeGroupVersion.String() {
				return nil, fmt.Errorf("%s: document %d is a %s %s, not an %s CustomResourceDefinition",
					f, doc, crd.APIVersion, crd.Kind, apiextensionsv1.SchemeGroupVersion)
			}
			crds = append(crds, &crd)
		}
	}
	return crds, nil
}

// installCRDs creates the CRDs of the tools' CRD directory, waits until all
// are established and their resources are in discovery, and returns how
// many there were.
func (e *Env) installCRDs(ctx context.Context) (int, error) {
	crds, err := ReadCRDs(e.Tools.CRDDir)
	if err != nil {
		return 0, err
	}
	for _, crd := range crds {
		if err := e.Client.Create(ctx, crd.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
			return 0, fmt.Errorf("create CRD %s: %w", crd.Name, err)
		}
	}
	for _, crd := range crds {
		var got apiextensionsv1.CustomResourceDefinition
		last := "not read yet"
		for {
			err := e.Client.Get(ctx, client.ObjectKey{Name: crd.Name}, &got)
			if err == nil {
				var ok bool
				if ok, last = crdEstablished(&got); ok {
					break
				}
			} else {
				last = err.Error()
			}
			if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
				return 0, fmt.Errorf("CRD %s not established: %w (last seen: %s)", crd.Name, err, last)
			}
		}
	}
	// Established CRDs reach discovery a moment later; clients built on a
	// REST mapper need them there.
	dc, err := discovery.NewDiscoveryClientForConfig(e.RESTConfig)
	if err != nil {
		return 0, err
	}
	for _, crd := range crds {
		for _, v := range crd.Spec.Versions {
			if !v.Served {
				continue
			}
			gv := crd.Spec.Group + "/" + v.Name
			for {
				list, err := dc.ServerResourcesForGroupVersion(gv)
				var last string
				if err == nil {
					found := false
					for _, r := range list.APIResources {
						if r.Name == crd.Spec.Names.Plural {
							found = true
						}
					}
					if found {
						break
					}
					last = fmt.Sprintf("%s not listed", crd.Spec.Names.Plural)
				} else {
					last = err.Error()
				}
				if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
					return 0, fmt.Errorf("%s of %s not in discovery: %w (last: %s)", gv, crd.Name, err, last)
				}
			}
		}
	}
	return len(crds), nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-time.After(d):
		return nil
	}
}
