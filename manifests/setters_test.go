package manifests

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/memfs"
	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-billy/v5/util"
	yaml "go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/update")

const testDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

var notesPolicy = Policy{
	Namespace: "flux-system", Name: "notes",
	Image: "ghcr.io/acme/notes", Tag: "main-bbbbbbb-1700000100-hugo0.145.0", Digest: testDigest,
}

type goldenCase struct {
	Policies        []Policy `json:"policies"`
	SkipUnparseable bool     `json:"skipUnparseable"`
}

// TestUpdateGolden runs Update over each testdata/update/<case>/input tree
// and compares the resulting tree with <case>/want and the report (changes,
// skipped files, error, diff) with <case>/result.golden. Run with -update to
// rewrite both after checking the new output by eye.
func TestUpdateGolden(t *testing.T) {
	cases, err := os.ReadDir(filepath.Join("testdata", "update"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if !c.IsDir() {
			continue
		}
		t.Run(c.Name(), func(t *testing.T) {
			base := filepath.Join("testdata", "update", c.Name())
			var gc goldenCase
			readJSON(t, filepath.Join(base, "case.json"), &gc)

			dir := t.TempDir()
			copyTree(t, filepath.Join(base, "input"), dir)
			// A .git directory is never scanned, even with markers in it.
			gitFile := filepath.Join(dir, ".git", "marked.yaml")
			gitData := []byte("image: ghcr.io/acme/notes:old # {\"$imagepolicy\": \"flux-system:notes\"}\n")
			writeFile(t, gitFile, gitData)

			fsys := osfs.New(dir)
			res, uerr := Update(fsys, ".", gc.Policies, UpdateOptions{SkipUnparseable: gc.SkipUnparseable})
			report := formatReport(res, uerr)

			if got := readFileT(t, gitFile); !bytes.Equal(got, gitData) {
				t.Errorf(".git/marked.yaml was changed")
			}
			if err := os.RemoveAll(filepath.Join(dir, ".git")); err != nil {
				t.Fatal(err)
			}
			got := readTree(t, dir)
			wantDir := filepath.Join(base, "want")
			goldenFile := filepath.Join(base, "result.golden")
			if *update {
				if err := os.RemoveAll(wantDir); err != nil {
					t.Fatal(err)
				}
				copyTree(t, dir, wantDir)
				writeFile(t, goldenFile, []byte(report))
			}
			if want := readFileT(t, goldenFile); string(want) != report {
				t.Errorf("report differs from %s (run with -update to accept):\n--- want\n%s\n--- got\n%s", goldenFile, want, report)
			}
			want := readTree(t, wantDir)
			compareTrees(t, want, got)

			// Independent of the goldens: only the marked scalars differ,
			// and each now reads as the policy's string.
			input := readTree(t, filepath.Join(base, "input"))
			for p, old := range input {
				checkOnlyMarkedChanged(t, p, old, got[p], gc.Policies)
			}
			if uerr != nil {
				compareTrees(t, input, got) // nothing written on error
				return
			}

			// Idempotent: a second run changes nothing.
			res2, err := Update(fsys, ".", gc.Policies, UpdateOptions{SkipUnparseable: gc.SkipUnparseable})
			if err != nil {
				t.Fatalf("second run: %v", err)
			}
			if len(res2.Changes) != 0 || res2.Diff() != "" {
				t.Errorf("second run changed %v", res2.Changes)
			}

			// A dry run reports the same and writes nothing, on an in-memory
			// filesystem too.
			mem := memfs.New()
			for p, data := range input {
				if err := util.WriteFile(mem, p, data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			dry, err := Update(mem, "", gc.Policies, UpdateOptions{DryRun: true, SkipUnparseable: gc.SkipUnparseable})
			if err != nil {
				t.Fatalf("dry run: %v", err)
			}
			if r := formatReport(dry, nil); r != report {
				t.Errorf("dry run report differs:\n%s\nwant:\n%s", r, report)
			}
			compareTrees(t, input, readBillyTree(t, mem))
		})
	}
}

func formatReport(res *Result, err error) string {
	var b strings.Builder
	if err != nil {
		fmt.Fprintf(&b, "error: %v\n", err)
		return b.String()
	}
	fmt.Fprintf(&b, "files scanned: %d\n", res.FilesScanned)
	fmt.Fprintf(&b, "changed files: %s\n", strings.Join(res.ChangedFiles(), " "))
	for _, c := range res.Changes {
		fmt.Fprintf(&b, "change %s:%d %s %s/%s %s: %q -> %q\n", c.File, c.Line, c.Kind, c.Namespace, c.Name, c.Setter, c.Old, c.New)
	}
	for _, s := range res.Skipped {
		fmt.Fprintf(&b, "skipped %s\n", s)
	}
	b.WriteString(res.Diff())
	return b.String()
}

// testMarker reads a marker independently of the engine: the first
// non-empty of line and head comment, as kyaml's fieldmeta does, then, as
// Flux's setters resolve it: the "$imagepolicy" short hand naming a known
// policy setter, else a "$ref" to one (#/definitions/io.k8s.cli.setters.X),
// else the comment's own inline "x-k8s-cli" setter (inline is true).
func testMarker(n *yaml.Node, policies []Policy) (want string, inline, ok bool) {
	c := n.LineComment
	if c == "" {
		c = n.HeadComment
	}
	c = strings.TrimLeft(c, "#")
	lookup := func(ref string) (string, bool) {
		for _, p := range policies {
			full := p.Image + ":" + p.Tag
			if p.Digest != "" {
				full += "@" + p.Digest
			}
			switch ref {
			case p.Namespace + ":" + p.Name:
				return full, true
			case p.Namespace + ":" + p.Name + ":tag":
				return p.Tag, true
			case p.Namespace + ":" + p.Name + ":name":
				return p.Image, true
			case p.Namespace + ":" + p.Name + ":digest":
				return p.Digest, p.Digest != ""
			}
		}
		return "", false
	}
	var m map[string]string
	if json.Unmarshal([]byte(c), &m) == nil {
		if v, ok := lookup(m["$imagepolicy"]); ok {
			return v, false, true
		}
	}
	var sch struct {
		Ref string `json:"$ref"`
		CLI *struct {
			Setter *struct{ Value string } `json:"setter"`
		} `json:"x-k8s-cli"`
	}
	if json.Unmarshal([]byte(c), &sch) != nil {
		return "", false, false
	}
	if _, frag, found := strings.Cut(sch.Ref, "#"); found {
		if name, found := strings.CutPrefix(frag, "/definitions/io.k8s.cli.setters."); found {
			if name, err := url.PathUnescape(name); err == nil {
				if v, ok := lookup(name); ok {
					return v, false, true
				}
			}
		}
	}
	if sch.CLI != nil && sch.CLI.Setter != nil {
		return sch.CLI.Setter.Value, true, true
	}
	return "", false, false
}

// checkOnlyMarkedChanged parses old and new and walks both trees: every
// node must be the same except scalar values carrying a marker for one of
// the policies, which must decode as the policy's string.
func checkOnlyMarkedChanged(t *testing.T, file string, old, new []byte, policies []Policy) {
	t.Helper()
	if bytes.Equal(old, new) {
		return
	}
	oldDocs, err := decodeAll(old)
	if err != nil {
		t.Errorf("%s: changed although it does not parse: %v", file, err)
		return
	}
	newDocs, err := decodeAll(new)
	if err != nil {
		t.Errorf("%s: output does not parse: %v\n%s", file, err, new)
		return
	}
	if len(oldDocs) != len(newDocs) {
		t.Errorf("%s: %d documents became %d", file, len(oldDocs), len(newDocs))
		return
	}
	var walk func(a, b *yaml.Node, value bool)
	walk = func(a, b *yaml.Node, value bool) {
		if a.Kind != b.Kind || len(a.Content) != len(b.Content) {
			t.Errorf("%s:%d: node kind or size changed", file, a.Line)
			return
		}
		if a.Kind == yaml.ScalarNode && value {
			if want, inline, ok := testMarker(a, policies); ok {
				if inline {
					// Typed as its schema says: only the text is Flux's.
					if b.Value != want {
						t.Errorf("%s:%d: inline setter value %q, want %q", file, b.Line, b.Value, want)
					}
					return
				}
				var v any
				if err := b.Decode(&v); err != nil {
					t.Errorf("%s:%d: %v", file, b.Line, err)
					return
				}
				s, isString := v.(string)
				if !isString || s != want {
					t.Errorf("%s:%d: marked value decodes as %T %#v, want string %q", file, b.Line, v, v, want)
				}
				return
			}
		}
		if a.Value != b.Value || a.Tag != b.Tag || a.Style != b.Style || a.Anchor != b.Anchor ||
			a.LineComment != b.LineComment || a.HeadComment != b.HeadComment || a.FootComment != b.FootComment {
			t.Errorf("%s:%d: unmarked node changed: %q -> %q", file, a.Line, a.Value, b.Value)
		}
		for i := range a.Content {
			// mapping keys are never set; everything else may be
			walk(a.Content[i], b.Content[i], a.Kind != yaml.MappingNode || i%2 == 1)
		}
	}
	for i := range oldDocs {
		walk(oldDocs[i], newDocs[i], true)
	}
}

func decodeAll(data []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err == io.EOF {
			return docs, nil
		} else if err != nil {
			return nil, err
		}
		docs = append(docs, &n)
	}
}

func TestParseMarker(t *testing.T) {
	tests := []struct {
		comment, id, field string
		ok                 bool
	}{
		{`# {"$imagepolicy": "flux-system:notes"}`, "flux-system:notes", "", true},
		{`#{"$imagepolicy":"ns:n:tag"}`, "ns:n", "tag", true},
		{`## {"$imagepolicy": "ns:n:name"}`, "ns:n", "name", true},
		{`{"$imagepolicy": "ns:n:digest"}`, "ns:n", "digest", true},
		{"# {\"$imagepolicy\": \"ns:n\"}\n", "ns:n", "", true}, // head comments end in a newline
		{`# {"$imagepolicy": "ns:n", "other": "x"}`, "ns:n", "", true},
		{`# {"$imagepolicy": "ns:n", "other": 1}`, "", "", false}, // not all strings
		{`# {"$imagepolicy": "ns:n"} # trailing text`, "", "", false},
		{`# {"$imagepolicy": "ns:n:version"}`, "", "", false},
		{`# {"$imagepolicy": "ns"}`, "", "", false},
		{`# {"$imagepolicy": ":n"}`, "", "", false},
		{`# {"$imagepolicy": "ns:n:tag:x"}`, "", "", false},
		{`# {"$imagepolicy": ""}`, "", "", false},
		{`# {"$ImagePolicy": "ns:n"}`, "", "", false},
		{`# image policy ns:n`, "", "", false},
		{`# {"$imagepolicy": "ns:n"`, "", "", false},
		{"# a\n# {\"$imagepolicy\": \"ns:n\"}", "", "", false}, // only a whole comment counts
		{``, "", "", false},
		// The OpenAPI reference the short hand stands for.
		{`# {"$ref": "#/definitions/io.k8s.cli.setters.flux-system:notes"}`, "flux-system:notes", "", true},
		{`# {"$ref":"#/definitions/io.k8s.cli.setters.ns:n:tag"}`, "ns:n", "tag", true},
		{`# {"$ref": "#/definitions/io.k8s.cli.setters.ns:n:digest", "description": "x"}`, "ns:n", "digest", true},
		{`# {"$ref": "#/definitions/io.k8s.cli.setters.ns:n", "x-extra": 1}`, "ns:n", "", true}, // not all strings: still a schema
		{`# {"$ref": "setters.json#/definitions/io.k8s.cli.setters.ns:n:name"}`, "ns:n", "name", true},
		{`# {"$ref": "#/definitions/io.k8s.cli.setters.ns:%6E:tag"}`, "ns:n", "tag", true}, // %-escape in the fragment
		{`# {"$ref": "#/definitions/io.k8s.cli.setters.ns:n:version"}`, "", "", false},
		{`# {"$ref": "#/definitions/io.k8s.cli.substitutions.ns:n"}`, "", "", false},
		{`# {"$ref": "#/definitions/io.k8s.cli.setters.ns:n/type"}`, "", "", false},
		{`# {"$ref": "#/io.k8s.cli.setters.ns:n"}`, "", "", false},
		{`# {"$ref": "#/definitions/io.k8s.cli.setters.ns:n", "type": 5}`, "", "", false}, // not a schema
		{`# {"$ref": "#/definitions/io.k8s.cli.setters.ns:n"} trailing`, "", "", false},
		// Both: the short hand comes first.
		{`# {"$imagepolicy": "a:b", "$ref": "#/definitions/io.k8s.cli.setters.c:d"}`, "a:b", "", true},
		{`# {"$imagepolicy": "a:b:bad", "$ref": "#/definitions/io.k8s.cli.setters.c:d:tag"}`, "c:d", "tag", true},
	}
	for _, tt := range tests {
		id, field, ok := ParseMarker(tt.comment)
		if id != tt.id || field != tt.field || ok != tt.ok {
			t.Errorf("ParseMarker(%q) = %q, %q, %v; want %q, %q, %v", tt.comment, id, field, ok, tt.id, tt.field, tt.ok)
		}
	}
}

// TestUpdateFileQuoting pins the token written for each original style and
// each tag that YAML could read as something other than a string.
func TestUpdateFileQuoting(t *testing.T) {
	tests := []struct {
		name, line, tag, want string
	}{
		{"plain safe", `t: v1`, "v2", `t: v2`},
		{"plain decimal", `t: v1`, "1.10", `t: "1.10"`},
		{"plain exponent", `t: v1`, "1e3", `t: "1e3"`},
		{"plain bool", `t: v1`, "true", `t: "true"`},
		{"plain yaml 1.1 bool", `t: v1`, "on", `t: "on"`},
		{"plain yaml 1.1 bool Y", `t: v1`, "Y", `t: "Y"`},
		{"plain hex", `t: v1`, "0x1F", `t: "0x1F"`},
		{"plain octal", `t: v1`, "0o17", `t: "0o17"`},
		{"plain null", `t: v1`, "null", `t: "null"`},
		{"plain tilde-like", `t: v1`, "Null", `t: "Null"`},
		{"plain underscore int", `t: v1`, "1_000", `t: "1_000"`},
		{"plain sexagesimal", `t: v1`, "1.5", `t: "1.5"`},
		{"plain infinity", `t: v1`, "_inf", `t: _inf`},
		{"single safe", `t: 'v1'`, "v2", `t: 'v2'`},
		{"single decimal", `t: 'v1'`, "1.10", `t: '1.10'`},
		{"double decimal", `t: "v1"`, "1.10", `t: "1.10"`},
		{"double safe", `t: "v1"`, "v2", `t: "v2"`},
		{"plain already float", `t: 1.10`, "1.10", `t: "1.10"`},
		{"flow plain", `t: [v1]`, "v2", `t: [v2`},
		{"flow decimal", `t: [v1]`, "1.10", `t: ["1.10"`},
		{"anchored", `t: &a v1`, "v2", `t: &a v2`},
		{"str tag", `t: !!str v1`, "1.10", `t: !!str "1.10"`},
		{"str tag plain", `t: !!str v1`, "v2", `t: !!str v2`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Policy{Namespace: "ns", Name: "p", Image: "r.example/x", Tag: tt.tag}
			marker := ` # {"$imagepolicy": "ns:p:tag"}`
			in := tt.line + marker + "\n"
			if strings.HasSuffix(tt.line, "]") {
				in = strings.TrimSuffix(tt.line, "]") + marker + "\n  ]\n"
			}
			out, changes, err := UpdateFile("f.yaml", []byte(in), []Policy{p})
			if err != nil {
				t.Fatal(err)
			}
			first := strings.SplitN(string(out), " #", 2)[0]
			if first != tt.want {
				t.Errorf("got %q, want %q (output %q)", first, tt.want, out)
			}
			if len(changes) != 1 || changes[0].New != tt.tag {
				t.Errorf("changes = %+v", changes)
			}
			checkOnlyMarkedChanged(t, "f.yaml", []byte(in), out, []Policy{p})
		})
	}
}

func TestUpdateFileNoChangeReturnsInput(t *testing.T) {
	in := []byte("image: ghcr.io/acme/notes:main-bbbbbbb-1700000100-hugo0.145.0@" + testDigest + " # {\"$imagepolicy\": \"flux-system:notes\"}\n")
	out, changes, err := UpdateFile("f.yaml", in, []Policy{notesPolicy})
	if err != nil || len(changes) != 0 || &out[0] != &in[0] {
		t.Fatalf("UpdateFile = %d changes, err %v; want the input back untouched", len(changes), err)
	}
}

func TestUpdateFileErrors(t *testing.T) {
	noDigest := notesPolicy
	noDigest.Digest = ""
	tests := []struct {
		name     string
		in       string
		policies []Policy
		want     string // error text
		parse    *ParseError
	}{
		{"parse error has line", "a: 1\nimage: x # {\"$imagepolicy\": \"flux-system:notes\"}\nc: d: e\n", []Policy{notesPolicy},
			"", &ParseError{File: "f.yaml", Line: 3}},
		{"template", "a: 1\nname: {{ .Name }}\nimage: x # {\"$imagepolicy\": \"flux-system:notes\"}\n", []Policy{notesPolicy},
			"", &ParseError{File: "f.yaml", Line: 2, Col: 7}},
		{"digest missing", "d: x # {\"$imagepolicy\": \"flux-system:notes:digest\"}\n", []Policy{noDigest},
			`f.yaml:1: marker "flux-system:notes:digest" needs a digest, but image policy "flux-system:notes" has none`, nil},
		{"explicit int tag", "t: !!int 5 # {\"$imagepolicy\": \"flux-system:notes:tag\"}\n", []Policy{notesPolicy},
			"f.yaml:1: marked value has the explicit tag !!int; refusing to write a string there", nil},
		{"no policies", "a: b\n", nil, "no image policies given", nil},
		{"bad tag", "a: b\n", []Policy{{Namespace: "ns", Name: "n", Image: "r/x", Tag: "a b"}}, `image policy "ns:n": invalid tag "a b"`, nil},
		{"bad digest", "a: b\n", []Policy{{Namespace: "ns", Name: "n", Image: "r/x", Tag: "v1", Digest: "md5"}}, `image policy "ns:n": invalid digest "md5"`, nil},
		{"bad image", "a: b\n", []Policy{{Namespace: "ns", Name: "n", Image: "r/x:v1", Tag: "v1"}}, `image policy "ns:n": invalid image repository "r/x:v1"`, nil},
		{"bad name", "a: b\n", []Policy{{Namespace: "ns", Name: "a:b", Image: "r/x", Tag: "v1"}}, `image policy "ns:a:b": namespace and name must be Kubernetes object names`, nil},
		{"duplicate", "a: b\n", []Policy{notesPolicy, notesPolicy}, `image policy "flux-system:notes" given twice`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := UpdateFile("f.yaml", []byte(tt.in), tt.policies)
			if err == nil {
				t.Fatalf("no error; output %q", out)
			}
			if tt.parse != nil {
				var pe *ParseError
				if !errors.As(err, &pe) {
					t.Fatalf("error %v is not a *ParseError", err)
				}
				if pe.File != tt.parse.File || pe.Line != tt.parse.Line || pe.Col != tt.parse.Col || pe.Msg == "" {
					t.Errorf("ParseError = %+v, want %+v", pe, tt.parse)
				}
				return
			}
			if err.Error() != tt.want {
				t.Errorf("error = %q, want %q", err, tt.want)
			}
		})
	}
}

