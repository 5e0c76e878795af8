package manifests

import (
	"time"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PreviewsKustomizationName is the Flux Kustomization that applies the
// pull-request previews of app name.
func PreviewsKustomizationName(name string) string { return name + "-previews" }

// previewsKustomization applies previews/ from the same GitRepository as the
// app. prune: true is what closes a preview: removing its overlay from the
// list makes Flux delete its objects, its namespace included. It does not
// wait for health: one broken preview must not hold back the others.
func (o *scaffoldOpts) previewsKustomization() *kustomizev1.Kustomization {
	return &kustomizev1.Kustomization{
		TypeMeta:   metav1.TypeMeta{APIVersion: kustomizev1.GroupVersion.String(), Kind: kustomizev1.KustomizationKind},
		ObjectMeta: o.meta(PreviewsKustomizationName(o.Name), o.policyNS),
		Spec: kustomizev1.KustomizationSpec{
			Interval:  duration(10 * time.Minute),
			Path:      "./" + PreviewsDir,
			Prune:     true,
			Timeout:   ptr(duration(3 * time.Minute)),
			SourceRef: kustomizev1.CrossNamespaceSourceReference{Kind: sourcev1.GitRepositoryKind, Name: o.Name},
		},
	}
}
