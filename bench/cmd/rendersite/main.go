// Command rendersite renders a site commit with the render package alone
// (render.ReadSource + render.Render, Hugo embedded, output in memory) and
// exits. It links nothing of registry, manifests or pipeline, so bench/build.sh
// can tell what the embedded render costs from what the rest of notesctl's
// binary and stages cost:
//
//	go build -o /tmp/rendersite ./bench/cmd/rendersite
//	/usr/bin/time -f %M /tmp/rendersite -site DIR
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/notesctl/notesctl/render"
)

func main() {
	site := flag.String("site", ".", "Hugo site directory inside a git repository")
	flag.Parse()
	src, err := render.ReadSource(render.SourceOptions{SiteDir: *site})
	if err != nil {
		fmt.Fprintln(os.Stderr, "rendersite:", err)
		os.Exit(1)
	}
	s, err := render.Render(context.Background(), src, render.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "rendersite:", err)
		os.Exit(1)
	}
	fmt.Printf("%d pages, %d files, %d bytes\n", s.Pages, s.FileCount, s.Bytes)
}