func TestUpdateNoMarkerError(t *testing.T) {
	mem := memfs.New()
	mustWrite(t, mem, "a/b.yaml", "image: x # {\"$imagepolicy\": \"flux-system:notes\"}\n")
	mustWrite(t, mem, "a/c.yml", "image: x\n")
	mustWrite(t, mem, "a/README.md", "# {\"$imagepolicy\": \"flux-system:web\"}\n")
	web := notesPolicy
	web.Name = "web"
	_, err := Update(mem, "a", []Policy{notesPolicy, web}, UpdateOptions{})
	var nm *NoMarkerError
	if !errors.As(err, &nm) {
		t.Fatalf("error %v, want *NoMarkerError", err)
	}
	if nm.FilesScanned != 2 || len(nm.Policies) != 1 || nm.Policies[0] != "flux-system:web" {
		t.Errorf("NoMarkerError = %+v", nm)
	}
	want := `no setter marker for image policy "flux-system:web" in 2 YAML files scanned under "a"; expected a comment like # {"$imagepolicy": "flux-system:web"} on an image value`
	if err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
	// nothing was written although notes had a marker
	if got, _ := util.ReadFile(mem, "a/b.yaml"); !bytes.Contains(got, []byte("image: x #")) {
		t.Errorf("a/b.yaml was written: %q", got)
	}
}

