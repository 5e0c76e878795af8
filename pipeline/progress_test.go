package pipeline

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestProgressMeterDescribe(t *testing.T) {
	const mib = 1 << 20
	clock := &fakeClock{t: time.Date(2025, 5, 7, 6, 0, 0, 0, time.UTC)}
	m := ProgressMeter{Now: clock.now}
	steps := []struct {
		after time.Duration
		e     Event
		want  string
	}{
		// The first event starts the clock: no rate yet.
		{0, Event{Stage: StagePush, Bytes: 0, Total: 80 * mib}, "0 B / 80.0 MiB (0%)"},
		{500 * time.Millisecond, Event{Stage: StagePush, Bytes: 2 * mib, Total: 80 * mib}, "2.0 MiB / 80.0 MiB (2%)"},
		// 20 MiB in 5 s: 4 MiB/s, 60 MiB left: 15 s.
		{4500 * time.Millisecond, Event{Stage: StagePush, Bytes: 20 * mib, Total: 80 * mib}, "20.0 MiB / 80.0 MiB (25%), 4.0 MiB/s, 15s left"},
		{15 * time.Second, Event{Stage: StagePush, Bytes: 80 * mib, Total: 80 * mib}, "80.0 MiB / 80.0 MiB (100%), 4.0 MiB/s"},
		// A new stage restarts the rate: 11 more layers (8 MiB) in 4 s, 36
		// layers left: 13 s.
		{time.Second, Event{Stage: StageImage, LayersDone: 1, Layers: 48, Bytes: mib}, "1/48 layers, 1.0 MiB compressed"},
		{4 * time.Second, Event{Stage: StageImage, LayersDone: 12, Layers: 48, Bytes: 9 * mib}, "12/48 layers, 9.0 MiB compressed, 2.0 MiB/s, 13s left"},
		// Unknown total: amount and rate only.
		{time.Second, Event{Stage: StageRender, Bytes: 0}, "0 B"},
		{2 * time.Second, Event{Stage: StageRender, Bytes: 4 * mib}, "4.0 MiB, 2.0 MiB/s"},
		// The render's published files: a count and a rate, no total
		// (Hugo knows none until it is done), so no time left.
		{time.Second, Event{Stage: StagePush}, "0 B"},
		{time.Second, Event{Stage: StageRender, Files: 100}, "100 files published"},
		{2 * time.Second, Event{Stage: StageRender, Files: 2100}, "2100 files published, 1000 files/s"},
		// A push shows its layers in flight after its sums, by name, up to
		// three; a finished layer leaves the line.
		{time.Second, Event{Stage: StagePush, Bytes: 0, Total: 8 * mib}, "0 B / 8.0 MiB (0%)"},
		{0, Event{Stage: StagePush, UploadLayer: "pages-07", UploadDone: mib, UploadTotal: 3 * mib}, "0 B / 8.0 MiB (0%) · pages-07 1.0 MiB/3.0 MiB"},
		{0, Event{Stage: StagePush, UploadLayer: "assets", UploadDone: mib, UploadTotal: 4 * mib}, "0 B / 8.0 MiB (0%) · assets 1.0 MiB/4.0 MiB · pages-07 1.0 MiB/3.0 MiB"},
		{0, Event{Stage: StagePush, UploadLayer: "pages-07", UploadDone: 3 * mib, UploadTotal: 3 * mib}, "0 B / 8.0 MiB (0%) · assets 1.0 MiB/4.0 MiB"},
		{2 * time.Second, Event{Stage: StagePush, Bytes: 4 * mib, Total: 8 * mib}, "4.0 MiB / 8.0 MiB (50%), 2.0 MiB/s, 2s left · assets 1.0 MiB/4.0 MiB"},
		{0, Event{Stage: StagePush, UploadLayer: "a", UploadDone: 1, UploadTotal: 2}, "4.0 MiB / 8.0 MiB (50%), 2.0 MiB/s, 2s left · a 1 B/2 B · assets 1.0 MiB/4.0 MiB"},
		{0, Event{Stage: StagePush, UploadLayer: "b", UploadDone: 1, UploadTotal: 2}, "4.0 MiB / 8.0 MiB (50%), 2.0 MiB/s, 2s left · a 1 B/2 B · assets 1.0 MiB/4.0 MiB · b 1 B/2 B"},
		{0, Event{Stage: StagePush, UploadLayer: "c", UploadDone: 1, UploadTotal: 2}, "4.0 MiB / 8.0 MiB (50%), 2.0 MiB/s, 2s left · a 1 B/2 B · assets 1.0 MiB/4.0 MiB · b 1 B/2 B +1 more"},
	}
	for i, s := range steps {
		clock.advance(s.after)
		if got := m.Describe(s.e); got != s.want {
			t.Errorf("step %d: %q, want %q", i, got, s.want)
		}
	}
}

// TestActionsSinkProgressEveryFewSeconds: under Actions, progress is a
// log line at the first event of a stage and then at most every
// ProgressEvery, with rate and time left.
func TestActionsSinkProgressEveryFewSeconds(t *testing.T) {
	const mib = 1 << 20
	clock := &fakeClock{t: time.Date(2025, 5, 7, 6, 0, 0, 0, time.UTC)}
	var out bytes.Buffer
	s := NewActionsSink(func(string) string { return "" }, &out, nil)
	s.Meter.Now = clock.now
	s.Event(Event{Stage: StagePush, Kind: EventStart})
	// 100 events, one every 100 ms, over 10 s: 1 MiB/s of 100 MiB.
	for i := range 100 {
		s.Event(Event{Stage: StagePush, Kind: EventProgress, Bytes: int64(i) * mib / 10, Total: 100 * mib})
		clock.advance(100 * time.Millisecond)
	}
	var lines []string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "push: ") {
			lines = append(lines, l)
		}
	}
	want := []string{
		"push: 0 B / 100.0 MiB (0%)",
		"push: 5.0 MiB / 100.0 MiB (5%), 1.0 MiB/s, 1m35s left",
	}
	if len(lines) != 2 || lines[0] != want[0] || lines[1] != want[1] {
		t.Errorf("progress lines:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}
