package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sethvargo/go-githubactions"

	"github.com/notesctl/notesctl/pipeline"
)

// actionInput maps action.yml inputs to release flags. Names follow
// docker/build-push-action and docker/metadata-action where they mean the
// same thing (images, tags, platforms, push, github-token).
var actionInput = map[string]string{
	"site":              "site",
	"images":            "image",
	"tags":              "extra-tag",
	"platforms":         "platform",
	"base":              "base",
	"web-root":          "web-root",
	"tag-template":      "tag",
	"revision":          "revision",
	"allow-warnings":    "allow-warnings",
	"hugo-version":      "hugo-version",
	"gitops-repo":       "gitops",
	"gitops-branch":     "gitops-branch",
	"gitops-username":   "gitops-username",
	"policy":            "policy",
	"flux-webhook":      "flux-webhook",
	"registry-username": "username",
	"author":            "author",
	"message":           "message",
	"wait":              "wait",
	"kube-context":      "context",
	"flux-namespace":    "flux-namespace",
	"kustomization":     "kustomization",
	"timeout":           "timeout",
	"sbom":              "sbom",
	"provenance":        "provenance",
	"verify-key":        "verify-key",
	"preview-domain":    "preview-domain",
	"preview-app":       "preview-app",
}

// secretInputs go to the environment variables notesctl reads, never to
// flags, and are masked in the log first.
var secretInputs = map[string]string{
	"registry-password":  "NOTESCTL_REGISTRY_PASSWORD",
	"gitops-token":       "NOTESCTL_GITOPS_PASSWORD",
	"flux-webhook-token": "NOTESCTL_FLUX_WEBHOOK_TOKEN",
	"github-token":       "GITHUB_TOKEN",
	"kubeconfig":         "NOTESCTL_KUBECONFIG_DATA",
	"sign-key":           "NOTESCTL_SIGN_KEY",
	"cosign-password":    "COSIGN_PASSWORD",
}

// actionInputs reads the step inputs, masks the secret ones, and returns
// flag values. Secret inputs are made visible to the rest of the command
// through a.getenv.
func actionInputs(a *app) (map[string]string, error) {
	gh := githubactions.New(githubactions.WithWriter(a.stdout), githubactions.WithGetenv(githubactions.GetenvFunc(a.getenv)))
	secrets := map[string]string{}
	for in, env := range secretInputs {
		if v := strings.TrimSpace(gh.GetInput(in)); v != "" {
			a.addSecret(v)
			if !strings.Contains(v, "\n") {
				gh.AddMask(v)
			}
			// A multi-line secret (a PEM key) is masked line by line: a
			// mask command holds one line, and the rest of a multi-line
			// one would be printed as it is.
			for _, l := range nonEmptyLines(v) {
				if strings.Contains(v, "\n") && len(l) >= 8 {
					gh.AddMask(l)
					a.addSecret(l)
				}
			}
			secrets[env] = v
		}
	}
	if len(secrets) > 0 {
		base := a.getenv
		a.getenv = func(k string) string {
			if v, ok := secrets[k]; ok {
				return v
			}
			return base(k)
		}
	}
	out := map[string]string{}
	for in, flag := range actionInput {
		v := strings.TrimSpace(gh.GetInput(in))
		if v == "" {
			continue
		}
		switch in {
		case "images":
			// build-push-action takes a list; one repository is released.
			lines := nonEmptyLines(v)
			if len(lines) != 1 {
				return nil, fmt.Errorf("input images: want exactly one image repository, got %d", len(lines))
			}
			v = lines[0]
		case "tags":
			// metadata-action style tags may be full references: keep the tag.
			var tags []string
			for _, t := range nonEmptyLines(v) {
				if i := strings.LastIndex(t, ":"); i >= 0 && !strings.Contains(t[i:], "/") {
					t = t[i+1:]
				}
				tags = append(tags, t)
			}
			v = strings.Join(tags, ",")
		case "allow-warnings", "sbom", "provenance":
			if v != "true" && v != "false" {
				return nil, fmt.Errorf("input %s: want true or false, got %q", in, v)
			}
		}
		out[flag] = v
	}
	if v := strings.TrimSpace(gh.GetInput("push")); v != "" {
		switch v {
		case "true":
		case "false":
			out["dry-run"] = "true"
		default:
			return nil, fmt.Errorf("input push: want true or false, got %q", v)
		}
	}
	return out, nil
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == ',' }) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// requiredInputs names the action.yml inputs a release step lacks, after
// flags, NOTESCTL_* variables and .notesctl.yaml had their say: runners do
// not enforce "required: true", and "pass --image" means little to someone
// who writes a workflow.
func requiredInputs(image, gitops string) error {
	var missing []string
	if image == "" {
		missing = append(missing, "images")
	}
	if gitops == "" {
		missing = append(missing, "gitops-repo")
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("missing required input %s: set it under with: in the workflow step (or use the flag, its NOTESCTL_* variable or .notesctl.yaml)", strings.Join(missing, " and "))
}

// releaseMetadata is the "metadata" step output: the keys docker/build-push-action
// writes that mean the same here (containerimage.digest, image.name), so that
// workflows written for it can chain on notesctl, plus what only notesctl knows.
type releaseMetadata struct {
	Digest   string `json:"containerimage.digest"`
	Names    string `json:"image.name"`
	Notesctl struct {
		Image        string `json:"image"`
		Commit       string `json:"commit"`
		Pages        int    `json:"pages"`
		Changed      bool   `json:"changed"`
		Skipped      bool   `json:"skipped"`
		GitOpsCommit string `json:"gitops-commit,omitempty"`
	} `json:"notesctl"`
}

func metadataJSON(res *pipeline.ReleaseResult) (string, error) {
	b := res.Build
	var m releaseMetadata
	m.Digest = b.Digest
	var names []string
	if b.Repository != "" {
		tags := b.Tags
		if len(tags) == 0 && b.Tag != "" {
			tags = []string{b.Tag}
		}
		for _, t := range tags {
			names = append(names, b.Repository+":"+t)
		}
	}
	m.Names = strings.Join(names, ",")
	m.Notesctl.Image = b.Image
	m.Notesctl.Commit = b.Commit
	m.Notesctl.Pages = b.Pages
	m.Notesctl.Changed = res.GitOps.Changed
	m.Notesctl.Skipped = res.Skipped
	m.Notesctl.GitOpsCommit = res.GitOps.Commit
	out, err := json.Marshal(m)
	return string(out), err
}

// logSummaryOnGitea prints the step summary into the job log on Gitea:
// Gitea before 1.27 drops step summaries, so the log is the only place a
// user would see it.
func logSummaryOnGitea(a *app, res *pipeline.ReleaseResult, runErr error) {
	if res == nil || res.Build == nil || a.getenv("GITEA_ACTIONS") != "true" {
		return
	}
	fmt.Fprintf(a.stdout, "::group::summary\n%s::endgroup::\n", a.redact(pipeline.Summary(res, runErr)))
}

// setMetadataOutput writes the "metadata" output next to the ones the
// pipeline's Actions sink writes.
func setMetadataOutput(a *app, res *pipeline.ReleaseResult) {
	if res == nil || res.Build == nil || a.getenv("GITHUB_OUTPUT") == "" {
		return
	}
	js, err := metadataJSON(res)
	if err != nil {
		return
	}
	gh := githubactions.New(githubactions.WithWriter(a.stdout), githubactions.WithGetenv(githubactions.GetenvFunc(a.getenv)))
	gh.SetOutput("metadata", a.redact(js))
}
