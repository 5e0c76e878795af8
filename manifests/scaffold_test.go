package manifests

import (
	"bytes"
	"errors"
	"flag"
	"math/big"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	imagev1 "github.com/fluxcd/image-reflector-controller/api/v1"
	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/memfs"
	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-billy/v5/util"
	"sigs.k8s.io/yaml"

	"github.com/notesctl/notesctl/internal/testenv"
)

// scaffoldUpdateGoldens reports whether -update was given. The flag is declared once
// for the package (in the setter tests); look it up instead of declaring a
// second one, which would panic.
func scaffoldUpdateGoldens() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

var scaffoldCases = []struct {
	name string
	opts ScaffoldOptions
}{
	{"default", ScaffoldOptions{
		Image:  "ghcr.io/acme/notes",
		GitURL: "ssh://git@github.com/acme/gitops",
	}},
	{"full", ScaffoldOptions{
		Name:               "handbook",
		Namespace:          "docs",
		Image:              "registry.example.com:5000/team/handbook",
		InitialTag:         "release-0a1b2c3-1746598316-hugo0.145.0",
		Host:               "handbook.example.com",
		IngressClassName:   "nginx",
		Policy:             "flux-apps:handbook-release",
		Branch:             "release/2025",
		Receiver:           true,
		GitURL:             "https://git.example.com/team/gitops.git",
		GitBranch:          "production",
		GitSecretName:      "gitops-auth",
		RegistrySecretName: "registry-auth",
		Path:               "./clusters/prod/handbook",
	}},
}

