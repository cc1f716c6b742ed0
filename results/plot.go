package results

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/dtlab/dt/records"
)

// plotFile is one rendered plot.
type plotFile struct {
	name    string
	caption string
	png     []byte
	svg     []byte
}

const (
	plotW   = 12 * vg.Inch
	plotH   = 4.6 * vg.Inch
	plotDPI = 110
)

var (
	colFault      = color.NRGBA{R: 235, G: 120, B: 100, A: 34}
	colFaultOn    = color.NRGBA{R: 235, G: 120, B: 100, A: 34} // drawn over colFault
	colFaultLabel = color.NRGBA{R: 160, G: 30, B: 20, A: 255}
	colLeader     = color.NRGBA{R: 90, G: 40, B: 140, A: 220}
	colOK         = color.NRGBA{R: 31, G: 100, B: 180, A: 255}
	colOKFaint    = color.NRGBA{R: 120, G: 160, B: 210, A: 255}
	colFail       = color.NRGBA{R: 210, G: 40, B: 30, A: 255}
	colOverload   = color.NRGBA{R: 230, G: 140, B: 0, A: 255}
	colP50        = color.NRGBA{R: 20, G: 130, B: 60, A: 255}
	colP99        = color.NRGBA{R: 140, G: 20, B: 120, A: 255}
	colGrid       = color.Gray{Y: 225}
	windowColors  = map[string]color.Color{
		"before":  color.NRGBA{R: 31, G: 100, B: 180, A: 255},
		"during":  color.NRGBA{R: 210, G: 40, B: 30, A: 255},
		"after":   color.NRGBA{R: 20, G: 140, B: 60, A: 255},
		"overall": color.NRGBA{R: 90, G: 90, B: 90, A: 255},
	}
)

// newPlot is a plot with the report's fonts and a light grid.
func newPlot(title, xLabel, yLabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Variant = "Sans"
	p.Title.TextStyle.Font.Size = 15
	p.Title.Padding = 8
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	for _, ax := range []*plot.Axis{&p.X, &p.Y} {
		ax.Label.TextStyle.Font.Variant = "Sans"
		ax.Label.TextStyle.Font.Size = 12.5
		ax.Tick.Label.Font.Variant = "Sans"
		ax.Tick.Label.Font.Size = 11
	}
	p.Legend.TextStyle.Font.Variant = "Sans"
	p.Legend.TextStyle.Font.Size = 11
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = 6
	p.Legend.YOffs = -4
	g := plotter.NewGrid()
	g.Vertical.Color, g.Horizontal.Color = colGrid, colGrid
	p.Add(g)
	return p
}

// RenderPlot draws p as PNG (at dt's plot DPI) and SVG. It recovers from gonum's panics
// on degenerate input: one bad plot must not lose a report.
func RenderPlot(p *plot.Plot, w, h vg.Length) (pngData, svgData []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("draw %q: %v", p.Title.Text, r)
		}
	}()
	ic := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(plotDPI))
	p.Draw(draw.New(ic))
	var pb bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: ic}).WriteTo(&pb); err != nil {
		return nil, nil, fmt.Errorf("encode png: %w", err)
	}
	sc := vgsvg.New(w, h)
	p.Draw(draw.New(sc))
	var sb bytes.Buffer
	if _, err := sc.WriteTo(&sb); err != nil {
		return nil, nil, fmt.Errorf("encode svg: %w", err)
	}
	return pb.Bytes(), sb.Bytes(), nil
}

// drawPlots renders the throughput, latency and latency CDF plots.
func (a *analysis) drawPlots(sum *Summary, series map[time.Duration]*Series, widths []time.Duration) ([]plotFile, error) {
	var out []plotFile
	var errs []string
	for _, mk := range []func(*Summary, map[time.Duration]*Series, []time.Duration) (plotFile, *plot.Plot){
		a.throughputPlot, a.latencyPlot, a.cdfPlot,
	} {
		pf, p := mk(sum, series, widths)
		png, svg, err := RenderPlot(p, plotW, plotH)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		pf.png, pf.svg = png, svg
		out = append(out, pf)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("plots: %s", strings.Join(errs, "; "))
	}
	return out, nil
}

// timeRange is the x range of the time plots: the workload period.
func (a *analysis) timeRange() (float64, float64) {
	lo, hi := a.period.Start, a.period.End
	if !(hi > lo) {
		hi = lo + 1
	}
	return lo, hi
}

