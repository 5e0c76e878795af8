package main

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// actionFile is the part of action.yml the checks below read.
// Unknown keys are errors (strict decoding), so the struct lists every key
// the action metadata syntax allows that action.yml may use.
type actionFile struct {
	Name, Description, Author string
	Branding                  struct{ Icon, Color string }
	Inputs                    map[string]struct {
		Description, Default string
		Required             bool
		DeprecationMessage   string `json:"deprecationMessage"`
	}
	Outputs map[string]struct{ Description, Value string }
	Runs    struct {
		Using string
		Steps []struct {
			ID, Name, Uses, Run, Shell, If string
			WorkingDirectory               string `json:"working-directory"`
			ContinueOnError                bool   `json:"continue-on-error"`
			Env, With                      map[string]string
		}
	}
}

// TestActionYAML loads action.yml the way a runner does and checks that it
// hangs together with the notesctl code that reads its inputs: the file
// parses, it is a composite action that fetches no other action (Gitea's
// runner fetches every action a composite action names, even behind a false
// if:, and an offline Gitea cannot), every input notesctl reads is declared
// and passed, and every expression names a declared input or step.
func TestActionYAML(t *testing.T) {
	raw, err := os.ReadFile("../../action.yml")
	if err != nil {
		t.Fatal(err)
	}
	var a actionFile
	if err := yaml.UnmarshalStrict(raw, &a, yaml.DisallowUnknownFields); err != nil {
		// Strict: a misplaced key (as inputs pasted into a with:) is an error.
		t.Fatalf("action.yml: %v", err)
	}
	if a.Runs.Using != "composite" {
		t.Errorf("runs.using = %q, want composite", a.Runs.Using)
	}
	steps := map[string]bool{}
	var release map[string]string
	for i, s := range a.Runs.Steps {
		if s.Uses != "" {
			t.Errorf("step %d uses %s: the action must not fetch other actions", i, s.Uses)
		}
		steps[s.ID] = true
		if s.ID == "release" {
			release = s.Env
		}
	}
	if release == nil {
		t.Fatal("no step with id release")
	}

	// Inputs notesctl reads are passed to the release step as INPUT_<NAME>.
	// command is read by the step's shell: it picks the notesctl command.
	read := map[string]bool{"push": true, "command": true}
	for in := range actionInput {
		read[in] = true
	}
	for in := range secretInputs {
		read[in] = true
	}
	for in := range read {
		if _, ok := a.Inputs[in]; !ok {
			t.Errorf("notesctl reads input %s, which action.yml does not declare", in)
		}
		if v := release["INPUT_"+strings.ToUpper(in)]; v != "${{ inputs."+in+" }}" {
			t.Errorf("release step: INPUT_%s = %q, want ${{ inputs.%s }}", strings.ToUpper(in), v, in)
		}
	}
	for k := range release {
		if in, ok := strings.CutPrefix(k, "INPUT_"); ok && !read[strings.ToLower(in)] {
			t.Errorf("release step passes %s, which notesctl does not read", k)
		}
	}

	// Every expression names a declared input or an existing step.
	for _, m := range regexp.MustCompile(`\$\{\{\s*inputs\.([A-Za-z0-9_-]+)\s*\}\}`).FindAllStringSubmatch(string(raw), -1) {
		if _, ok := a.Inputs[m[1]]; !ok {
			t.Errorf("action.yml uses undeclared input %s", m[1])
		}
	}
	for _, m := range regexp.MustCompile(`steps\.([A-Za-z0-9_-]+)\.outputs`).FindAllStringSubmatch(string(raw), -1) {
		if !steps[m[1]] {
			t.Errorf("action.yml reads outputs of step %s, which does not exist", m[1])
		}
	}

	// The documented outputs, and the ones docker/metadata-action users chain on.
	var outs []string
	for o := range a.Outputs {
		outs = append(outs, o)
	}
	sort.Strings(outs)
	for _, want := range []string{"image", "tag", "digest", "metadata", "gitops-commit", "changed", "skipped", "outcome", "pages", "install-method"} {
		if _, ok := a.Outputs[want]; !ok {
			t.Errorf("action.yml lacks output %s (has %v)", want, outs)
		}
	}
}
