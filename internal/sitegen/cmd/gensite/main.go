// Command gensite writes a synthetic notes site for benchmarks:
//
//	go run ./internal/sitegen/cmd/gensite -pages 500 -out /tmp/site500
//
// The site has the shape of testdata/site (day sections, talk pages with
// shortcodes, math, mermaid, relative images and links) and uses its Hugo
// configuration and theme. The output is deterministic for a given -pages.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/notesctl/notesctl/internal/sitegen"
)

func main() {
	pages := flag.Int("pages", 100, "number of talk pages to generate")
	out := flag.String("out", "", "output directory (must not exist or be empty)")
	fixture := flag.String("fixture", sitegen.FixtureDir(), "site whose configuration and theme are reused")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: gensite -pages N -out DIR [-fixture DIR]\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := sitegen.GenerateFrom(*fixture, *out, *pages); err != nil {
		fmt.Fprintln(os.Stderr, "gensite:", err)
		os.Exit(1)
	}
	days := sitegen.Layout(*pages)
	fmt.Printf("wrote %d talk pages in %d days to %s\n", *pages, len(days), *out)
}