func sortedWidths(widths []time.Duration) []time.Duration {
	w := slices.Clone(widths)
	slices.Sort(w)
	return w
}

// mainSeries is the 1 s series when there is one, else the widest.
func mainSeries(series map[time.Duration]*Series, widths []time.Duration) *Series {
	if s, ok := series[time.Second]; ok {
		return s
	}
	w := sortedWidths(widths)
	return series[w[len(w)-1]]
}

// clippedStepLine draws a per-bucket value as steps restricted to [lo, hi], leaving gaps
// where f returns NaN. With rate set, f is a per-second
// rate and a bucket cut by lo or hi is rescaled to the part inside, so that a run ending
// mid-bucket does not draw a dip that did not happen; less than a fifth inside is dropped.
func clippedStepLine(s *Series, f func(Bucket) float64, col color.Color, width vg.Length, lo, hi float64, rate bool) []plot.Plotter {
	var out []plot.Plotter
	var pts plotter.XYs
	flush := func() {
		if len(pts) > 0 {
			l, err := plotter.NewLine(pts)
			if err == nil {
				l.Color, l.Width = col, width
				out = append(out, l)
			}
			pts = nil
		}
	}
	w := s.Width.Seconds()
	for _, b := range s.Buckets {
		x0, x1 := max(b.Start, lo), min(b.Start+w, hi)
		if x1 <= x0 {
			continue
		}
		v := f(b)
		if rate && x1-x0 < w {
			if x1-x0 < w/5 {
				continue
			}
			v *= w / (x1 - x0)
		}
		if math.IsNaN(v) {
			flush()
			continue
		}
		pts = append(pts, plotter.XY{X: x0, Y: v}, plotter.XY{X: x1, Y: v})
	}
	flush()
	return out
}

func legendLine(col color.Color, width vg.Length) plot.Thumbnailer {
	l, _ := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}})
	l.Color, l.Width = col, width
	return l
}

func (a *analysis) throughputPlot(sum *Summary, series map[time.Duration]*Series, widths []time.Duration) (plotFile, *plot.Plot) {
	p := newPlot(sum.Title+": throughput", "time since run start (s)", "operations per second")
	lo, hi := a.timeRange()
	p.X.Min, p.X.Max = lo, hi
	ws := sortedWidths(widths)
	main := mainSeries(series, widths)
	ymax := 1.0
	p.Add(faultShade{a: a})
	for _, w := range ws {
		s := series[w]
		if s == main || float64(len(s.Buckets)) > 2400 {
			continue // finer than the pixels: the CSV has it, the plot would only be slower
		}
		for _, l := range clippedStepLine(s, s.Throughput, colOKFaint, 1, lo, hi, true) {
			p.Add(l)
		}
		p.Legend.Add("successful ops/s ("+w.String()+" buckets)", legendLine(colOKFaint, 2))
		for _, b := range s.Buckets {
			ymax = max(ymax, s.Throughput(b))
		}
	}
	if main != nil {
		for _, l := range clippedStepLine(main, main.Throughput, colOK, 2.2, lo, hi, true) {
			p.Add(l)
		}
		p.Legend.Add("successful ops/s ("+main.Width.String()+" buckets)", legendLine(colOK, 2.2))
		fails, over := false, false
		for _, b := range main.Buckets {
			ymax = max(ymax, main.Throughput(b))
			fails = fails || b.Failed > 0
			over = over || b.Overload > 0
		}
		if fails {
			for _, l := range clippedStepLine(main, func(b Bucket) float64 { return float64(b.Failed) / main.Width.Seconds() }, colFail, 1.6, lo, hi, true) {
				p.Add(l)
			}
			p.Legend.Add("failed ops/s ("+main.Width.String()+")", legendLine(colFail, 1.6))
		}
		if over {
			for _, l := range clippedStepLine(main, func(b Bucket) float64 { return float64(b.Overload) / main.Width.Seconds() }, colOverload, 1.6, lo, hi, true) {
				p.Add(l)
			}
			p.Legend.Add("not sent, overload ("+main.Width.String()+")", legendLine(colOverload, 1.6))
		}
	}
	p.Add(leaderLines{a: a}, faultShade{a: a, labels: true})
	p.Y.Min, p.Y.Max = 0, ymax*1.45 // headroom for the legend and the labels
	cap := "Successful operations per second by completion time"
	if len(a.faults) > 0 {
		cap += "; shaded: fault windows (darker: fault active)"
	}
	if len(a.leaderChanges()) > 0 {
		cap += "; dashed: new leader"
	}
	if len(a.leaderLosses()) > 0 {
		cap += "; grey dotted: no leader known"
	}
	return plotFile{name: records.PlotThroughput, caption: cap + "."}, p
}