func TestUpdateRootErrors(t *testing.T) {
	mem := memfs.New()
	mustWrite(t, mem, "file.yaml", "a: b\n")
	if _, err := Update(mem, "missing", []Policy{notesPolicy}, UpdateOptions{}); err == nil || !strings.Contains(err.Error(), `"missing"`) {
		t.Errorf("missing root: %v", err)
	}
	if _, err := Update(mem, "file.yaml", []Policy{notesPolicy}, UpdateOptions{}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file root: %v", err)
	}
}

func TestUpdateSkipsSymlinks(t *testing.T) {
	outside := t.TempDir()
	target := filepath.Join(outside, "target.yaml")
	data := []byte("image: old # {\"$imagepolicy\": \"flux-system:notes\"}\n")
	writeFile(t, target, data)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "real.yaml"), data)
	if err := os.Symlink(target, filepath.Join(dir, "link.yaml")); err != nil {
		t.Skip("symlinks not supported:", err)
	}
	res, err := Update(osfs.New(dir), "", []Policy{notesPolicy}, UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.ChangedFiles(); len(got) != 1 || got[0] != "real.yaml" {
		t.Errorf("changed %v, want only real.yaml", got)
	}
	if got := readFileT(t, target); !bytes.Equal(got, data) {
		t.Errorf("symlink target outside the tree was written")
	}
}

func TestUpdateKeepsFileMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.yaml")
	writeFile(t, p, []byte("image: old # {\"$imagepolicy\": \"flux-system:notes\"}\n"))
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Update(osfs.New(dir), "", []Policy{notesPolicy}, UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
}

func TestCurrent(t *testing.T) {
	fsys := osfs.New(filepath.Join("testdata", "update", "kustomize", "input"))
	got, err := Current(fsys, "", "flux-system:notes")
	if err != nil {
		t.Fatal(err)
	}
	want := []Found{
		{File: "base/kustomization.yaml", Line: 7, Kind: "Kustomization", Setter: "flux-system:notes:name", Field: "name", Value: "ghcr.io/acme/old-notes"},
		{File: "base/kustomization.yaml", Line: 8, Kind: "Kustomization", Setter: "flux-system:notes:tag", Field: "tag", Value: "main-aaaaaaa-1700000000-hugo0.145.0"},
		{File: "base/kustomization.yaml", Line: 9, Kind: "Kustomization", Setter: "flux-system:notes:digest", Field: "digest", Value: "sha256:0000000000000000000000000000000000000000000000000000000000000000"},
		{File: "overlay/Kustomization", Line: 6, Kind: "Kustomization", Setter: "flux-system:notes:tag", Field: "tag", Value: "old"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Current =\n%+v\nwant\n%+v", got, want)
	}

	blocks, err := Current(osfs.New(filepath.Join("testdata", "update", "blockscalars", "input")), ".", "flux-system:notes")
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) == 0 || blocks[0].Value != "ghcr.io/acme/notes:old" || blocks[0].Field != FieldImage {
		t.Errorf("block scalar Current = %+v", blocks)
	}

	none, err := Current(fsys, "", "flux-system:other")
	if err != nil || len(none) != 0 {
		t.Errorf("Current(other) = %v, %v", none, err)
	}
	for _, bad := range []string{"notes", "a:b:c", ":x", "Upper:x"} {
		if _, err := Current(fsys, "", bad); err == nil {
			t.Errorf("Current(%q): no error", bad)
		}
	}
}

