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
	meter    pipeline.ProgressMeter // its Now is the sink's clock
}

func (s *lineSink) now() time.Time {
	if s.meter.Now != nil {
		return s.meter.Now()
	}
	return time.Now()
}

func (s *lineSink) Event(e pipeline.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch e.Kind {
	case pipeline.EventProgress:
		if !s.tty {
			return
		}
		// The meter sees every event; the screen is redrawn at most ten
		// times a second, and always for the last one.
		line := s.meter.Describe(e)
		last := (e.Total > 0 && e.Bytes >= e.Total) || (e.Layers > 0 && e.LayersDone >= e.Layers)
		if t := s.now(); t.Sub(s.lastDraw) >= 100*time.Millisecond || last {
			s.lastDraw = t
			if e.Layer != "" {
				line += " (" + e.Layer + ")"
			}
			fmt.Fprintf(s.w, "\r\033[K  %-7s %s", e.Stage, line)
			s.open = true
		}
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