func (a *analysis) latencyPlot(sum *Summary, series map[time.Duration]*Series, widths []time.Duration) (plotFile, *plot.Plot) {
	p := newPlot(sum.Title+": latency of every operation", "scheduled start since run start (s)", "latency (ms, log scale)")
	lo, hi := a.timeRange()
	p.X.Min, p.X.Max = lo, hi
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = LogTicks{}

	const floor = 0.01 // ms; the log scale needs positive values
	ymin, ymax := math.Inf(1), math.Inf(-1)
	for _, op := range a.byStart {
		if op.state == stOverload || op.start < lo || op.start > hi {
			continue
		}
		l := max(op.lat, floor)
		ymin, ymax = min(ymin, l), max(ymax, l)
	}
	if math.IsInf(ymin, 0) {
		ymin, ymax = 0.1, 1000
	}
	if ymax/ymin < 10 {
		ymin, ymax = ymin/3, ymax*3
	}
	// Headroom above for the legend and labels: a third of the decades shown.
	decades := math.Log10(ymax / ymin)
	p.Y.Min, p.Y.Max = ymin/1.5, ymax*math.Pow(10, decades*0.5)

	p.Add(faultShade{a: a})
	// One point per pixel and kind: what overlaps on screen is drawn once, so a million
	// operations stay a few thousand glyphs (and the SVG stays small).
	okPts, failPts := a.scatterPoints(lo, hi, math.Log10(p.Y.Min), math.Log10(p.Y.Max), floor)
	if len(okPts) > 0 {
		sc, err := plotter.NewScatter(okPts)
		if err == nil {
			sc.GlyphStyle = draw.GlyphStyle{Color: color.NRGBA{R: 31, G: 100, B: 180, A: 110}, Radius: 1.6, Shape: draw.CircleGlyph{}}
			p.Add(sc)
			p.Legend.Add("successful operation", sc)
		}
	}
	if len(failPts) > 0 {
		sc, err := plotter.NewScatter(failPts)
		if err == nil {
			sc.GlyphStyle = draw.GlyphStyle{Color: colFail, Radius: 2.6, Shape: draw.CrossGlyph{}}
			p.Add(sc)
			p.Legend.Add("failed operation (time to the error)", sc)
		}
	}
	if main := mainSeries(series, widths); main != nil {
		for _, l := range clippedStepLine(main, func(b Bucket) float64 { return positive(b.P50, floor) }, colP50, 2, lo, hi, false) {
			p.Add(l)
		}
		for _, l := range clippedStepLine(main, func(b Bucket) float64 { return positive(b.P99, floor) }, colP99, 2, lo, hi, false) {
			p.Add(l)
		}
		p.Legend.Add("p50 per "+main.Width.String(), legendLine(colP50, 2))
		p.Legend.Add("p99 per "+main.Width.String(), legendLine(colP99, 2))
	}
	p.Add(leaderLines{a: a}, faultShade{a: a, labels: true})
	return plotFile{name: records.PlotLatency, caption: "Latency of every operation (from its scheduled start to its reply) against its scheduled start, with the p50 and p99 of the successful ones per bucket; fault windows and leader changes marked as above."}, p
}

func positive(v, floor float64) float64 {
	if math.IsNaN(v) {
		return v
	}
	return max(v, floor)
}

// scatterPoints returns the latency points, one per cell of a grid and kind. A cell is
// about 1.5 pixels of the PNG's data area, smaller than a glyph, so dropping the points
// that share one changes nothing visible.
func (a *analysis) scatterPoints(x0, x1, ly0, ly1, floor float64) (ok, failed plotter.XYs) {
	const gw, gh = 800, 260
	seen := make(map[int32]struct{}, 1<<14)
	for _, op := range a.byStart {
		if op.state == stOverload || op.start < x0 || op.start > x1 {
			continue
		}
		y := max(op.lat, floor)
		gx := int32((op.start - x0) / (x1 - x0) * gw)
		gy := int32((math.Log10(y) - ly0) / (ly1 - ly0) * gh)
		cell := (gx*gh+gy)*2 + int32(op.state)
		if _, dup := seen[cell]; dup {
			continue
		}
		seen[cell] = struct{}{}
		pt := plotter.XY{X: op.start, Y: y}
		if op.state == stOK {
			ok = append(ok, pt)
		} else {
			failed = append(failed, pt)
		}
	}
	return ok, failed
}

