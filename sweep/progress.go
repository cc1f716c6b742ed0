package sweep

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// progress shows points done / total, elapsed, ETA, the current run and failures so far:
// on a terminal one line redrawn twice a second (with the current run's own progress);
// otherwise one line as each run starts and ends.
type progress struct {
	o     Options
	d     *Dir
	res   *Result
	todo  []Run
	start time.Time

	mu       sync.Mutex
	idx      int // index in todo of the current run
	cur      *Run
	curStart time.Time
	phase    *phaseWriter
	overhead []float64 // seconds beyond the experiment's duration, per finished run
	quit     chan struct{}
	wg       sync.WaitGroup
	stopped  bool
}

func newProgress(o Options, d *Dir, res *Result, todo []Run) *progress {
	p := &progress{o: o, d: d, res: res, todo: todo, start: o.Now(), quit: make(chan struct{})}
	for _, st := range d.state {
		if st.End != nil && st.End.Seconds > 0 {
			p.overhead = append(p.overhead, st.End.Seconds-st.End.Duration)
		}
	}
	if o.Progress != nil && o.TTY {
		p.phase = &phaseWriter{}
		p.wg.Add(1)
		go p.loop()
	}
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "sweep %s: %d runs selected, %d already done, %d to run (%s)\n",
			d.Sweep.Name, res.Selected, res.Done, len(todo), d.Path)
	}
	return p
}

// redrawInterval is how often the terminal line is redrawn.
var redrawInterval = 500 * time.Millisecond

func (p *progress) loop() {
	defer p.wg.Done()
	t := time.NewTicker(redrawInterval)
	defer t.Stop()
	for {
		select {
		case <-p.quit:
			return
		case <-t.C:
			p.mu.Lock()
			line := p.line()
			p.mu.Unlock()
			fmt.Fprint(p.o.Progress, "\r\033[K"+truncate(line, termWidth(p.o.Progress)))
		}
	}
}

// runWriter receives the current experiment's progress (nil when not on a terminal:
// its lines would drown the sweep's).
func (p *progress) runWriter() io.Writer {
	if p.phase == nil {
		return nil
	}
	return p.phase
}

func (p *progress) begin(i int, r Run) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idx, p.cur, p.curStart = i, &r, p.o.Now()
	if p.phase != nil {
		p.phase.reset()
	}
	if p.o.Progress != nil && !p.o.TTY {
		fmt.Fprintf(p.o.Progress, "%s %s %s (seed %d)\n", p.counts(), r.Name(), r.Point.Label(), r.Seed)
	}
}

// end counts the run in the result (under the lock the redraw reads it with) and shows it.
func (p *progress) end(r Run, status string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.res.Ran++
	switch status {
	case StatusOK:
		p.res.OK++
	case StatusInterrupted:
		p.res.Interrupted = true
	default:
		p.res.Failed++
	}
	secs := p.o.Now().Sub(p.curStart).Seconds()
	p.overhead = append(p.overhead, secs-p.d.Sweep.Config(r).Duration)
	p.cur = nil
	if p.o.Progress == nil {
		return
	}
	msg := fmt.Sprintf("%s %s %s: %s in %s", p.counts(), r.Name(), r.Point.Label(), status, fmtDur(secs))
	if err != nil {
		msg += ": " + firstLine(err.Error())
	}
	msg += fmt.Sprintf(" | elapsed %s, ETA %s, %d failed", fmtDur(p.o.Now().Sub(p.start).Seconds()), p.eta(), p.res.Failed)
	if p.o.TTY {
		fmt.Fprint(p.o.Progress, "\r\033[K")
	}
	fmt.Fprintln(p.o.Progress, msg)
}

// counts is "[done/total]" over the selected runs.
func (p *progress) counts() string {
	return fmt.Sprintf("[%d/%d]", p.res.Done+p.res.Ran, p.res.Selected)
}

// line is the terminal line while a run is under way.
func (p *progress) line() string {
	s := fmt.Sprintf("%s %s elapsed %s ETA %s failed %d", p.d.Sweep.Name, p.counts(),
		fmtDur(p.o.Now().Sub(p.start).Seconds()), p.eta(), p.res.Failed)
	if p.cur != nil {
		s += fmt.Sprintf(" | %s %s %s", p.cur.Name(), p.cur.Point.Label(), fmtDur(p.o.Now().Sub(p.curStart).Seconds()))
		if ph := p.phase.last(); ph != "" {
			s += " | " + ph
		}
	}
	return s
}

// eta estimates the time left: each remaining run's duration plus the mean overhead of the
// runs finished so far (? before the first).
func (p *progress) eta() string {
	if len(p.overhead) == 0 {
		return "?"
	}
	var oh float64
	for _, x := range p.overhead {
		oh += x
	}
	oh /= float64(len(p.overhead))
	left := 0.0
	for _, r := range p.todo[min(p.idx+1, len(p.todo)):] {
		left += p.d.Sweep.Config(r).Duration + oh
	}
	if p.cur != nil {
		est := p.d.Sweep.Config(*p.cur).Duration + oh
		left += max(0, est-p.o.Now().Sub(p.curStart).Seconds())
	}
	return fmtDur(left)
}

func (p *progress) stop() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	p.mu.Unlock()
	close(p.quit)
	p.wg.Wait()
	if p.o.Progress == nil {
		return
	}
	if p.o.TTY {
		fmt.Fprint(p.o.Progress, "\r\033[K")
	}
}

// fmtDur writes seconds as 42s, 3m05s or 2h03m.
func fmtDur(s float64) string {
	d := time.Duration(s * float64(time.Second)).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

func termWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if wd, _, err := term.GetSize(int(f.Fd())); err == nil && wd > 20 {
			return wd - 1
		}
	}
	return 119
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// phaseWriter keeps the last line an experiment wrote ("building topology ...", or its
// live ops/s line), without terminal escapes.
type phaseWriter struct {
	mu   sync.Mutex
	buf  string
	line string
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)

func (w *phaseWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf += ansi.ReplaceAllString(string(b), "")
	for {
		i := strings.IndexAny(w.buf, "\r\n")
		if i < 0 {
			break
		}
		if l := squeeze(w.buf[:i]); l != "" {
			w.line = l
		}
		w.buf = w.buf[i+1:]
	}
	if l := squeeze(w.buf); l != "" {
		w.line = l // a line redrawn in place has no newline until the next redraw
	}
	return len(b), nil
}

// squeeze trims s and collapses its runs of spaces (column padding wastes the one line).
func squeeze(s string) string { return strings.Join(strings.Fields(s), " ") }

func (w *phaseWriter) last() string {
	if w == nil {
		return ""
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.line
}

func (w *phaseWriter) reset() {
	w.mu.Lock()
	w.buf, w.line = "", ""
	w.mu.Unlock()
}
