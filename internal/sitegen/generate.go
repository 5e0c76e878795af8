package sitegen

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"unicode"
)

const (
	// MinDays is the number of day sections every generated site has:
	// day-2, day-1, day0, day1, day2 and day3.
	MinDays = 6
	// MaxTalksPerDay is the most talk pages a generated day holds; larger
	// sites get more days (day4, day5, ...).
	MaxTalksPerDay = 10

	// seed is the fixed base seed of the generator's PRNGs.
	seed uint64 = 0x6e6f746573637466 // "notesctf"
)

// Day describes one day section of a generated site.
type Day struct {
	Name   string // section directory, e.g. "day-2", "day0", "day7"
	Weight int    // front matter weight; orders the days
	Talks  int    // number of talk pages in the section
}

// Layout returns the day sections a site with the given number of talk
// pages is generated with: at least MinDays days, more when needed to keep
// at most MaxTalksPerDay talks a day, talks spread evenly (earlier days get
// the remainder). It returns nil for a negative count.
func Layout(pages int) []Day {
	if pages < 0 {
		return nil
	}
	n := max(MinDays, (pages+MaxTalksPerDay-1)/MaxTalksPerDay)
	days := make([]Day, n)
	for i := range days {
		talks := pages / n
		if i < pages%n {
			talks++
		}
		days[i] = Day{Name: fmt.Sprintf("day%d", i-2), Weight: (i + 1) * 10, Talks: talks}
	}
	return days
}

// Generate writes a synthetic notes site with the given number of talk
// pages to dir, using the fixture's configuration and theme. See
// GenerateFrom.
func Generate(dir string, pages int) error {
	return GenerateFrom(FixtureDir(), dir, pages)
}

// GenerateFrom writes a synthetic notes site with the given number of talk
// pages to dir, which must not exist or be empty.
//
// Everything in fixtureDir except content/ (the Hugo configuration, the
// theme, any site-level layouts or static files) is copied as is, and so
// are the shared images in content/_imgs. The content is generated: a home
// page, a tags page, the day sections of Layout(pages) with two images
// each, and the talk pages. Talks use the button and notice shortcodes
// (recording buttons are sometimes commented out), mermaid fences, inline
// and block math, images of their day and of content/_imgs, tags from the
// Tags pool, and relative links to their neighbours and to talks of the
// previous day.
//
// The output depends only on the fixture and pages: two runs produce
// byte-identical trees, and a talk's text does not depend on the total
// number of pages except for its links to the next talk.
func GenerateFrom(fixtureDir, dir string, pages int) error {
	if pages < 0 {
		return fmt.Errorf("sitegen: negative page count %d", pages)
	}
	if _, err := os.Stat(filepath.Join(fixtureDir, "content")); err != nil {
		return fmt.Errorf("sitegen: %s is not a notes site: %w", fixtureDir, err)
	}
	if err := prepareDir(dir); err != nil {
		return err
	}
	if err := copyTree(fixtureDir, dir, func(rel string) bool {
		return skipped(rel) || rel == "content"
	}); err != nil {
		return err
	}

	shared, err := copySharedImages(fixtureDir, dir)
	if err != nil {
		return err
	}

	g := &generator{
		dir:    filepath.Join(dir, "content"),
		days:   Layout(pages),
		shared: shared,
	}
	g.plan()
	return g.write(pages)
}

// copySharedImages copies content/_imgs of the fixture (if any) and returns
// the names of the images it holds, sorted.
func copySharedImages(fixtureDir, dir string) ([]string, error) {
	src := filepath.Join(fixtureDir, "content", "_imgs")
	entries, err := os.ReadDir(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sitegen: %w", err)
	}
	dst := filepath.Join(dir, "content", "_imgs")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, fmt.Errorf("sitegen: %w", err)
	}
	if err := copyTree(src, dst, nil); err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		switch strings.ToLower(path.Ext(e.Name())) {
		case ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp":
			if e.Type().IsRegular() {
				names = append(names, e.Name())
			}
		}
	}
	slices.Sort(names)
	return names, nil
}

type talk struct {
	day, index int
	slug       string // file name without .md, e.g. "03_scaling-gpu-nodes"
	title      string
	area       area
	tool       string
	thing      string
}

type generator struct {
	dir    string // content directory
	days   []Day
	talks  [][]talk // per day
	shared []string // images in content/_imgs
}

// rng returns the PRNG of one item; each talk and day has its own stream so
// that its content does not depend on the rest of the site.
func rng(kind, day, index int) *rand.Rand {
	return rand.New(rand.NewPCG(seed+uint64(kind), uint64(day)<<32|uint64(index)))
}