func (a *analysis) cdfPlot(sum *Summary, _ map[time.Duration]*Series, _ []time.Duration) (plotFile, *plot.Plot) {
	p := newPlot(sum.Title+": latency CDF", "latency (ms, log scale)", "fraction of successful operations")
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = LogTicks{}
	p.Legend.Top, p.Legend.Left = false, false
	p.Legend.XOffs, p.Legend.YOffs = -8, 8

	type win struct {
		name  string
		spans []Interval
	}
	var wins []win
	if ws := sum.Windows; ws.During != nil {
		for _, w := range []struct {
			n string
			s *WindowStats
		}{{"before", ws.Before}, {"during", ws.During}, {"after", ws.After}} {
			if w.s != nil {
				wins = append(wins, win{w.n, w.s.Spans})
			}
		}
	} else if ws.Overall != nil {
		wins = append(wins, win{"overall", ws.Overall.Spans})
	}
	xmin, xmax := math.Inf(1), math.Inf(-1)
	const floor = 0.01
	for _, w := range wins {
		lats := a.latencies(w.spans)
		if len(lats) == 0 {
			continue
		}
		xmin, xmax = min(xmin, max(lats[0], floor)), max(xmax, max(lats[len(lats)-1], floor))
		pts := cdfPoints(lats, floor)
		l, err := plotter.NewLine(pts)
		if err != nil {
			continue
		}
		l.Color, l.Width = windowColors[w.name], 2.2
		p.Add(l)
		name := w.name + " the fault"
		if w.name == "overall" {
			name = "all operations"
		}
		p.Legend.Add(fmt.Sprintf("%s (n=%d, p50 %s ms, p99 %s ms)", name, len(lats), fmtMS(quantile(lats, 0.5)), fmtMS(quantile(lats, 0.99))), l)
	}
	if math.IsInf(xmin, 0) {
		xmin, xmax = 0.1, 1000
	}
	if xmax/xmin < 10 {
		xmin, xmax = xmin/3, xmax*3
	}
	p.X.Min, p.X.Max = xmin/1.3, xmax*1.3
	p.Y.Min, p.Y.Max = 0, 1.02
	p.Add(hLines{ys: []float64{0.5, 0.99}, labels: []string{"p50", "p99"}})
	return plotFile{name: records.PlotLatencyCDF, caption: "Cumulative distribution of the latency of successful operations scheduled before, during and after the fault windows."}, p
}

// latencies are the sorted latencies of successful operations scheduled in spans.
func (a *analysis) latencies(spans []Interval) []float64 {
	var lats []float64
	for _, sp := range spans {
		lo := sort.Search(len(a.byStart), func(i int) bool { return a.byStart[i].start >= sp.Start })
		for i := lo; i < len(a.byStart) && a.byStart[i].start < sp.End; i++ {
			if a.byStart[i].state == stOK {
				lats = append(lats, a.byStart[i].lat)
			}
		}
	}
	slices.Sort(lats)
	return lats
}

// cdfPoints samples a sorted slice into at most ~3000 CDF steps, keeping the tail exact.
func cdfPoints(lats []float64, floor float64) plotter.XYs {
	n := len(lats)
	var pts plotter.XYs
	add := func(i int) {
		x := max(lats[i], floor)
		if len(pts) > 0 {
			pts = append(pts, plotter.XY{X: x, Y: pts[len(pts)-1].Y}) // step
		}
		pts = append(pts, plotter.XY{X: x, Y: float64(i+1) / float64(n)})
	}
	const body = 2000
	tail := max(n-n/100, 0) // the top 1 % one by one, up to 1000 points
	tail = max(tail, n-1000)
	step := max(1, tail/body)
	for i := 0; i < tail; i += step {
		add(i)
	}
	for i := tail; i < n; i++ {
		add(i)
	}
	return pts
}

