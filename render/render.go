// Package render renders one commit of a Hugo site with Hugo embedded as a
// library at the version pinned in go.mod. The output stays in memory; the
// package never touches registries or git remotes.
package render

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/bep/logg"
	"github.com/gohugoio/hugo/common/herrors"
	"github.com/gohugoio/hugo/common/loggers"
	"github.com/gohugoio/hugo/config"
	"github.com/gohugoio/hugo/config/allconfig"
	"github.com/gohugoio/hugo/deps"
	"github.com/gohugoio/hugo/hugofs"
	"github.com/gohugoio/hugo/hugolib"
	"github.com/spf13/afero"
)

// Hugo works on absolute paths. The site and its output live in one memory
// file system under these two roots; both names are stripped from messages.
const (
	siteRoot    = "/__notesctl_site"
	publishRoot = "/__notesctl_public"
	cacheRoot   = "/__notesctl_cache"
)

// Options tune a render.
type Options struct {
	// BaseURL overrides the site's baseURL when set.
	BaseURL string
	// Environment is Hugo's environment; default "production".
	Environment string
	// RequireHugo is an extra version constraint from notesctl's own config
	// (see CheckConstraint for the syntax). Empty means none.
	RequireHugo string
	// AllowWarnings lets a build pass with Hugo warnings; errors always fail.
	AllowWarnings bool
	// Environ is the environment Hugo sees (HUGO_* overrides); default none,
	// so that a render does not depend on the machine it runs on.
	Environ []string
	// PublishDir, if set, is an empty directory on disk that Hugo publishes
	// the site into, instead of memory. The caller owns it: Site.Files
	// reads from it, so it must outlive their use, and the caller removes
	// it. A large site's published tree is most of the memory a render
	// holds beyond Hugo's own (issue #15: 1.33x the hugo CLI's peak at
	// 10,000 pages, all in memory); on disk the page cache holds it
	// instead, as it does for the hugo CLI.
	PublishDir string
	// Progress, if set, is called with the number of files Hugo has
	// published so far, as it writes each one (from Hugo's goroutines:
	// it must be safe for concurrent use, and quick).
	Progress func(written int)
}

// Site is a rendered site, held in memory.
type Site struct {
	// Files holds the published files, rooted at the publish root.
	Files fs.FS
	// FileCount and Bytes describe the published tree.
	FileCount int
	Bytes     int64
	// Pages is the number of pages Hugo rendered (all kinds).
	Pages int
	// Title is the site's title from its config.
	Title string
	// Warnings are Hugo warnings (empty unless AllowWarnings).
	Warnings []string
	// Modules are the themes and Hugo modules it was rendered with.
	Modules []Module
}

// Error is a render failure, with every problem Hugo reported.
type Error struct {
	Problems []Problem
}

// Problem is one error or warning at a place in the site.
type Problem struct {
	File    string // relative to the site root; empty if unknown
	Line    int
	Column  int
	Message string
	Warning bool
}

func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
			if p.Column > 0 {
				fmt.Fprintf(&b, ":%d", p.Column)
			}
		}
		b.WriteString(": ")
	}
	if p.Warning {
		b.WriteString("warning: ")
	}
	b.WriteString(p.Message)
	return b.String()
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	if len(lines) == 1 {
		return "render failed: " + lines[0]
	}
	return fmt.Sprintf("render failed with %d problems:\n  %s", len(lines), strings.Join(lines, "\n  "))
}

// hugoMu serializes renders: Hugo keeps some process-wide state (its
// template and markup caches) that is not meant for concurrent sites.
var hugoMu sync.Mutex

