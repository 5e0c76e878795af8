package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/notesctl/notesctl/internal/redact"
)

// LayoutPrefix marks a destination or reference as an OCI image layout
// directory instead of a registry repository: "oci:PATH".
const LayoutPrefix = "oci:"

// PublishOptions configures Publish, Verify and FetchLabels.
type PublishOptions struct {
	// Tags to publish, first one first. Publish needs at least one.
	Tags []string
	// Keychain resolves credentials; nil means Keychain(KeychainOptions{})
	// (docker config, credential helpers, GITHUB_TOKEN for ghcr.io).
	Keychain authn.Keychain
	// Insecure allows plain HTTP and skips TLS verification. Only when the
	// user asks for it explicitly.
	Insecure bool
	// CAFile is a PEM bundle trusted in addition to the system roots.
	CAFile string
	// RootCAs, if set, replaces the system roots (CAFile is added to it).
	RootCAs *x509.CertPool
	// Transport is the base transport (tests, fault injection). TLS options
	// are applied to a clone of it when it is an *http.Transport; any other
	// RoundTripper is used as is and then TLS options are an error.
	Transport http.RoundTripper
	// Jobs is the number of concurrent blob uploads (0: ggcr's default, 4).
	Jobs int
	// Progress, if set, receives byte progress of the upload, from one
	// goroutine at a time.
	Progress func(complete, total int64)
	// LayerProgress, if set, hears how much of each uploaded layer has been
	// sent, as it is sent (layers the registry has already are not
	// uploaded and not reported). It may be called from several
	// goroutines, one call at a time.
	LayerProgress func(LayerUpload)
	// LayerNames names layers by digest for LayerProgress.
	LayerNames map[v1.Hash]string
	// Logger receives retry notices; secrets are scrubbed first. It may be
	// called from several goroutines at once.
	Logger func(format string, args ...any)
	// Retry bounds retries; zero fields take DefaultRetryPolicy's values.
	Retry RetryPolicy
	// UserAgent is prepended to go-containerregistry's User-Agent.
	UserAgent string
	// ResponseTimeout bounds the wait for a registry to start answering a
	// request once it has been sent (body included), so that a registry
	// that stalls gives a clear error instead of a hang; a timed-out
	// request is retried like any transient failure. 0 means
	// NOTESCTL_REGISTRY_TIMEOUT, else DefaultResponseTimeout; negative
	// means no bound. It applies when Transport is nil or an
	// *http.Transport without a ResponseHeaderTimeout of its own.
	ResponseTimeout time.Duration
}

// DefaultResponseTimeout is the ResponseTimeout used when neither the
// option nor EnvRegistryTimeout sets one.
const DefaultResponseTimeout = 60 * time.Second

// EnvRegistryTimeout overrides DefaultResponseTimeout: a Go duration
// ("90s") or whole seconds.
const EnvRegistryTimeout = "NOTESCTL_REGISTRY_TIMEOUT"

// responseTimeout resolves PublishOptions.ResponseTimeout.
func (o PublishOptions) responseTimeout() (time.Duration, error) {
	if o.ResponseTimeout != 0 {
		return max(o.ResponseTimeout, 0), nil
	}
	v := strings.TrimSpace(os.Getenv(EnvRegistryTimeout))
	if v == "" {
		return DefaultResponseTimeout, nil
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a duration such as 90s, or seconds", EnvRegistryTimeout, v)
	}
	return d, nil
}

// Published describes the outcome of Publish.
type Published struct {
	// Ref is "repository:firstTag@sha256:..." (oci:PATH:tag@sha256:... for layouts).
	Ref        string
	Repository string
	Tags       []string
	Digest     v1.Hash
	// AlreadyPresent is true when the first tag already pointed at Digest
	// and no blob or manifest had to be uploaded.
	AlreadyPresent bool
	// BytesUploaded counts blob bytes sent (request bodies of blob uploads,
	// retried bytes included); for layouts, bytes of blobs written.
	BytesUploaded int64
	// BlobsUploaded and BlobsSkipped count distinct blobs that were sent
	// and that the destination already had.
	BlobsUploaded, BlobsSkipped int
}

