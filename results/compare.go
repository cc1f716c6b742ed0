package results

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/dtlab/dt/records"
)

// Files Compare writes into its output directory.
const (
	ComparePlot   = "compare"                // .png and .svg
	CompareTable  = "compare.csv"            // one row per run
	CompareSeries = "compare_timeseries.csv" // 1 s buckets per run, relative to the fault start
)

// compared is one run of a comparison.
type compared struct {
	dir    string
	label  string
	a      *analysis
	sum    *Summary
	origin float64 // the first fault start, or the workload start without a fault
	series *Series
	lin    string
}

// Compare overlays several runs in one plot (successful ops/s and p99 latency per 1 s, with
// time relative to each run's first fault start) and one table, written to outDir and
// printed to standard output. Runs are labelled by the config values that differ between
// them.
func Compare(runDirs []string, outDir string) error {
	return CompareTo(os.Stdout, runDirs, outDir)
}

// CompareTo is Compare printing the table to w.
func CompareTo(w io.Writer, runDirs []string, outDir string) error {
	if len(runDirs) == 0 {
		return errors.New("compare: no run directories")
	}
	var runs []*compared
	for _, d := range runDirs {
		run, err := records.Load(d)
		if err != nil {
			return fmt.Errorf("compare: %w", err)
		}
		a := prepare(run)
		c := &compared{dir: d, a: a, sum: a.summarize(), lin: "not checked"}
		c.origin = a.period.Start
		if len(a.faults) > 0 {
			c.origin = a.faults[0].Start
		}
		c.series = a.seriesAt(c.origin, time.Second)
		// The linearizability verdict comes from the run's own analysis, if it had one;
		// Compare does not re-check.
		if b, err := os.ReadFile(filepath.Join(d, records.SummaryFile)); err == nil {
			var prev Summary
			if json.Unmarshal(b, &prev) == nil && prev.Linearizability.Result != "" {
				c.lin = prev.Linearizability.Result
			}
		}
		runs = append(runs, c)
	}
	labelRuns(runs)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("compare: %w", err)
	}

	var errs []error
	table := compareRows(runs)
	errs = append(errs, writeFileAtomic(filepath.Join(outDir, CompareTable), func(f *os.File) error {
		bw := bufio.NewWriter(f)
		for _, r := range table {
			for i, c := range r {
				if i > 0 {
					bw.WriteByte(',')
				}
				bw.WriteString(csvField(c))
			}
			bw.WriteByte('\n')
		}
		return bw.Flush()
	}))
	errs = append(errs, writeFileAtomic(filepath.Join(outDir, CompareSeries), func(f *os.File) error {
		bw := bufio.NewWriter(f)
		fmt.Fprintln(bw, "run,t_rel_s,ok,failed,throughput_ok_per_s,latency_p50_ms,latency_p99_ms")
		num := func(v float64) string {
			if math.IsNaN(v) {
				return ""
			}
			return fmt.Sprint(round3(v))
		}
		for _, c := range runs {
			for _, b := range c.series.Buckets {
				if b.Start < c.a.period.Start || b.Start+1 > c.a.period.End {
					continue // partial buckets would read as dips
				}
				fmt.Fprintf(bw, "%s,%s,%d,%d,%d,%s,%s\n", csvField(c.label), num(b.Start-c.origin), b.OK, b.Failed, b.OK, num(b.P50), num(b.P99))
			}
		}
		return bw.Flush()
	}))
	pngData, svgData, err := compareFigure(runs)
	if err != nil {
		errs = append(errs, err)
	} else {
		errs = append(errs,
			os.WriteFile(filepath.Join(outDir, ComparePlot+".png"), pngData, 0o644),
			os.WriteFile(filepath.Join(outDir, ComparePlot+".svg"), svgData, 0o644))
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range table {
		// the printed table leaves out the directory (long) and the title (in the label)
		fmt.Fprintln(tw, strings.Join(append([]string{r[0]}, r[3:]...), "\t")+"\t")
	}
	tw.Flush()
	fmt.Fprintf(w, "written to %s: %s, %s, %s.png/.svg\n", outDir, CompareTable, CompareSeries, ComparePlot)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	return nil
}

// labelNoise are config keys that differ between any two runs and so say nothing about
// what was compared.
var labelNoise = map[string]bool{
	"run_id": true, "start": true, "start_unix_nano": true, "host": true, "seed": true,
	"results_root": true, "check_timeout": true, "settle": true, "system_bin": true,
}