// Render renders the site held by src into memory.
func Render(ctx context.Context, src *Source, opts Options) (*Site, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := CheckConstraint(opts.RequireHugo, "notesctl config hugoVersion"); err != nil {
		return nil, err
	}
	// Lifting the highlighters' timeouts (highlight.go) compiles Chroma's
	// lexers; it overlaps with reading the source and loading the config.
	highlightReady := make(chan error, 1)
	go func() { highlightReady <- removeHighlightTimeouts() }()
	if err := src.Load(); err != nil {
		return nil, err
	}
	hugoMu.Lock()
	defer hugoMu.Unlock()

	// Hugo reads the site where ReadSource put it and publishes beside it,
	// in the same memory file system; a previous render's output and
	// caches are cleared first.
	mem := src.mem
	if mem == nil {
		mem = afero.NewMemMapFs()
		if err := copyInto(mem, src.Files, siteRoot); err != nil {
			return nil, err
		}
	}
	for _, dir := range []string{publishRoot, cacheRoot} {
		if err := mem.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("clearing %s: %w", dir, err)
		}
	}

	collector := &logCollector{}
	logger := loggers.New(loggers.Options{
		Level:         logg.LevelWarn,
		StdOut:        io.Discard,
		StdErr:        io.Discard,
		DistinctLevel: logg.LevelWarn,
		HandlerPost:   collector.handle,
	})

	env := opts.Environment
	if env == "" {
		env = "production"
	}
	flags := config.New()
	flags.Set("workingDir", siteRoot)
	flags.Set("publishDir", publishRoot)
	flags.Set("cacheDir", cacheRoot)
	flags.Set("environment", env)
	// The lock file guards a real project dir against concurrent hugo
	// processes; the site lives in memory here, so there is nothing to guard.
	flags.Set("noBuildLock", true)
	if opts.BaseURL != "" {
		flags.Set("baseURL", opts.BaseURL)
	}

	configs, err := allconfig.LoadConfig(allconfig.ConfigSourceDescriptor{
		Fs:          mem,
		Logger:      logger,
		Flags:       flags,
		Environment: env,
		Environ:     append([]string{}, opts.Environ...),
	})
	if err != nil {
		return nil, toError(err, collector)
	}
	if err := checkModuleVersions(configs); err != nil {
		return nil, err
	}

	// dest is where Hugo publishes (under publishRoot): the source's
	// memory file system, or the caller's directory.
	var dest afero.Fs = mem
	if opts.PublishDir != "" {
		if err := checkEmptyDir(opts.PublishDir); err != nil {
			return nil, err
		}
		dest = afero.NewBasePathFs(afero.NewOsFs(), opts.PublishDir)
	}
	published := dest
	if opts.Progress != nil {
		dest = newPublishCounter(dest, opts.Progress)
	}
	hfs := hugofs.NewFromSourceAndDestination(mem, dest, flags)
	sites, err := hugolib.NewHugoSites(deps.DepsCfg{
		Configs:    configs,
		Fs:         hfs,
		TestLogger: logger,
		LogLevel:   logg.LevelWarn,
		StdOut:     io.Discard,
		StdErr:     io.Discard,
	})
	if err != nil {
		return nil, toError(err, collector)
	}
	defer sites.Close()

	// The hugo CLI copies the static directories (the site's and its
	// themes' static/, static mounts) into the publish dir itself, beside
	// HugoSites.Build; the library does not. Copy them first, so that a
	// generated file of the same name wins, as in `hugo --cleanDestinationDir`.
	if err := copyStatic(sites, hfs.PublishDirStatic); err != nil {
		return nil, toError(err, collector)
	}

	if err := <-highlightReady; err != nil {
		return nil, fmt.Errorf("preparing syntax highlighting: %w", err)
	}
	// Hugo's Build has no context; a cancelled render is noticed right after.
	if err := sites.Build(hugolib.BuildCfg{}); err != nil {
		return nil, toError(err, collector)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if problems := collector.problems(opts.AllowWarnings); len(problems) > 0 {
		return nil, &Error{Problems: problems}
	}

	out := afero.NewBasePathFs(published, publishRoot)
	site := &Site{Files: afero.NewIOFS(out), Pages: len(sites.Pages()), Modules: siteModules(configs)}
	if len(sites.Sites) > 0 {
		site.Title = sites.Sites[0].Title()
	}
	err = afero.Walk(out, "/", func(p string, info fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			site.FileCount++
			site.Bytes += info.Size()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading rendered site: %w", err)
	}
	if site.FileCount == 0 {
		return nil, &Error{Problems: []Problem{{Message: "Hugo rendered no files: is this a Hugo site (hugo.toml/hugo.yaml/config.toml) with content and layouts?"}}}
	}
	site.Warnings = collector.warnings()
	return site, nil
}

// copyStatic copies every static file system of the sites (one per
// language in a multihost site, else one) under its publish folder.
func copyStatic(sites *hugolib.HugoSites, dst afero.Fs) error {
	for _, sfs := range sites.BaseFs.SourceFilesystems.Static {
		root := "/" + sfs.PublishFolder
		err := afero.Walk(sfs.Fs, "/", func(p string, info fs.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return err
			}
			data, err := afero.ReadFile(sfs.Fs, p)
			if err != nil {
				return err
			}
			target := path.Join(root, filepath.ToSlash(p))
			if err := dst.MkdirAll(path.Dir(target), 0o755); err != nil {
				return err
			}
			return afero.WriteFile(dst, target, data, 0o644)
		})
		// A site without static directories has an empty, missing root
		// here; the hugo CLI ignores that too.
		if err != nil && !herrors.IsNotExist(err) {
			return fmt.Errorf("copying static files: %w", err)
		}
	}
	return nil
}

// copyInto copies a whole afero tree under dst in another afero fs (for a
// Source not made by ReadSource).
func copyInto(dstFs afero.Fs, srcFs afero.Fs, dst string) error {
	return afero.Walk(srcFs, "/", func(p string, info fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		target := dst + p
		if info.IsDir() {
			return dstFs.MkdirAll(target, 0o755)
		}
		data, err := afero.ReadFile(srcFs, p)
		if err != nil {
			return err
		}
		return afero.WriteFile(dstFs, target, data, 0o644)
	})
}

