package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/notesctl/notesctl/pipeline"
)

// sink picks where progress goes: the Actions log under GitHub or Gitea
// Actions, a live display on a terminal, plain lines otherwise. Progress
// always goes to stderr; stdout holds only the result.
func (a *app) sink() pipeline.Sink {
	if a.getenv("GITHUB_ACTIONS") == "true" {
		return pipeline.NewActionsSink(a.getenv, a.stdout, a.redact)
	}
	tty := false
	if f, ok := a.stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) && a.getenv("TERM") != "dumb" {
		tty = true
	}
	return &lineSink{w: a.stderr, tty: tty, redact: a.redact}
}

// finish closes what a sink left open (a progress line).
func (a *app) finish(s pipeline.Sink) {
	if ls, ok := s.(*lineSink); ok {
		ls.close()
	}
}

// lineSink writes one line per stage event; on a terminal, upload progress
// redraws a single line.
type lineSink struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	redact   func(string) string
	open     bool // a progress line is on screen
	lastDraw time.Time
}

func (s *lineSink) Event(e pipeline.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch e.Kind {
	case pipeline.EventProgress:
		if !s.tty || e.Total <= 0 {
			return
		}
		if time.Since(s.lastDraw) < 100*time.Millisecond && e.Bytes < e.Total {
			return
		}
		s.lastDraw = time.Now()
		fmt.Fprintf(s.w, "\r\033[K  %-7s %s / %s (%d%%)", e.Stage, size(e.Bytes), size(e.Total), e.Bytes*100/e.Total)
		s.open = true
		return
	case pipeline.EventStart:
		if s.tty {
			s.clear()
			fmt.Fprintf(s.w, "  %-7s ...", e.Stage)
			s.open = true
		}
		return
	}
	s.clear()
	switch e.Kind {
	case pipeline.EventEnd:
		fmt.Fprintf(s.w, "✓ %-7s %s (%s)\n", e.Stage, s.redact(e.Message), e.Duration.Round(time.Millisecond))
	case pipeline.EventFail:
		fmt.Fprintf(s.w, "✗ %-7s failed after %s\n", e.Stage, e.Duration.Round(time.Millisecond))
	case pipeline.EventNote:
		fmt.Fprintf(s.w, "  %-7s %s\n", e.Stage, s.redact(e.Message))
	}
}

func (s *lineSink) clear() {
	if s.open {
		fmt.Fprint(s.w, "\r\033[K")
		s.open = false
	}
}

func (s *lineSink) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clear()
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