// labelRuns names each run by the config values that differ between the runs ("rate=200
// fault=leader"), falling back on the directory name.
func labelRuns(runs []*compared) {
	values := map[string]map[string]bool{}
	flat := make([]map[string]string, len(runs))
	for i, c := range runs {
		flat[i] = map[string]string{}
		for k, v := range c.a.run.Config {
			if _, nested := v.(map[string]any); nested {
				continue
			}
			s := formatValue(v)
			flat[i][k] = s
			if values[k] == nil {
				values[k] = map[string]bool{}
			}
			values[k][s] = true
		}
	}
	var differ, noise []string
	for k, vs := range values {
		n := 0
		for i := range runs {
			if _, ok := flat[i][k]; ok {
				n++
			}
		}
		if len(vs) > 1 || n != len(runs) {
			if labelNoise[k] {
				noise = append(noise, k)
			} else {
				differ = append(differ, k)
			}
		}
	}
	if len(differ) == 0 && slices.Contains(noise, "seed") {
		differ = []string{"seed"} // repeated runs of one experiment
	}
	// title keys first, then alphabetical
	order := map[string]int{}
	for i, k := range append(append([]string{}, titleKeys...), paramKeys...) {
		order[k] = i - 100
	}
	sort.Slice(differ, func(i, j int) bool {
		oi, oj := order[differ[i]], order[differ[j]]
		if oi != oj {
			return oi < oj
		}
		return differ[i] < differ[j]
	})
	seen := map[string]int{}
	for i, c := range runs {
		var parts []string
		for _, k := range differ {
			if len(parts) == 4 {
				break
			}
			parts = append(parts, k+"="+flat[i][k])
		}
		c.label = strings.Join(parts, " ")
		if c.label == "" {
			c.label = filepath.Base(filepath.Clean(c.dir))
		}
		seen[c.label]++
		if seen[c.label] > 1 {
			c.label += fmt.Sprintf(" #%d", seen[c.label])
		}
	}
}

func compareRows(runs []*compared) [][]string {
	rows := [][]string{{"run", "dir", "title", "ok", "failed", "ops/s before", "ops/s during", "ops/s after",
		"p99 ms before", "p99 ms during", "p99 ms after", "unavailable s", "recovery s (start)", "recovery s (heal)", "leader changes", "linearizability"}}
	tp := func(w *WindowStats) string {
		if w == nil {
			return "-"
		}
		return fmt.Sprintf("%.1f", w.ThroughputOpsS)
	}
	p99 := func(w *WindowStats) string {
		if w == nil || w.LatencyMS == nil {
			return "-"
		}
		return fmtMS(w.LatencyMS.P99)
	}
	rec := func(v *float64) string {
		if v == nil {
			return "never"
		}
		return fmt.Sprintf("%.1f", *v)
	}
	for _, c := range runs {
		s := c.sum
		ws := s.Windows
		rows = append(rows, []string{
			c.label, c.dir, s.Title, fmt.Sprint(s.Ops.OK), fmt.Sprint(s.Ops.Failed),
			tp(ws.Before), tp(ws.During), tp(ws.After), p99(ws.Before), p99(ws.During), p99(ws.After),
			fmt.Sprintf("%.2f", s.UnavailabilityS), rec(s.RecoveryS.FromFaultStart), rec(s.RecoveryS.FromHeal),
			fmt.Sprint(s.LeaderChanges), c.lin,
		})
	}
	return rows
}