const (
	streamTitle = iota + 1
	streamBody
	streamImage
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

// plan chooses the title, slug and subject of every talk.
func (g *generator) plan() {
	g.talks = make([][]talk, len(g.days))
	for d, day := range g.days {
		for i := range day.Talks {
			r := rng(streamTitle, d, i)
			a := pick(r, areas)
			t := talk{day: d, index: i, area: a, tool: pick(r, a.tools), thing: pick(r, a.things)}
			t.title = fill(pick(r, titlePatterns), r, t, "")
			t.slug = fmt.Sprintf("%02d_%s", i+1, slugify(t.title))
			g.talks[d] = append(g.talks[d], t)
		}
	}
}

func (g *generator) write(pages int) error {
	files := map[string][]byte{
		"_index.md":      g.home(pages),
		"tags/_index.md": []byte("---\ntitle: Tags\n---\n\nEvery tag used in the notes, with the number of talks that carry it.\n"),
	}
	for d, day := range g.days {
		files[path.Join(day.Name, "_index.md")] = g.dayIndex(d)
		for k := range 2 {
			img, err := dayImage(d, k)
			if err != nil {
				return err
			}
			files[path.Join(day.Name, "_img", fmt.Sprintf("diagram-%d.png", k+1))] = img
		}
		for _, t := range g.talks[d] {
			files[path.Join(day.Name, t.slug+".md")] = g.talkPage(t)
		}
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := writeFile(filepath.Join(g.dir, filepath.FromSlash(name)), files[name]); err != nil {
			return err
		}
	}
	return nil
}

func (g *generator) home(pages int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "---\ntitle: Synthetic conference notes\ndescription: Generated notes site with %d talks over %d days.\n---\n\n", pages, len(g.days))
	if svg := g.sharedImage(".svg"); svg != "" {
		fmt.Fprintf(&b, "![Conference logo](_imgs/%s)\n\n", svg)
	}
	fmt.Fprintf(&b, "Generated notes of %d talks over %d days, for tests and benchmarks.\n", pages, len(g.days))
	if len(g.days) > 0 {
		fmt.Fprintf(&b, "Start with [the first day](%s/) or browse the [tags](tags/).\n", g.days[0].Name)
	}
	return []byte(b.String())
}

// sharedImage returns the first shared image with the extension, or "".
func (g *generator) sharedImage(ext string) string {
	for _, n := range g.shared {
		if strings.EqualFold(path.Ext(n), ext) {
			return n
		}
	}
	return ""
}

var daySubtitles = []string{
	"Contributor summit", "Co-located events", "Platform engineering day",
	"Keynotes and networking", "Datapaths and delivery", "Reliability",
	"Hallway track", "Workshops",
}

func (g *generator) dayIndex(d int) []byte {
	day := g.days[d]
	var b strings.Builder
	fmt.Fprintf(&b, "---\ntitle: %q\nsubtitle: %q\nweight: %d\n---\n\n", fmt.Sprintf("Day %d", d-2), daySubtitles[d%len(daySubtitles)], day.Weight)
	fmt.Fprintf(&b, "%d talks on this day.\n\n![Overview of day %d](_img/diagram-1.png)\n", day.Talks, d-2)
	return []byte(b.String())
}

