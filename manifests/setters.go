package manifests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	slashpath "path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/util"
	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// The setter engine reads Flux image policy markers the way Flux's
// image-automation-controller reads them (kyaml fieldmeta with the
// "$imagepolicy" short hand), but instead of re-serialising the whole file it
// only splices the new scalar token into the original bytes: everything
// outside the changed scalars stays byte for byte. Parsing goes through
// kyaml's yaml package (the yaml.v3 node API Flux's own reader uses), so
// markers and positions are found exactly as Flux finds them.
//
// What counts as a marker, as in Flux (image-automation-controller v1.2.0,
// internal/update, over kyaml's fieldmeta):
//   - only scalar nodes that are mapping values, sequence items or document
//     roots (never mapping keys, never aliases);
//   - the scalar's line comment, or its head comment when it has no line
//     comment; the comment with its leading '#' characters removed must be a
//     JSON object of strings with a non-empty "$imagepolicy" member, or an
//     OpenAPI schema whose "$ref" points at a setter definition
//     ("#/definitions/io.k8s.cli.setters.NS:NAME"; see markerCandidates);
//   - the name is a known policy's "NS:NAME", "NS:NAME:tag",
//     "NS:NAME:name" or "NS:NAME:digest"; other names are ignored;
//   - failing those, an OpenAPI schema comment with an inline setter of its
//     own, {"x-k8s-cli": {"setter": {"name": N, "value": V}}}: Flux sets V
//     whatever the policies (see resolveSetter), and so does notesctl;
//   - only files named *.yaml, *.yml or Kustomization that contain the text
//     "$imagepolicy" (with the double quotes) are parsed at all.
//
// The new token is what Flux's writer emits for the node as Flux's setter
// leaves it (see planEdit and fluxScalar): the value with the node's style,
// formatted for the setter's schema type, encoded by yaml.v3 with kyaml's
// settings. A block scalar ('|' or '>') gets the header yaml.v3 writes for
// the new value ("|-" for a value without a final line break, whatever
// chomping or indentation indicator it had) and the value as its content, at
// the original content indentation (the parent's plus two when it had no
// content). internal/fluxparity runs Flux's own update code to check this
// byte for byte. Known, deliberate differences: notesctl never writes a
// non-string where a policy setter is (Flux keeps a null or number tag and
// writes "!!null ghcr.io/..."), refuses a digest marker for a policy without
// digest (Flux writes an empty value), and keeps the file's layout around
// the changed values (Flux re-emits every file it changes).

// markerToken is the text a file must contain to be parsed at all (Flux's
// screening reader uses the same token).
const markerToken = `"$imagepolicy"`

// shortHand is the JSON key of a Flux image policy marker.
const shortHand = "$imagepolicy"

// Setter fields: which part of the image reference a marker sets.
const (
	FieldImage  = ""       // "NS:NAME": repository:tag, or repository:tag@digest
	FieldTag    = "tag"    // "NS:NAME:tag"
	FieldName   = "name"   // "NS:NAME:name": the repository
	FieldDigest = "digest" // "NS:NAME:digest"
)

// ParseMarker reads a YAML comment (with or without its leading '#') as Flux
// reads a setter marker, e.g. `# {"$imagepolicy": "flux-system:notes:tag"}`
// gives ("flux-system:notes", "tag", true). Both forms Flux accepts are read:
// the "$imagepolicy" short hand and the OpenAPI reference it stands for,
// `# {"$ref": "#/definitions/io.k8s.cli.setters.flux-system:notes:tag"}`.
// When a comment holds both, the short hand is returned; Flux falls back to
// the reference only when the short hand names a policy it does not know
// (see markerCandidates). A comment that is not a marker, or a marker whose
// reference Flux would never resolve, gives ok == false.
func ParseMarker(comment string) (policyID string, field string, ok bool) {
	for _, name := range markerCandidates(comment) {
		if policyID, field, ok = splitSetterName(name); ok {
			return policyID, field, true
		}
	}
	return "", "", false
}

// setterDefinition is the prefix of a setter reference: the short hand
// "$imagepolicy": "X" stands for {"$ref": "#/definitions/io.k8s.cli.setters.X"}.
const setterDefinition = "io.k8s.cli.setters."

// markerCandidates returns the setter names a comment refers to, in the
// order kyaml's fieldmeta (which Flux's setters use) tries them:
//  1. the short hand: the comment without its leading '#' decodes as a JSON
//     object of strings with a non-empty "$imagepolicy" member;
//  2. else, or when that name is no setter Flux defines, the comment decodes
//     as an OpenAPI schema whose "$ref" JSON pointer is
//     /definitions/io.k8s.cli.setters.NAME (the URL part before '#' is
//     ignored, pointer escapes "~0" "~1" and %-escapes are decoded).
//
// Only a name that splitSetterName accepts and that names a known policy is
// a setter; the caller picks the first such candidate.
func markerCandidates(comment string) []string {
	c := strings.TrimLeft(comment, "#")
	var out []string
	var m map[string]string
	if err := json.Unmarshal([]byte(c), &m); err == nil && m[shortHand] != "" {
		out = append(out, m[shortHand])
	}
	var sch spec.Schema
	if err := sch.UnmarshalJSON([]byte(c)); err != nil || sch.Ref.String() == "" {
		return out
	}
	tokens := sch.Ref.GetPointer().DecodedTokens()
	if len(tokens) == 2 && tokens[0] == "definitions" && strings.HasPrefix(tokens[1], setterDefinition) {
		out = append(out, strings.TrimPrefix(tokens[1], setterDefinition))
	}
	return out
}

