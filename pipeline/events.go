// Package pipeline is the one place that wires the stages of a release:
// Source → Render → Image → Push → Attest → Verify → Update (→ Notify). It reports
// progress as stage events to a Sink and decides what can be skipped
// (idempotency). It knows no Hugo, tar or YAML details: those live in
// render, registry and manifests.
package pipeline

import (
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
