// Package browser drives Debian's headless Chromium from tests with
// chromedp: it opens pages, records what a reader would notice going wrong
// (console errors, uncaught exceptions, failed or erroring requests) and
// saves screenshots.
package browser

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/notesctl/notesctl/internal/testenv"
)

// Install is how to get the browser.
const Install = "apt-get install -y chromium"

// EnvArtifacts names a directory where tests keep screenshots after they
// end; without it they go to the test's artifact directory.
const EnvArtifacts = "NOTESCTL_TEST_ARTIFACTS"

// Browser is one headless Chromium with a fresh profile, and one tab.
type Browser struct {
	ctx context.Context

	mu       sync.Mutex
	problems []string
	requests []Request
}

// Request is one response the tab received.
type Request struct {
	URL       string
	Status    int64
	FromCache bool // served from the memory or disk cache, without the network
}

// New starts Chromium for the test, with the flags that keep it off the
// network on these machines (no background networking, component updates,
// sync or QUIC) and a new user data directory. It stops when the test ends.
func New(t testing.TB) *Browser {
	t.Helper()
	exe := testenv.LookPath(t, "chromium", Install)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox, // as root on these machines
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("mute-audio", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &Browser{ctx: ctx}
	// The first Run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	if err := chromedp.Listen(ctx, b.record); err != nil {
		t.Fatal(err)
	}
	return b
}

// record runs in the tab's event loop: it only appends.
func (b *Browser) record(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var args []string
			for _, a := range ev.Args {
				if a.Description != "" {
					args = append(args, a.Description)
				} else {
					args = append(args, strings.Trim(string(a.Value), `"`))
				}
			}
			b.problems = append(b.problems, "console."+string(ev.Type)+": "+strings.Join(args, " "))
		}
	case *runtime.EventExceptionThrown:
		text := ev.ExceptionDetails.Text
		if ex := ev.ExceptionDetails.Exception; ex != nil {
			text += " " + ex.Description
		}
		b.problems = append(b.problems, "exception: "+text)
	case *log.EventEntryAdded:
		if ev.Entry.Level == log.EntryLevelError {
			b.problems = append(b.problems, fmt.Sprintf("log %s: %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		}
	case *network.EventLoadingFailed:
		b.problems = append(b.problems, fmt.Sprintf("request failed (%s): %s %s", ev.Type, ev.ErrorText, ev.BlockedReason))
	case *network.EventResponseReceived:
		r := ev.Response
		b.requests = append(b.requests, Request{URL: r.URL, Status: r.Status, FromCache: r.FromDiskCache || r.FromPrefetchCache})
		if r.Status >= 400 {
			b.problems = append(b.problems, fmt.Sprintf("HTTP %d: %s", r.Status, r.URL))
		}
	}
}

// Problems returns what went wrong since the last Reset.
func (b *Browser) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.problems...)
}

// Requests returns the responses received since the last Reset.
func (b *Browser) Requests() []Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Request(nil), b.requests...)
}

// Reset forgets the problems and requests recorded so far.
func (b *Browser) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems, b.requests = nil, nil
}

// Open navigates the tab to url and waits until the page has loaded.
func (b *Browser) Open(t testing.TB, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("opening %s: %v (problems so far: %v)", url, err, b.Problems())
	}
}

// Wait runs actions with a timeout, failing the test with what the page
// reported when they do not complete.
func (b *Browser) Wait(t testing.TB, what string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v (problems: %v)", what, err, b.Problems())
	}
}

// Eval evaluates a JavaScript expression in the page; a promise is awaited.
func Eval[T any](t testing.TB, b *Browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// Screenshot saves a PNG of the whole page as name in the artifact
// directory (EnvArtifacts, else the test's artifact directory) and returns
// its path.
func (b *Browser) Screenshot(t *testing.T, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := t.ArtifactDir()
	if d := os.Getenv(EnvArtifacts); d != "" {
		dir = filepath.Join(d, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
	return p
}
