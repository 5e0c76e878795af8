package attest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Types of the provenance referrer.
const (
	// StatementMediaType is the in-toto statement's media type, also the
	// referrer's artifactType and, in a DSSE envelope, its payloadType.
	StatementMediaType = "application/vnd.in-toto+json"
	// StatementType is the in-toto Statement v1 _type.
	StatementType = "https://in-toto.io/Statement/v1"
	// SLSAProvenanceType is the predicateType of SLSA provenance v1.
	SLSAProvenanceType = "https://slsa.dev/provenance/v1"
	// AnnotationPredicateType names the predicate type of a statement
	// referrer, so that a reader picks the right one from the list.
	AnnotationPredicateType = "in-toto.io/predicate-type"
	// BuildType is what a notesctl build is; docs/supply-chain.md
	// describes its parameters.
	BuildType = "https://github.com/notesctl/notesctl/blob/main/docs/supply-chain.md#build-type-v1"
	// BuilderID identifies notesctl as the builder; its version is in
	// builder.version.notesctl.
	BuilderID = "https://github.com/notesctl/notesctl"
)

// Run names the CI run that made a build.
type Run struct {
	// URL of the run, e.g. https://github.com/acme/notes/actions/runs/42/attempts/1.
	URL string
}

// CIRun reads the run of GitHub (or Gitea) Actions from its variables:
// GITHUB_SERVER_URL/GITHUB_REPOSITORY/actions/runs/GITHUB_RUN_ID (and
// /attempts/GITHUB_RUN_ATTEMPT). Outside Actions it is the zero Run.
func CIRun(getenv func(string) string) Run {
	server, repo, id := getenv("GITHUB_SERVER_URL"), getenv("GITHUB_REPOSITORY"), getenv("GITHUB_RUN_ID")
	if server == "" || repo == "" || id == "" {
		return Run{}
	}
	u, err := url.Parse(strings.TrimRight(server, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return Run{}
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	s := u.String() + "/" + strings.Trim(repo, "/") + "/actions/runs/" + url.PathEscape(id)
	if a := getenv("GITHUB_RUN_ATTEMPT"); a != "" {
		s += "/attempts/" + url.PathEscape(a)
	}
	return Run{URL: s}
}

// The statement is written with plain structs rather than the in-toto
// attestation library's protobuf types: protojson deliberately varies its
// output (whitespace) between runs, and the predicate there is a
// structpb.Struct, so the same build would not give the same bytes.
// encoding/json with fixed field order and sorted maps does; the tests
// read the bytes back with the library and validate them.

type statement struct {
	Type          string               `json:"_type"`
	Subject       []resourceDescriptor `json:"subject"`
	PredicateType string               `json:"predicateType"`
	Predicate     provenance           `json:"predicate"`
}

type resourceDescriptor struct {
	Name        string            `json:"name,omitempty"`
	URI         string            `json:"uri,omitempty"`
	Digest      map[string]string `json:"digest,omitempty"`
	Annotations map[string]any    `json:"annotations,omitempty"`
}

type provenance struct {
	BuildDefinition buildDefinition `json:"buildDefinition"`
	RunDetails      runDetails      `json:"runDetails"`
}

type buildDefinition struct {
	BuildType            string               `json:"buildType"`
	ExternalParameters   externalParameters   `json:"externalParameters"`
	InternalParameters   map[string]string    `json:"internalParameters,omitempty"`
	ResolvedDependencies []resourceDescriptor `json:"resolvedDependencies"`
}

type externalParameters struct {
	Source     sourceParams      `json:"source"`
	Image      string            `json:"image"`
	Parameters map[string]string `json:"parameters,omitempty"`
}

type sourceParams struct {
	Repository string `json:"repository,omitempty"`
	Commit     string `json:"commit"`
	Revision   string `json:"revision,omitempty"`
	Branch     string `json:"branch,omitempty"`
}

type runDetails struct {
	Builder  builder   `json:"builder"`
	Metadata *metadata `json:"metadata,omitempty"`
}

type builder struct {
	ID      string            `json:"id"`
	Version map[string]string `json:"version"`
}

type metadata struct {
	InvocationID string `json:"invocationId,omitempty"`
	StartedOn    string `json:"startedOn,omitempty"`
}

// Provenance returns an in-toto Statement v1 with a SLSA provenance v1
// predicate for b, as JSON: subject the image digest; builder notesctl and
// its version; buildType BuildType; externalParameters the site repository,
// commit and the settings that change the image; resolvedDependencies the
// site commit, the base image digest, Hugo and the site's modules;
// runDetails the CI run's URL as invocationId. No wall-clock time: the same
// Build gives the same bytes.
func Provenance(b Build) ([]byte, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	st := statement{
		Type: StatementType,
		Subject: []resourceDescriptor{{
			Name:   strings.TrimPrefix(b.Image.Repository, "oci:"),
			Digest: map[string]string{b.Image.Digest.Algorithm: b.Image.Digest.Hex},
		}},
		PredicateType: SLSAProvenanceType,
	}
	params := map[string]string{}
	for k, v := range b.Parameters {
		if v != "" {
			params[k] = v
		}
	}
	bd := buildDefinition{
		BuildType: BuildType,
		ExternalParameters: externalParameters{
			Source: sourceParams{Repository: b.Source.Repository, Commit: b.Source.Commit, Revision: b.Source.Revision, Branch: b.Source.Branch},
			Image:  b.Image.Repository,
		},
	}
	if len(params) > 0 {
		bd.ExternalParameters.Parameters = params
	}
	if len(b.Platforms) > 0 {
		bd.InternalParameters = map[string]string{"platforms": strings.Join(b.Platforms, ",")}
	}

	src := resourceDescriptor{Name: "site", Digest: map[string]string{"gitCommit": b.Source.Commit}}
	if b.Source.Repository != "" {
		src.URI = gitLocation(b.Source.Repository, b.Source.Commit)
	}
	deps := []resourceDescriptor{src}
	if !b.Base.none() {
		d := resourceDescriptor{Name: "base", URI: ociPURL(baseRepository(b.Base.Name), b.Base.Digest, "")}
		if alg, hex, ok := strings.Cut(b.Base.Digest, ":"); ok {
			d.Digest = map[string]string{alg: hex}
		}
		d.Annotations = map[string]any{"reference": b.Base.Name}
		deps = append(deps, d)
	}
	deps = append(deps, resourceDescriptor{Name: "hugo", URI: "pkg:golang/github.com/gohugoio/hugo@v" + b.Hugo})
	mods := append([]Module(nil), b.Modules...)
	sort.SliceStable(mods, func(i, j int) bool { return mods[i].Path < mods[j].Path })
	for _, m := range mods {
		d := resourceDescriptor{Name: m.Path}
		switch {
		case m.Version != "":
			d.URI = "pkg:golang/" + m.Path + "@" + m.Version
		case m.Dir != "":
			// Part of the site commit: its digest is the commit's.
			d.Digest = map[string]string{"gitCommit": b.Source.Commit}
			d.Annotations = map[string]any{"path": m.Dir}
		}
		if m.Theme {
			if d.Annotations == nil {
				d.Annotations = map[string]any{}
			}
			d.Annotations["theme"] = true
		}
		deps = append(deps, d)
	}
	bd.ResolvedDependencies = deps

	rd := runDetails{Builder: builder{ID: BuilderID, Version: map[string]string{"notesctl": b.Notesctl, "hugo": b.Hugo}}}
	if b.Run.URL != "" {
		rd.Metadata = &metadata{InvocationID: b.Run.URL}
	}
	st.Predicate = provenance{BuildDefinition: bd, RunDetails: rd}

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(st); err != nil {
		return nil, fmt.Errorf("write provenance statement: %w", err)
	}
	return buf.Bytes(), nil
}

// ProvenanceAnnotations are the annotations of the provenance referrer.
func ProvenanceAnnotations(b Build) map[string]string {
	return map[string]string{
		AnnotationPredicateType: SLSAProvenanceType,
		AnnotationCreated:       b.Source.Time.UTC().Format(time.RFC3339),
	}
}

// SBOMAnnotations are the annotations of the SBOM referrer.
func SBOMAnnotations(b Build) map[string]string {
	return map[string]string{AnnotationCreated: b.Source.Time.UTC().Format(time.RFC3339)}
}
