package sweep

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/dtlab/dt/results"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

const (
	plotW   = 8 * vg.Inch
	plotH   = 5 * vg.Inch
	plotDPI = 110
)

// palette is the lines' colours (Okabe–Ito, readable by colour-blind readers).
var palette = []color.Color{
	color.NRGBA{0, 114, 178, 255}, color.NRGBA{213, 94, 0, 255}, color.NRGBA{0, 158, 115, 255},
	color.NRGBA{204, 121, 167, 255}, color.NRGBA{230, 159, 0, 255}, color.NRGBA{86, 180, 233, 255},
	color.NRGBA{120, 120, 120, 255}, color.NRGBA{0, 0, 0, 255},
}

// PlotFile is one rendered plot (PNG and SVG side by side).
type PlotFile struct {
	Name    string // file stem under plots/
	Title   string
	Points  int // (x, line) points drawn
	Dropped int // runs without a value for the figure
}

// stat is the mean and sample standard deviation of one (line, x) cell over repeats.
type stat struct {
	x        float64
	mean, sd float64
	n        int
}

// cellStats computes mean and sd of values.
func cellStats(x float64, vals []float64) stat {
	st := stat{x: x, n: len(vals)}
	for _, v := range vals {
		st.mean += v
	}
	st.mean /= float64(len(vals))
	if len(vals) > 1 {
		var ss float64
		for _, v := range vals {
			ss += (v - st.mean) * (v - st.mean)
		}
		st.sd = math.Sqrt(ss / float64(len(vals)-1))
	}
	return st
}

// series is one line of a plot: its label and its cells in x order.
type series struct {
	label string
	cells []stat
}

// facet is one plot file: the values of the axes that are neither x nor by.
type facet struct {
	key   string // "nodes=3,kill-n=1"
	label string
	rows  []Row
}

// figure reads a numeric figure of a row (summary column, or seconds).
func figure(r Row, col string) (float64, bool) {
	var s string
	if col == "seconds" {
		s = strconv.FormatFloat(r.Seconds, 'g', -1, 64)
	} else {
		for _, c := range summaryColumns() {
			if c.name == col {
				s = c.value(r.Summary)
				break
			}
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		if b, err := strconv.ParseBool(s); err == nil {
			return map[bool]float64{false: 0, true: 1}[b], true
		}
		return 0, false
	}
	return f, !math.IsNaN(f) && !math.IsInf(f, 0)
}

// facets splits rows by the values of the axes other than x and by that vary.
func (s *Sweep) facets(rows []Row, spec PlotSpec) []facet {
	var other []string
	for _, a := range s.Axes {
		if a.Name != spec.X && a.Name != spec.By && len(a.Values) > 1 {
			other = append(other, a.Name)
		}
	}
	var out []facet
	idx := map[string]int{}
	for _, r := range rows {
		var kv, lab []string
		for _, a := range other {
			v, _ := r.Run.Point.Get(a)
			kv = append(kv, a+"="+FormatValue(v))
			lab = append(lab, a+" "+FormatValue(v))
		}
		k := strings.Join(kv, ",")
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, facet{key: k, label: strings.Join(lab, ", ")})
		}
		out[i].rows = append(out[i].rows, r)
	}
	return out
}

// xPosition places an axis value on the x axis: numbers at their value, other kinds at
// their index among the axis's values (a categorical axis).
func xPosition(ax Axis, v Value) float64 {
	if f, ok := numeric(v); ok {
		return f
	}
	for i, x := range ax.Values {
		if equalValues(x, v) {
			return float64(i)
		}
	}
	return 0
}