// splitSetterName reads a setter name Flux defines for a policy:
// "NS:NAME", "NS:NAME:tag", "NS:NAME:name" or "NS:NAME:digest".
func splitSetterName(ref string) (policyID, field string, ok bool) {
	parts := strings.Split(ref, ":")
	switch len(parts) {
	case 2:
	case 3:
		switch parts[2] {
		case FieldTag, FieldName, FieldDigest:
			field = parts[2]
		default:
			return "", "", false
		}
	default:
		return "", "", false
	}
	if parts[0] == "" || parts[1] == "" {
		return "", "", false
	}
	return parts[0] + ":" + parts[1], field, true
}

// resolveMarker returns the setter a comment names among the known
// policies, as Flux resolves it against the setters it defined for them.
func resolveMarker(comment string, known func(policyID string) bool) (policyID, field string, ok bool) {
	for _, name := range markerCandidates(comment) {
		if policyID, field, ok = splitSetterName(name); ok && known(policyID) {
			return policyID, field, true
		}
	}
	return "", "", false
}

// cliExtension is the OpenAPI vendor extension that holds a setter.
const cliExtension = "x-k8s-cli"

// setterRef is what a marker comment sets, as Flux's setter filter reads
// it: a setter Flux defines for a policy, or an inline setter, whose value
// is in the comment itself.
type setterRef struct {
	policyID, field string // a policy setter (inline == false)

	inline bool
	name   string // inline: the setter's name
	value  string // inline: the value Flux writes

	// typ is the schema type Flux formats the new value with
	// (yaml.FormatNonStringStyle): "string" for policy setters.
	typ spec.StringOrArray
}

