package registry

import (
	"io"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// LayerUpload is the progress of one blob upload: how much of which layer
// has been sent. go-containerregistry reports only the sum over all blobs;
// this is what a person watching a large push wants to see per layer.
type LayerUpload struct {
	// Name is the layer's name from PublishOptions.LayerNames, else the
	// short digest.
	Name        string
	Digest      v1.Hash
	Done, Total int64
}

// meterUploads wraps art so that every layer it uploads reports its bytes
// to report as the body is read. Only the blob reads are watched: the
// manifests, digests and the layers' own types are the artifact's, except
// for layers go-containerregistry can mount from another repository
// (remote.MountableLayer), which are left unwrapped so that the mount is
// still tried and they upload nothing.
func meterUploads(art Artifact, names map[v1.Hash]string, report func(LayerUpload)) Artifact {
	m := &uploadMeter{names: names, report: report}
	if art.Index != nil {
		return Artifact{Index: meteredIndex{index: art.Index, m: m}}
	}
	return Artifact{Image: meteredImage{Image: art.Image, m: m}}
}

type uploadMeter struct {
	names  map[v1.Hash]string
	mu     sync.Mutex // one report at a time, in order per layer
	report func(LayerUpload)
}

func (m *uploadMeter) wrap(l v1.Layer) v1.Layer {
	if _, ok := l.(*remote.MountableLayer); ok {
		return l
	}
	return meteredLayer{Layer: l, m: m}
}

type meteredIndex struct {
	index
	m *uploadMeter
}

// index is v1.ImageIndex under another name, so that meteredIndex can
// embed it and still have an ImageIndex method of its own.
type index = interface {
	MediaType() (types.MediaType, error)
	Digest() (v1.Hash, error)
	Size() (int64, error)
	IndexManifest() (*v1.IndexManifest, error)
	RawManifest() ([]byte, error)
	Image(v1.Hash) (v1.Image, error)
	ImageIndex(v1.Hash) (v1.ImageIndex, error)
}

func (i meteredIndex) Image(h v1.Hash) (v1.Image, error) {
	img, err := i.index.Image(h)
	if err != nil {
		return nil, err
	}
	return meteredImage{Image: img, m: i.m}, nil
}

func (i meteredIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	ii, err := i.index.ImageIndex(h)
	if err != nil {
		return nil, err
	}
	return meteredIndex{index: ii, m: i.m}, nil
}

type meteredImage struct {
	v1.Image
	m *uploadMeter
}

func (i meteredImage) Layers() ([]v1.Layer, error) {
	ls, err := i.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for n, l := range ls {
		out[n] = i.m.wrap(l)
	}
	return out, nil
}

func (i meteredImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := i.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return i.m.wrap(l), nil
}

type meteredLayer struct {
	v1.Layer
	m *uploadMeter
}

func (l meteredLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	d, err := l.Digest()
	if err != nil {
		return nil, err
	}
	size, err := l.Size()
	if err != nil {
		return nil, err
	}
	name := l.m.names[d]
	if name == "" {
		name = d.Hex[:12]
	}
	return &countingBody{ReadCloser: rc, m: l.m, up: LayerUpload{Name: name, Digest: d, Total: size}}, nil
}

// countingBody reports the bytes read from a layer's body. A retried
// upload reads the body again from the start, and its count starts over.
type countingBody struct {
	io.ReadCloser
	m  *uploadMeter
	up LayerUpload
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if n > 0 {
		c.up.Done += int64(n)
		c.m.mu.Lock()
		c.m.report(c.up)
		c.m.mu.Unlock()
	}
	return n, err
}
