// Package gctune sets how often the garbage collector runs in notesctl, a
// short-lived process whose heap is small for most sites and large for a
// few.
//
// Go's default (GOGC=100: collect when the heap has doubled since the last
// collection) runs about a dozen collections in a release of a 70-page
// site, most of them while the heap is a few MiB, on a machine where the
// collector competes with Hugo for the same two cores. Letting the heap
// grow by 150% instead made that release ~5% faster for about 1 MiB more
// peak RSS, but a fixed GOGC=200 cost a 1000-page build 22% more peak RSS
// (bench/README.md). So the small-heap setting holds only while the live
// heap is below a threshold; the first collection that finds more live data
// than that puts Go's default back for the rest of the process.
package gctune

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// Defaults of SmallHeapFirst as notesctl uses it.
const (
	SmallHeapPercent = 150
	Threshold        = 32 << 20 // live heap bytes
)

// active guards against two watchers in one process.
var active atomic.Bool

// SmallHeapFirst sets the collector's percentage to smallPercent until a
// collection finds more than threshold bytes of live heap, then to 100
// (Go's default). It does nothing when the user set GOGC, which always
// wins, or when it already runs.
func SmallHeapFirst(smallPercent int, threshold uint64) {
	if _, set := os.LookupEnv("GOGC"); set || !active.CompareAndSwap(false, true) {
		return
	}
	debug.SetGCPercent(smallPercent)
	watch(threshold)
}

// watch arms a sentinel whose finalizer runs after each collection (an
// unreachable object is finalized by the collection that finds it dead),
// reads the live heap, and re-arms itself until the threshold is passed.
func watch(threshold uint64) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var arm func()
	arm = func() {
		s := new(sentinel)
		runtime.SetFinalizer(s, func(*sentinel) {
			metrics.Read(sample)
			if sample[0].Value.Kind() == metrics.KindUint64 && sample[0].Value.Uint64() > threshold {
				debug.SetGCPercent(100)
				active.Store(false)
				return
			}
			arm()
		})
	}
	arm()
}

// sentinel must have a size: zero-size allocations share one address and
// are never finalized.
type sentinel struct{ _ [16]byte }
