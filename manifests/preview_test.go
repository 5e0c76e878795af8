package manifests

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/memfs"
	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-billy/v5/util"
	"sigs.k8s.io/yaml"

	"github.com/notesctl/notesctl/internal/testenv"
	"github.com/notesctl/notesctl/registry"
)

const previewDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

var previewCommitTime = time.Date(2025, 5, 7, 6, 11, 56, 0, time.UTC)

func previewOptsFor(sc ScaffoldOptions, n int) PreviewOptions {
	o, _ := sc.resolve()
	return PreviewOptions{
		Number: n, AppPath: o.Path, Name: o.Name, Namespace: o.Namespace,
		Image: o.Image, Tag: "pr-" + itoa(n) + "-abc1234-1746598316-hugo0.145.0", Digest: previewDigest,
		Host: PreviewHost(n, "preview.example.org"), Commit: "abc1234abc1234abc1234abc1234abc1234abc12", CommitTime: previewCommitTime,
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestPreviewOverlayKustomizeBuild writes previews into each scaffold and
// runs the real kustomize over previews/: every object of the app comes out
// in the preview's namespace with the suffix, the Deployment runs the
// preview image with one replica, the Ingress answers the preview host and
// points at the renamed Service.
func TestPreviewOverlayKustomizeBuild(t *testing.T) {
	kustomize := testenv.LookPath(t, "kustomize", "go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.2")
	for _, tc := range scaffoldCases {
		for _, withHost := range []bool{true, false} {
			name := tc.name + "/ingress"
			if !withHost {
				name = tc.name + "/no-ingress"
			}
			t.Run(name, func(t *testing.T) {
				sc := tc.opts
				if !withHost {
					sc.Host = ""
				}
				dir := t.TempDir()
				fs := osfs.New(dir)
				if _, err := Scaffold(fs, "", sc); err != nil {
					t.Fatal(err)
				}
				for _, n := range []int{7, 12} {
					if _, err := WritePreview(fs, previewOptsFor(sc, n)); err != nil {
						t.Fatal(err)
					}
				}
				var stdout, stderr bytes.Buffer
				cmd := exec.Command(kustomize, "build", filepath.Join(dir, PreviewsDir))
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				if err := cmd.Run(); err != nil {
					t.Fatalf("kustomize build previews: %v\n%s", err, stderr.String())
				}
				o, _ := sc.resolve()
				type object struct {
					Kind     string `json:"kind"`
					Metadata struct {
						Name        string            `json:"name"`
						Namespace   string            `json:"namespace"`
						Annotations map[string]string `json:"annotations"`
					} `json:"metadata"`
					Spec struct {
						Replicas *int `json:"replicas"`
						Template struct {
							Spec struct {
								Containers []struct {
									Image string `json:"image"`
								} `json:"containers"`
							} `json:"spec"`
						} `json:"template"`
						Rules []struct {
							Host string `json:"host"`
							HTTP struct {
								Paths []struct {
									Backend struct {
										Service struct {
											Name string `json:"name"`
										} `json:"service"`
									} `json:"backend"`
								} `json:"paths"`
							} `json:"http"`
						} `json:"rules"`
					} `json:"spec"`
				}
				kinds := map[string]int{}
				for _, doc := range strings.Split(stdout.String(), "\n---\n") {
					var ob object
					if err := yaml.Unmarshal([]byte(doc), &ob); err != nil {
						t.Fatal(err)
					}
					kinds[ob.Kind]++
					pr := ob.Metadata.Annotations[AnnotationPreviewPR]
					ns := o.Namespace + "-pr-" + pr
					if pr == "" {
						t.Errorf("%s %s lacks the %s annotation", ob.Kind, ob.Metadata.Name, AnnotationPreviewPR)
						continue
					}
					if ob.Metadata.Annotations[AnnotationPreviewCommitTime] != "2025-05-07T06:11:56Z" {
						t.Errorf("%s %s: commit time annotation %q", ob.Kind, ob.Metadata.Name, ob.Metadata.Annotations[AnnotationPreviewCommitTime])
					}
					switch ob.Kind {
					case "Namespace":
						if ob.Metadata.Name != ns {
							t.Errorf("Namespace %s, want %s", ob.Metadata.Name, ns)
						}
						continue
					case "Deployment":
						want := o.Image + ":pr-" + pr + "-abc1234-1746598316-hugo0.145.0@" + previewDigest
						if c := ob.Spec.Template.Spec.Containers; len(c) != 1 || c[0].Image != want {
							t.Errorf("Deployment runs %+v, want %s", c, want)
						}
						if ob.Spec.Replicas == nil || *ob.Spec.Replicas != 1 {
							t.Errorf("Deployment replicas %v, want 1", ob.Spec.Replicas)
						}
					case "Ingress":
						if len(ob.Spec.Rules) != 1 || ob.Spec.Rules[0].Host != "pr-"+pr+".preview.example.org" ||
							ob.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name != o.Name+"-pr-"+pr {
							t.Errorf("Ingress rules %+v, want host pr-%s.preview.example.org to service %s-pr-%s", ob.Spec.Rules, pr, o.Name, pr)
						}
					}
					if ob.Metadata.Namespace != ns || ob.Metadata.Name != o.Name+"-pr-"+pr {
						t.Errorf("%s %s/%s, want %s/%s-pr-%s", ob.Kind, ob.Metadata.Namespace, ob.Metadata.Name, ns, o.Name, pr)
					}
				}
				for _, k := range []string{"Namespace", "Deployment", "Service", "Ingress"} {
					if kinds[k] != 2 {
						t.Errorf("%d %s objects, want one per preview (2): %v", kinds[k], k, kinds)
					}
				}
			})
		}
	}
}

func TestPreviewWriteRemoveList(t *testing.T) {
	sc := scaffoldCases[0].opts
	fs := memfs.New()
	if _, err := Scaffold(fs, "", sc); err != nil {
		t.Fatal(err)
	}
	empty, _ := util.ReadFile(fs, "previews/kustomization.yaml")
	if !strings.Contains(string(empty), "resources: []") {
		t.Errorf("scaffolded previews/kustomization.yaml lists something:\n%s", empty)
	}
	for _, n := range []int{12, 3, 100} {
		if _, err := WritePreview(fs, previewOptsFor(sc, n)); err != nil {
			t.Fatal(err)
		}
	}
	list, _ := util.ReadFile(fs, "previews/kustomization.yaml")
	if !strings.Contains(string(list), "resources:\n- pr-3\n- pr-12\n- pr-100\n") {
		t.Errorf("previews listed out of order:\n%s", list)
	}
	// Deterministic: the same preview writes the same bytes.
	before, _ := util.ReadFile(fs, "previews/pr-12/kustomization.yaml")
	if _, err := WritePreview(fs, previewOptsFor(sc, 12)); err != nil {
		t.Fatal(err)
	}
	after, _ := util.ReadFile(fs, "previews/pr-12/kustomization.yaml")
	if !bytes.Equal(before, after) {
		t.Errorf("rewriting the same preview changed it:\n%s\n---\n%s", before, after)
	}
	infos, err := Previews(fs)
	if err != nil || len(infos) != 3 || infos[0].Number != 3 || !infos[1].CommitTime.Equal(previewCommitTime) || infos[1].Commit == "" {
		t.Fatalf("Previews = %+v, %v", infos, err)
	}
	for _, tt := range []struct {
		n       int
		removed bool
	}{{12, true}, {12, false}, {99, false}} {
		removed, err := RemovePreview(fs, tt.n)
		if err != nil || removed != tt.removed {
			t.Errorf("RemovePreview(%d) = %v, %v; want %v", tt.n, removed, err, tt.removed)
		}
	}
	if _, err := fs.Stat("previews/pr-12"); err == nil {
		t.Error("previews/pr-12 still there")
	}
	list, _ = util.ReadFile(fs, "previews/kustomization.yaml")
	if !strings.Contains(string(list), "resources:\n- pr-3\n- pr-100\n") {
		t.Errorf("list after removing pr-12:\n%s", list)
	}
}

func TestPreviewErrors(t *testing.T) {
	sc := scaffoldCases[0].opts
	fs := memfs.New()
	if _, err := Scaffold(fs, "", sc); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		edit func(*PreviewOptions)
		want string
	}{
		{"another image spelling", func(o *PreviewOptions) { o.Image = "docker.io/acme/notes" }, "no Deployment in apps/notes runs image docker.io/acme/notes"},
		{"no number", func(o *PreviewOptions) { o.Number = 0 }, "pull request number 0"},
		{"bad host", func(o *PreviewOptions) { o.Host = "pr-1.Bad_Domain" }, `host "pr-1.Bad_Domain"`},
		{"app path inside previews", func(o *PreviewOptions) { o.AppPath = "./previews/x" }, "outside previews/"},
		{"missing app", func(o *PreviewOptions) { o.AppPath = "./apps/other" }, "app directory apps/other"},
	} {
		o := previewOptsFor(sc, 5)
		tt.edit(&o)
		if _, err := WritePreview(fs, o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
	if _, err := fs.Stat("previews/pr-5"); err == nil {
		t.Error("a failed preview left files behind")
	}
	noList := memfs.New()
	if _, err := Scaffold(noList, "", sc); err != nil {
		t.Fatal(err)
	}
	_ = noList.Remove("previews/kustomization.yaml")
	if _, err := WritePreview(noList, previewOptsFor(sc, 5)); err == nil || !strings.Contains(err.Error(), "previews/kustomization.yaml does not exist") {
		t.Errorf("repository without previews/: %v", err)
	}
}

// TestPreviewTagNeverMatchesReleasePolicy: the tags previews push are never
// picked by the scaffolded ImagePolicy of a release branch, "pr" included.
// (A release branch literally named "pr-<n>" would be the one exception: its
// release tags and pull request n's preview tags share a scheme.)
func TestPreviewTagNeverMatchesReleasePolicy(t *testing.T) {
	for _, branch := range []string{"main", "pr", "release/2025", "feature/pr-12"} {
		pattern := TagPattern(branch)
		for _, n := range []int{1, 12, 4711} {
			tag, err := registry.RenderTag(PreviewTagTemplate(n),
				registry.TagData{Branch: branch, SHA: "b9060af0b9060af0b9060af0b9060af0b9060af0", Timestamp: 1746598316, Generator: "hugo", GeneratorVersion: "0.145.0"})
			if err != nil {
				t.Fatal(err)
			}
			if regexp.MustCompile(pattern).MatchString(tag) {
				t.Errorf("ImagePolicy of branch %q (%s) matches the preview tag %s", branch, pattern, tag)
			}
		}
	}
}