func (g *generator) talkPage(t talk) []byte {
	r := rng(streamBody, t.day, t.index)
	w := &writer{r: r, t: t}
	day := g.days[t.day]

	// Front matter.
	tags := []string{pick(r, t.area.tags)}
	for len(tags) < 2+r.IntN(3) {
		tag := pick(r, Tags)
		if !slices.Contains(tags, tag) {
			tags = append(tags, tag)
		}
	}
	fmt.Fprintf(&w.b, "---\ntitle: %q\nweight: %d\ntags: [%s]\nspeakers: [%q]\n---\n\n",
		t.title, t.index+1, strings.Join(tags, ", "), "Speaker from "+pick(r, teams))

	// Buttons; unpublished recordings are commented out.
	rec := fmt.Sprintf(`{{%% button href="https://media.example.org/synthetic/%s/%s" style="warning" icon="video" %%}}Recording{{%% /button %%}}`, day.Name, t.slug)
	if r.IntN(4) == 0 {
		rec = "<!-- " + rec + " -->"
	}
	w.line(rec)
	if r.IntN(3) == 0 {
		w.line(fmt.Sprintf(`{{%% button href="https://slides.example.org/synthetic/%s.pdf" style="%s" icon="file" %%}}Slides{{%% /button %%}}`, t.slug, pick(r, buttonStyles)))
	}
	w.blank()

	w.paragraph(2+r.IntN(3), true)

	// Sections, each with one or two blocks; every page gets at least one
	// image, and mermaid and block math on some pages.
	sections := 3 + r.IntN(3)
	heads := slices.Clone(headings)
	r.Shuffle(len(heads), func(i, j int) { heads[i], heads[j] = heads[j], heads[i] })
	imageAt := r.IntN(sections)
	mermaidAt := -1
	if r.IntN(3) == 0 {
		mermaidAt = r.IntN(sections)
	}
	for s := range sections {
		w.line("## " + heads[s])
		w.blank()
		if s == imageAt {
			g.image(w, day)
		}
		if s == mermaidAt {
			w.line("```mermaid")
			w.line(w.fill(pick(r, mermaidDiagrams)))
			w.line("```")
			w.blank()
		}
		for range 1 + r.IntN(2) {
			switch r.IntN(7) {
			case 0, 1:
				w.paragraph(2+r.IntN(4), r.IntN(3) == 0)
			case 2:
				w.list()
			case 3:
				c := pick(r, codeBlocks)
				w.line("```" + c.lang)
				w.line(w.fill(c.code))
				w.line("```")
				w.blank()
			case 4:
				w.table()
			case 5:
				w.paragraph(1, false)
				w.line("$$")
				w.line(pick(r, blockMath))
				w.line("$$")
				w.blank()
			case 6:
				style := pick(r, noticeStyles)
				if r.IntN(2) == 0 {
					w.line(fmt.Sprintf("{{%% notice %s %%}}", style))
				} else {
					w.line(fmt.Sprintf("{{%% notice style=%q title=%q %%}}", style, heads[s]))
				}
				w.line(w.fill(pick(r, sentences)))
				w.line("{{% /notice %}}")
				w.blank()
			}
		}
	}

	// Relative links: neighbours in the day and a talk of the previous day.
	var links []string
	if t.index > 0 {
		p := g.talks[t.day][t.index-1]
		links = append(links, fmt.Sprintf("Previous: [%s](./%s).", mdText(p.title), p.slug))
	}
	if t.index+1 < len(g.talks[t.day]) {
		n := g.talks[t.day][t.index+1]
		links = append(links, fmt.Sprintf("Next: [%s](./%s).", mdText(n.title), n.slug))
	}
	if t.day > 0 && len(g.talks[t.day-1]) > 0 {
		prev := g.talks[t.day-1]
		o := prev[r.IntN(len(prev))]
		links = append(links, fmt.Sprintf("Related: [%s](../%s/%s) from the day before.", mdText(o.title), g.days[t.day-1].Name, o.slug))
	}
	links = append(links, fmt.Sprintf("All talks of the day: [%s](./).", fmt.Sprintf("day %d", t.day-2)))
	w.line(strings.Join(links, "\n"))
	return []byte(w.b.String())
}

// image writes a block image of the day or a shared image, and sometimes a
// link to the image file.
func (g *generator) image(w *writer, day Day) {
	r := w.r
	if len(g.shared) > 0 && r.IntN(3) == 0 {
		name := pick(r, g.shared)
		w.line(fmt.Sprintf("![%s](../_imgs/%s)", strings.TrimSuffix(name, path.Ext(name)), name))
		w.blank()
		return
	}
	k := 1 + r.IntN(2)
	w.line(fmt.Sprintf("![%s](_img/diagram-%d.png %q)", mdText(w.t.thing), k, "Diagram: "+w.t.thing))
	w.blank()
	if r.IntN(2) == 0 {
		w.line(fmt.Sprintf("[Full-size diagram](_img/diagram-%d.png)", k))
		w.blank()
	}
}

// dayImage returns a small PNG for a day, deterministic in (day, k).
func dayImage(day, k int) ([]byte, error) {
	r := rng(streamImage, day, k)
	w, h := 32+r.IntN(33), 24+r.IntN(17)
	fg := color.NRGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}
	bg := color.NRGBA{240, 240, 236, 255}
	stripe := 3 + r.IntN(6)
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := bg
			if (x+y*k)%(stripe*2) < stripe {
				c = fg
			}
			img.SetNRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("sitegen: encoding image: %w", err)
	}
	return buf.Bytes(), nil
}

// writer accumulates the Markdown of one talk.
type writer struct {
	b strings.Builder
	r *rand.Rand
	t talk
}

func (w *writer) line(s string) { w.b.WriteString(s); w.b.WriteByte('\n') }
func (w *writer) blank()        { w.b.WriteByte('\n') }

func (w *writer) fill(s string) string { return fill(s, w.r, w.t, w.t.slug) }

// paragraph writes n sentences, one with inline math if math is set.
func (w *writer) paragraph(n int, math bool) {
	mathAt := -1
	if math {
		mathAt = w.r.IntN(n)
	}
	parts := make([]string, 0, n)
	for i := range n {
		s := upperFirst(w.fill(pick(w.r, sentences)))
		if i == mathAt {
			s = strings.TrimSuffix(s, ".") + ", roughly " + pick(w.r, inlineMath) + " in the speaker's notation."
		}
		parts = append(parts, s)
	}
	w.line(wrap(strings.Join(parts, " "), 76))
	w.blank()
}