// Publish pushes art to dest under opts.Tags. dest is a repository
// ("registry.example.com/acme/notes", "127.0.0.1:5000/notes") or
// "oci:PATH" for an OCI image layout.
func Publish(ctx context.Context, dest string, art Artifact, opts PublishOptions) (*Published, error) {
	if err := art.validate(); err != nil {
		return nil, err
	}
	tags, err := normalizeTags(opts.Tags)
	if err != nil {
		return nil, err
	}
	if path, ok := strings.CutPrefix(dest, LayoutPrefix); ok {
		return publishLayout(path, art, tags)
	}
	repo, err := parseRepository(dest, opts.Insecure)
	if err != nil {
		return nil, err
	}
	s, err := newSession(ctx, repo, opts, true)
	if err != nil {
		return nil, err
	}
	defer s.close()
	pub, err := s.publish(repo, dest, art, tags)
	if err != nil {
		return nil, s.wrap(fmt.Errorf("publish to %s: %w", repo, err))
	}
	return pub, nil
}

func (a Artifact) validate() error {
	switch {
	case a.Image == nil && a.Index == nil:
		return errors.New("artifact has neither an image nor an index")
	case a.Image != nil && a.Index != nil:
		return errors.New("artifact has both an image and an index; set exactly one")
	}
	return nil
}

func (a Artifact) taggable() remote.Taggable {
	if a.Index != nil {
		return a.Index
	}
	return a.Image
}

// tagPattern is the OCI distribution-spec tag grammar.
var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

func normalizeTags(tags []string) ([]string, error) {
	if len(tags) == 0 {
		return nil, errors.New("no tag to publish: at least one tag is required")
	}
	seen := map[string]bool{}
	var out []string
	for _, tag := range tags {
		if !tagPattern.MatchString(tag) {
			return nil, fmt.Errorf("invalid tag %q: a tag is 1-128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'", tag)
		}
		if !seen[tag] {
			seen[tag] = true
			out = append(out, tag)
		}
	}
	return out, nil
}

func parseRepository(dest string, insecure bool) (name.Repository, error) {
	if dest == "" {
		return name.Repository{}, errors.New("empty destination repository")
	}
	if strings.Contains(dest, "@") || strings.Contains(dest[strings.LastIndex(dest, "/")+1:], ":") {
		return name.Repository{}, fmt.Errorf("destination %q must be a repository without tag or digest (tags are given separately)", dest)
	}
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	repo, err := name.NewRepository(dest, nopts...)
	if err != nil {
		return name.Repository{}, fmt.Errorf("destination %q is not a valid repository: %w", dest, err)
	}
	return repo, nil
}

// session holds what one Publish/Verify/FetchLabels call needs to talk to
// a registry: remote options, a redactor, and the counters.
type session struct {
	ctx     context.Context
	opts    PublishOptions
	ropts   []remote.Option
	rt      *retryTransport // under every request; its logger and sleep serve writeRetrying
	timeout time.Duration   // resolved ResponseTimeout, 0: none
	stats   *pushStats
	red     *redact.Secrets
	cleanup func()
}

func newSession(ctx context.Context, res authn.Resource, opts PublishOptions, count bool) (*session, error) {
	kc := opts.Keychain
	if kc == nil {
		kc = Keychain(KeychainOptions{})
	}
	red := redact.New(secretsFor(kc, res)...)
	timeout, err := opts.responseTimeout()
	if err != nil {
		return nil, err
	}
	base, cleanup, err := baseTransport(opts, timeout)
	if err != nil {
		return nil, red.Error(err)
	}
	s := &session{ctx: ctx, opts: opts, red: red, cleanup: cleanup, timeout: timeout}
	inner := base
	if count {
		s.stats = newPushStats()
		inner = &countingTransport{inner: base, stats: s.stats}
	}
	s.rt = newRetryTransport(inner, opts.Retry, red.Logf(opts.Logger))
	policy := opts.Retry.withDefaults()
	s.ropts = []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(kc),
		remote.WithTransport(s.rt),
		remote.WithRetryPredicate(s.rt.predicate),
		remote.WithRetryBackoff(policy.ggcrBackoff()),
		// Status-code retries are ours (retryTransport); see retry.go.
		remote.WithRetryStatusCodes(),
	}
	if opts.Jobs > 0 {
		s.ropts = append(s.ropts, remote.WithJobs(opts.Jobs))
	}
	if opts.UserAgent != "" {
		s.ropts = append(s.ropts, remote.WithUserAgent(opts.UserAgent))
	}
	return s, nil
}