// scaffoldReadTree returns every file under dir of fs by slash path.
func scaffoldReadTree(t *testing.T, fs billy.Filesystem, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := util.Walk(fs, dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := util.ReadFile(fs, p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestScaffoldGolden(t *testing.T) {
	for _, tc := range scaffoldCases {
		t.Run(tc.name, func(t *testing.T) {
			fs := memfs.New()
			written, err := Scaffold(fs, "repo", tc.opts)
			if err != nil {
				t.Fatalf("Scaffold: %v", err)
			}
			got := scaffoldReadTree(t, fs, "repo")
			if len(written) != len(got) {
				t.Errorf("Scaffold reported %d files, wrote %d", len(written), len(got))
			}
			for _, w := range written {
				if _, ok := got[strings.TrimPrefix(w, "repo/")]; !ok || !strings.HasPrefix(w, "repo/") {
					t.Errorf("reported path %q was not written under repo/", w)
				}
			}
			golden := filepath.Join("testdata", "scaffold", tc.name)
			if scaffoldUpdateGoldens() {
				if err := os.RemoveAll(golden); err != nil {
					t.Fatal(err)
				}
				for name, b := range got {
					p := filepath.Join(golden, filepath.FromSlash(name))
					if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(p, b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			want := scaffoldReadTree(t, osfs.New(golden), "")
			var names []string
			for n := range want {
				names = append(names, n)
			}
			for n := range got {
				if _, ok := want[n]; !ok {
					names = append(names, n)
				}
			}
			sort.Strings(names)
			for _, n := range names {
				if !bytes.Equal(got[n], want[n]) {
					t.Errorf("%s differs from %s (run go test -run TestScaffoldGolden -update):\n--- got\n%s\n--- want\n%s",
						n, filepath.Join(golden, n), got[n], want[n])
				}
			}

			// Deterministic: a second run writes the same bytes.
			fs2 := memfs.New()
			if _, err := Scaffold(fs2, "repo", tc.opts); err != nil {
				t.Fatal(err)
			}
			for n, b := range scaffoldReadTree(t, fs2, "repo") {
				if !bytes.Equal(b, got[n]) {
					t.Errorf("%s differs between two runs", n)
				}
			}
		})
	}
}

func TestScaffoldSetterMarker(t *testing.T) {
	fs := memfs.New()
	if _, err := Scaffold(fs, "", scaffoldCases[1].opts); err != nil {
		t.Fatal(err)
	}
	b, err := util.ReadFile(fs, "clusters/prod/handbook/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := `      - image: registry.example.com:5000/team/handbook:release-0a1b2c3-1746598316-hugo0.145.0 # {"$imagepolicy": "flux-apps:handbook-release"}` + "\n"
	if !bytes.Contains(b, []byte(want)) {
		t.Errorf("deployment lacks the setter line %q:\n%s", want, b)
	}
	// The marker names a policy that the scaffold defines.
	p := scaffoldImagePolicy(t, fs, "flux/handbook/imagepolicy.yaml")
	if p.Namespace+":"+p.Name != "flux-apps:handbook-release" {
		t.Errorf("ImagePolicy is %s/%s, marker names flux-apps:handbook-release", p.Namespace, p.Name)
	}
}

func scaffoldImagePolicy(t *testing.T, fs billy.Filesystem, p string) *imagev1.ImagePolicy {
	t.Helper()
	b, err := util.ReadFile(fs, p)
	if err != nil {
		t.Fatal(err)
	}
	var pol imagev1.ImagePolicy
	if err := yaml.UnmarshalStrict(b, &pol); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if pol.Kind != imagev1.ImagePolicyKind || pol.APIVersion != imagev1.GroupVersion.String() {
		t.Fatalf("%s holds %s %s", p, pol.APIVersion, pol.Kind)
	}
	return &pol
}

// scaffoldLatestTag selects a tag as Flux's ImagePolicy documents it for a
// numerical policy: keep tags matching the pattern, replace each by the
// extract template expanded with the match, parse that as a number, and
// take the highest (order asc) or lowest (desc).
func scaffoldLatestTag(t *testing.T, pol *imagev1.ImagePolicy, tags []string) string {
	t.Helper()
	re, err := regexp.Compile(pol.Spec.FilterTags.Pattern)
	if err != nil {
		t.Fatalf("pattern %q: %v", pol.Spec.FilterTags.Pattern, err)
	}
	if pol.Spec.Policy.Numerical == nil {
		t.Fatal("policy is not numerical")
	}
	var best string
	var bestN *big.Float
	for _, tag := range tags {
		m := re.FindStringSubmatchIndex(tag)
		if m == nil {
			continue
		}
		value := string(re.ExpandString(nil, pol.Spec.FilterTags.Extract, tag, m))
		n, ok := new(big.Float).SetString(value)
		if !ok {
			t.Fatalf("extracted %q from %q is not a number", value, tag)
		}
		cmp := 0
		if bestN != nil {
			cmp = n.Cmp(bestN)
		}
		if order := pol.Spec.Policy.Numerical.Order; bestN == nil || (order != "desc" && cmp > 0) || (order == "desc" && cmp < 0) {
			best, bestN = tag, n
		}
	}
	return best
}

func TestScaffoldImagePolicySelectsNewest(t *testing.T) {
	tags := []string{
		"main-b9060af-1746598316-hugo0.145.0",
		"main-0c1d2e3-1746690000-hugo0.145.0",       // newest clean main
		"main-0c1d2e3-1746690000-hugo0.145.0-dirty", // same commit, dirty
		"main-0c1d2e4-1746690001-hugo0.145.0-dirty", // newer, dirty
		"pr-7-0c1d2e5-1900000000-hugo0.145.0",       // pull-request preview
		"main-0c1d2e6-1900000000-hugo0.145.0-pr-7",  // lookalike with a suffix
		"main-x-0c1d2e7-1900000000-hugo0.145.0",     // branch main-x
		"main-ffffff0-999999999-hugo0.145.0",        // fewer digits: numerically older
		"main-1234567-1746600000-hugo0.144.2",
		"feature-x-aaaaaaa-1800000000-hugo0.145.0", // other branch, newer
		"mainline-aaaaaaa-1900000000-hugo0.145.0",  // prefix lookalike
		"latest",
		"main",
		"sha256-deadbeef.sig",
		"release-2025-aaaaaaa-1850000000-hugo0.145.0",
		"release-2025-bbbbbbb-1840000000-hugo0.145.0",
	}
	tests := []struct {
		name, branch, want string
	}{
		{"main", "main", "main-0c1d2e3-1746690000-hugo0.145.0"},
		{"branch with slash", "release/2025", "release-2025-aaaaaaa-1850000000-hugo0.145.0"},
		{"feature", "feature-x", "feature-x-aaaaaaa-1800000000-hugo0.145.0"},
		{"no tags", "develop", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := memfs.New()
			opts := scaffoldCases[0].opts
			opts.Branch = tt.branch
			if _, err := Scaffold(fs, "", opts); err != nil {
				t.Fatal(err)
			}
			pol := scaffoldImagePolicy(t, fs, "flux/notes/imagepolicy.yaml")
			if got := scaffoldLatestTag(t, pol, tags); got != tt.want {
				t.Errorf("policy %q selects %q, want %q", pol.Spec.FilterTags.Pattern, got, tt.want)
			}
		})
	}
}

func TestScaffoldExistingFiles(t *testing.T) {
	opts := scaffoldCases[0].opts
	fs := memfs.New()
	if err := util.WriteFile(fs, "apps/notes/service.yaml", []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Scaffold(fs, "", opts)
	if err == nil || !strings.Contains(err.Error(), "apps/notes/service.yaml already exists") {
		t.Fatalf("err = %v, want one naming apps/notes/service.yaml", err)
	}
	// Nothing was written: the check happens before any write.
	if _, err := fs.Stat("apps/notes/deployment.yaml"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("deployment.yaml written despite the conflict: %v", err)
	}
	if b, _ := util.ReadFile(fs, "apps/notes/service.yaml"); string(b) != "mine\n" {
		t.Errorf("existing file changed: %q", b)
	}

	opts.Force = true
	written, err := Scaffold(fs, "", opts)
	if err != nil {
		t.Fatalf("Scaffold with Force: %v", err)
	}
	if b, _ := util.ReadFile(fs, "apps/notes/service.yaml"); string(b) == "mine\n" {
		t.Error("Force did not overwrite service.yaml")
	}
	if len(written) != 12 {
		t.Errorf("wrote %d files, want 12: %v", len(written), written)
	}
}

func TestScaffoldOptionErrors(t *testing.T) {
	base := scaffoldCases[0].opts
	tests := []struct {
		name   string
		modify func(*ScaffoldOptions)
		want   string
	}{
		{"no image", func(o *ScaffoldOptions) { o.Image = "" }, "image repository is required"},
		{"image with tag", func(o *ScaffoldOptions) { o.Image = "ghcr.io/acme/notes:v1" }, `invalid image repository "ghcr.io/acme/notes:v1"`},
		{"bad tag", func(o *ScaffoldOptions) { o.InitialTag = "not a tag" }, `invalid initial tag "not a tag"`},
		{"bad name", func(o *ScaffoldOptions) { o.Name = "Notes_Site" }, `invalid name "Notes_Site"`},
		{"bad namespace", func(o *ScaffoldOptions) { o.Namespace = "-x" }, `invalid namespace "-x"`},
		{"policy without namespace", func(o *ScaffoldOptions) { o.Policy = "notes" }, `invalid image policy "notes"`},
		{"no git url", func(o *ScaffoldOptions) { o.GitURL = "" }, "GitOps repository URL is required"},
		{"bad git branch", func(o *ScaffoldOptions) { o.GitBranch = "a..b" }, `invalid GitOps branch "a..b"`},
		{"bad host", func(o *ScaffoldOptions) { o.Host = "https://notes.example.com" }, `invalid ingress host "https://notes.example.com"`},
		{"path outside", func(o *ScaffoldOptions) { o.Path = "../elsewhere" }, `invalid path "../elsewhere"`},
		{"path root", func(o *ScaffoldOptions) { o.Path = "./" }, `invalid path "./"`},
		{"path in flux", func(o *ScaffoldOptions) { o.Path = "flux/notes" }, `invalid path "flux/notes"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			tt.modify(&o)
			fs := memfs.New()
			_, err := Scaffold(fs, "", o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if entries, _ := fs.ReadDir("/"); len(entries) != 0 {
				t.Errorf("files written despite the error")
			}
		})
	}
}

// TestScaffoldKustomizeBuild runs the real kustomize over the scaffold
// (go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.2).
func TestScaffoldKustomizeBuild(t *testing.T) {
	kustomize := testenv.LookPath(t, "kustomize", "go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.2")
	for _, tc := range scaffoldCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			written, err := Scaffold(osfs.New(dir), "", tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			// Build each directory that got a kustomization.yaml.
			var dirs []string
			for _, w := range written {
				if path.Base(w) == "kustomization.yaml" {
					dirs = append(dirs, path.Dir(w))
				}
			}
			if len(dirs) != 3 || dirs[2] != PreviewsDir {
				t.Fatalf("kustomization.yaml in %v, want the app, the flux directory and %s", dirs, PreviewsDir)
			}
			for _, sub := range dirs {
				var stdout, stderr bytes.Buffer
				cmd := exec.Command(kustomize, "build", filepath.Join(dir, sub))
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				if err := cmd.Run(); err != nil {
					t.Fatalf("kustomize build %s: %v\n%s", sub, err, stderr.String())
				}
				// Every object the directory holds comes out of the build.
				files := scaffoldReadTree(t, osfs.New(filepath.Join(dir, sub)), "")
				out := stdout.String()
				if sub == PreviewsDir {
					// No preview is open yet: the list builds to nothing.
					if strings.TrimSpace(out) != "" {
						t.Errorf("kustomize build %s: want no objects, got:\n%s", sub, out)
					}
					continue
				}
				objects := strings.Count(out, "\n---\n") + 1
				if want := len(files) - 1; objects != want || !strings.HasPrefix(out, "apiVersion:") {
					t.Errorf("kustomize build %s: %d objects, want %d:\n%s", sub, objects, want, out)
				}
			}
		})
	}
}
