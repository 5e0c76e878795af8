package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/notesctl/notesctl/pipeline"
)

// TestLineSinkProgress: on a terminal, progress redraws one line with the
// amount, rate, time left and the layer just finished, at most ten times a
// second (the last event always); without a terminal it prints nothing.
func TestLineSinkProgress(t *testing.T) {
	const mib = 1 << 20
	now := time.Date(2025, 5, 7, 6, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	events := func(s *lineSink) {
		s.Event(pipeline.Event{Stage: pipeline.StageImage, Kind: pipeline.EventStart})
		for i := 1; i <= 4; i++ {
			now = now.Add(time.Second)
			s.Event(pipeline.Event{Stage: pipeline.StageImage, Kind: pipeline.EventProgress, Layer: "pages-0" + string(rune('0'+i)),
				LayersDone: i, Layers: 4, Bytes: int64(i) * 2 * mib})
		}
		// Within 100 ms of the last draw: skipped, unless it is the end.
		now = now.Add(time.Second)
		s.Event(pipeline.Event{Stage: pipeline.StagePush, Kind: pipeline.EventProgress, Bytes: 0, Total: 8 * mib})
		now = now.Add(10 * time.Millisecond)
		s.Event(pipeline.Event{Stage: pipeline.StagePush, Kind: pipeline.EventProgress, Bytes: mib, Total: 8 * mib})
		now = now.Add(1990 * time.Millisecond)
		s.Event(pipeline.Event{Stage: pipeline.StagePush, Kind: pipeline.EventProgress, Bytes: 4 * mib, Total: 8 * mib})
		s.Event(pipeline.Event{Stage: pipeline.StagePush, Kind: pipeline.EventProgress, Bytes: 8 * mib, Total: 8 * mib})
	}
	var tty bytes.Buffer
	s := &lineSink{w: &tty, tty: true, redact: func(s string) string { return s }, meter: pipeline.ProgressMeter{Now: clock}}
	events(s)
	got := strings.Split(tty.String(), "\r\x1b[K")
	want := []string{
		"  image   ...",
		"  image   1/4 layers, 2.0 MiB compressed (pages-01)",
		"  image   2/4 layers, 4.0 MiB compressed, 2.0 MiB/s, 2s left (pages-02)",
		"  image   3/4 layers, 6.0 MiB compressed, 2.0 MiB/s, 1s left (pages-03)",
		"  image   4/4 layers, 8.0 MiB compressed, 2.0 MiB/s (pages-04)",
		"  push    0 B / 8.0 MiB (0%)",
		"  push    4.0 MiB / 8.0 MiB (50%), 2.0 MiB/s, 2s left",
		"  push    8.0 MiB / 8.0 MiB (100%), 4.0 MiB/s",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("terminal output:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	var plain bytes.Buffer
	events(&lineSink{w: &plain, redact: func(s string) string { return s }, meter: pipeline.ProgressMeter{Now: clock}})
	if plain.Len() != 0 {
		t.Errorf("plain output of progress: %q", plain.String())
	}
}