func (s *session) close() {
	if s.cleanup != nil {
		s.cleanup()
	}
}

// wrap makes err safe to show: secrets scrubbed, retry counts named.
func (s *session) wrap(err error) error {
	if err == nil {
		return nil
	}
	var terr *transport.Error
	switch {
	case !errors.As(err, &terr):
	case terr.StatusCode == http.StatusUnauthorized:
		err = fmt.Errorf("%w: authentication failed; check the registry credentials (docker login, %s/%s, or GITHUB_TOKEN for ghcr.io)", err, EnvRegistryUsername, EnvRegistryPassword)
	case terr.StatusCode == http.StatusForbidden:
		err = fmt.Errorf("%w: access denied; the credentials lack permission for this repository", err)
	case attemptsOf(err) > 1:
		err = fmt.Errorf("%w (HTTP %d; gave up after %d attempts)", err, terr.StatusCode, attemptsOf(err))
	}
	var stall *stallError
	if s.timeout > 0 && errors.As(err, &stall) {
		err = fmt.Errorf("%w: the registry did not answer within %s (%s sets how long to wait)", err, s.timeout, EnvRegistryTimeout)
	}
	// Upload locations carry the registry's signed upload state; ggcr
	// hides it in its own errors, net/http's url.Error does not.
	if msg := uploadState.ReplaceAllString(err.Error(), "${1}"+redact.Marker); msg != err.Error() {
		err = redact.WithMessage(err, msg)
	}
	return s.red.Error(err)
}

// publish pushes to repo; dest is the repository as the user wrote it,
// kept in Published so that references read the way the user configured
// them (ggcr would spell docker.io as index.docker.io).
func (s *session) publish(repo name.Repository, dest string, art Artifact, tags []string) (*Published, error) {
	digest, err := art.Digest()
	if err != nil {
		return nil, fmt.Errorf("compute artifact digest: %w", err)
	}
	pub := &Published{
		Ref:        dest + ":" + tags[0] + "@" + digest.String(),
		Repository: dest,
		Tags:       tags,
		Digest:     digest,
	}
	// go-containerregistry looks the tag up before it uploads anything
	// and stops there when it already points at the digest; no manifest
	// written then means the release was already present. (A look of our
	// own first would cost a second ping and HEAD on every push.)
	if err := s.writeRetrying(repo.Tag(tags[0]), art); err != nil {
		return nil, err
	}
	pub.AlreadyPresent = !s.stats.wroteAnything()
	for _, tag := range tags[1:] {
		ref := repo.Tag(tag)
		if pub.AlreadyPresent {
			// remote.Tag writes the manifest whatever the tag holds; a
			// HEAD first keeps a fully present release from writing
			// anything (registries with immutable tags refuse the PUT).
			if d, err := remote.Head(ref, s.ropts...); err == nil && d.Digest == digest {
				continue
			}
		}
		if err := remote.Tag(ref, art.taggable(), s.ropts...); err != nil {
			return nil, fmt.Errorf("tag %s: %w", tag, err)
		}
	}
	pub.BytesUploaded, pub.BlobsUploaded, pub.BlobsSkipped = s.stats.result()
	return pub, nil
}