// resolveSetter reads a marker comment in the order kyaml's fieldmeta and
// Flux's setter filter apply:
//  1. the "$imagepolicy" short hand or a "$ref" that names a setter Flux
//     defines for a known policy (see resolveMarker);
//  2. else, when the comment is an OpenAPI schema (with a "$ref" that did
//     not resolve, or none), its own "x-k8s-cli" extension: an inline
//     setter {"x-k8s-cli": {"setter": {"name": N, "value": V}}} sets V,
//     formatted by the schema's "type". Flux applies these in every file
//     it reads (one containing "$imagepolicy"), whatever the policies.
//
// An "x-k8s-cli" member that is not an object with a "setter" object is an
// error, as it fails Flux's whole update run. Not applicable (Flux defines
// or reads none of them): substitutions ("io.k8s.cli.substitutions.*"),
// v1 "x-kustomize" setters and partial setters.
func resolveSetter(comment string, known func(policyID string) bool) (setterRef, bool, error) {
	if id, field, ok := resolveMarker(comment, known); ok {
		return setterRef{policyID: id, field: field, typ: spec.StringOrArray{"string"}}, true, nil
	}
	c := strings.TrimLeft(comment, "#")
	var sch spec.Schema
	if err := sch.UnmarshalJSON([]byte(c)); err != nil {
		return setterRef{}, false, nil
	}
	ext, ok := sch.Extensions[cliExtension]
	if !ok || ext == nil {
		return setterRef{}, false, nil
	}
	var v struct {
		Setter *struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"setter,omitempty"`
	}
	b, err := json.Marshal(ext)
	if err == nil {
		err = json.Unmarshal(b, &v)
	}
	if err != nil {
		return setterRef{}, false, fmt.Errorf("invalid %q setter in marker comment: %w", cliExtension, err)
	}
	if v.Setter == nil {
		return setterRef{}, false, nil
	}
	return setterRef{inline: true, name: v.Setter.Name, value: v.Setter.Value, typ: sch.Type}, true, nil
}

// setterName is the marker reference for a policy and field.
func setterName(policyID, field string) string {
	if field == FieldImage {
		return policyID
	}
	return policyID + ":" + field
}

// ParseError says that a candidate file could not be read as YAML (or is a
// template that must not be rewritten as YAML). Line and Col are 1-based and
// 0 when the parser did not say.
type ParseError struct {
	File string
	Line int
	Col  int
	Msg  string
}

func (e *ParseError) Error() string {
	switch {
	case e.Line > 0 && e.Col > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	default:
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
}

var (
	tagPattern    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	digestPattern = regexp.MustCompile(`^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$`)
	// Kubernetes object names (DNS subdomain) are what Flux policies use.
	k8sNamePattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
	yamlLinePrefix = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
)

// validatePolicies checks the policies once so that the engine can write
// their values without further checks, and indexes them by ID.
func validatePolicies(policies []Policy) (map[string]Policy, error) {
	if len(policies) == 0 {
		return nil, errors.New("no image policies given")
	}
	byID := make(map[string]Policy, len(policies))
	for _, p := range policies {
		id := p.ID()
		if !k8sNamePattern.MatchString(p.Namespace) || !k8sNamePattern.MatchString(p.Name) {
			return nil, fmt.Errorf("image policy %q: namespace and name must be Kubernetes object names", id)
		}
		if _, dup := byID[id]; dup {
			return nil, fmt.Errorf("image policy %q given twice", id)
		}
		if _, err := name.NewRepository(p.Image); err != nil || strings.ContainsAny(p.Image, "@ \t\r\n") {
			return nil, fmt.Errorf("image policy %q: invalid image repository %q", id, p.Image)
		}
		if !tagPattern.MatchString(p.Tag) {
			return nil, fmt.Errorf("image policy %q: invalid tag %q", id, p.Tag)
		}
		if p.Digest != "" && !digestPattern.MatchString(p.Digest) {
			return nil, fmt.Errorf("image policy %q: invalid digest %q", id, p.Digest)
		}
		byID[id] = p
	}
	return byID, nil
}

// value is what Flux writes for a setter field.
func (p Policy) value(field string) (string, bool) {
	switch field {
	case FieldTag:
		return p.Tag, true
	case FieldName:
		return p.Image, true
	case FieldDigest:
		return p.Digest, p.Digest != ""
	default:
		ref := p.Image + ":" + p.Tag
		if p.Digest != "" {
			ref += "@" + p.Digest
		}
		return ref, true
	}
}

// objectMeta identifies the Kubernetes object a scalar belongs to.
type objectMeta struct {
	Kind, Namespace, Name string
}

// marked is one scalar carrying a marker.
type marked struct {
	node     *yaml.Node
	policyID string
	field    string
	set      setterRef
	flow     bool // inside a flow collection: ",[]{}" cannot be plain
	indent   int  // column (0-based) of the key or "-" the value belongs to; -2 at a document root
	obj      objectMeta
}

// markerComment is the comment Flux reads for a node: the line comment, or
// the head comment when there is no line comment.
func markerComment(n *yaml.Node) string {
	if n.LineComment != "" {
		return n.LineComment
	}
	return n.HeadComment
}

func scalarValue(n *yaml.Node) string {
	if n != nil && n.Kind == yaml.ScalarNode {
		return n.Value
	}
	return ""
}

// mappingValue returns the value for key in a mapping node, or nil.
func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func metaOf(n *yaml.Node) objectMeta {
	md := mappingValue(n, "metadata")
	return objectMeta{
		Kind:      scalarValue(mappingValue(n, "kind")),
		Namespace: scalarValue(mappingValue(md, "namespace")),
		Name:      scalarValue(mappingValue(md, "name")),
	}
}

// collectMarkers walks documents the way Flux's setter filter does and
// returns every scalar with a marker for a known policy, in document order.
// With inline set, inline "x-k8s-cli" setters are returned too.
func collectMarkers(docs []*yaml.Node, known func(policyID string) bool, inline bool) ([]marked, error) {
	var out []marked
	var firstErr error
	var walk func(n *yaml.Node, flow bool, indent int, obj objectMeta)
	walk = func(n *yaml.Node, flow bool, indent int, obj objectMeta) {
		if n == nil {
			return
		}
		switch n.Kind {
		case yaml.MappingNode:
			flow = flow || n.Style&yaml.FlowStyle != 0
			for i := 1; i < len(n.Content); i += 2 {
				walk(n.Content[i], flow, n.Content[i-1].Column-1, obj)
			}
		case yaml.SequenceNode:
			flow = flow || n.Style&yaml.FlowStyle != 0
			for _, c := range n.Content {
				walk(c, flow, n.Column-1, obj)
			}
		case yaml.ScalarNode:
			s, ok, err := resolveSetter(markerComment(n), known)
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("line %d: %w", n.Line, err)
			}
			if ok && (inline || !s.inline) {
				out = append(out, marked{node: n, policyID: s.policyID, field: s.field, set: s, flow: flow, indent: indent, obj: obj})
			}
		}
	}
	for _, d := range docs {
		if d.Kind != yaml.DocumentNode || len(d.Content) == 0 {
			continue
		}
		root := d.Content[0]
		obj := metaOf(root)
		// Flux unwraps the items of a List and treats each as an object.
		if root.Kind == yaml.MappingNode && (obj.Kind == "List" || obj.Kind == "ResourceList") {
			flow := root.Style&yaml.FlowStyle != 0
			for i := 0; i+1 < len(root.Content); i += 2 {
				k, v := root.Content[i], root.Content[i+1]
				if k.Value == "items" && v.Kind == yaml.SequenceNode {
					f := flow || v.Style&yaml.FlowStyle != 0
					for _, item := range v.Content {
						walk(item, f, v.Column-1, metaOf(item))
					}
					continue
				}
				walk(v, flow, k.Column-1, obj)
			}
			continue
		}
		walk(root, false, -2, obj)
	}
	return out, firstErr
}

// parseDocuments decodes every document of a YAML stream into nodes.
func parseDocuments(file string, data []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			return nil, yamlParseError(file, err)
		}
		docs = append(docs, &n)
	}
}

func yamlParseError(file string, err error) *ParseError {
	msg := err.Error()
	pe := &ParseError{File: file, Msg: strings.TrimPrefix(msg, "yaml: ")}
	if m := yamlLinePrefix.FindStringSubmatch(msg); m != nil {
		pe.Line, _ = strconv.Atoi(m[1])
		pe.Msg = m[2]
	}
	return pe
}

// templateError reports the first "{{" of a file: templates are never
// rewritten as YAML, even when they happen to parse.
func templateError(file string, data []byte) *ParseError {
	i := bytes.Index(data, []byte("{{"))
	if i < 0 {
		return nil
	}
	idx := newLineIndex(data)
	line, col := idx.position(data, i)
	return &ParseError{File: file, Line: line, Col: col,
		Msg: `contains a template expression "{{" (Helm template?); not rewritten as YAML`}
}

// UpdateFile applies the policies to one file's bytes. It is pure: path is
// only used in messages and in the returned changes. When nothing changes,
// out is data itself and changes is empty. err is a *ParseError when a file
// containing a marker does not parse or is a template; other errors mean a
// marker was found but cannot be set (say, a digest marker for a policy
// without digest).
func UpdateFile(path string, data []byte, policies []Policy) (out []byte, changes []Change, err error) {
	byID, err := validatePolicies(policies)
	if err != nil {
		return nil, nil, err
	}
	res, err := updateBytes(path, data, byID)
	if err != nil {
		return nil, nil, err
	}
	return res.out, res.changes, nil
}

// fileResult is the outcome of updating one file.
type fileResult struct {
	out     []byte
	changes []Change
	found   map[string]bool // policy IDs whose markers appear in the file
}

// edit replaces data[start:end] with the rendered token.
type edit struct {
	start, end int
	node       *yaml.Node
	want       string // the value the node must read as afterwards
	wantTag    string // and the tag it must resolve to
	line       int
	render     func(forceDouble bool) string // the new token
}

func updateBytes(path string, data []byte, byID map[string]Policy) (*fileResult, error) {
	res := &fileResult{out: data, found: map[string]bool{}}
	if !bytes.Contains(data, []byte(markerToken)) {
		return res, nil
	}
	if pe := templateError(path, data); pe != nil {
		return nil, pe
	}
	docs, err := parseDocuments(path, data)
	if err != nil {
		return nil, err
	}
	idx := newLineIndex(data)
	var edits []*edit
	markers, err := collectMarkers(docs, func(id string) bool { _, ok := byID[id]; return ok }, true)
	if err != nil {
		return nil, fmt.Errorf("%s:%w", path, err)
	}
	for _, m := range markers {
		var setter, want string
		if m.set.inline {
			// Flux sets inline setters in every file it reads.
			setter, want = m.set.name, m.set.value
		} else {
			p := byID[m.policyID]
			res.found[m.policyID] = true
			setter = setterName(m.policyID, m.field)
			var ok bool
			if want, ok = p.value(m.field); !ok {
				return nil, fmt.Errorf("%s:%d: marker %q needs a digest, but image policy %q has none", path, m.node.Line, setter, m.policyID)
			}
		}
		e, err := planEdit(path, data, idx, m, want)
		if err != nil {
			return nil, err
		}
		if e == nil {
			continue // already set
		}
		edits = append(edits, e)
		res.changes = append(res.changes, Change{
			File: path, Line: m.node.Line,
			Kind: m.obj.Kind, Namespace: m.obj.Namespace, Name: m.obj.Name,
			Setter: setter, Old: m.node.Value, New: e.want,
		})
	}
	if len(edits) == 0 {
		res.changes = nil
		return res, nil
	}
	out, err := applyEdits(path, data, docs, edits)
	if err != nil {
		return nil, err
	}
	res.out = out
	return res, nil
}

// applyEdits splices the edits and checks the result by parsing it again:
// the same tree, with only the edited scalars changed, each now reading as
// its new string. If a chosen quoting style does not survive that check the
// edits are retried double-quoted, which always reads as a string.
func applyEdits(path string, data []byte, docs []*yaml.Node, edits []*edit) ([]byte, error) {
	sort.Slice(edits, func(i, j int) bool { return edits[i].start < edits[j].start })
	for i := 1; i < len(edits); i++ {
		if edits[i].start < edits[i-1].end {
			return nil, fmt.Errorf("%s:%d: marked values overlap; not rewritten", path, edits[i].line)
		}
	}
	var lastErr error
	for _, forceDouble := range []bool{false, true} {
		var buf bytes.Buffer
		buf.Grow(len(data) + 64)
		prev := 0
		for _, e := range edits {
			buf.Write(data[prev:e.start])
			buf.WriteString(e.render(forceDouble))
			prev = e.end
		}
		buf.Write(data[prev:])
		out := buf.Bytes()
		want := make(map[*yaml.Node]*edit, len(edits))
		for _, e := range edits {
			want[e.node] = e
		}
		if lastErr = verifyRewrite(path, docs, out, want); lastErr == nil {
			return out, nil
		}
	}
	return nil, fmt.Errorf("cannot rewrite marked values without changing anything else: %w", lastErr)
}

// verifyRewrite parses out and compares it with the original documents:
// every node the same except the scalars in want, which must now read as
// the wanted values with the wanted tags (a string for policy setters).
func verifyRewrite(path string, docs []*yaml.Node, out []byte, want map[*yaml.Node]*edit) error {
	newDocs, err := parseDocuments(path, out)
	if err != nil {
		return err
	}
	if len(newDocs) != len(docs) {
		return fmt.Errorf("%s: document count changed from %d to %d", path, len(docs), len(newDocs))
	}
	var cmp func(a, b *yaml.Node) error
	cmp = func(a, b *yaml.Node) error {
		if a.Kind != b.Kind || len(a.Content) != len(b.Content) {
			return fmt.Errorf("%s:%d: structure changed", path, a.Line)
		}
		if a.Anchor != b.Anchor || a.HeadComment != b.HeadComment || a.LineComment != b.LineComment || a.FootComment != b.FootComment {
			return fmt.Errorf("%s:%d: anchor or comments changed", path, a.Line)
		}
		if e, ok := want[a]; ok {
			if b.Value != e.want || b.ShortTag() != e.wantTag {
				return fmt.Errorf("%s:%d: value reads as %s %q, want %s %q", path, a.Line, b.ShortTag(), b.Value, e.wantTag, e.want)
			}
			return nil
		}
		if a.Value != b.Value || a.Tag != b.Tag || a.Style != b.Style {
			return fmt.Errorf("%s:%d: unmarked value changed", path, a.Line)
		}
		for i := range a.Content {
			if err := cmp(a.Content[i], b.Content[i]); err != nil {
				return err
			}
		}
		return nil
	}
	for i := range docs {
		if err := cmp(docs[i], newDocs[i]); err != nil {
			return err
		}
	}
	return nil
}

// planEdit works out where the marked scalar's token is in data and what to
// write there: exactly the token Flux's writer (kyaml, yaml.v3) emits for the
// node as Flux's setter leaves it (see fluxScalar), in the same context. It
// returns nil when the value is already set.
func planEdit(path string, data []byte, idx *lineIndex, m marked, want string) (*edit, error) {
	n := m.node
	block := n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0
	isString := n.ShortTag() == "!!str"
	if n.Style&yaml.TaggedStyle != 0 && !isString {
		return nil, fmt.Errorf("%s:%d: marked value has the explicit tag %s; refusing to write a string there", path, n.Line, n.Tag)
	}
	// Flux writes a value only when it differs. notesctl also rewrites a
	// policy value that has the wanted text but reads as a number, bool or
	// null (plain 1.10), so that the image field really is the string.
	if n.Value == want && (isString || m.set.inline) {
		return nil, nil
	}
	fail := func(why string) error {
		return fmt.Errorf("%s:%d:%d: cannot locate the marked value in the source (%s)", path, n.Line, n.Column, why)
	}
	off, ok := idx.offset(data, n.Line, n.Column)
	if !ok {
		return nil, fail("position outside the file")
	}
	off = skipProperties(data, off)
	if off >= len(data) {
		return nil, fail("value missing")
	}
	tok := fluxScalar(n, want, m.set)
	e := &edit{start: off, node: n, want: want, wantTag: tok.ShortTag(), line: n.Line}
	// The old token is data[off:end]; after it, up to tailEnd, what stays
	// on its line (a comment); the lines up to e.end are replaced.
	var end, tailEnd int
	pad := m.indent + 2
	if pad < 2 {
		pad = 2
	}
	style := n.Style &^ yaml.TaggedStyle
	switch {
	case block:
		hdrEnd, contentEnd, indent, err := blockExtent(data, idx, n, off)
		if err != nil {
			return nil, fail(err.Error())
		}
		end = hdrEnd
		tailEnd = lineEnd(data, hdrEnd)
		e.end = tailEnd
		if contentEnd > 0 {
			e.end = contentEnd
			pad = indent
		}
	case style&yaml.DoubleQuotedStyle != 0:
		if end, ok = quotedEnd(data, off, '"'); !ok {
			return nil, fail("unterminated double-quoted scalar")
		}
	case style&yaml.SingleQuotedStyle != 0:
		if end, ok = quotedEnd(data, off, '\''); !ok {
			return nil, fail("unterminated single-quoted scalar")
		}
	default:
		if end, ok = plainEnd(data, off, n.Value); !ok {
			return nil, fail("plain scalar text does not match its value")
		}
	}
	if !block {
		e.end = end
		tailEnd = end
	}
	br := "\n"
	if le := lineEnd(data, off); le < len(data) && data[le] == '\r' {
		br = "\r\n"
	}
	flow := m.flow
	e.render = func(forceDouble bool) string {
		t := *tok
		if forceDouble {
			t.Style = yaml.DoubleQuotedStyle
		}
		first, more, err := encodeScalar(&t, flow)
		if err != nil {
			first, more = doubleQuote(want), nil
		}
		if len(more) == 0 {
			// The rest of the old token's line stays; the content lines
			// of a block scalar that becomes a flow scalar go.
			return first + string(data[end:tailEnd])
		}
		// A block scalar (or a flow scalar Flux writes over several
		// lines): the header where the old token was, the rest of that
		// line as it is, then the content lines.
		if e.end == end {
			e.end = lineEnd(data, end)
			tailEnd = e.end
		}
		var b strings.Builder
		b.WriteString(first)
		b.Write(data[end:tailEnd])
		for _, l := range more {
			b.WriteString(br)
			if l != "" {
				b.WriteString(strings.Repeat(" ", pad))
				b.WriteString(l)
			}
		}
		return b.String()
	}
	// The extent must be known before the edits are ordered: render once.
	e.render(false)
	return e, nil
}

// fluxScalar is the node Flux's setter leaves: the new value, the original
// style and tag, formatted for the setter schema's type
// (yaml.FormatNonStringStyle: a YAML 1.1 non-string is double-quoted for a
// string setter, a quoted number unquoted for an integer one). One
// deliberate difference: a policy setter always writes a string, where Flux
// keeps a non-string tag (plain 1 or null, written back as "!!int ghcr.io/...").
func fluxScalar(n *yaml.Node, value string, s setterRef) *yaml.Node {
	c := &yaml.Node{Kind: yaml.ScalarNode, Style: n.Style &^ yaml.TaggedStyle, Tag: n.Tag, Value: value}
	if c.Tag == "" {
		c.Tag = n.ShortTag()
	}
	if len(s.typ) > 0 {
		yaml.FormatNonStringStyle(c, spec.Schema{SchemaProps: spec.SchemaProps{Type: s.typ}})
	}
	if !s.inline {
		c.Tag = "!!str"
	}
	return c
}

// encodeScalar returns the token yaml.v3 (with kyaml's encoder settings, as
// Flux writes files) emits for n as a block mapping value or, with flow, as
// a flow sequence item: its first line, and further lines (block scalar
// content) without their base indentation.
func encodeScalar(n *yaml.Node, flow bool) (string, []string, error) {
	var doc *yaml.Node
	prefix, suffix := "k: ", ""
	if flow {
		doc = &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle, Content: []*yaml.Node{n}}
		prefix, suffix = "[", "]"
	} else {
		doc = &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Tag: "!!str", Value: "k"}, n}}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(doc); err != nil {
		return "", nil, err
	}
	if err := enc.Close(); err != nil {
		return "", nil, err
	}
	s := strings.TrimSuffix(buf.String(), "\n")
	if !strings.HasPrefix(s, prefix) || !strings.HasSuffix(s, suffix) {
		return "", nil, fmt.Errorf("unexpected encoding %q", s)
	}
	lines := strings.Split(strings.TrimSuffix(strings.TrimPrefix(s, prefix), suffix), "\n")
	for i := 1; i < len(lines); i++ {
		if lines[i] != "" && !strings.HasPrefix(lines[i], "  ") {
			return "", nil, fmt.Errorf("unexpected encoding %q", s)
		}
		lines[i] = strings.TrimPrefix(lines[i], "  ")
	}
	return lines[0], lines[1:], nil
}

// lineEnd returns the offset of the line break ending the line at off (or
// the end of data).
func lineEnd(data []byte, off int) int {
	for off < len(data) && breakWidth(data, off) == 0 {
		off++
	}
	return off
}

// blockExtent finds the parts of a literal or folded block scalar whose
// header is at off: the end of its header indicators, the end of its last
// content line (0 when it has no content) and its content indentation.
func blockExtent(data []byte, idx *lineIndex, n *yaml.Node, off int) (hdrEnd, contentEnd, indent int, err error) {
	if c := data[off]; c != '|' && c != '>' {
		return 0, 0, 0, errors.New("block scalar header not found")
	}
	hdrEnd = off + 1
	for hdrEnd < len(data) && strings.IndexByte("+-0123456789", data[hdrEnd]) >= 0 {
		hdrEnd++
	}
	content := strings.TrimLeft(n.Value, "\n")
	if strings.TrimRight(content, "\n") == "" {
		return hdrEnd, 0, 0, nil
	}
	headerLine, _ := idx.position(data, off)
	first := headerLine + 1 // first content line (1-based)
	// The content indentation is what the first non-empty content line has
	// beyond its value text.
	firstValueLine := content
	if i := strings.IndexByte(firstValueLine, '\n'); i >= 0 {
		firstValueLine = firstValueLine[:i]
	}
	indent = -1
	last := 0
	for l := first; ; l++ {
		text, ok := idx.lineText(data, l)
		if !ok {
			break
		}
		sp := len(text) - len(strings.TrimLeft(text, " "))
		if strings.Trim(text, " ") == "" {
			continue
		}
		if indent < 0 {
			indent = sp - (len(firstValueLine) - len(strings.TrimLeft(firstValueLine, " ")))
			if indent < 0 {
				return 0, 0, 0, errors.New("block scalar indentation")
			}
		} else if sp < indent {
			break
		}
		last = l
	}
	if indent < 0 || last == 0 {
		return 0, 0, 0, errors.New("block scalar content not found")
	}
	lastStart, _ := idx.lineStart(last)
	lastText, _ := idx.lineText(data, last)
	return hdrEnd, lastStart + len(lastText), indent, nil
}

// skipProperties moves past an anchor and/or tag: yaml.v3 reports a node's
// position at its first property, and those stay as they are.
func skipProperties(data []byte, off int) int {
	for off < len(data) && (data[off] == '&' || data[off] == '!') {
		for off < len(data) && !isSpaceOrBreak(data[off]) {
			off++
		}
		for off < len(data) {
			switch {
			case isSpaceOrBreak(data[off]):
				off++
			case data[off] == '#':
				for off < len(data) && data[off] != '\n' && data[off] != '\r' {
					off++
				}
			default:
				return off
			}
		}
	}
	return off
}

func isSpaceOrBreak(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// quotedEnd returns the offset just past the quoted scalar starting at off.
func quotedEnd(data []byte, off int, q byte) (int, bool) {
	if off >= len(data) || data[off] != q {
		return 0, false
	}
	for j := off + 1; j < len(data); j++ {
		switch {
		case q == '"' && data[j] == '\\':
			j++
		case data[j] == q:
			if q == '\'' && j+1 < len(data) && data[j+1] == '\'' {
				j++
				continue
			}
			return j + 1, true
		}
	}
	return 0, false
}

// plainEnd returns the offset just past the plain scalar at off whose value
// is value. A single-line plain scalar is its value verbatim; a multi-line
// one folds each line break (with the surrounding white space) into a space,
// or into n-1 newlines for n breaks.
func plainEnd(data []byte, off int, value string) (int, bool) {
	if bytes.HasPrefix(data[off:], []byte(value)) {
		return off + len(value), true
	}
	i, j := 0, off
	for i < len(value) {
		if j >= len(data) {
			return 0, false
		}
		c := data[j]
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			k := j
			for k < len(data) && (data[k] == ' ' || data[k] == '\t') {
				k++
			}
			if k < len(data) && data[k] != '\n' && data[k] != '\r' {
				// white space inside a line is part of the value
				if value[i] != c {
					return 0, false
				}
				i++
				j++
				continue
			}
			breaks := 0
			for k < len(data) && (data[k] == '\n' || data[k] == '\r') {
				if data[k] == '\r' && k+1 < len(data) && data[k+1] == '\n' {
					k++
				}
				k++
				breaks++
				for k < len(data) && (data[k] == ' ' || data[k] == '\t') {
					k++
				}
			}
			if breaks == 0 {
				return 0, false
			}
			want := " "
			if breaks > 1 {
				want = strings.Repeat("\n", breaks-1)
			}
			if !strings.HasPrefix(value[i:], want) {
				return 0, false
			}
			i += len(want)
			j = k
			continue
		}
		if value[i] != c {
			return 0, false
		}
		i++
		j++
	}
	return j, true
}

// doubleQuote writes v as a YAML double-quoted scalar.
func doubleQuote(v string) string {
	var b strings.Builder
	b.Grow(len(v) + 2)
	b.WriteByte('"')
	for _, r := range v {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == utf8.RuneError:
			b.WriteString(`\uFFFD`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02X`, r)
		case !unicode.IsPrint(r) && r != ' ':
			if r > 0xFFFF {
				fmt.Fprintf(&b, `\U%08X`, r)
			} else {
				fmt.Fprintf(&b, `\u%04X`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// lineIndex maps yaml.v3 line/column marks to byte offsets. Like yaml.v3 it
// counts CRLF, CR, LF, NEL, LS and PS as line breaks and columns in runes.
type lineIndex struct {
	starts []int // byte offset of the start of each line
}

func newLineIndex(data []byte) *lineIndex {
	start := 0
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		start = 3
	}
	starts := []int{start}
	for i := start; i < len(data); {
		w := breakWidth(data, i)
		if w == 0 {
			i++
			continue
		}
		i += w
		starts = append(starts, i)
	}
	return &lineIndex{starts: starts}
}

// breakWidth is the length of the line break at i, or 0.
func breakWidth(data []byte, i int) int {
	switch c := data[i]; {
	case c == '\r':
		if i+1 < len(data) && data[i+1] == '\n' {
			return 2
		}
		return 1
	case c == '\n':
		return 1
	case c == 0xC2 && i+1 < len(data) && data[i+1] == 0x85:
		return 2
	case c == 0xE2 && i+2 < len(data) && data[i+1] == 0x80 && (data[i+2] == 0xA8 || data[i+2] == 0xA9):
		return 3
	}
	return 0
}

func (x *lineIndex) lineStart(line int) (int, bool) {
	if line < 1 || line > len(x.starts) {
		return 0, false
	}
	return x.starts[line-1], true
}

// lineText returns the text of a line without its line break.
func (x *lineIndex) lineText(data []byte, line int) (string, bool) {
	start, ok := x.lineStart(line)
	if !ok || start > len(data) || (start == len(data) && line > 1 && line == len(x.starts)) {
		return "", false
	}
	end := start
	for end < len(data) && breakWidth(data, end) == 0 {
		end++
	}
	return string(data[start:end]), true
}

// offset converts a 1-based line and rune column to a byte offset.
func (x *lineIndex) offset(data []byte, line, col int) (int, bool) {
	off, ok := x.lineStart(line)
	if !ok || col < 1 {
		return 0, false
	}
	for k := 1; k < col; k++ {
		if off >= len(data) || breakWidth(data, off) > 0 {
			return 0, false
		}
		_, w := utf8.DecodeRune(data[off:])
		off += w
	}
	return off, true
}

// position converts a byte offset to a 1-based line and rune column.
func (x *lineIndex) position(data []byte, off int) (line, col int) {
	i := sort.Search(len(x.starts), func(i int) bool { return x.starts[i] > off }) - 1
	if i < 0 {
		i = 0
	}
	return i + 1, utf8.RuneCount(data[x.starts[i]:off]) + 1
}

// UpdateOptions tunes Update.
type UpdateOptions struct {
	// DryRun computes the changes (and the diff) without writing files.
	DryRun bool
	// SkipUnparseable updates the other files when some files with marker
	// text do not parse or are templates, listing them in Result.Skipped;
	// without it they are an *UnparseableError (a marker in them would
	// silently keep its old image).
	SkipUnparseable bool
}

// SkippedFile is a candidate file (it contains the marker text) that was left
// alone because it does not parse as YAML or is a template.
type SkippedFile struct {
	Path   string // slash path relative to the filesystem root
	Line   int    // 1-based, 0 when unknown
	Col    int    // 1-based, 0 when unknown
	Reason string
}

func (s SkippedFile) String() string {
	return (&ParseError{File: s.Path, Line: s.Line, Col: s.Col, Msg: s.Reason}).Error()
}

// Result is what Update did (or, with DryRun, would do).
type Result struct {
	Changes      []Change      // in file order, then line order
	FilesScanned int           // YAML files read (named *.yaml, *.yml, Kustomization)
	Skipped      []SkippedFile // candidate files left alone, by path

	files []fileUpdate
}

type fileUpdate struct {
	path     string
	old, new []byte
}

// ChangedFiles lists the paths (relative to the filesystem root) of the files
// that changed, sorted.
func (r *Result) ChangedFiles() []string {
	out := make([]string, 0, len(r.files))
	for _, f := range r.files {
		out = append(out, f.path)
	}
	return out
}

// Diff is a unified diff (a/ and b/ prefixes, 3 lines of context) of every
// changed file, in path order; empty when nothing changed.
func (r *Result) Diff() string {
	var b strings.Builder
	for _, f := range r.files {
		b.WriteString(UnifiedDiff("a/"+f.path, "b/"+f.path, f.old, f.new, 3))
	}
	return b.String()
}

// NoMarkerError says that some policies have no setter marker anywhere in the
// scanned tree: the update would silently deploy nothing.
type NoMarkerError struct {
	Policies     []string // policy IDs, sorted
	Root         string
	FilesScanned int
	Skipped      []SkippedFile // candidate files that were left alone
}

func (e *NoMarkerError) Error() string {
	var b strings.Builder
	if len(e.Policies) == 1 {
		fmt.Fprintf(&b, "no setter marker for image policy %q", e.Policies[0])
	} else {
		fmt.Fprintf(&b, "no setter markers for image policies %s", strings.Join(quoteAll(e.Policies), ", "))
	}
	fmt.Fprintf(&b, " in %d YAML files scanned under %q", e.FilesScanned, displayRoot(e.Root))
	if n := len(e.Skipped); n > 0 {
		// A marker in a file that does not parse is the likely culprit.
		fmt.Fprintf(&b, " (%d files with marker text skipped: ", n)
		for i, s := range e.Skipped {
			if i == 3 {
				fmt.Fprintf(&b, "; and %d more", n-i)
				break
			}
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(s.String())
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, `; expected a comment like # {"$imagepolicy": "%s"} on an image value`, e.Policies[0])
	return b.String()
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

func displayRoot(root string) string {
	if root == "" {
		return "."
	}
	return root
}

// isCandidate reports whether Flux would read a file with this name.
func isCandidate(base string) bool {
	return strings.HasSuffix(base, ".yaml") || strings.HasSuffix(base, ".yml") || base == "Kustomization"
}

// walkYAML calls fn for every candidate file under root, in sorted path order.
// It skips .git directories and symbolic links (following a link could read
// or write outside the tree).
func walkYAML(fsys billy.Filesystem, root string, fn func(p string, data []byte) error) error {
	root = slashpath.Clean("/" + filepath.ToSlash(root))[1:]
	dir := root
	if dir == "" {
		dir = "."
	}
	fi, err := fsys.Stat(dir)
	if err != nil {
		return fmt.Errorf("reading %q: %w", displayRoot(root), err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%q is not a directory", displayRoot(root))
	}
	var walk func(dir string) error
	walk = func(dir string) error {
		d := dir
		if d == "" {
			d = "."
		}
		entries, err := fsys.ReadDir(d)
		if err != nil {
			return fmt.Errorf("reading directory %q: %w", displayRoot(dir), err)
		}
		sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
		for _, e := range entries {
			p := slashpath.Join(dir, e.Name())
			switch {
			case e.Mode()&os.ModeSymlink != 0:
				continue
			case e.IsDir():
				if e.Name() == ".git" {
					continue
				}
				if err := walk(p); err != nil {
					return err
				}
			case e.Mode().IsRegular() && isCandidate(e.Name()):
				data, err := util.ReadFile(fsys, p)
				if err != nil {
					return fmt.Errorf("reading %q: %w", p, err)
				}
				if err := fn(p, data); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(root)
}

// Update applies the policies to every candidate file under root in fsys (an
// osfs directory or a go-git worktree) and writes the files that changed,
// only after all of them were computed: on error nothing is written. Paths in
// the result are slash paths relative to the root of fsys. A policy whose
// marker appears in no file is a *NoMarkerError.
func Update(fsys billy.Filesystem, root string, policies []Policy, opts UpdateOptions) (*Result, error) {
	byID, err := validatePolicies(policies)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	found := map[string]bool{}
	err = walkYAML(fsys, root, func(p string, data []byte) error {
		res.FilesScanned++
		fr, err := updateBytes(p, data, byID)
		var pe *ParseError
		if errors.As(err, &pe) {
			res.Skipped = append(res.Skipped, SkippedFile{Path: p, Line: pe.Line, Col: pe.Col, Reason: pe.Msg})
			return nil
		}
		if err != nil {
			return err
		}
		for id := range fr.found {
			found[id] = true
		}
		if len(fr.changes) > 0 {
			res.Changes = append(res.Changes, fr.changes...)
			res.files = append(res.files, fileUpdate{path: p, old: data, new: fr.out})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var missing []string
	for id := range byID {
		if !found[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, &NoMarkerError{Policies: missing, Root: root, FilesScanned: res.FilesScanned, Skipped: res.Skipped}
	}
	if len(res.Skipped) > 0 && !opts.SkipUnparseable {
		return nil, &UnparseableError{Files: res.Skipped}
	}
	if opts.DryRun {
		return res, nil
	}
	for _, f := range res.files {
		if err := overwrite(fsys, f.path, f.new); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// overwrite replaces a file's content in place, keeping its mode.
func overwrite(fsys billy.Filesystem, p string, data []byte) error {
	fi, err := fsys.Stat(p)
	if err != nil {
		return fmt.Errorf("writing %q: %w", p, err)
	}
	f, err := fsys.OpenFile(p, os.O_WRONLY|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return fmt.Errorf("writing %q: %w", p, err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("writing %q: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %q: %w", p, err)
	}
	return nil
}

// Found is the value at one setter marker.
type Found struct {
	File      string // slash path relative to the filesystem root
	Line      int
	Kind      string
	Namespace string
	Name      string
	Setter    string // the marker's reference, e.g. "flux-system:notes:tag"
	Field     string // FieldImage, FieldTag, FieldName or FieldDigest
	Value     string // block scalars without their trailing line breaks
}

// Current reads the values at the markers for one policy ("namespace:name")
// without changing anything, in file and line order. Files that do not parse
// or are templates are passed over, as Update passes over them.
func Current(fsys billy.Filesystem, root string, policyID string) ([]Found, error) {
	ns, nm, ok := strings.Cut(policyID, ":")
	if !ok || !k8sNamePattern.MatchString(ns) || !k8sNamePattern.MatchString(nm) {
		return nil, fmt.Errorf("invalid image policy %q: want namespace:name", policyID)
	}
	var out []Found
	err := walkYAML(fsys, root, func(p string, data []byte) error {
		if !bytes.Contains(data, []byte(markerToken)) || templateError(p, data) != nil {
			return nil
		}
		docs, err := parseDocuments(p, data)
		if err != nil {
			return nil
		}
		markers, _ := collectMarkers(docs, func(id string) bool { return id == policyID }, false)
		for _, m := range markers {
			v := m.node.Value
			if m.node.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
				v = strings.TrimRight(v, "\n")
			}
			out = append(out, Found{
				File: p, Line: m.node.Line,
				Kind: m.obj.Kind, Namespace: m.obj.Namespace, Name: m.obj.Name,
				Setter: setterName(m.policyID, m.field), Field: m.field, Value: v,
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