// compareFigure draws throughput (top) and p99 latency (bottom) of every run against time
// since its first fault start.
func compareFigure(runs []*compared) (pngData, svgData []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("draw comparison: %v", r)
		}
	}()
	titles := map[string]bool{}
	for _, c := range runs {
		titles[strings.SplitN(c.sum.Title, " — ", 2)[0]] = true
	}
	var ts []string
	for t := range titles {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	title := "comparison of " + fmt.Sprint(len(runs)) + " runs"
	if len(ts) <= 2 {
		title = strings.Join(ts, " vs ") + ": " + title
	}
	xlabel := "time since the first fault start (s)"
	if func() bool {
		for _, c := range runs {
			if len(c.a.faults) > 0 {
				return false
			}
		}
		return true
	}() {
		xlabel = "time since the workload start (s)"
	}
	top := newPlot(title+": throughput", "", "successful ops/s (1 s buckets)")
	bot := newPlot("p99 latency", xlabel, "p99 latency (ms, log scale)")
	bot.Y.Scale = plot.LogScale{}
	bot.Y.Tick.Marker = LogTicks{}
	top.Legend.Top, top.Legend.Left = true, false
	top.Legend.XOffs = -8

	xmin, xmax, ymax := math.Inf(1), math.Inf(-1), 1.0
	lmin, lmax := math.Inf(1), math.Inf(-1)
	const floor = 0.01
	for i, c := range runs {
		col := plotutil.Color(i)
		lo, hi := c.a.period.Start-c.origin, c.a.period.End-c.origin
		xmin, xmax = min(xmin, lo), max(xmax, hi)
		rel := &Series{Width: c.series.Width, Buckets: make([]Bucket, len(c.series.Buckets))}
		for j, b := range c.series.Buckets {
			b.Start -= c.origin
			rel.Buckets[j] = b
			if b.Start >= lo && b.Start+1 <= hi {
				ymax = max(ymax, float64(b.OK))
				if !math.IsNaN(b.P99) {
					lmin, lmax = min(lmin, max(b.P99, floor)), max(lmax, max(b.P99, floor))
				}
			}
		}
		for _, l := range clippedStepLine(rel, rel.Throughput, col, 2, lo, hi, true) {
			top.Add(l)
		}
		for _, l := range clippedStepLine(rel, func(b Bucket) float64 { return positive(b.P99, floor) }, col, 2, lo, hi, false) {
			bot.Add(l)
		}
		top.Legend.Add(c.label, legendLine(col, 2))
		if len(c.a.faults) > 0 {
			if e := c.a.faults[len(c.a.faults)-1].End; e != nil {
				heal := *e - c.origin
				top.Add(vLine{x: heal, col: col, label: "heal"})
				bot.Add(vLine{x: heal, col: col})
			}
		}
	}
	if math.IsInf(xmin, 0) || !(xmax > xmin) {
		xmin, xmax = -1, 1
	}
	if math.IsInf(lmin, 0) {
		lmin, lmax = 0.1, 1000
	}
	if lmax/lmin < 10 {
		lmin, lmax = lmin/3, lmax*3
	}
	for _, p := range []*plot.Plot{top, bot} {
		p.X.Min, p.X.Max = xmin, xmax
	}
	top.Y.Min, top.Y.Max = 0, ymax*1.3
	bot.Y.Min, bot.Y.Max = lmin/1.5, lmax*2
	top.Add(vLine{x: 0, col: colFaultLabel, label: "fault start", width: 2})
	bot.Add(vLine{x: 0, col: colFaultLabel, width: 2})

	w, h := plotW, 2*plotH
	plots := [][]*plot.Plot{{top}, {bot}}
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: 4, PadBottom: 4, PadLeft: 4, PadRight: 8, PadY: 10}

	ic := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(plotDPI))
	dc := draw.New(ic)
	ic.SetColor(color.White)
	ic.Fill(dc.Rectangle.Path())
	canvases := plot.Align(plots, tiles, dc)
	top.Draw(canvases[0][0])
	bot.Draw(canvases[1][0])
	var pb bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: ic}).WriteTo(&pb); err != nil {
		return nil, nil, fmt.Errorf("encode png: %w", err)
	}
	sc := vgsvg.New(w, h)
	sdc := draw.New(sc)
	canvases = plot.Align(plots, tiles, sdc)
	top.Draw(canvases[0][0])
	bot.Draw(canvases[1][0])
	var sb bytes.Buffer
	if _, err := sc.WriteTo(&sb); err != nil {
		return nil, nil, fmt.Errorf("encode svg: %w", err)
	}
	return pb.Bytes(), sb.Bytes(), nil
}

// vLine is a labelled vertical line at x.
type vLine struct {
	x     float64
	col   color.Color
	label string
	width vg.Length
}

// Plot implements plot.Plotter.
func (v vLine) Plot(c draw.Canvas, p *plot.Plot) {
	if v.x < p.X.Min || v.x > p.X.Max {
		return
	}
	trX, _ := p.Transforms(&c)
	x := trX(v.x)
	w := v.width
	if w == 0 {
		w = 1.2
	}
	c.StrokeLine2(draw.LineStyle{Color: v.col, Width: w, Dashes: []vg.Length{5, 3}}, x, c.Min.Y, x, c.Max.Y)
	if v.label != "" {
		sty := draw.TextStyle{Color: v.col, Font: p.Title.TextStyle.Font, XAlign: draw.XLeft, YAlign: draw.YTop, Handler: p.Title.TextStyle.Handler}
		sty.Font.Size = 10.5
		boxedText(c, sty, vg.Point{X: x + 3, Y: c.Max.Y - 4}, v.label)
	}
}