// writeRetrying is write, again (blobs first, those present skipped) when
// the registry refuses the manifest for a blob it does not see
// (MANIFEST_BLOB_UNKNOWN), at most Retry.Attempts times: pushes of the
// same blobs racing into one repository can make a registry answer for a
// blob another push is still linking (CNCF Distribution's filesystem
// storage writes repository links in place), and the next look finds it.
func (s *session) writeRetrying(ref name.Tag, art Artifact) error {
	return retryBlobUnknown(s.ctx, s.opts.Retry, func() error { return s.write(ref, art) }, s.rt.sleep,
		func(err error, wait time.Duration, next, attempts int) {
			s.rt.logf("the registry refused the manifest of %s for a blob it does not see (%v); pushing again in %s (attempt %d of %d)",
				ref, err, wait.Round(time.Millisecond), next, attempts)
		})
}

// RetryBlobUnknown runs put (an upload of blobs, then of a manifest that
// names them) again while the registry refuses the manifest for a blob it
// does not see, at most policy.Attempts times, for the race writeRetrying
// describes. Referrer pushes use it: concurrent releases all upload the
// same empty config blob.
func RetryBlobUnknown(ctx context.Context, policy RetryPolicy, put func() error) error {
	return retryBlobUnknown(ctx, policy, put, sleepCtx, nil)
}

