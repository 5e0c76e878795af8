// Command fluxrun runs the setter update of Flux's image-automation-controller
// (its internal/update package, unchanged) over a directory, the way the
// controller runs it over a checkout. The parity test builds it inside a copy
// of the controller module, because that package is internal to it.
//
//	fluxrun POLICIES.json IN_DIR OUT_DIR
//
// POLICIES.json is a list of {"namespace", "name", "image", "tag", "digest"}.
// Files the update changed are written to OUT_DIR (and only those); the
// changes Flux recorded are printed as JSON on stdout.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	reflectorv1 "github.com/fluxcd/image-reflector-controller/api/v1"

	"github.com/fluxcd/image-automation-controller/internal/update"
)

type policy struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Image     string `json:"image"`
	Tag       string `json:"tag"`
	Digest    string `json:"digest"`
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fluxrun:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("usage: fluxrun POLICIES.json IN_DIR OUT_DIR")
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	var ps []policy
	if err := json.Unmarshal(b, &ps); err != nil {
		return err
	}
	var policies []reflectorv1.ImagePolicy
	for _, p := range ps {
		policies = append(policies, reflectorv1.ImagePolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name},
			Status: reflectorv1.ImagePolicyStatus{
				LatestRef: &reflectorv1.ImageRef{Name: p.Image, Tag: p.Tag, Digest: p.Digest},
			},
		})
	}
	res, err := update.UpdateWithSetters(logr.Discard(), args[1], args[2], policies)
	if err != nil {
		return err
	}
	type change struct {
		File, Setter, Old, New string
	}
	var out []change
	for file, objs := range res.FileChanges {
		for _, chs := range objs {
			for _, c := range chs {
				out = append(out, change{file, c.Setter, c.OldValue, c.NewValue})
			}
		}
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}
