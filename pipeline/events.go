// Package pipeline is the one place that wires the stages of a release:
// Source → Render → Image → Push → Attest → Verify → Update (→ Notify). It reports
// progress as stage events to a Sink and decides what can be skipped
// (idempotency). It knows no Hugo, tar or YAML details: those live in
// render, registry and manifests.
package pipeline

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Stage names a step of the pipeline.
type Stage string

// The stages, in the order a release runs them.
const (
	StageSource Stage = "source"
	StageRender Stage = "render"
	StageImage  Stage = "image"
	StagePush   Stage = "push"
	StageAttest Stage = "attest"
	StageVerify Stage = "verify"
	StageUpdate Stage = "update"
	StageNotify Stage = "notify"
)

// EventKind says what happened in a stage.
type EventKind int

// Event kinds.
const (
	EventStart EventKind = iota
	EventProgress
	EventEnd
	EventNote
	EventFail
)

// Event is one thing a sink may show.
type Event struct {
	Stage    Stage
	Kind     EventKind
	Message  string
	Duration time.Duration // EventEnd, EventFail
	Bytes    int64         // EventProgress: bytes done
	Total    int64         // EventProgress: bytes expected, 0 if unknown
	Pages    int
	Err      error // EventFail
	// EventProgress of the image stage: the layer just finished, and how
	// many of how many layers are done (Bytes: compressed bytes so far).
	Layer              string
	LayersDone, Layers int
	// EventProgress of the render stage: files Hugo has published so far.
	// Hugo does not know its total until it is done, so none is given.
	Files int
	// EventProgress of the push stage for one layer being uploaded: its
	// name and how much of it is sent (Bytes and Total stay the sums).
	UploadLayer             string
	UploadDone, UploadTotal int64
}

// ProgressMeter turns the progress events of a stage into what a person
// wants to know: how far, how fast, how long still. The clock is a field so
// that tests can drive it.
type ProgressMeter struct {
	Now   func() time.Time
	stage Stage
	start time.Time
	last  int64
	// lastDone is the count of the last event (files, layers or bytes)
	lastDone float64
	// the push's layers in flight, and the last line of its sums
	uploads   map[string][2]int64
	sumsLine  string
	sumsStage Stage
	// where the stage's count stood when the clock started
	startBytes int64
	startDone  float64
}

// Describe returns e's progress, e.g. "12.0 MiB / 80.0 MiB (15%), 4.0
// MiB/s, 17s left" or, for the image stage, "12/50 layers, 9.1 MiB
// compressed, 3.0 MiB/s, 13s left". The rate is measured from the first
// progress event of the stage (or since the count went back); the time
// left assumes the rate holds, and is left out before a second has passed
// or when the total is unknown.
//
// A push also shows the layers being uploaded, up to three, e.g. " ·
// pages-07 1.2/3.0 MiB": an upload event updates them and keeps the line
// of the sums it last had.
func (m *ProgressMeter) Describe(e Event) string {
	if m.sumsStage != e.Stage {
		// A new stage: the last one's sums and layers in flight are over.
		m.sumsStage, m.sumsLine, m.uploads = e.Stage, "", nil
	}
	if e.UploadLayer != "" {
		if m.uploads == nil {
			m.uploads = map[string][2]int64{}
		}
		if e.UploadDone >= e.UploadTotal {
			delete(m.uploads, e.UploadLayer)
		} else {
			m.uploads[e.UploadLayer] = [2]int64{e.UploadDone, e.UploadTotal}
		}
		return m.sumsLine + m.uploadsSuffix()
	}
	line := m.describe(e)
	m.sumsLine = line
	return line + m.uploadsSuffix()
}

