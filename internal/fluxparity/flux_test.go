package fluxparity

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/notesctl/notesctl/internal/testenv"
	"github.com/notesctl/notesctl/manifests"
)

// The controller whose setters notesctl must match byte for byte.
const (
	fluxModule  = "github.com/fluxcd/image-automation-controller"
	fluxVersion = "v1.2.0"
)

var (
	fluxrunOnce sync.Once
	fluxrunPath string
	fluxrunErr  error
)

// fluxrun builds testdata/fluxrun against Flux's own setter code: the
// image-automation-controller's internal/update package is internal to
// that module, so the command is built inside a copy of the module (its
// go.mod, internal/update and internal/constants, unchanged, from the Go
// module cache), resolved with the dependency versions of the wrapper
// module the tests' controller binaries are built from (tools/kube/flux).
// The Go build cache makes every build after the first a link.
func fluxrun(t *testing.T) string {
	t.Helper()
	fluxrunOnce.Do(func() { fluxrunPath, fluxrunErr = buildFluxrun() })
	if fluxrunErr != nil {
		testenv.Missing(t, "cannot build Flux's setter code (%s@%s): %v", fluxModule, fluxVersion, fluxrunErr)
	}
	return fluxrunPath
}

func buildFluxrun() (string, error) {
	dir, err := os.MkdirTemp("", "notesctl-fluxrun-")
	if err != nil {
		return "", err
	}
	goEnv := append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=-mod=mod -buildvcs=false", "CGO_ENABLED=0")
	run := func(wd string, args ...string) ([]byte, error) {
		cmd := exec.Command("go", args...)
		cmd.Dir = wd
		cmd.Env = goEnv
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return out, nil
	}
	out, err := run(dir, "mod", "download", "-json", fluxModule+"@"+fluxVersion)
	if err != nil {
		return "", err
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("go mod download: no module directory (%v)", err)
	}
	wrapper := filepath.Join("..", "..", "tools", "kube", "flux")
	gomod, err := os.ReadFile(filepath.Join(wrapper, "go.mod"))
	if err != nil {
		return "", err
	}
	gosum, err := os.ReadFile(filepath.Join(wrapper, "go.sum"))
	if err != nil {
		return "", err
	}
	gomod = append(gomod, []byte("\nreplace "+fluxModule+" => ./flux\n")...)
	files := map[string][]byte{"go.mod": gomod, "go.sum": gosum}
	copyFrom := func(rel string, filter func(string) bool) error {
		ents, err := os.ReadDir(filepath.Join(mod.Dir, rel))
		if err != nil {
			return err
		}
		for _, e := range ents {
			if e.IsDir() || !filter(e.Name()) {
				continue
			}
			b, err := os.ReadFile(filepath.Join(mod.Dir, rel, e.Name()))
			if err != nil {
				return err
			}
			files[filepath.Join("flux", rel, e.Name())] = b
		}
		return nil
	}
	goSource := func(n string) bool { return strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") }
	if err := copyFrom(".", func(n string) bool { return n == "go.mod" }); err != nil {
		return "", err
	}
	for _, pkg := range []string{"internal/update", "internal/constants"} {
		if err := copyFrom(pkg, goSource); err != nil {
			return "", err
		}
	}
	main, err := os.ReadFile(filepath.Join("testdata", "fluxrun", "main.go"))
	if err != nil {
		return "", err
	}
	files[filepath.Join("flux", "notesctlfluxrun", "main.go")] = main
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return "", err
		}
	}
	bin := filepath.Join(dir, "fluxrun")
	if _, err := run(dir, "build", "-trimpath", "-o", bin, fluxModule+"/notesctlfluxrun"); err != nil {
		return "", err
	}
	return bin, nil
}

// fluxChange is a change Flux's update reports.
type fluxChange struct{ File, Setter, Old, New string }

