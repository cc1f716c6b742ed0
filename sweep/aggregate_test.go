package sweep

import (
	"bytes"
	"encoding/csv"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dtlab/dt/results"
)

// synthRows makes finished rows for every run of s with synthSummary figures, without
// running anything.
func synthRows(s *Sweep) []Row {
	var rows []Row
	for _, r := range s.Runs() {
		c := s.Config(r)
		rows = append(rows, Row{Run: r, Status: StatusOK, RunDir: "runs/" + r.Name(), Seconds: c.Duration + 5,
			Summary: synthSummary("", c.Rate, c.Nodes, c.Seed)})
	}
	return rows
}

func TestSummaryColumns(t *testing.T) {
	cols := SummaryColumns()
	for _, want := range []string{
		"ops.total", "windows.overall.latency_ms.p99", "windows.during.throughput_ops_s", "unavailability_s",
		"unavailable.start_s", "recovery_s.from_heal", "leader_changes", "max_term", "faults.count",
		"linearizability.result", "linearizability.violating_keys.count", "warnings.count",
	} {
		if !slices.Contains(cols, want) {
			t.Errorf("no column %s in %v", want, cols)
		}
	}
	for _, c := range cols {
		for _, bad := range []string{"run_dir", "title", "params", "spans", "detail", "files", "generated_at"} {
			if strings.Contains(c, bad) {
				t.Errorf("column %s is not a figure", c)
			}
		}
	}
	// Every alias names a column.
	for a, col := range figureAliases {
		if _, ok := resolveFigure(a); !ok || (col != "seconds" && !slices.Contains(cols, col)) {
			t.Errorf("alias %s → %s is not a column", a, col)
		}
	}
}

func TestWriteCSV(t *testing.T) {
	s := mustParse(t, small)
	rows := synthRows(s)
	rows[3].Status, rows[3].Error, rows[3].Summary = StatusFailed, "no leader within 60s, \"quoted\"\nsecond line", nil
	var b bytes.Buffer
	if err := s.WriteCSV(&b, rows); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 9 || !slices.Equal(recs[0], s.CSVHeader()) {
		t.Fatalf("%d records, header %v", len(recs), recs[0])
	}
	h := recs[0]
	if !slices.Equal(h[:13], []string{"run", "point", "repeat", "seed", "status", "error", "run_dir", "run_id", "seconds", "rate", "number-nodes", "fault", "duration"}) {
		t.Errorf("header starts %v", h[:13])
	}
	col := func(r []string, name string) string { return r[slices.Index(h, name)] }
	for i, r := range recs[1:] {
		if len(r) != len(h) {
			t.Errorf("row %d has %d fields, header %d", i, len(r), len(h))
		}
	}
	if r := recs[4]; col(r, "status") != "failed" || !strings.Contains(col(r, "error"), "second line") ||
		col(r, "windows.overall.latency_ms.p99") != "" || col(r, "rate") != "100" || col(r, "number-nodes") != "5" {
		t.Errorf("failed row: %v", r)
	}
	if r := recs[8]; col(r, "windows.overall.latency_ms.p50") != "10" || col(r, "ops.ok") != "90" || col(r, "seconds") != "7" {
		t.Errorf("last row: %v", r)
	}
}

func TestCellStats(t *testing.T) {
	st := cellStats(3, []float64{2, 4, 4, 4, 5, 5, 7, 9})
	if st.mean != 5 || math.Abs(st.sd-2.138) > 1e-3 || st.n != 8 || st.x != 3 {
		t.Errorf("%+v", st)
	}
	if st := cellStats(1, []float64{42}); st.mean != 42 || st.sd != 0 {
		t.Errorf("one value: %+v", st)
	}
}

func TestBuildSeriesAndFacets(t *testing.T) {
	s := mustParse(t, `
axes:
  fault: [leader, partial-partition]
  rate: [100, 1000]
  number-nodes: [3, 5]
base: {duration: 2}
repeats: 3
`)
	rows := synthRows(s)
	spec := PlotSpec{X: "rate", Y: "windows.overall.latency_ms.p99", By: "number-nodes"}
	fs := s.facets(rows, spec)
	if len(fs) != 2 || fs[0].key != "fault=leader" || len(fs[0].rows) != 12 {
		t.Fatalf("facets: %d, %q, %d rows", len(fs), fs[0].key, len(fs[0].rows))
	}
	lines, dropped := s.buildSeries(fs[0].rows, spec)
	if len(lines) != 2 || dropped != 0 || lines[0].label != "number-nodes 3" || len(lines[0].cells) != 2 {
		t.Fatalf("lines %+v dropped %d", lines, dropped)
	}
	// p99 = rate/10 + 10·(5-nodes) + (seed mod 7) - 3: the mean over 3 repeats is within 3.
	c := lines[0].cells[1] // nodes 3, rate 1000
	if c.x != 1000 || c.n != 3 || math.Abs(c.mean-120) > 3 || c.sd > 4 {
		t.Errorf("cell: %+v", c)
	}
	// Failed runs and runs without the figure are left out.
	rows[0].Status = StatusFailed
	rows[1].Summary = nil
	lines, dropped = s.buildSeries(s.facets(rows, spec)[0].rows, spec)
	if lines[0].cells[0].n != 1 || dropped != 1 {
		t.Errorf("after a failure: %+v, dropped %d", lines[0].cells[0], dropped)
	}
}

