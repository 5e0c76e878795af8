package fluxparity

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notesctl/notesctl/manifests"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"sigs.k8s.io/kustomize/kyaml/fieldmeta"
	"sigs.k8s.io/kustomize/kyaml/openapi"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

func init() {
	// As the controller configures kyaml.
	fieldmeta.SetShortHandRef("$imagepolicy")
	openapi.SuppressBuiltInSchemaUse()
}

// settersSchema defines the four setters Flux defines for each policy.
func settersSchema(policies []manifests.Policy) *spec.Schema {
	defs := spec.Definitions{}
	for _, p := range policies {
		ref := p.Image + ":" + p.Tag
		if p.Digest != "" {
			ref += "@" + p.Digest
		}
		id := p.Namespace + ":" + p.Name
		for name, value := range map[string]string{id: ref, id + ":tag": p.Tag, id + ":name": p.Image, id + ":digest": p.Digest} {
			s := spec.StringProperty()
			s.Extensions = spec.Extensions{}
			s.Extensions.Add("x-k8s-cli", map[string]any{"setter": map[string]string{"name": name, "value": value}})
			defs[fieldmeta.SetterDefinitionPrefix+name] = *s
		}
	}
	return &spec.Schema{SchemaProps: spec.SchemaProps{Definitions: defs}}
}

// readNodes reads a file into objects as kyaml's kio.ByteReader does for
// Flux: one per document, the items of a List one each.
func readNodes(t *testing.T, data []byte) []*yaml.RNode {
	t.Helper()
	nodes, err := decode(data)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return nodes
}

func decode(data []byte) ([]*yaml.RNode, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []*yaml.RNode
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		r := yaml.NewRNode(&n)
		if r.YNode().Kind == yaml.DocumentNode {
			r = yaml.NewRNode(n.Content[0])
		}
		if k := r.Field("kind"); k != nil && (k.Value.YNode().Value == "List" || k.Value.YNode().Value == "ResourceList") {
			if items := r.Field("items"); items != nil {
				_ = items.Value.VisitElements(func(e *yaml.RNode) error { out = append(out, e); return nil })
				continue
			}
		}
		out = append(out, r)
	}
}

// walkScalars visits the scalars Flux's setter filter visits: mapping
// values and sequence items, depth first.
func walkScalars(n *yaml.RNode, fn func(*yaml.RNode)) {
	switch n.YNode().Kind {
	case yaml.DocumentNode:
		walkScalars(yaml.NewRNode(n.YNode().Content[0]), fn)
	case yaml.MappingNode:
		_ = n.VisitFields(func(f *yaml.MapNode) error { walkScalars(f.Value, fn); return nil })
	case yaml.SequenceNode:
		_ = n.VisitElements(func(e *yaml.RNode) error { walkScalars(e, fn); return nil })
	case yaml.ScalarNode:
		fn(n)
	}
}

// fluxValues applies the setters as fieldmeta resolves the markers and
// returns every scalar value in walk order.
func fluxValues(t *testing.T, data []byte, policies []manifests.Policy) []string {
	schema := settersSchema(policies)
	nodes := readNodes(t, data)
	var out []string
	for _, n := range nodes {
		walkScalars(n, func(s *yaml.RNode) {
			fm := fieldmeta.FieldMeta{SettersSchema: schema}
			if err := fm.Read(s); err == nil && !fm.IsEmpty() {
				if fm.Schema.Ref.String() != "" {
					if r, err := openapi.Resolve(&fm.Schema.Ref, schema); err == nil && r != nil {
						fm.Schema = *r
					}
				}
				if ext, ok := fm.Schema.Extensions["x-k8s-cli"]; ok {
					var v struct {
						Setter *struct{ Value string } `json:"setter"`
					}
					b, _ := json.Marshal(ext)
					if json.Unmarshal(b, &v) == nil && v.Setter != nil {
						s.YNode().Value = v.Setter.Value
					}
				}
			}
			out = append(out, s.YNode().Value)
		})
	}
	return out
}

// plainValues returns every scalar value in walk order.
func plainValues(t *testing.T, data []byte) []string {
	var out []string
	for _, n := range readNodes(t, data) {
		walkScalars(n, func(s *yaml.RNode) {
			out = append(out, s.YNode().Value)
		})
	}
	return out
}