// runFlux runs Flux's setter update over files (name -> content) and
// returns every file as it is afterwards (Flux writes only the files it
// changed) and the changes it reports.
func runFlux(t *testing.T, files map[string][]byte, policies []manifests.Policy) (map[string][]byte, []fluxChange) {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	for _, d := range []string{in, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(in, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pj, err := json.Marshal(policies)
	if err != nil {
		t.Fatal(err)
	}
	pfile := filepath.Join(dir, "policies.json")
	if err := os.WriteFile(pfile, pj, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(fluxrun(t), pfile, in, out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("Flux's update: %v\n%s", err, stderr.String())
	}
	var changes []fluxChange
	if err := json.Unmarshal(stdout, &changes); err != nil {
		t.Fatalf("Flux's changes %q: %v", stdout, err)
	}
	result := make(map[string][]byte, len(files))
	for name, b := range files {
		result[name] = b
		if w, err := os.ReadFile(filepath.Join(out, name)); err == nil {
			result[name] = w
		}
	}
	return result, changes
}

// trigger is a document appended to a file to make Flux write it whole:
// an inline setter that always changes. Flux writing a file it read
// normalises it (its YAML writer re-emits every node), so two files with
// the trigger that Flux writes the same bytes for hold the same nodes with
// the same styles.
const trigger = `---
apiVersion: v1
kind: ConfigMap
metadata:
  name: notesctl-parity-trigger
data:
  trigger: before # {"x-k8s-cli": {"setter": {"name": "notesctl-parity-trigger", "value": "after"}}}
`

func withTrigger(b []byte) []byte {
	out := append([]byte{}, b...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(out, trigger...)
}

// deviations are inputs where notesctl knowingly writes other bytes than
// Flux; for them the absence of a Flux follow-up commit is checked, and
// TestSetterParity compares the values.
var deviations = map[string]string{
	"non-string-original": "a policy marker on a value that reads as null, a number or a bool: " +
		"Flux keeps the node's tag and writes `!!null ghcr.io/...`; notesctl writes the string",
}

// nonStringOriginal is the input of that deviation.
const nonStringOriginal = `apiVersion: v1
kind: ConfigMap
metadata:
  name: non-string
data:
  null: null # {"$imagepolicy": "flux-system:notes:tag"}
  int: 1 # {"$imagepolicy": "flux-system:notes:name"}
`

// TestFluxWritesTheSameBytes runs Flux's own setter code (see fluxrun) and
// notesctl over every golden input of the manifests package and the marker
// forms above, and checks that:
//   - after notesctl's update, Flux changes nothing (no follow-up commit);
//   - notesctl's output, written by Flux, is byte for byte what Flux writes
//     for the input: every changed scalar holds the same value with the
//     same style (quoting, block header) as Flux leaves it;
//   - where Flux's writer keeps the whole input as it is (the input is in
//     Flux's own layout), notesctl's output is byte for byte Flux's;
//   - both report the same policy setter changes.
func TestFluxWritesTheSameBytes(t *testing.T) {
	inputs := append([]parityInput{
		{"marker-forms", []byte(markerForms), policies},
		{"non-string-original", []byte(nonStringOriginal), policies},
	}, goldenInputs(t)...)
	fluxrun(t)
	byPolicies := map[string][]parityInput{}
	for _, in := range inputs {
		k, _ := json.Marshal(in.policies)
		byPolicies[string(k)] = append(byPolicies[string(k)], in)
	}
	compared, exact := 0, 0
	for _, group := range byPolicies {
		ps := group[0].policies
		// Flux runs over all inputs of a policy set at once; a file it
		// could not read or notesctl refuses is left out.
		files := map[string][]byte{}
		ours := map[string][]byte{}
		var ourChanges = map[string][]manifests.Change{}
		names := map[string]string{}
		for i, in := range group {
			out, changes, err := manifests.UpdateFile(in.name, in.data, ps)
			if err != nil {
				t.Logf("%s: notesctl refuses it (%v); not compared", in.name, err)
				continue
			}
			if _, err := decode(in.data); err != nil {
				t.Logf("%s: kyaml cannot read it; not compared", in.name)
				continue
			}
			f := fmt.Sprintf("f%02d.yaml", i)
			files[f], ours[f], ourChanges[f], names[f] = in.data, out, changes, in.name
		}
		flux, fluxChanges := runFlux(t, files, ps)
		again, againChanges := runFlux(t, ours, ps)
		trig := func(m map[string][]byte) map[string][]byte {
			o := map[string][]byte{}
			for k, v := range m {
				o[k] = withTrigger(v)
			}
			return o
		}
		fluxNorm, _ := runFlux(t, trig(files), ps)
		oursNorm, _ := runFlux(t, trig(ours), ps)
		// Flux with no policy: its writer alone (the trigger aside).
		identity, _ := runFlux(t, trig(files), nil)
		for _, f := range sortedKeys(files) {
			name := names[f]
			t.Run(strings.ReplaceAll(name, "/", "_"), func(t *testing.T) {
				compared++
				if !bytes.Equal(again[f], ours[f]) {
					t.Errorf("Flux changes notesctl's output again (a follow-up commit):\n--- notesctl\n%s\n--- then Flux\n%s", ours[f], again[f])
				}
				for _, c := range againChanges {
					if c.File == f {
						t.Errorf("Flux's follow-up change: %+v", c)
					}
				}
				if why, ok := deviations[name]; ok {
					t.Logf("known difference, bytes not compared: %s", why)
					return
				}
				if !bytes.Equal(oursNorm[f], fluxNorm[f]) {
					t.Errorf("notesctl's output, written by Flux, differs from Flux's output:\n%s", lineDiff(fluxNorm[f], oursNorm[f]))
				}
				if bytes.HasSuffix(files[f], []byte("\n")) && bytes.Equal(identity[f], withTriggerSet(files[f])) {
					// The input is in Flux's own layout: all bytes must match.
					exact++
					if !bytes.Equal(ours[f], flux[f]) {
						t.Errorf("notesctl's output differs from Flux's:\n%s", lineDiff(flux[f], ours[f]))
					}
				}
				// Flux reports a change only for objects with metadata it
				// can read (not the items of a List), and not the inline
				// setters; notesctl also reports a value it re-quotes to
				// make it a string (old == new).
				var want, got []string
				for _, c := range fluxChanges {
					if c.File == f {
						want = append(want, fmt.Sprintf("%s %q -> %q", c.Setter, c.Old, c.New))
					}
				}
				if len(want) == 0 {
					return
				}
				for _, c := range ourChanges[f] {
					if _, _, ok := manifests.ParseMarker(fmt.Sprintf(`{"$imagepolicy": %q}`, c.Setter)); ok && c.Old != c.New {
						got = append(got, fmt.Sprintf("%s %q -> %q", c.Setter, c.Old, c.New))
					}
				}
				sort.Strings(want)
				sort.Strings(got)
				if strings.Join(want, "\n") != strings.Join(got, "\n") {
					t.Errorf("changes differ:\n--- Flux\n%s\n--- notesctl\n%s", strings.Join(want, "\n"), strings.Join(got, "\n"))
				}
			})
		}
	}
	t.Logf("%d inputs compared with Flux's output, %d of them in Flux's own layout byte for byte", compared, exact)
	if compared < 10 || exact < 3 {
		t.Errorf("only %d inputs compared, %d of them byte for byte", compared, exact)
	}
}

// TestFluxComparisonSeesHeaders: the comparison TestFluxWritesTheSameBytes
// makes tells a kept block scalar header ("|", so the value keeps its line
// break) from the one Flux writes ("|-"), and a quoted value from a plain
// one, although all read as the same text.
func TestFluxComparisonSeesHeaders(t *testing.T) {
	// No marker to set, only the text Flux's reader screens for.
	const flux = "a: |- # \"$imagepolicy\"\n  v\nb: v\n"
	files := map[string][]byte{
		"flux.yaml":   []byte(flux),
		"header.yaml": []byte(strings.Replace(flux, "|-", "|", 1)),
		"quoted.yaml": []byte(strings.Replace(flux, "b: v", `b: "v"`, 1)),
	}
	trig := map[string][]byte{}
	for k, v := range files {
		trig[k] = withTrigger(v)
	}
	norm, _ := runFlux(t, trig, nil)
	if !bytes.Equal(norm["flux.yaml"], withTriggerSet(files["flux.yaml"])) {
		t.Fatalf("Flux rewrote its own layout:\n%s", norm["flux.yaml"])
	}
	for _, k := range []string{"header.yaml", "quoted.yaml"} {
		if bytes.Equal(norm[k], norm["flux.yaml"]) {
			t.Errorf("%s: the comparison does not see the difference", k)
		}
	}
}

// withTriggerSet is withTrigger with the trigger as Flux sets it.
func withTriggerSet(b []byte) []byte {
	return bytes.Replace(withTrigger(b), []byte("trigger: before #"), []byte("trigger: after #"), 1)
}

func sortedKeys(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// lineDiff shows the lines that differ.
func lineDiff(want, got []byte) string {
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	var b strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  Flux     %q\n  notesctl %q\n", i+1, wl, gl)
		}
	}
	return b.String()
}
