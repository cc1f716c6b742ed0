package sweep

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/results"
)

// Row is one finished run (ok or failed) with its summary, if it has one.
type Row struct {
	Run     Run
	Status  string
	Error   string
	RunDir  string // relative to the sweep directory
	RunID   string
	Seconds float64
	Summary *results.Summary
}

// Rows lists the finished runs, in run order; interrupted, crashed and pending runs have
// none (they run again on resume).
func (d *Dir) Rows() []Row {
	var out []Row
	for _, r := range d.Sweep.Runs() {
		st := d.State(r)
		if st.End == nil || (st.Status != StatusOK && st.Status != StatusFailed) {
			continue
		}
		row := Row{Run: r, Status: st.Status, Error: st.End.Error, RunDir: st.End.RunDir, RunID: st.End.RunID, Seconds: st.End.Seconds}
		if row.RunDir != "" {
			row.Summary = d.summary(row.RunDir)
		}
		out = append(out, row)
	}
	return out
}

func (d *Dir) abs(rel string) string {
	if filepath.IsAbs(rel) {
		return rel
	}
	return filepath.Join(d.Path, rel)
}

// summary loads a run's summary.json once (nil when it has none yet).
func (d *Dir) summary(runDir string) *results.Summary {
	if s, ok := d.summaries[runDir]; ok {
		return s
	}
	s, err := loadSummary(d.abs(runDir))
	if err != nil {
		return nil // not cached: a report run later may find it
	}
	if d.summaries == nil {
		d.summaries = map[string]*results.Summary{}
	}
	d.summaries[runDir] = s
	return s
}

func loadSummary(runDir string) (*results.Summary, error) {
	b, err := os.ReadFile(filepath.Join(runDir, records.SummaryFile))
	if err != nil {
		return nil, err
	}
	var s results.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(runDir, records.SummaryFile), err)
	}
	return &s, nil
}

// fixedColumns start every row of sweep.csv.
var fixedColumns = []string{"run", "point", "repeat", "seed", "status", "error", "run_dir", "run_id", "seconds"}

// CSVHeader is sweep.csv's header: the fixed columns, the axes, the other parameters the
// file sets, then every summary figure.
func (s *Sweep) CSVHeader() []string {
	h := append([]string(nil), fixedColumns...)
	h = append(h, s.paramColumns()...)
	return append(h, SummaryColumns()...)
}

// paramColumns are the axes, then the base settings.
func (s *Sweep) paramColumns() []string {
	out := s.AxisNames()
	for _, b := range s.BaseSet {
		out = append(out, b.Name)
	}
	return out
}

// WriteCSV writes rows as sweep.csv to w.
func (s *Sweep) WriteCSV(w io.Writer, rows []Row) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(s.CSVHeader()); err != nil {
		return err
	}
	cols := summaryColumns()
	for _, r := range rows {
		rec := []string{r.Run.Name(), r.Run.Point.ID, strconv.Itoa(r.Run.Repeat), strconv.FormatInt(r.Run.Seed, 10),
			r.Status, r.Error, r.RunDir, r.RunID, strconv.FormatFloat(round3(r.Seconds), 'f', -1, 64)}
		for _, a := range s.Axes {
			v, _ := r.Run.Point.Get(a.Name)
			rec = append(rec, FormatValue(v))
		}
		for _, b := range s.BaseSet {
			rec = append(rec, FormatValue(b.Value))
		}
		for _, c := range cols {
			rec = append(rec, c.value(r.Summary))
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteCSV rewrites the directory's sweep.csv from the manifest and the runs' summaries.
func (d *Dir) WriteCSV() error {
	var b bytes.Buffer
	if err := d.Sweep.WriteCSV(&b, d.Rows()); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(d.Path, FileCSV), b.Bytes())
}

// Report rebuilds sweep.csv, the plots (the sweep's, then extra) and index.html.
func (d *Dir) Report(extra []PlotSpec) error {
	rows := d.Rows()
	var b bytes.Buffer
	if err := d.Sweep.WriteCSV(&b, rows); err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(d.Path, FileCSV), b.Bytes()); err != nil {
		return err
	}
	specs := append(append([]PlotSpec(nil), d.Sweep.Plots...), extra...)
	files, perr := d.writePlots(rows, specs)
	ierr := d.writeIndex(rows, files)
	return errors.Join(perr, ierr)
}

func round3(v float64) float64 {
	return float64(int64(v*1000+0.5)) / 1000
}