// buildSeries groups a facet's ok rows into lines (by) and cells (x), in axis order.
func (s *Sweep) buildSeries(rows []Row, spec PlotSpec) (lines []series, dropped int) {
	xa, _ := s.Axis(spec.X)
	type cellKey struct{ line, x int }
	vals := map[cellKey][]float64{}
	var byVals []Value
	if ba, ok := s.Axis(spec.By); ok {
		byVals = ba.Values
	} else {
		byVals = []Value{nil}
	}
	for _, r := range rows {
		if r.Status != StatusOK {
			continue
		}
		y, ok := figure(r, spec.Y)
		if !ok || (spec.LogY && y <= 0) {
			dropped++
			continue
		}
		xv, _ := r.Run.Point.Get(spec.X)
		xi := -1
		for i, v := range xa.Values {
			if equalValues(v, xv) {
				xi = i
			}
		}
		li := 0
		if spec.By != "" {
			bv, _ := r.Run.Point.Get(spec.By)
			for i, v := range byVals {
				if equalValues(v, bv) {
					li = i
				}
			}
		}
		k := cellKey{li, xi}
		vals[k] = append(vals[k], y)
	}
	for li, bv := range byVals {
		sr := series{label: figureLabel(spec.Y)}
		if spec.By != "" {
			sr.label = spec.By + " " + FormatValue(bv)
		}
		for xi, xv := range xa.Values {
			if v := vals[cellKey{li, xi}]; len(v) > 0 {
				sr.cells = append(sr.cells, cellStats(xPosition(xa, xv), v))
			}
		}
		if len(sr.cells) > 0 {
			lines = append(lines, sr)
		}
	}
	return lines, dropped
}

// errPoints is an XY line with symmetric y error bars.
type errPoints struct {
	plotter.XYs
	plotter.YErrors
}

// writePlots renders every spec (and facet) under plots/, replacing what was there.
func (d *Dir) writePlots(rows []Row, specs []PlotSpec) ([]PlotFile, error) {
	pdir := filepath.Join(d.Path, DirPlots)
	if old, _ := filepath.Glob(filepath.Join(pdir, "*.png")); len(old) > 0 {
		for _, f := range old {
			os.Remove(f)
			os.Remove(strings.TrimSuffix(f, ".png") + ".svg")
		}
	}
	if len(specs) == 0 {
		return nil, nil
	}
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		return nil, err
	}
	var out []PlotFile
	var errs []error
	for _, spec := range specs {
		for _, f := range d.Sweep.facets(rows, spec) {
			lines, dropped := d.Sweep.buildSeries(f.rows, spec)
			name := spec.Name()
			if f.key != "" {
				name += "__" + safe(strings.ReplaceAll(f.key, ",", "_"))
			}
			p := d.Sweep.drawPlot(spec, f, lines)
			png, svg, err := results.RenderPlot(p, plotW, plotH)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if err := writeAtomic(filepath.Join(pdir, name+".png"), png); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := writeAtomic(filepath.Join(pdir, name+".svg"), svg); err != nil {
				errs = append(errs, err)
				continue
			}
			n := 0
			for _, l := range lines {
				n += len(l.cells)
			}
			out = append(out, PlotFile{Name: name, Title: p.Title.Text, Points: n, Dropped: dropped})
		}
	}
	return out, errors.Join(errs...)
}

