package gctune

import (
	"os"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestSmallHeapFirst: the small-heap percentage holds while the live heap
// is below the threshold and Go's default comes back once it is above.
func TestSmallHeapFirst(t *testing.T) {
	t.Setenv("GOGC", "") // restored after the test
	if err := os.Unsetenv("GOGC"); err != nil {
		t.Fatal(err)
	}
	defer debug.SetGCPercent(gcPercent())

	const threshold = 64 << 20
	SmallHeapFirst(300, threshold)
	runtime.GC()
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	if got := gcPercent(); got != 300 {
		t.Fatalf("GC percent with a small heap = %d, want 300", got)
	}

	live := make([][]byte, 0, 96)
	for range 96 {
		live = append(live, make([]byte, 1<<20))
	}
	deadline := time.Now().Add(5 * time.Second)
	for gcPercent() != 100 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if got := gcPercent(); got != 100 {
		t.Fatalf("GC percent with %d MiB live = %d, want 100", len(live), got)
	}
	runtime.KeepAlive(live)
}

// TestGOGCWins: a GOGC the user set is left alone.
func TestGOGCWins(t *testing.T) {
	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150)
	defer debug.SetGCPercent(100)
	SmallHeapFirst(300, 1<<20)
	if got := gcPercent(); got != 150 {
		t.Fatalf("GC percent = %d, want the user's 150", got)
	}
}
