package render

import (
	"reflect"
	"testing"
)

// TestSiteModules: the theme of testdata/site, and a Hugo module read from
// the site's _vendor folder with the version _vendor/modules.txt gives it
// (what `hugo mod vendor` writes), both listed for the SBOM.
func TestSiteModules(t *testing.T) {
	site := mustRender(t, newSiteRepo(t, "../testdata/site", nil))
	want := []Module{{Path: "notes", Theme: true, Dir: "themes/notes"}}
	if !reflect.DeepEqual(site.Modules, want) {
		t.Errorf("testdata/site modules = %+v, want %+v", site.Modules, want)
	}

	dir := newSiteRepo(t, "testdata/mini", map[string]string{
		"hugo.yaml": "baseURL: https://notes.example.org/\ntitle: Mini notes\ndisableKinds: [RSS, sitemap, robotsTXT, taxonomy, term, 404]\n" +
			"module:\n  imports:\n    - path: github.com/acme/hugo-shortcodes\n",
		"_vendor/modules.txt": "# github.com/acme/hugo-shortcodes v1.4.2\n",
		"_vendor/github.com/acme/hugo-shortcodes/layouts/shortcodes/hello.html": "hello\n",
	})
	site = mustRender(t, dir)
	want = []Module{{Path: "github.com/acme/hugo-shortcodes", Version: "v1.4.2", Vendored: true, Dir: "_vendor/github.com/acme/hugo-shortcodes"}}
	if !reflect.DeepEqual(site.Modules, want) {
		t.Errorf("vendored module = %+v, want %+v", site.Modules, want)
	}
}