func TestLineIndex(t *testing.T) {
	// yaml.v3 counts CR, LF, CRLF, NEL, LS and PS as breaks and columns in runes.
	data := []byte("\xef\xbb\xbfa: é\r\nb: c\rd: e\u2028f: g\u0085h: i\nj")
	idx := newLineIndex(data)
	tests := []struct {
		line, col int
		at        string
	}{
		{1, 1, "a: é"}, {1, 4, "é"}, {2, 1, "b: c"}, {3, 4, "e"}, {4, 1, "f: g"}, {5, 1, "h: i"}, {6, 1, "j"},
	}
	for _, tt := range tests {
		off, ok := idx.offset(data, tt.line, tt.col)
		if !ok || !bytes.HasPrefix(data[off:], []byte(tt.at)) {
			t.Errorf("offset(%d, %d) = %d, %v; want the text %q there", tt.line, tt.col, off, ok, tt.at)
			continue
		}
		if l, c := idx.position(data, off); l != tt.line || c != tt.col {
			t.Errorf("position(%d) = %d:%d, want %d:%d", off, l, c, tt.line, tt.col)
		}
	}
	if _, ok := idx.offset(data, 7, 1); ok {
		t.Error("offset past the last line")
	}
	if _, ok := idx.offset(data, 1, 40); ok {
		t.Error("offset past the end of a line")
	}
}

