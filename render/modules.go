package render

import (
	"path"
	"sort"
	"strings"

	"github.com/gohugoio/hugo/config/allconfig"
)

// Module is a Hugo module or theme the site was rendered with, for the
// image's SBOM.
type Module struct {
	// Path is the module path ("github.com/acme/hugo-notes-theme") or, for
	// a theme in the site's themes/ folder, its name ("notes").
	Path string `json:"path"`
	// Version is the Go module version ("v1.2.3", also for vendored
	// modules, from _vendor/modules.txt); empty for a theme that is part
	// of the site's own tree.
	Version string `json:"version,omitempty"`
	// GoModule is set for a module resolved through Go modules.
	GoModule bool `json:"goModule,omitempty"`
	// Vendored is set for a module read from the site's _vendor folder.
	Vendored bool `json:"vendored,omitempty"`
	// Theme is set when the site names the module in its theme setting.
	Theme bool `json:"theme,omitempty"`
	// Dir is where the module's files are, relative to the site root
	// ("themes/notes", "_vendor/github.com/acme/x"); empty when outside it.
	Dir string `json:"dir,omitempty"`
	// Replaced names the module path this one replaces, if any.
	Replaced string `json:"replaced,omitempty"`
}

// siteModules lists the modules of a loaded configuration, the project
// itself excluded, sorted by path.
func siteModules(configs *allconfig.Configs) []Module {
	themes := map[string]bool{}
	if configs.Base != nil {
		for _, t := range configs.Base.Theme {
			themes[t] = true
		}
	}
	var out []Module
	for _, m := range configs.Modules {
		if m.Owner() == nil {
			continue // the site itself
		}
		mod := Module{
			Path:     m.Path(),
			Version:  m.Version(),
			GoModule: m.IsGoMod(),
			Vendored: m.Vendor(),
			Theme:    themes[m.Path()],
		}
		if r := m.Replace(); r != nil {
			mod.Replaced = mod.Path
			mod.Path = r.Path()
			if r.Version() != "" {
				mod.Version = r.Version()
			}
		}
		if dir, ok := strings.CutPrefix(path.Clean(filepathToSlash(m.Dir())), siteRoot+"/"); ok {
			mod.Dir = dir
		}
		out = append(out, mod)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func filepathToSlash(s string) string { return strings.ReplaceAll(s, "\\", "/") }