func TestReportPlots(t *testing.T) {
	root := t.TempDir()
	src := small + "plots:\n  - {x: rate, y: [p99, throughput], by: number-nodes}\n  - {x: number-nodes, y: recovery, log-y: true}\n"
	d := openSmall(t, root, src, false)
	execute(t, d, Options{Runner: &fakeRunner{}})
	pngs, _ := filepath.Glob(filepath.Join(d.Path, DirPlots, "*.png"))
	var names []string
	for _, p := range pngs {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".png"))
	}
	want := []string{
		"recovery_s-from_fault_start_vs_number-nodes__rate_100",
		"recovery_s-from_fault_start_vs_number-nodes__rate_1000",
		"windows-overall-latency_ms-p99_vs_rate_by_number-nodes",
		"windows-overall-throughput_ops_s_vs_rate_by_number-nodes",
	}
	if !slices.Equal(names, want) {
		t.Errorf("plots %v, want %v", names, want)
	}
	for _, p := range pngs {
		checkPlot(t, p)
	}
	// report rebuilds from disk alone, with an extra plot, and drops plots no longer asked for.
	d.Close()
	rd := mustOpenReport(t, d.Path)
	extra, err := ParsePlotFlag(rd.Sweep, "x=number-nodes,y=unavailability,by=rate,log-x=false")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(d.Path, FileCopy), []byte(small), 0o644) // plots from the file: the defaults
	rd = mustOpenReport(t, d.Path)
	os.Remove(filepath.Join(d.Path, FileCSV))
	if err := rd.Report(extra); err != nil {
		t.Fatal(err)
	}
	pngs, _ = filepath.Glob(filepath.Join(d.Path, DirPlots, "*.png"))
	names = names[:0]
	for _, p := range pngs {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".png"))
	}
	want = []string{
		"unavailability_s_vs_number-nodes_by_rate",
		"unavailability_s_vs_rate_by_number-nodes",
		"windows-overall-latency_ms-p99_vs_rate_by_number-nodes",
		"windows-overall-throughput_ops_s_vs_rate_by_number-nodes",
	}
	if !slices.Equal(names, want) {
		t.Errorf("rebuilt plots %v, want %v", names, want)
	}
	if rows := readRows(t, filepath.Join(d.Path, FileCSV)); len(rows) != 8 {
		t.Errorf("rebuilt csv: %d rows", len(rows))
	}
	idx, _ := os.ReadFile(filepath.Join(d.Path, FileIndex))
	if !strings.Contains(string(idx), `<img src="plots/unavailability_s_vs_number-nodes_by_rate.png"`) ||
		!strings.Contains(string(idx), "runs/p01-r1/") {
		t.Errorf("index.html:\n%s", idx)
	}
	if _, err := ParsePlotFlag(rd.Sweep, "x=fault,y=p99"); err == nil || !strings.Contains(err.Error(), `x "fault" is not an axis`) {
		t.Errorf("bad --plot: %v", err)
	}
}

// checkPlot: a PNG of the plot's size with more than a few colours (lines, not a blank
// frame), and its SVG beside it.
func checkPlot(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b := img.Bounds()
	if b.Dx() < 600 || b.Dy() < 400 {
		t.Errorf("%s: %v", path, b)
	}
	colours := map[[3]uint32]bool{}
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bb, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 12, g >> 12, bb >> 12}] = true
		}
	}
	if len(colours) < 8 {
		t.Errorf("%s: only %d colours: an empty plot?", path, len(colours))
	}
	svg, err := os.ReadFile(strings.TrimSuffix(path, ".png") + ".svg")
	if err != nil || !bytes.Contains(svg, []byte("<svg")) {
		t.Errorf("svg of %s: %v", path, err)
	}
}

func TestPlotCategoricalAndEmpty(t *testing.T) {
	s := mustParse(t, "axes:\n  fault: [none, leader, partial-partition]\n  rate: [10, 20]\nrepeats: 2\n")
	if s.Plots[0].X != "rate" || s.Plots[0].By != "fault" || s.Plots[0].LogX {
		t.Errorf("default plots: %+v", s.Plots[0])
	}
	d := &Dir{Path: t.TempDir(), Sweep: s, state: map[runKey]*RunState{}}
	rows := synthRows(s)
	files, err := d.writePlots(rows, []PlotSpec{{X: "fault", Y: "windows.overall.latency_ms.p99", By: "rate"}})
	if err != nil || len(files) != 1 || files[0].Points != 6 {
		t.Fatalf("categorical: %+v %v", files, err)
	}
	checkPlot(t, filepath.Join(d.Path, DirPlots, files[0].Name+".png"))
	// No finished run yet: the plot says so instead of failing.
	files, err = d.writePlots(nil, s.Plots[:1])
	if err != nil || len(files) != 0 {
		t.Errorf("no rows: %+v %v", files, err)
	}
	// Rows whose figure is missing everywhere: an empty plot, drawn.
	for i := range rows {
		rows[i].Summary = &results.Summary{}
	}
	files, err = d.writePlots(rows, []PlotSpec{{X: "rate", Y: "windows.during.latency_ms.p99", By: "fault"}})
	if err != nil || len(files) != 1 || files[0].Points != 0 || files[0].Dropped != 12 || !strings.Contains(files[0].Title, "no data yet") {
		t.Errorf("all missing: %+v %v", files, err)
	}
}