// retryBlobUnknown is RetryBlobUnknown with the sleep (the fault tests'
// clock) and a report of each retry (nil: none) given.
func retryBlobUnknown(ctx context.Context, policy RetryPolicy, put func() error,
	sleep func(context.Context, time.Duration) error, onRetry func(err error, wait time.Duration, next, attempts int)) error {
	policy = policy.withDefaults()
	for attempt := 1; ; attempt++ {
		err := put()
		if err == nil || !manifestBlobUnknown(err) || attempt >= policy.Attempts || ctx.Err() != nil {
			return err
		}
		wait := policy.backoff(attempt)
		if onRetry != nil {
			onRetry(err, wait, attempt+1, policy.Attempts)
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// manifestBlobUnknown reports whether a registry refused a manifest
// because it does not have one of the blobs the manifest names.
func manifestBlobUnknown(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	for _, d := range terr.Errors {
		if d.Code == transport.ManifestBlobUnknownErrorCode {
			return true
		}
	}
	return false
}

func (s *session) write(ref name.Tag, art Artifact) error {
	ropts := s.ropts
	var wg sync.WaitGroup
	if s.opts.Progress != nil {
		updates := make(chan v1.Update, 64)
		ropts = append(append([]remote.Option(nil), ropts...), remote.WithProgress(updates))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range updates {
				if u.Error == nil {
					s.opts.Progress(u.Complete, u.Total)
				}
			}
		}()
	}
	if s.opts.LayerProgress != nil {
		art = meterUploads(art, s.opts.LayerNames, s.opts.LayerProgress)
	}
	var err error
	if art.Index != nil {
		err = remote.WriteIndex(ref, art.Index, ropts...)
	} else {
		err = remote.Write(ref, art.Image, ropts...)
	}
	wg.Wait() // remote.Write closes the progress channel when it returns
	return err
}

// isManifestUnknown reports whether a registry said the manifest does not exist.
func isManifestUnknown(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	if terr.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range terr.Errors {
		if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
			return true
		}
	}
	return false
}

var uploadState = regexp.MustCompile(`([?&]_state=)[^&"\s]+`)

// baseTransport builds the bottom transport with the TLS settings and the
// response timeout applied. The returned cleanup closes idle connections
// of transports we created.
func baseTransport(opts PublishOptions, timeout time.Duration) (http.RoundTripper, func(), error) {
	needTLS := opts.Insecure || opts.CAFile != "" || opts.RootCAs != nil
	var ht *http.Transport
	switch t := opts.Transport.(type) {
	case nil:
		ht = remote.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		if !needTLS && (timeout <= 0 || t.ResponseHeaderTimeout > 0) {
			return t, func() {}, nil
		}
		ht = t.Clone()
	default:
		if needTLS {
			return nil, nil, errors.New("TLS options (CA file, root CAs, insecure) need a base transport of type *http.Transport")
		}
		return t, func() {}, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ht.TLSClientConfig != nil {
		cfg = ht.TLSClientConfig.Clone()
	}
	if opts.RootCAs != nil || opts.CAFile != "" {
		pool := opts.RootCAs
		if pool != nil {
			pool = pool.Clone()
		} else {
			sys, err := x509.SystemCertPool()
			if err != nil || sys == nil {
				sys = x509.NewCertPool()
			}
			pool = sys
		}
		if opts.CAFile != "" {
			pem, err := os.ReadFile(opts.CAFile)
			if err != nil {
				return nil, nil, fmt.Errorf("read CA file: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, fmt.Errorf("CA file %s holds no PEM certificate", opts.CAFile)
			}
		}
		cfg.RootCAs = pool
	}
	if opts.Insecure {
		cfg.InsecureSkipVerify = true //nolint:gosec // only on explicit request (--insecure)
	}
	ht.TLSClientConfig = cfg
	if timeout > 0 && ht.ResponseHeaderTimeout == 0 {
		ht.ResponseHeaderTimeout = timeout
	}
	return ht, ht.CloseIdleConnections, nil
}

// pushStats is filled by countingTransport.
type pushStats struct {
	mu        sync.Mutex
	bytes     int64
	uploaded  map[string]bool
	existing  map[string]bool
	manifests int // manifests written (PUT answered 2xx)
}

// wroteAnything reports whether a manifest or a blob was written.
func (p *pushStats) wroteAnything() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.manifests > 0 || len(p.uploaded) > 0 || p.bytes > 0
}

func newPushStats() *pushStats {
	return &pushStats{uploaded: map[string]bool{}, existing: map[string]bool{}}
}

func (p *pushStats) result() (bytes int64, uploaded, skipped int) {
	if p == nil {
		return 0, 0, 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for d := range p.existing {
		if !p.uploaded[d] {
			skipped++
		}
	}
	return p.bytes, len(p.uploaded), skipped
}

func (p *pushStats) addBytes(n int) {
	p.mu.Lock()
	p.bytes += int64(n)
	p.mu.Unlock()
}

// countingTransport sits next to the wire, below retries, so it sees every
// attempt: it counts blob upload body bytes as they are actually read by
// the HTTP transport, and which blobs were committed, mounted or found.
type countingTransport struct {
	inner http.RoundTripper
	stats *pushStats
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	upload := isBlobUpload(req)
	if upload && req.Body != nil && req.Body != http.NoBody {
		req = req.Clone(req.Context())
		req.Body = &countingReader{rc: req.Body, stats: c.stats}
		if gb := req.GetBody; gb != nil {
			req.GetBody = func() (io.ReadCloser, error) {
				rc, err := gb()
				if err != nil {
					return nil, err
				}
				return &countingReader{rc: rc, stats: c.stats}, nil
			}
		}
	}
	resp, err := c.inner.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	q := req.URL.Query()
	switch {
	case upload && resp.StatusCode == http.StatusCreated && q.Get("digest") != "":
		c.mark(c.stats.uploaded, q.Get("digest"))
	case upload && req.Method == http.MethodPost && resp.StatusCode == http.StatusCreated && q.Get("mount") != "":
		c.mark(c.stats.existing, q.Get("mount"))
	case req.Method == http.MethodPut && resp.StatusCode/100 == 2 && strings.Contains(req.URL.Path, "/manifests/"):
		c.stats.mu.Lock()
		c.stats.manifests++
		c.stats.mu.Unlock()
	case req.Method == http.MethodHead && resp.StatusCode == http.StatusOK:
		if d, ok := blobDigestFromPath(req.URL.Path); ok {
			c.mark(c.stats.existing, d)
		}
	}
	return resp, nil
}

func (c *countingTransport) mark(set map[string]bool, digest string) {
	c.stats.mu.Lock()
	set[digest] = true
	c.stats.mu.Unlock()
}

func isBlobUpload(req *http.Request) bool {
	switch req.Method {
	case http.MethodPost, http.MethodPatch, http.MethodPut:
		return strings.Contains(req.URL.Path, "/blobs/uploads/")
	}
	return false
}

// blobDigestFromPath extracts the digest of /v2/<name>/blobs/<digest>.
func blobDigestFromPath(p string) (string, bool) {
	i := strings.LastIndex(p, "/blobs/")
	if i < 0 {
		return "", false
	}
	d := p[i+len("/blobs/"):]
	if _, err := v1.NewHash(d); err != nil {
		return "", false
	}
	return d, true
}

type countingReader struct {
	rc    io.ReadCloser
	stats *pushStats
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if n > 0 {
		r.stats.addBytes(n)
	}
	return n, err
}

func (r *countingReader) Close() error { return r.rc.Close() }

// AnnotationRefName is the OCI image layout annotation naming a tag.
const AnnotationRefName = "org.opencontainers.image.ref.name"

// publishLayout writes art into the OCI image layout at path (created if
// missing), with one index.json entry per tag: an entry for the same tag
// with another digest is replaced, and an entry that is already right is
// left alone. The layout is not safe for concurrent writers.
func publishLayout(path string, art Artifact, tags []string) (*Published, error) {
	if path == "" {
		return nil, errors.New("oci: destination needs a directory path, e.g. oci:./out/image")
	}
	digest, err := art.Digest()
	if err != nil {
		return nil, fmt.Errorf("compute artifact digest: %w", err)
	}
	p, err := openOrCreateLayout(path)
	if err != nil {
		return nil, err
	}
	im, err := layoutIndexManifest(p)
	if err != nil {
		return nil, err
	}
	entries := map[string][]v1.Hash{}
	for _, d := range im.Manifests {
		if tag, ok := d.Annotations[AnnotationRefName]; ok {
			entries[tag] = append(entries[tag], d.Digest)
		}
	}
	upToDate := func(tag string) bool {
		e := entries[tag]
		return len(e) == 1 && e[0] == digest
	}

	blobs, err := artifactBlobs(art)
	if err != nil {
		return nil, fmt.Errorf("list artifact blobs: %w", err)
	}
	pub := &Published{
		Ref:            LayoutPrefix + path + ":" + tags[0] + "@" + digest.String(),
		Repository:     LayoutPrefix + path,
		Tags:           tags,
		Digest:         digest,
		AlreadyPresent: upToDate(tags[0]),
	}
	for _, h := range sortedHashes(blobs) {
		fi, err := os.Stat(layoutBlobPath(path, h))
		if err == nil && fi.Size() == blobs[h] {
			pub.BlobsSkipped++
			continue
		}
		if err == nil {
			// A blob of the wrong size is what a write cut short (a killed
			// run) leaves; ggcr would keep it, as it skips manifest and
			// config blobs that exist whatever their size.
			if err := os.Remove(layoutBlobPath(path, h)); err != nil {
				return nil, fmt.Errorf("oci layout %s: remove truncated blob %s: %w", path, h, err)
			}
		}
		pub.BlobsUploaded++
		pub.BytesUploaded += blobs[h]
	}
	if pub.BlobsUploaded > 0 {
		// Write blobs first: this also repairs a layout whose index.json
		// entry is right but which lost a blob. Existing blobs are skipped.
		if art.Index != nil {
			err = p.WriteIndex(art.Index)
		} else {
			err = p.WriteImage(art.Image)
		}
		if err != nil {
			return nil, fmt.Errorf("oci layout %s: write blobs: %w", path, err)
		}
		pub.AlreadyPresent = false
	}
	// index.json is rewritten once, through a temporary file renamed into
	// place: ggcr's layout rewrites it in place, which a killed run can
	// leave truncated, and a layout without a readable index.json is lost.
	var desc *v1.Descriptor
	if art.Index != nil {
		desc, err = partial.Descriptor(art.Index)
	} else {
		desc, err = partial.Descriptor(art.Image)
	}
	if err != nil {
		return nil, fmt.Errorf("oci layout %s: %w", path, err)
	}
	changed := false
	for _, tag := range tags {
		if upToDate(tag) {
			continue
		}
		keep := im.Manifests[:0]
		for _, d := range im.Manifests {
			if d.Annotations[AnnotationRefName] != tag {
				keep = append(keep, d)
			}
		}
		entry := *desc
		entry.Annotations = map[string]string{}
		for k, v := range desc.Annotations {
			entry.Annotations[k] = v
		}
		entry.Annotations[AnnotationRefName] = tag
		im.Manifests = append(keep, entry)
		changed = true
	}
	if changed {
		if err := writeLayoutIndex(path, im); err != nil {
			return nil, fmt.Errorf("oci layout %s: write index.json: %w", path, err)
		}
	}
	return pub, nil
}

// writeLayoutIndex replaces the layout's index.json atomically.
func writeLayoutIndex(path string, im *v1.IndexManifest) error {
	raw, err := json.MarshalIndent(im, "", "   ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(path, ".index.json.tmp-")
	if err != nil {
		return err
	}
	_, werr := f.Write(raw)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(path, "index.json")); err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	return nil
}

// openOrCreateLayout opens the layout at path, creating an empty one when
// the directory does not exist or holds no index.json yet.
func openOrCreateLayout(path string) (layout.Path, error) {
	if _, err := os.Stat(filepath.Join(path, "index.json")); err == nil {
		p, err := layout.FromPath(path)
		if err != nil {
			return "", fmt.Errorf("oci layout %s: %w", path, err)
		}
		return p, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("oci layout %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil && !fi.IsDir() {
		return "", fmt.Errorf("oci layout %s: exists and is not a directory", path)
	}
	p, err := layout.Write(path, empty.Index)
	if err != nil {
		return "", fmt.Errorf("create oci layout %s: %w", path, err)
	}
	return p, nil
}

func layoutIndexManifest(p layout.Path) (*v1.IndexManifest, error) {
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("oci layout %s: read index.json: %w", string(p), err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("oci layout %s: parse index.json: %w", string(p), err)
	}
	return im, nil
}

func layoutBlobPath(path string, h v1.Hash) string {
	return filepath.Join(path, "blobs", h.Algorithm, h.Hex)
}

// artifactBlobs lists every blob an artifact consists of (manifests,
// configs, layers) with its size.
func artifactBlobs(art Artifact) (map[v1.Hash]int64, error) {
	out := map[v1.Hash]int64{}
	if art.Index != nil {
		return out, indexBlobs(art.Index, out)
	}
	return out, imageBlobs(art.Image, out)
}

func indexBlobs(idx v1.ImageIndex, out map[v1.Hash]int64) error {
	h, err := idx.Digest()
	if err != nil {
		return err
	}
	sz, err := idx.Size()
	if err != nil {
		return err
	}
	out[h] = sz
	children, err := partial.Manifests(idx)
	if err != nil {
		return err
	}
	for _, c := range children {
		switch c := c.(type) {
		case v1.ImageIndex:
			err = indexBlobs(c, out)
		case v1.Image:
			err = imageBlobs(c, out)
		case v1.Layer:
			err = addDescribable(c, out)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

type sizedDigester interface {
	Digest() (v1.Hash, error)
	Size() (int64, error)
}

func addDescribable(d sizedDigester, out map[v1.Hash]int64) error {
	h, err := d.Digest()
	if err != nil {
		return err
	}
	sz, err := d.Size()
	if err != nil {
		return err
	}
	out[h] = sz
	return nil
}

func imageBlobs(img v1.Image, out map[v1.Hash]int64) error {
	if err := addDescribable(img, out); err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	out[m.Config.Digest] = m.Config.Size
	for _, l := range m.Layers {
		out[l.Digest] = l.Size
	}
	return nil
}

func sortedHashes(m map[v1.Hash]int64) []v1.Hash {
	out := make([]v1.Hash, 0, len(m))
	for h := range m {
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b v1.Hash) int { return strings.Compare(a.String(), b.String()) })
	return out
}