// logCollector keeps what Hugo logs at warning level and above: some render
// problems (a missing layout, an erroring partial with errorf) are only
// logged, and a pipeline must not ship a site Hugo complained about.
type logCollector struct {
	mu      sync.Mutex
	entries []Problem
}

func (c *logCollector) handle(e *logg.Entry) error {
	if e.Level < logg.LevelWarn {
		return nil
	}
	if loggedCount.MatchString(strings.TrimSpace(e.Message)) {
		return nil
	}
	p := parseProblem(e.Message)
	p.Warning = e.Level == logg.LevelWarn
	c.mu.Lock()
	c.entries = append(c.entries, p)
	c.mu.Unlock()
	return nil
}

func (c *logCollector) problems(allowWarnings bool) []Problem {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Problem
	for _, p := range c.entries {
		if p.Warning && allowWarnings {
			continue
		}
		out = append(out, p)
	}
	sortProblems(out)
	return out
}

func (c *logCollector) warnings() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, p := range c.entries {
		if p.Warning {
			out = append(out, p.String())
		}
	}
	sort.Strings(out)
	return out
}

func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Warning != ps[j].Warning {
			return !ps[i].Warning
		}
		if ps[i].File != ps[j].File {
			return ps[i].File < ps[j].File
		}
		return ps[i].Line < ps[j].Line
	})
}

// toError turns what Hugo returned into an *Error with positions relative to
// the site root.
func toError(err error, c *logCollector) error {
	var problems []Problem
	seen := map[string]bool{}
	add := func(p Problem) {
		k := p.String()
		if !seen[k] {
			seen[k] = true
			problems = append(problems, p)
		}
	}
	if fes := herrors.UnwrapFileErrors(err); len(fes) > 0 {
		for _, fe := range fes {
			pos := fe.Position()
			p := Problem{
				File:    relName(pos.Filename),
				Line:    pos.LineNumber,
				Column:  pos.ColumnNumber,
				Message: cleanMessage(causeText(fe)),
			}
			// Hugo places front matter errors at 1:1; the YAML parser knows
			// the line within the front matter, which starts after "---".
			if m := yamlLine.FindStringSubmatch(p.Message); m != nil && p.Line <= 1 {
				fmt.Sscanf(m[1], "%d", &p.Line)
				p.Line++
				p.Column = 0
			}
			add(p)
		}
	} else if !loggedCount.MatchString(strings.TrimSpace(err.Error())) {
		add(parseProblem(err.Error()))
	}
	for _, p := range c.problems(true) {
		add(p)
	}
	sortProblems(problems)
	return &Error{Problems: problems}
}

// causeText is the message of a file error without its position prefix.
func causeText(fe herrors.FileError) string {
	if u := errors.Unwrap(fe); u != nil {
		return u.Error()
	}
	msg := fe.Error()
	if i := strings.Index(msg, ": "); i >= 0 && strings.Contains(msg[:i], ":") {
		return msg[i+2:]
	}
	return msg
}

var (
	// loggedCount is Hugo's summary error when it only logged problems;
	// the logged problems themselves are reported instead.
	loggedCount = regexp.MustCompile(`^logged \d+ error\(s\)$`)
	yamlLine    = regexp.MustCompile(`yaml: line (\d+):`)
)

// posPattern finds the first "file:line:col" (optionally quoted) in a
// Hugo message.
var posPattern = regexp.MustCompile(`"?(` + regexp.QuoteMeta(siteRoot) + `/[^":\s]+):(\d+):(\d+)"?:?\s*`)

func parseProblem(msg string) Problem {
	p := Problem{}
	if m := posPattern.FindStringSubmatchIndex(msg); m != nil {
		p.File = relName(msg[m[2]:m[3]])
		fmt.Sscanf(msg[m[4]:m[5]], "%d", &p.Line)
		fmt.Sscanf(msg[m[6]:m[7]], "%d", &p.Column)
		msg = msg[:m[0]] + msg[m[1]:]
	}
	p.Message = cleanMessage(msg)
	return p
}

func relName(name string) string {
	name = strings.TrimPrefix(name, siteRoot)
	return strings.TrimPrefix(name, "/")
}

// cleanMessage strips the in-memory roots so messages name site paths.
func cleanMessage(msg string) string {
	msg = strings.ReplaceAll(msg, siteRoot+"/", "")
	msg = strings.ReplaceAll(msg, siteRoot, ".")
	msg = strings.ReplaceAll(msg, publishRoot, "<output>")
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(msg), "error:"))
}

// checkEmptyDir refuses a publish directory that is missing or holds
// files: a stale file there would end up in the image.
func checkEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("publish directory: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("publish directory %s is not empty", dir)
	}
	return nil
}