// drawPlot lays out one plot: a line with markers per series, error bars of ±1 sample
// standard deviation over repeats, categorical ticks for a non-numeric x axis.
func (s *Sweep) drawPlot(spec PlotSpec, f facet, lines []series) *plot.Plot {
	p := plot.New()
	title := spec.Title
	if title == "" {
		title = fmt.Sprintf("%s vs %s", figureLabel(spec.Y), spec.X)
		if spec.By != "" {
			title += " by " + spec.By
		}
	}
	if f.label != "" {
		title += " (" + f.label + ")"
	}
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = 13
	p.Title.Padding = 6
	p.X.Label.Text = spec.X
	p.Y.Label.Text = figureLabel(spec.Y)
	if s.Repeats > 1 {
		p.Y.Label.Text += "  (mean ± sd over repeats)"
	}
	p.Title.TextStyle.Font.Variant = "Sans"
	for _, ax := range []*plot.Axis{&p.X, &p.Y} {
		ax.Label.TextStyle.Font.Variant = "Sans"
		ax.Label.TextStyle.Font.Size = 11.5
		ax.Tick.Label.Font.Variant = "Sans"
		ax.Tick.Label.Font.Size = 10
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.TextStyle.Font.Variant = "Sans"
	p.Legend.TextStyle.Font.Size = 10
	g := plotter.NewGrid()
	g.Vertical.Color, g.Horizontal.Color = color.Gray{Y: 225}, color.Gray{Y: 225}
	p.Add(g)

	xa, _ := s.Axis(spec.X)
	categorical := xa.Kind == KindString || xa.Kind == KindBool
	logX := spec.LogX && !categorical
	logY := spec.LogY
	for _, l := range lines {
		for _, c := range l.cells {
			logX = logX && c.x > 0
			logY = logY && c.mean > 0
		}
	}
	if logX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = results.LogTicks{}
	}
	if logY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = results.LogTicks{}
	}
	if categorical {
		var ticks []plot.Tick
		for i, v := range xa.Values {
			ticks = append(ticks, plot.Tick{Value: float64(i), Label: FormatValue(v)})
		}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
	} else if len(xa.Values) <= 12 { // a tick at every value of the axis
		var ticks []plot.Tick
		for _, v := range xa.Values {
			f, _ := numeric(v)
			ticks = append(ticks, plot.Tick{Value: f, Label: FormatValue(v)})
		}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
	}
	for i, l := range lines {
		col := palette[i%len(palette)]
		dodge := 0.0
		if categorical { // side by side, so the error bars of several lines do not overlap
			dodge = (float64(i) - float64(len(lines)-1)/2) * math.Min(0.08, 0.6/float64(len(lines)))
		}
		ep := errPoints{}
		for _, c := range l.cells {
			ep.XYs = append(ep.XYs, plotter.XY{X: c.x + dodge, Y: c.mean})
			lo := c.sd
			if logY && c.mean-lo <= 0 {
				lo = c.mean * 0.999 // a log axis cannot show the bar below zero
			}
			ep.YErrors = append(ep.YErrors, struct{ Low, High float64 }{lo, c.sd})
		}
		ln, sc, err := plotter.NewLinePoints(ep.XYs)
		if err != nil {
			continue
		}
		ln.Color, ln.Width = col, vg.Points(1.8)
		sc.Color, sc.Shape, sc.Radius = col, draw.CircleGlyph{}, vg.Points(3)
		if categorical { // no line between categories: there is nothing in between
			sc.Radius = vg.Points(4)
			p.Add(sc)
		} else {
			p.Add(ln, sc)
		}
		if s.Repeats > 1 {
			if eb, err := plotter.NewYErrorBars(ep); err == nil {
				eb.LineStyle.Color, eb.LineStyle.Width, eb.CapWidth = col, vg.Points(1.2), vg.Points(6)
				p.Add(eb)
			}
		}
		if categorical {
			p.Legend.Add(l.label, sc)
		} else {
			p.Legend.Add(l.label, ln, sc)
		}
	}
	if len(lines) == 0 {
		p.Title.Text += " — no data yet"
		p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, 1, 0, 1
		if categorical {
			p.X.Min, p.X.Max = -0.5, float64(len(xa.Values))-0.5
		}
		p.X.Scale, p.Y.Scale = plot.LinearScale{}, plot.LinearScale{}
		p.Y.Tick.Marker = plot.DefaultTicks{}
		if !categorical {
			p.X.Tick.Marker = plot.DefaultTicks{}
		}
	} else if !logY {
		p.Y.Min = math.Min(p.Y.Min, 0) // figures are counts, times and rates: show zero
	}
	if len(lines) > 0 { // the whole axis, even where no run has finished yet, with a margin
		p.X.Min, p.X.Max = xRange(xa, categorical, logX)
	}
	return p
}

// xRange spans every value of the axis with a margin, so markers do not sit on the frame.
func xRange(xa Axis, categorical, logX bool) (float64, float64) {
	if categorical {
		return -0.5, float64(len(xa.Values)) - 0.5
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range xa.Values {
		f, _ := numeric(v)
		lo, hi = math.Min(lo, f), math.Max(hi, f)
	}
	if logX {
		m := math.Pow(hi/lo, 0.05)
		if hi == lo {
			m = 1.5
		}
		return lo / m, hi * m
	}
	m := (hi - lo) * 0.05
	if hi == lo {
		m = math.Max(math.Abs(lo)*0.1, 1)
	}
	return lo - m, hi + m
}