func fmtMS(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// faultShade shades every fault window over the full height of the plot, darker where a
// fault's actions say it is active, and labels it with the fault and its targets.
type faultShade struct {
	a      *analysis
	labels bool // draw only the labels (added last, so they sit on top of the data)
}

// Plot implements plot.Plotter.
func (s faultShade) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	clampX := func(x float64) vg.Length { return trX(min(max(x, p.X.Min), p.X.Max)) }
	rect := func(col color.Color, x0, x1 float64) {
		l, r := clampX(x0), clampX(x1)
		if r-l < 1 { // keep an instantaneous fault visible
			r = l + 1
		}
		c.FillPolygon(col, []vg.Point{{X: l, Y: c.Min.Y}, {X: r, Y: c.Min.Y}, {X: r, Y: c.Max.Y}, {X: l, Y: c.Max.Y}})
	}
	sty := draw.TextStyle{Color: colFaultLabel, Font: p.Title.TextStyle.Font, XAlign: draw.XLeft, YAlign: draw.YTop, Handler: p.Title.TextStyle.Handler}
	sty.Font.Size = 11.5
	lastLabelEnd := vg.Length(math.Inf(-1))
	for i, f := range s.a.faults {
		end := s.a.faultEnd(f)
		if end < p.X.Min || f.Start > p.X.Max {
			continue
		}
		if !s.labels {
			rect(colFault, f.Start, end)
			for _, sp := range activeSpans(f, end) {
				rect(colFaultOn, sp.Start, sp.End)
			}
			continue
		}
		label := faultLabel(f)
		x := clampX(f.Start) + 4
		x = max(min(x, c.Max.X-sty.Width(label)-4), c.Min.X+2) // keep it inside the plot
		row := vg.Length(0)
		if x < lastLabelEnd { // overlapping labels go one row down
			row = sty.Font.Size * 1.3 * vg.Length(i%3)
		}
		boxedText(c, sty, vg.Point{X: x, Y: c.Max.Y - 4 - row}, label)
		lastLabelEnd = x + sty.Width(label)
	}
}

// boxedText draws text on a translucent white box so it stays legible over lines and points.
func boxedText(c draw.Canvas, sty draw.TextStyle, pt vg.Point, txt string) {
	r := sty.Rectangle(txt)
	const pad = 2
	x0, y0 := pt.X+r.Min.X-pad, pt.Y+r.Min.Y-pad
	x1, y1 := pt.X+r.Max.X+pad, pt.Y+r.Max.Y+pad
	c.FillPolygon(color.NRGBA{R: 255, G: 255, B: 255, A: 200}, []vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}})
	c.FillText(sty, pt, txt)
}

// faultLabel is "leader: kill → s1" or "partial-partition: partition → s1, s3".
func faultLabel(f FaultWindow) string {
	l := f.Name
	if l == "" {
		l = "fault"
	}
	if len(f.Actions) > 0 && f.Actions[0].T == f.Start && f.Actions[0].Action != l {
		l += ": " + f.Actions[0].Action
	}
	if len(f.Targets) > 0 {
		l += " → " + strings.Join(f.Targets, ", ")
	}
	if f.End == nil {
		l += " (never healed)"
	}
	return l
}

// healLike reports whether an action undoes a fault (so the fault is inactive after it).
func healLike(action string) bool {
	a := strings.ToLower(action)
	for _, p := range []string{"heal", "restore", "continue", "resume", "restart", "start", "unpause", "recover", "undo", "end"} {
		if strings.HasPrefix(a, p) {
			return true
		}
	}
	return false
}

// activeSpans are the sub-intervals in which an intermittent fault was applied: from a
// non-heal action to the next heal action. Empty for a fault without heal actions.
func activeSpans(f FaultWindow, end float64) []Interval {
	hasHeal := false
	for _, ac := range f.Actions {
		hasHeal = hasHeal || healLike(ac.Action)
	}
	if !hasHeal {
		return nil
	}
	var spans []Interval
	on := math.NaN()
	for _, ac := range f.Actions {
		switch {
		case healLike(ac.Action) && !math.IsNaN(on):
			spans = append(spans, Interval{on, ac.T})
			on = math.NaN()
		case !healLike(ac.Action) && math.IsNaN(on):
			on = ac.T
		}
	}
	if !math.IsNaN(on) {
		spans = append(spans, Interval{on, end})
	}
	return spans
}

// leaderChanges are the new leaderships after the first observed one: a leader event
// naming another node, or the same node in a higher term (it was re-elected). Events
// without a leader (none known) are not changes.
func (a *analysis) leaderChanges() []LeaderEvent {
	var out []LeaderEvent
	var last *LeaderEvent
	for i, l := range a.leaders {
		if l.Leader == "" {
			continue
		}
		if last != nil && (l.Leader != last.Leader || l.Term > last.Term) {
			out = append(out, l)
		}
		last = &a.leaders[i]
	}
	return out
}