func TestDoubleQuoteRoundTrip(t *testing.T) {
	for _, v := range []string{"", "plain", `q"uote`, `back\slash`, "tab\tnl\ncr\r", "\x00\x1f\x7f", "é☃😀", "\u0085\u2028\ufeff", "\xff"} {
		var got struct{ V string }
		if err := yaml.Unmarshal([]byte("v: "+doubleQuote(v)), &got); err != nil {
			t.Errorf("doubleQuote(%q) = %s: %v", v, doubleQuote(v), err)
			continue
		}
		want := strings.ToValidUTF8(v, "\uFFFD")
		if got.V != want {
			t.Errorf("doubleQuote(%q) = %s reads as %q", v, doubleQuote(v), got.V)
		}
	}
}

// helpers

func readJSON(t *testing.T, p string, v any) {
	t.Helper()
	if err := json.Unmarshal(readFileT(t, p), v); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
}

func readFileT(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return data
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, fsys billy.Filesystem, p, data string) {
	t.Helper()
	if err := util.WriteFile(fsys, p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	for p, data := range readTree(t, from) {
		writeFile(t, filepath.Join(to, filepath.FromSlash(p)), data)
	}
}

// readTree reads every regular file under dir, keyed by slash path.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func readBillyTree(t *testing.T, fsys billy.Filesystem) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := util.Walk(fsys, "/", func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		data, err := util.ReadFile(fsys, p)
		files[strings.TrimPrefix(filepath.ToSlash(p), "/")] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func compareTrees(t *testing.T, want, got map[string][]byte) {
	t.Helper()
	var names []string
	for p := range want {
		names = append(names, p)
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			names = append(names, p)
		}
	}
	sort.Strings(names)
	for _, p := range names {
		w, inWant := want[p]
		g, inGot := got[p]
		switch {
		case !inWant:
			t.Errorf("unexpected file %s", p)
		case !inGot:
			t.Errorf("missing file %s", p)
		case !bytes.Equal(w, g):
			t.Errorf("%s differs:\n%s", p, UnifiedDiff("want/"+p, "got/"+p, w, g, 3))
		}
	}
}

