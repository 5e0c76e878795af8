package main

import (
	"bytes"
	"fmt"
	"text/template"

	"github.com/notesctl/notesctl/manifests"
	"github.com/notesctl/notesctl/pipeline"
)

func renderUpdateTemplate(tmpl string, policies []manifests.Policy, changes []manifests.Change) (string, error) {
	t, err := template.New("message").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", fmt.Errorf("--message template: %w", err)
	}
	p := policies[0]
	ref := p.Image + ":" + p.Tag
	if p.Digest != "" {
		ref += "@" + p.Digest
	}
	var b bytes.Buffer
	err = t.Execute(&b, pipeline.MessageData{Image: ref, Repository: p.Image, Tag: p.Tag, Digest: p.Digest, Policy: p.ID(), Changes: changes})
	if err != nil {
		return "", fmt.Errorf("--message template: %w", err)
	}
	if b.Len() == 0 {
		return "", fmt.Errorf("--message template rendered an empty message")
	}
	return b.String(), nil
}
