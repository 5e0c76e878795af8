package render

import (
	"os"
	"path"
	"strings"
	"sync"

	"github.com/spf13/afero"
)

// publishCounter is the file system Hugo builds in, counting the files it
// publishes. Hugo's Build is one call with no progress of its own; the
// published files are the one sign of how far it got that does not depend
// on its internals. Only creations under the publish root count, so that
// reading the source and writing caches do not.
type publishCounter struct {
	afero.Fs
	mu       sync.Mutex // keeps the counts in order for progress
	written  int
	progress func(written int)
}

func newPublishCounter(fs afero.Fs, progress func(written int)) *publishCounter {
	return &publishCounter{Fs: fs, progress: progress}
}

func (c *publishCounter) Create(name string) (afero.File, error) {
	f, err := c.Fs.Create(name)
	if err == nil {
		c.count(name)
	}
	return f, err
}

func (c *publishCounter) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	f, err := c.Fs.OpenFile(name, flag, perm)
	if err == nil && flag&(os.O_CREATE|os.O_WRONLY|os.O_RDWR) != 0 {
		c.count(name)
	}
	return f, err
}

func (c *publishCounter) count(name string) {
	name = path.Clean("/" + strings.ReplaceAll(name, "\\", "/"))
	if !strings.HasPrefix(name, publishRoot+"/") {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.written++
	if c.progress != nil {
		c.progress(c.written)
	}
}