// TestApplyEditsSafetyNet drives the re-parse check directly: a token that
// would change the document is retried double-quoted, and an edit that
// cannot be made safe is refused instead of written.
func TestApplyEditsSafetyNet(t *testing.T) {
	src := []byte("a: old # c\nb: x\n")
	docs, err := parseDocuments("f.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	node := docs[0].Content[0].Content[1]
	mk := func(render func(bool) string) []*edit {
		return []*edit{{start: 3, end: 6, node: node, want: "new: x", wantTag: "!!str", line: 1, render: render}}
	}
	out, err := applyEdits("f.yaml", src, docs, mk(func(force bool) string {
		if force {
			return doubleQuote("new: x")
		}
		return "new: x" // plain would turn the value into a mapping
	}))
	if err != nil || string(out) != "a: \"new: x\" # c\nb: x\n" {
		t.Fatalf("retry: %q, %v", out, err)
	}
	_, err = applyEdits("f.yaml", src, docs, mk(func(bool) string { return "new\nc: d" }))
	if err == nil || !strings.Contains(err.Error(), "cannot rewrite marked values") {
		t.Fatalf("unsafe edit: %v", err)
	}
	overlap := append(mk(func(bool) string { return "x" }), &edit{start: 4, end: 5, node: node, line: 1, render: func(bool) string { return "y" }})
	if _, err := applyEdits("f.yaml", src, docs, overlap); err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Fatalf("overlapping edits: %v", err)
	}
}

