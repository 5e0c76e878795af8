package render

import (
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/gohugoio/hugo/common/hugo"
	"github.com/gohugoio/hugo/config/allconfig"
)

// GeneratorName is the generator the image labels and tags name.
const GeneratorName = "hugo"

// hugoModule is the module whose version go.mod pins.
const hugoModule = "github.com/gohugoio/hugo"

// HugoVersion is the version of the embedded Hugo, e.g. "0.145.0".
func HugoVersion() string {
	return hugo.CurrentVersion.Version().String()
}

// PinCheck verifies that the Hugo compiled in is the one go.mod pins. The
// two can only differ through a replace directive or a vendoring mistake,
// and then the version in tags and labels would lie.
func PinCheck() error {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return fmt.Errorf("no build information in this binary: cannot check the Hugo pin")
	}
	for _, dep := range info.Deps {
		if dep.Path != hugoModule {
			continue
		}
		v := dep.Version
		if dep.Replace != nil {
			v = dep.Replace.Version
		}
		if strings.TrimPrefix(v, "v") != HugoVersion() {
			return fmt.Errorf("go.mod pins %s %s but the embedded Hugo reports %s", hugoModule, v, HugoVersion())
		}
		return nil
	}
	return fmt.Errorf("%s is not a dependency of this binary", hugoModule)
}

// checkModuleVersions applies Hugo's own module.hugoVersion ranges as hard
// errors. Hugo itself only warns, and a pipeline must not ship a site
// rendered by a generator the site says it does not support.
func checkModuleVersions(configs *allconfig.Configs) error {
	for _, m := range configs.Modules {
		hv := m.Config().HugoVersion
		if hv.IsValid() {
			continue
		}
		name := m.Path()
		if name == "" || name == "project" {
			name = "the site"
		}
		req := []string{}
		if hv.Min != "" {
			req = append(req, ">= "+string(hv.Min))
		}
		if hv.Max != "" {
			req = append(req, "<= "+string(hv.Max))
		}
		if hv.Extended {
			req = append(req, "extended")
		}
		return fmt.Errorf("%s requires Hugo %s (module.hugoVersion), but notesctl embeds Hugo %s (not extended); use a notesctl release built with a matching Hugo or change the requirement",
			name, strings.Join(req, ", "), HugoVersion())
	}
	return nil
}

// CheckConstraint checks the embedded Hugo against a constraint such as
// "0.145.0", "=0.145.0", ">=0.140.0", ">=0.140.0, <0.150.0" or "~0.145"
// (same minor). where names the input in the error.
func CheckConstraint(constraint, where string) error {
	constraint = strings.TrimSpace(constraint)
	if constraint == "" {
		return nil
	}
	have, _ := parseVersion(HugoVersion())
	for _, part := range strings.FieldsFunc(constraint, func(r rune) bool { return r == ',' }) {
		part = strings.TrimSpace(part)
		op := ""
		for _, candidate := range []string{">=", "<=", "!=", ">", "<", "=", "~"} {
			if strings.HasPrefix(part, candidate) {
				op = candidate
				break
			}
		}
		want, err := parseVersion(strings.TrimSpace(strings.TrimPrefix(part, op)))
		if err != nil {
			return fmt.Errorf("%s: invalid Hugo version constraint %q: %v", where, constraint, err)
		}
		c := compareVersions(have, want)
		ok := false
		switch op {
		case "", "=":
			ok = c == 0
		case "!=":
			ok = c != 0
		case ">=":
			ok = c >= 0
		case "<=":
			ok = c <= 0
		case ">":
			ok = c > 0
		case "<":
			ok = c < 0
		case "~":
			ok = have[0] == want[0] && have[1] == want[1] && have[2] >= want[2]
		}
		if !ok {
			return fmt.Errorf("%s requires Hugo %s, but notesctl embeds Hugo %s", where, constraint, HugoVersion())
		}
	}
	return nil
}

func parseVersion(s string) ([3]int, error) {
	var v [3]int
	s = strings.TrimPrefix(s, "v")
	if s == "" {
		return v, fmt.Errorf("empty version")
	}
	parts := strings.Split(s, ".")
	if len(parts) > 3 {
		return v, fmt.Errorf("%q is not MAJOR.MINOR[.PATCH]", s)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, fmt.Errorf("%q is not MAJOR.MINOR[.PATCH]", s)
		}
		v[i] = n
	}
	return v, nil
}

func compareVersions(a, b [3]int) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}