// markerForms is every marker form the setters accept, in the places they
// can stand (line and head comments, mappings, sequences, flow style, block
// scalars, List items), plus lookalikes that are not markers.
const markerForms = `apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata:
    name: notes
  spec:
    template:
      spec:
        containers:
        - name: short
          image: ghcr.io/acme/notes:old # {"$imagepolicy": "flux-system:notes"}
        - name: short-fields
          # {"$imagepolicy": "flux-system:notes:name"}
          image: old
        - name: ref
          image: old # {"$ref": "#/definitions/io.k8s.cli.setters.flux-system:notes"}
        - name: flow
          env: [{name: A, value: old}, x # {"$imagepolicy": "flux-system:notes:tag"}
            ]
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: forms
  data:
    tag: old # {"$ref":"#/definitions/io.k8s.cli.setters.flux-system:notes:tag"}
    digest: old # {"$ref": "#/definitions/io.k8s.cli.setters.flux-system:notes:digest", "description": "d"}
    fallback: old # {"$imagepolicy": "flux-system:other", "$ref": "#/definitions/io.k8s.cli.setters.flux-system:notes:tag"}
    nonstring: old # {"$ref": "#/definitions/io.k8s.cli.setters.flux-system:notes:name", "x-extra": 1}
    urlpart: old # {"$ref": "other.json#/definitions/io.k8s.cli.setters.flux-system:notes:tag"}
    escaped: old # {"$ref": "#/definitions/io.k8s.cli.setters.flux-system:no%74es:tag"}
    wins: old # {"$imagepolicy": "flux-system:notes:tag", "$ref": "#/definitions/io.k8s.cli.setters.flux-system:notes:name"}
    hashes: old ## {"$imagepolicy": "flux-system:notes:digest"}
    block: | # {"$imagepolicy": "flux-system:notes:tag"}
      old
    unknown: old # {"$ref": "#/definitions/io.k8s.cli.setters.flux-system:other"}
    badfield: old # {"$imagepolicy": "flux-system:notes:version"}
    subst: old # {"$ref": "#/definitions/io.k8s.cli.substitutions.flux-system:notes"}
    deeper: old # {"$ref": "#/definitions/io.k8s.cli.setters.flux-system:notes/type"}
    trailing: old # {"$imagepolicy": "flux-system:notes"} and text
    typed: old # {"$ref": "#/definitions/io.k8s.cli.setters.flux-system:notes", "type": 5}
    both: old # {"$imagepolicy": "flux-system:notes:tag"}
    # {"$imagepolicy": "flux-system:notes:name"}
    headonly: old
`

var policies = []manifests.Policy{{
	Namespace: "flux-system", Name: "notes", Image: "ghcr.io/acme/notes",
	Tag:    "main-bbbbbbb-1700000100-hugo0.145.0",
	Digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111",
}}

// parityInput is one file to compare notesctl and Flux on.
type parityInput struct {
	name     string
	data     []byte
	policies []manifests.Policy
}

// goldenInputs returns the input files of the manifests golden tests that
// Flux would read (named *.yaml, *.yml or Kustomization and containing the
// marker text), with their cases' policies.
func goldenInputs(t *testing.T) []parityInput {
	t.Helper()
	var inputs []parityInput
	cases, err := filepath.Glob(filepath.Join("..", "..", "manifests", "testdata", "update", "*", "case.json"))
	if err != nil || len(cases) == 0 {
		t.Fatalf("golden cases: %v (%d)", err, len(cases))
	}
	for _, c := range cases {
		var gc struct {
			Policies []manifests.Policy `json:"policies"`
		}
		b, err := os.ReadFile(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &gc); err != nil {
			t.Fatal(err)
		}
		root := filepath.Join(filepath.Dir(c), "input")
		err = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() {
				return err
			}
			if ext := filepath.Ext(p); ext != ".yaml" && ext != ".yml" && fi.Name() != "Kustomization" {
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil || !bytes.Contains(data, []byte(`"$imagepolicy"`)) {
				return err
			}
			rel, _ := filepath.Rel(filepath.Join("..", "..", "manifests", "testdata", "update"), p)
			inputs = append(inputs, parityInput{filepath.ToSlash(rel), data, gc.Policies})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return inputs
}

// TestSetterParity checks that notesctl's update leaves every scalar with
// the value Flux's marker reading (kyaml fieldmeta, as Flux configures it)
// gives it, on every marker form and on the inputs of the manifests golden
// tests. It needs no build of Flux's code; TestFluxWritesTheSameBytes runs
// that code itself and compares bytes.
func TestSetterParity(t *testing.T) {
	inputs := append([]parityInput{{"marker-forms", []byte(markerForms), policies}}, goldenInputs(t)...)
	compared := 0
	for _, in := range inputs {
		t.Run(strings.ReplaceAll(in.name, "/", "_"), func(t *testing.T) {
			out, _, err := manifests.UpdateFile(in.name, in.data, in.policies)
			if err != nil {
				t.Skipf("notesctl refuses this input (%v); Flux's behaviour is not compared", err)
			}
			if _, err := decode(in.data); err != nil {
				t.Skipf("kyaml cannot read this input: %v", err)
			}
			want := fluxValues(t, in.data, in.policies)
			got := plainValues(t, out)
			if len(got) != len(want) {
				t.Fatalf("%d scalars after notesctl, %d after Flux", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("scalar %d: notesctl %q, Flux %q", i, got[i], want[i])
				}
			}
			compared++
		})
	}
	if compared < 5 {
		t.Errorf("only %d inputs compared", compared)
	}
}