// TestUpdateFileMarkerForms updates every marker form Flux's setters accept
// (image-automation-controller v1.2.0 reads markers with kyaml fieldmeta:
// the "$imagepolicy" short hand, else the "$ref" it stands for, falling back
// to the reference when the short hand names no known setter).
func TestUpdateFileMarkerForms(t *testing.T) {
	in := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: notes
spec:
  template:
    spec:
      containers:
      - name: short
        image: ghcr.io/acme/notes:old # {"$imagepolicy": "flux-system:notes"}
      - name: ref
        image: ghcr.io/acme/notes:old # {"$ref": "#/definitions/io.k8s.cli.setters.flux-system:notes"}
      - name: ref-fields
        image: x
      # {"$ref": "#/definitions/io.k8s.cli.setters.flux-system:notes:name"}
      - old-name
      - old-tag # {"$ref":"#/definitions/io.k8s.cli.setters.flux-system:notes:tag"}
      - old-digest # {"$ref": "#/definitions/io.k8s.cli.setters.flux-system:notes:digest", "description": "d"}
      - fallback # {"$imagepolicy": "flux-system:other", "$ref": "#/definitions/io.k8s.cli.setters.flux-system:notes:tag"}
      - unknown # {"$ref": "#/definitions/io.k8s.cli.setters.flux-system:other"}
      - shorthand-wins # {"$imagepolicy": "flux-system:notes:tag", "$ref": "#/definitions/io.k8s.cli.setters.flux-system:notes:name"}
`
	want := strings.NewReplacer(
		"ghcr.io/acme/notes:old #", "ghcr.io/acme/notes:"+notesPolicy.Tag+"@"+testDigest+" #",
		"- old-name", "- ghcr.io/acme/notes",
		"- old-tag #", "- "+notesPolicy.Tag+" #",
		"- old-digest #", "- "+testDigest+" #",
		"- fallback #", "- "+notesPolicy.Tag+" #",
		"- shorthand-wins #", "- "+notesPolicy.Tag+" #",
	).Replace(in)
	out, changes, err := UpdateFile("deploy.yaml", []byte(in), []Policy{notesPolicy})
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	var setters []string
	for _, c := range changes {
		setters = append(setters, fmt.Sprintf("%d:%s", c.Line, c.Setter))
	}
	wantSetters := "10:flux-system:notes 12:flux-system:notes 16:flux-system:notes:name 17:flux-system:notes:tag 18:flux-system:notes:digest 19:flux-system:notes:tag 21:flux-system:notes:tag"
	if got := strings.Join(setters, " "); got != wantSetters {
		t.Errorf("changes %s, want %s", got, wantSetters)
	}
}