func (w *writer) list() {
	n := 3 + w.r.IntN(3)
	items := slices.Clone(listItems)
	w.r.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	ordered := w.r.IntN(2) == 0
	for i, it := range items[:n] {
		marker := "-"
		if ordered {
			marker = fmt.Sprintf("%d.", i+1)
		}
		w.line(marker + " " + w.fill(it))
	}
	w.blank()
}

func (w *writer) table() {
	r := w.r
	w.line("| Setup | Requests/s | p50 (ms) | p99 (ms) |")
	w.line("|-------|-----------:|---------:|---------:|")
	for _, setup := range []string{"Before", "After " + w.t.tool, "After tuning"} {
		p50 := 1 + r.IntN(40)
		fmt.Fprintf(&w.b, "| %s | %d | %d | %d |\n", mdText(setup), 500+r.IntN(20000), p50, p50*(2+r.IntN(8)))
	}
	w.blank()
}

// fill replaces the placeholders of s.
func fill(s string, r *rand.Rand, t talk, slug string) string {
	if !strings.Contains(s, "{") {
		return s
	}
	other := pick(r, t.area.tools)
	for other == t.tool && len(t.area.tools) > 1 {
		other = pick(r, t.area.tools)
	}
	thing := t.thing
	return strings.NewReplacer(
		"{tool}", t.tool,
		"{other}", other,
		"{thing}", thing,
		"{Thing}", upperFirst(thing),
		"{team}", pick(r, teams),
		"{n}", fmt.Sprint(2+r.IntN(120)),
		"{ms}", fmt.Sprint(20+r.IntN(900)),
		"{octet}", fmt.Sprint(1+r.IntN(254)),
		"{pct}", fmt.Sprint(5+r.IntN(90)),
		"{slug}", kubeName(slug),
	).Replace(s)
}

func upperFirst(s string) string {
	for i, c := range s {
		return string(unicode.ToUpper(c)) + s[i+len(string(c)):]
	}
	return s
}

// slugify turns a title into a lower-case file name fragment of at most 40
// bytes, cut at a word boundary.
func slugify(title string) string {
	var b strings.Builder
	dash := false
	for _, c := range strings.ToLower(title) {
		if c < 128 && (unicode.IsLetter(c) || unicode.IsDigit(c)) {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(c)
		} else {
			dash = true
		}
	}
	s := b.String()
	if len(s) > 40 {
		s = s[:40]
		if i := strings.LastIndexByte(s, '-'); i > 0 {
			s = s[:i]
		}
	}
	if s == "" {
		s = "talk"
	}
	return s
}

// kubeName turns a talk slug into a valid Kubernetes object name.
func kubeName(slug string) string {
	s := strings.ToLower(strings.ReplaceAll(slug, "_", "-"))
	s = strings.TrimLeft(s, "0123456789-")
	if len(s) > 40 {
		s = strings.TrimRight(s[:40], "-")
	}
	if s == "" {
		return "notes"
	}
	return s
}

// mdText escapes the characters that would change the meaning of plain
// text inside Markdown link text or a table cell.
func mdText(s string) string {
	return strings.NewReplacer(`\`, `\\`, "[", `\[`, "]", `\]`, "|", `\|`, "*", `\*`, "_", `\_`, "$", `\$`, "<", "&lt;").Replace(s)
}

// wrap breaks text into lines of at most width bytes at spaces. It never
// breaks inside $...$ math, and never starts a line with a word that would
// begin a Markdown block (list marker, heading, quote, table row).
func wrap(s string, width int) string {
	var b strings.Builder
	n := 0
	inMath := false
	for i, word := range strings.Fields(s) {
		if i > 0 {
			if n+1+len(word) > width && !inMath && !blockStart(word) {
				b.WriteByte('\n')
				n = 0
			} else {
				b.WriteByte(' ')
				n++
			}
		}
		b.WriteString(word)
		n += len(word)
		if strings.Count(word, "$")%2 == 1 {
			inMath = !inMath
		}
	}
	return b.String()
}

// blockStart reports whether a line starting with word could be parsed as
// the start of a Markdown block other than a paragraph continuation.
func blockStart(word string) bool {
	switch word[0] {
	case '-', '+', '*', '#', '>', '|', '=', '`', '~', '<', '{':
		return true
	}
	i := 0
	for i < len(word) && word[i] >= '0' && word[i] <= '9' {
		i++
	}
	return i > 0 && i < len(word) && (word[i] == '.' || word[i] == ')')
}
