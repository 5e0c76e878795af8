package registry

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/fstest"
)

// benchSite makes a rendered-like site of n pages: sections of 20 pages,
// each page a few KB of HTML around its text, one PNG-like image for every
// fifth page, plus theme CSS/JS, a sitemap, an RSS feed and a search index.
// Content is random bytes from a fixed seed where real sites have
// incompressible data (images) and repetitive markup elsewhere.
func benchSite(n int) fstest.MapFS {
	r := rand.New(rand.NewPCG(uint64(n), 1))
	site := fstest.MapFS{}
	words := strings.Fields("kubernetes flux gitops nginx layer digest registry hugo section page note talk image mermaid math")
	text := func(nw int) string {
		var b strings.Builder
		for range nw {
			b.WriteString(words[r.IntN(len(words))])
			b.WriteByte(' ')
		}
		return b.String()
	}
	chrome := "<!doctype html><html><head><meta charset=utf-8><link rel=stylesheet href=/css/theme.css>" +
		strings.Repeat("<nav><ul><li><a href=/day1/>Day 1</a></li><li><a href=/day2/>Day 2</a></li></ul></nav>", 10)
	var sitemap strings.Builder
	for i := range n {
		dir := fmt.Sprintf("day%d/%02d_talk-%d", i/20+1, i%20, i)
		page := chrome + "<main><h1>" + text(6) + "</h1><p>" + text(300) + "</p></main></html>\n"
		site[dir+"/index.html"] = &fstest.MapFile{Data: []byte(page)}
		fmt.Fprintf(&sitemap, "<url><loc>/%s/</loc></url>\n", dir)
		if i%5 == 0 {
			img := make([]byte, 8<<10)
			for j := range img {
				img[j] = byte(r.Uint32())
			}
			site[fmt.Sprintf("day%d/_imgs/fig-%d.png", i/20+1, i)] = &fstest.MapFile{Data: img}
		}
	}
	site["index.html"] = &fstest.MapFile{Data: []byte(chrome + "<main>" + text(100) + "</main></html>\n")}
	site["sitemap.xml"] = &fstest.MapFile{Data: []byte(sitemap.String())}
	site["index.xml"] = &fstest.MapFile{Data: []byte("<rss>" + text(n) + "</rss>\n")}
	site["index.search.js"] = &fstest.MapFile{Data: []byte("var index=" + text(n*5) + ";\n")}
	site["css/theme.css"] = &fstest.MapFile{Data: []byte(strings.Repeat("body{margin:0;font-family:sans-serif}\n", 500))}
	site["js/theme.js"] = &fstest.MapFile{Data: []byte(strings.Repeat("function f(){return 1}\n", 2000))}
	return site
}

// indexedFS answers ReadDir from a precomputed listing. fstest.MapFS scans
// every key on each ReadDir, which at 10000 pages costs more than building
// the layers and would hide what the benchmark measures; the render
// package's in-memory file system keeps per-directory listings too.
type indexedFS struct {
	fstest.MapFS
	dirs map[string][]fs.DirEntry
}

func newIndexedFS(m fstest.MapFS) (indexedFS, error) {
	x := indexedFS{MapFS: m, dirs: map[string][]fs.DirEntry{}}
	err := fs.WalkDir(m, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		x.dirs[name], err = fs.ReadDir(m, name)
		return err
	})
	return x, err
}

func (x indexedFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if es, ok := x.dirs[name]; ok {
		return es, nil
	}
	return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
}

func BenchmarkLayers(b *testing.B) {
	for _, n := range []int{60, 1000, 10000} {
		m := benchSite(n)
		var total int64
		for _, f := range m {
			total += int64(len(f.Data))
		}
		site, err := newIndexedFS(m)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("pages=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(total)
			for b.Loop() {
				if _, err := Layers(site, DefaultWebRoot, testTime); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
