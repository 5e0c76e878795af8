package pipeline

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sethvargo/go-githubactions"

	"github.com/notesctl/notesctl/render"
)

// ActionsSink reports a release in a GitHub or Gitea Actions job: one log
// group per stage, render errors as file annotations, step outputs and a
// step summary. Gitea's act_runner keeps annotations only in the log and
// step summaries only from Gitea 1.27, so there the summary is skipped
// unless GITHUB_STEP_SUMMARY is set, and nothing relies on annotations.
type ActionsSink struct {
	mu     sync.Mutex
	gh     *githubactions.Action
	getenv func(string) string
	redact func(string) string
	open   Stage
	gitea  bool
	// Progress: at most one line every ProgressEvery (the log keeps every
	// line, so a redrawn bar is not possible); Meter's clock decides.
	Meter        ProgressMeter
	lastProgress time.Time
}

// ProgressEvery is how often the Actions log gets a progress line.
const ProgressEvery = 5 * time.Second

// NewActionsSink writes workflow commands to w (the job log, stdout).
func NewActionsSink(getenv func(string) string, w io.Writer, redact func(string) string) *ActionsSink {
	if redact == nil {
		redact = func(s string) string { return s }
	}
	return &ActionsSink{
		gh:     githubactions.New(githubactions.WithWriter(w), githubactions.WithGetenv(githubactions.GetenvFunc(getenv))),
		getenv: getenv,
		redact: redact,
		gitea:  getenv("GITEA_ACTIONS") == "true",
	}
}

// Mask tells the runner to hide a secret in the log.
func (s *ActionsSink) Mask(secret string) {
	if strings.TrimSpace(secret) == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, line := range strings.Split(secret, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			s.gh.AddMask(line)
		}
	}
}

// Event implements Sink.
func (s *ActionsSink) Event(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch e.Kind {
	case EventStart:
		s.endGroup()
		s.gh.Group(string(e.Stage))
		s.open = e.Stage
		s.lastProgress = time.Time{}
	case EventEnd:
		s.gh.Infof("%s: %s (%s)", e.Stage, s.redact(e.Message), e.Duration.Round(time.Millisecond))
		s.endGroup()
	case EventNote:
		s.gh.Infof("%s: %s", e.Stage, s.redact(e.Message))
	case EventProgress:
		// The meter sees every event (its rate starts at the first); the
		// log gets a line every ProgressEvery.
		line := s.Meter.Describe(e)
		now := time.Now
		if s.Meter.Now != nil {
			now = s.Meter.Now
		}
		if t := now(); s.lastProgress.IsZero() || t.Sub(s.lastProgress) >= ProgressEvery {
			s.lastProgress = t
			s.gh.Infof("%s: %s", e.Stage, line)
		}
	case EventFail:
		s.endGroup()
		s.annotate(e)
	}
}

func (s *ActionsSink) endGroup() {
	if s.open != "" {
		s.gh.EndGroup()
		s.open = ""
	}
}

// annotate turns a failure into error annotations, one per render problem
// with its place, so that GitHub shows them on the file.
func (s *ActionsSink) annotate(e Event) {
	var rerr *render.Error
	if errors.As(e.Err, &rerr) {
		for _, p := range rerr.Problems {
			fields := map[string]string{"title": "notesctl " + string(e.Stage)}
			if p.File != "" {
				fields["file"] = p.File
				if p.Line > 0 {
					fields["line"] = fmt.Sprint(p.Line)
				}
				if p.Column > 0 {
					fields["col"] = fmt.Sprint(p.Column)
				}
			}
			if p.Warning {
				s.gh.WithFieldsMap(fields).Warningf("%s", s.redact(p.Message))
			} else {
				s.gh.WithFieldsMap(fields).Errorf("%s", s.redact(p.Message))
			}
		}
		return
	}
	s.gh.WithFieldsMap(map[string]string{"title": "notesctl " + string(e.Stage)}).Errorf("%s", s.redact(e.Err.Error()))
}

// Finish writes the step outputs and summary. Missing GITHUB_OUTPUT or
// GITHUB_STEP_SUMMARY files are skipped, never a crash.
func (s *ActionsSink) Finish(res *ReleaseResult, runErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endGroup()
	if res == nil || res.Build == nil {
		return
	}
	b := res.Build
	outputs := [][2]string{
		{"image", b.Image}, {"tag", b.Tag}, {"digest", b.Digest},
		{"gitops-commit", res.GitOps.Commit}, {"changed", fmt.Sprint(res.GitOps.Changed)},
		{"pages", fmt.Sprint(b.Pages)}, {"skipped", fmt.Sprint(res.Skipped)},
		{"outcome", res.Outcome}, {"reason", res.Reason}, {"superseded-by", res.GitOps.Superseded},
		{"sbom-digest", b.SBOMDigest}, {"provenance-digest", b.ProvenanceDigest},
	}
	if s.getenv("GITHUB_OUTPUT") != "" {
		for _, kv := range outputs {
			s.gh.SetOutput(kv[0], s.redact(kv[1]))
		}
	} else {
		s.gh.Warningf("GITHUB_OUTPUT is not set: step outputs are not written")
	}
	if s.getenv("GITHUB_STEP_SUMMARY") != "" {
		s.gh.AddStepSummary(s.redact(Summary(res, runErr)))
	}
}

// Summary renders the Markdown step summary of a release.
func Summary(res *ReleaseResult, runErr error) string {
	b := res.Build
	var sb strings.Builder
	status := "released"
	switch {
	case runErr != nil:
		status = "failed"
	case res.Skipped:
		status = "already deployed (no-op)"
	case res.DryRun:
		status = "dry run"
	case res.Outcome == OutcomeSuperseded:
		status = "superseded by a newer release (not deployed)"
	case res.Outcome == OutcomeUnchanged:
		status = "pushed; the manifests already held it"
	}
	fmt.Fprintf(&sb, "### notesctl release: %s\n\n", status)
	sb.WriteString("| | |\n|---|---|\n")
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&sb, "| %s | `%s` |\n", k, strings.ReplaceAll(v, "|", "\\|"))
		}
	}
	row("Image", b.Repository)
	row("Tag", b.Tag)
	row("Digest", b.Digest)
	row("SBOM", b.SBOMDigest)
	row("Provenance", b.ProvenanceDigest)
	row("Source commit", b.Commit)
	row("Hugo", b.GeneratorVer)
	if b.Pages > 0 {
		row("Pages", fmt.Sprint(b.Pages))
	}
	for _, l := range b.Layers {
		row("Layer "+l.Name, fmt.Sprintf("%s, %d files, %s", humanBytes(l.Size), l.Files, short(l.Digest)))
	}
	row("Uploaded", humanBytes(b.BytesUploaded))
	if res.GitOps.Changed {
		row("GitOps commit", res.GitOps.Commit)
	}
	row("Superseded by", res.GitOps.Superseded)
	row("Why", res.Reason)
	if runErr != nil {
		row("Error", runErr.Error())
	}
	if len(res.Durations) > 0 {
		sb.WriteString("\n| Stage | Duration |\n|---|---|\n")
		var stages []string
		for st := range res.Durations {
			stages = append(stages, string(st))
		}
		sort.Strings(stages)
		for _, st := range stages {
			fmt.Fprintf(&sb, "| %s | %s |\n", st, time.Duration(res.Durations[Stage(st)]).Round(time.Millisecond))
		}
	}
	return sb.String()
}
