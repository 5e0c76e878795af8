// Command notesctl renders a Hugo notes site, publishes it as an OCI image
// and writes the image update into a GitOps repository that Flux applies.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/notesctl/notesctl/internal/gctune"
)

func main() {
	// Fewer collections while the heap is small (see internal/gctune).
	gctune.SmallHeapFirst(gctune.SmallHeapPercent, gctune.Threshold)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