// uploadsSuffix lists up to three layers in flight, by name.
func (m *ProgressMeter) uploadsSuffix() string {
	if len(m.uploads) == 0 {
		return ""
	}
	names := make([]string, 0, len(m.uploads))
	for n := range m.uploads {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, n := range names {
		if i == 3 {
			fmt.Fprintf(&b, " +%d more", len(names)-3)
			break
		}
		u := m.uploads[n]
		fmt.Fprintf(&b, " · %s %s/%s", n, humanBytes(u[0]), humanBytes(u[1]))
	}
	return b.String()
}

func (m *ProgressMeter) describe(e Event) string {
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	t := now()
	var b strings.Builder
	var done, total float64
	switch {
	case e.Files > 0:
		fmt.Fprintf(&b, "%d files published", e.Files)
		done = float64(e.Files)
	case e.Layers > 0:
		fmt.Fprintf(&b, "%d/%d layers, %s compressed", e.LayersDone, e.Layers, humanBytes(e.Bytes))
		done, total = float64(e.LayersDone), float64(e.Layers)
	case e.Total > 0:
		fmt.Fprintf(&b, "%s / %s (%d%%)", humanBytes(e.Bytes), humanBytes(e.Total), e.Bytes*100/e.Total)
		done, total = float64(e.Bytes), float64(e.Total)
	default:
		b.WriteString(humanBytes(e.Bytes))
		done = float64(e.Bytes)
	}
	if e.Stage != m.stage || e.Bytes < m.last || done < m.lastDone || m.start.IsZero() {
		m.stage, m.start, m.startBytes, m.startDone = e.Stage, t, e.Bytes, done
	}
	m.last, m.lastDone = e.Bytes, done
	// The rate counts what was done since the clock started, not what the
	// first event already reported.
	elapsed := t.Sub(m.start)
	if elapsed < time.Second {
		return b.String()
	}
	if e.Files > 0 {
		fmt.Fprintf(&b, ", %.0f files/s", (done-m.startDone)/elapsed.Seconds())
		return b.String()
	}
	fmt.Fprintf(&b, ", %s/s", humanBytes(int64(float64(e.Bytes-m.startBytes)/elapsed.Seconds())))
	if rate := (done - m.startDone) / elapsed.Seconds(); total > 0 && rate > 0 && done < total {
		left := time.Duration((total - done) / rate * float64(time.Second))
		fmt.Fprintf(&b, ", %s left", left.Round(time.Second))
	}
	return b.String()
}

// Sink receives events. Implementations must be safe for use from several
// goroutines (uploads report progress concurrently).
type Sink interface {
	Event(Event)
}

// SinkFunc adapts a function to a Sink.
type SinkFunc func(Event)

// Event calls f.
func (f SinkFunc) Event(e Event) { f(e) }

// Discard is a sink that drops everything.
var Discard Sink = SinkFunc(func(Event) {})

// timings records stage durations for the result.
type timings struct {
	mu sync.Mutex
	d  map[Stage]time.Duration
}

func (t *timings) add(s Stage, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.d == nil {
		t.d = map[Stage]time.Duration{}
	}
	t.d[s] += d
}

func (t *timings) snapshot() map[Stage]time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[Stage]time.Duration, len(t.d))
	for k, v := range t.d {
		out[k] = v
	}
	return out
}

// runner runs stages and reports them.
type runner struct {
	sink  Sink
	times timings
}

func newRunner(sink Sink) *runner {
	if sink == nil {
		sink = Discard
	}
	return &runner{sink: sink}
}

// stage runs fn as stage s: a start event, then an end event with fn's
// summary, or a fail event with its error.
func (r *runner) stage(s Stage, fn func() (summary string, err error)) error {
	r.sink.Event(Event{Stage: s, Kind: EventStart})
	start := time.Now()
	summary, err := fn()
	d := time.Since(start)
	r.times.add(s, d)
	if err != nil {
		r.sink.Event(Event{Stage: s, Kind: EventFail, Duration: d, Err: err})
		return err
	}
	r.sink.Event(Event{Stage: s, Kind: EventEnd, Duration: d, Message: summary})
	return nil
}

func (r *runner) note(s Stage, msg string) {
	r.sink.Event(Event{Stage: s, Kind: EventNote, Message: msg})
}