// leaderLosses are the leader events saying no leader is known, after one was.
func (a *analysis) leaderLosses() []LeaderEvent {
	var out []LeaderEvent
	had := false
	for _, l := range a.leaders {
		if l.Leader == "" && had {
			out = append(out, l)
		}
		had = l.Leader != ""
	}
	return out
}

// leaderLines marks leader changes with labelled vertical dashed lines.
type leaderLines struct{ a *analysis }

// Plot implements plot.Plotter.
func (l leaderLines) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	ls := draw.LineStyle{Color: colLeader, Width: 1.4, Dashes: []vg.Length{5, 3}}
	sty := draw.TextStyle{Color: colLeader, Font: p.Title.TextStyle.Font, XAlign: draw.XLeft, YAlign: draw.YTop, Handler: p.Title.TextStyle.Handler}
	sty.Font.Size = 10
	rowH := sty.Font.Size * 1.25
	top := c.Max.Y - 4 - 3*rowH // below the fault labels
	var rowEnds [3]vg.Length
	for i := range rowEnds {
		rowEnds[i] = vg.Length(math.Inf(-1))
	}
	lost := draw.LineStyle{Color: color.Gray{Y: 120}, Width: 1.2, Dashes: []vg.Length{2, 3}}
	marks := append(l.a.leaderLosses(), l.a.leaderChanges()...)
	sort.SliceStable(marks, func(i, j int) bool { return marks[i].T < marks[j].T })
	for _, ch := range marks {
		if ch.T < p.X.Min || ch.T > p.X.Max {
			continue
		}
		x := trX(ch.T)
		if ch.Leader == "" {
			c.StrokeLine2(lost, x, c.Min.Y, x, c.Max.Y)
			continue // unlabelled: the caption says what dotted lines are
		}
		c.StrokeLine2(ls, x, c.Min.Y, x, c.Max.Y)
		label := "leader " + ch.Leader
		if ch.Term > 0 {
			label += fmt.Sprintf(" (term %d)", ch.Term)
		}
		lx := x + 3
		if lx+sty.Width(label) > c.Max.X { // near the right edge: label on the left of the line
			lx = x - 3 - sty.Width(label)
		}
		for r := range rowEnds { // the first row with room; no label when all are taken
			if lx > rowEnds[r] {
				boxedText(c, sty, vg.Point{X: lx, Y: top - vg.Length(r)*rowH}, label)
				rowEnds[r] = lx + sty.Width(label) + 4
				break
			}
		}
	}
}

// hLines draws labelled horizontal dotted reference lines.
type hLines struct {
	ys     []float64
	labels []string
}

// Plot implements plot.Plotter.
func (h hLines) Plot(c draw.Canvas, p *plot.Plot) {
	_, trY := p.Transforms(&c)
	ls := draw.LineStyle{Color: color.Gray{Y: 110}, Width: 1, Dashes: []vg.Length{2, 3}}
	sty := draw.TextStyle{Color: color.Gray{Y: 80}, Font: p.Title.TextStyle.Font, XAlign: draw.XLeft, YAlign: draw.YBottom, Handler: p.Title.TextStyle.Handler}
	sty.Font.Size = 10
	for i, y := range h.ys {
		py := trY(y)
		c.StrokeLine2(ls, c.Min.X, py, c.Max.X, py)
		c.FillText(sty, vg.Point{X: c.Min.X + 4, Y: py + 1}, h.labels[i])
	}
}

// LogTicks labels every power of ten (and 2 and 5 between them when few decades are
// shown) in plain numbers, which read better than gonum's default; less than a decade
// falls back to plain ticks.
type LogTicks struct{}

// Ticks implements plot.Ticker.
func (LogTicks) Ticks(lo, hi float64) []plot.Tick {
	if lo <= 0 || hi <= lo {
		return nil
	}
	var ticks []plot.Tick
	decades := math.Log10(hi / lo)
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		base := math.Pow(10, e)
		for m := 1; m < 10; m++ {
			v := base * float64(m)
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			label := ""
			if m == 1 || (decades < 4.5 && (m == 2 || m == 5)) {
				// 12 significant digits hide float noise (0.30000000000000004).
				r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 12, 64), 64)
				label = strconv.FormatFloat(r, 'g', -1, 64)
				if v >= 1e6 || v < 1e-3 {
					label = strconv.FormatFloat(v, 'g', 3, 64)
				}
			}
			ticks = append(ticks, plot.Tick{Value: v, Label: label})
		}
	}
	if len(ticks) < 2 {
		return plot.DefaultTicks{}.Ticks(lo, hi)
	}
	return ticks
}
