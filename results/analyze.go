package results

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dtlab/dt/records"
)

// DefaultWindows are the time-series bucket widths used when Options.Windows is empty.
var DefaultWindows = []time.Duration{100 * time.Millisecond, time.Second}

// Options tunes Analyze. The zero value means the defaults.
type Options struct {
	// Windows are the bucket widths of the CSV time series (default DefaultWindows).
	Windows []time.Duration
	// CheckTimeout bounds the linearizability check (default DefaultCheckTimeout); a
	// negative value skips the check.
	CheckTimeout time.Duration
	// MaxOpsPerSegment bounds the operations porcupine searches at once, which bounds its
	// memory (it keeps a bitset of the segment's size per visited state). Default
	// DefaultMaxOpsPerSegment.
	MaxOpsPerSegment int
	// CheckMemory is the heap growth, in bytes, after which a porcupine search is abandoned
	// as unknown (default DefaultCheckMemory).
	CheckMemory int64
	// Porcupine searches every key with porcupine, in segments, even where the chain
	// checker could decide it (to compare the two).
	Porcupine bool
}

func (o Options) withDefaults() Options {
	var ws []time.Duration
	for _, w := range o.Windows { // positive and distinct, in the order given
		if w > 0 && !slices.Contains(ws, w) {
			ws = append(ws, w)
		}
	}
	if len(ws) == 0 {
		ws = DefaultWindows
	}
	o.Windows = ws
	if o.CheckTimeout == 0 {
		o.CheckTimeout = DefaultCheckTimeout
	}
	if o.MaxOpsPerSegment <= 0 {
		o.MaxOpsPerSegment = DefaultMaxOpsPerSegment
	}
	if o.CheckMemory <= 0 {
		o.CheckMemory = DefaultCheckMemory
	}
	return o
}

// Summary is what summary.json holds. Times are seconds from the run's start; latencies are
// milliseconds from an operation's scheduled start (expected_start) to its completion, so
// time spent queued in the client counts (no coordinated omission), and cover successful
// operations. Throughput counts successful operations by completion time; latency is
// attributed to the window in which the operation was scheduled.
type Summary struct {
	RunDir      string         `json:"run_dir"`
	Title       string         `json:"title"`
	Params      map[string]any `json:"params,omitempty"` // the config keys used in titles
	GeneratedAt string         `json:"generated_at"`
	// Workload is the period operations were issued (workload-start to workload-end, or the
	// span of the operations when those events are missing).
	Workload Interval `json:"workload"`
	Ops      OpCounts `json:"ops"`
	Windows  Windows  `json:"windows"`
	// UnavailabilityS is the longest interval within the workload period in which no
	// operation succeeded; Unavailable says where it was.
	UnavailabilityS float64   `json:"unavailability_s"`
	Unavailable     *Interval `json:"unavailable,omitempty"`
	// PreFaultThroughput is the successful ops/s before the first fault, the reference for
	// recovery.
	PreFaultThroughput float64 `json:"pre_fault_throughput"`
	// RecoveryS is the recovery of the first fault window (each fault has its own).
	RecoveryS       Recovery        `json:"recovery_s"`
	LeaderChanges   int             `json:"leader_changes"`
	MaxTerm         uint64          `json:"max_term"`
	Leaders         []LeaderEvent   `json:"leaders"`
	Faults          []FaultWindow   `json:"faults"`
	Linearizability Linearizability `json:"linearizability"`
	// Probes counts the probes called after fault steps; Failed ones are listed.
	Probes *Probes `json:"probes,omitempty"`
	// StepErrors are the fault steps that failed (error events).
	StepErrors     []string              `json:"step_errors,omitempty"`
	SkippedRecords int                   `json:"skipped_records"`
	Skipped        []records.SkippedLine `json:"skipped_lines,omitempty"`
	Warnings       []string              `json:"warnings,omitempty"`
	Files          []string              `json:"files"` // what Analyze wrote, relative to RunDir
}

// Probes is what the probes after fault steps answered.
type Probes struct {
	Total    int            `json:"total"`
	Failed   int            `json:"failed"`
	Failures []ProbeFailure `json:"failures,omitempty"`
}

// ProbeFailure is one probe that did not answer 2xx.
type ProbeFailure struct {
	T      float64 `json:"t"`
	Step   string  `json:"step"`
	From   string  `json:"from"`
	URL    string  `json:"url"`
	Status int     `json:"status"`
	Error  string  `json:"error,omitempty"`
}

// probes summarises the probe events (Detail: {"url","ok","status","error",...}).
func probes(events []records.Event) *Probes {
	var p Probes
	for _, ev := range events {
		if ev.Type != records.EventProbe {
			continue
		}
		var d struct {
			URL    string `json:"url"`
			OK     bool   `json:"ok"`
			Status int    `json:"status"`
			Error  string `json:"error"`
		}
		if err := json.Unmarshal([]byte(ev.Detail), &d); err != nil {
			d.Error = "unreadable probe event: " + err.Error()
		}
		p.Total++
		if !d.OK {
			p.Failed++
			p.Failures = append(p.Failures, ProbeFailure{T: ev.T, Step: ev.Fault, From: ev.Node, URL: d.URL, Status: d.Status, Error: d.Error})
		}
	}
	if p.Total == 0 {
		return nil
	}
	return &p
}

// Interval is a span of run time in seconds.
type Interval struct {
	Start float64 `json:"start_s"`
	End   float64 `json:"end_s"`
}

// Duration is End-Start.
func (i Interval) Duration() float64 { return i.End - i.Start }

// OpCounts counts operation records. Total = OK + Failed + Overload.
type OpCounts struct {
	Total    int `json:"total"`
	OK       int `json:"ok"`
	Failed   int `json:"failed"`
	Overload int `json:"overload"` // due but never sent (max-inflight reached)
	Reads    int `json:"reads"`
	Writes   int `json:"writes"`
	CAS      int `json:"cas"`
	// CASSwapped counts the successful cas that found their expected value and swapped.
	CASSwapped int `json:"cas_swapped"`
}

// Windows holds the statistics before the first fault, during any fault, after the last
// fault and over the whole workload period. A window that does not exist (no fault, or a
// fault never healed) is null.
type Windows struct {
	Before  *WindowStats `json:"before"`
	During  *WindowStats `json:"during"`
	After   *WindowStats `json:"after"`
	Overall *WindowStats `json:"overall"`
}

// WindowStats are the throughput and latency of one window.
type WindowStats struct {
	Spans          []Interval `json:"spans"` // several when faults do not overlap
	DurationS      float64    `json:"duration_s"`
	OK             int        `json:"ok"`       // successes completed in the window
	Failed         int        `json:"failed"`   // failures completed in the window
	Overload       int        `json:"overload"` // never sent, due in the window
	ThroughputOpsS float64    `json:"throughput_ops_s"`
	LatencyMS      *Latency   `json:"latency_ms"` // null when no operation succeeded
}

// Latency percentiles in milliseconds (nearest rank).
type Latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Recovery is how long throughput took to come back to 90 % of the pre-fault throughput,
// measured on 1 s buckets aligned to the reference time. FromFaultStart looks for the first
// bucket back at 90 % after throughput first fell below it (0 when it never did);
// FromHeal for the first bucket at 90 % from the heal on. Null means never (or not
// measurable; Note says why).
type Recovery struct {
	FromFaultStart *float64 `json:"from_fault_start"`
	FromHeal       *float64 `json:"from_heal"`
	Note           string   `json:"note,omitempty"`
}

// LeaderEvent is one observed leader (change) from events.jsonl.
type LeaderEvent struct {
	T      float64 `json:"t"`
	Leader string  `json:"leader"`
	Term   uint64  `json:"term,omitempty"`
}

// FaultWindow is one fault from its fault-start to its fault-end event.
type FaultWindow struct {
	Name      string        `json:"name"`
	Targets   []string      `json:"targets"`
	Start     float64       `json:"start_s"`
	End       *float64      `json:"end_s"` // null: the run ended before the fault-end event
	DurationS float64       `json:"duration_s"`
	Detail    string        `json:"detail,omitempty"`
	Actions   []FaultAction `json:"actions,omitempty"`
	RecoveryS Recovery      `json:"recovery_s"`
}

// FaultAction is one fault-action event inside a window (cut, heal, kill, ...).
type FaultAction struct {
	T       float64  `json:"t"`
	Action  string   `json:"action"`
	Targets []string `json:"targets,omitempty"`
	Detail  string   `json:"detail,omitempty"`
}

// Analyze reads a run directory and writes summary.json, one CSV time series per window,
// the plots (PNG and SVG), report.html and, on a linearizability violation,
// linearizability.html. It returns the summary even when writing some output failed (the
// error then says what); it returns a nil summary only when the run cannot be read.
func Analyze(runDir string, opts Options) (*Summary, error) {
	opts = opts.withDefaults()
	phase := time.Now()
	took := func(name string) { // phase timings, for dt -v
		slog.Debug("analyze", "dir", runDir, "phase", name, "took", time.Since(phase).Round(time.Millisecond))
		phase = time.Now()
	}
	run, err := records.Load(runDir)
	if err != nil {
		return nil, fmt.Errorf("analyze: %w", err)
	}
	took("load")
	a := prepare(run)
	sum := a.summarize()
	took("summary")

	vizPath := filepath.Join(runDir, records.VisualizationFile)
	sum.Linearizability = CheckLinearizability(run.Ops, opts, vizPath)
	took("linearizability")
	if sum.Linearizability.Result != LinViolation {
		// a stale visualisation from an earlier analysis would contradict the new verdict
		if err := os.Remove(vizPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			sum.Warnings = append(sum.Warnings, fmt.Sprintf("remove stale %s: %v", records.VisualizationFile, err))
		}
	}

	var errs []error
	written := []string{}
	note := func(name string, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		written = append(written, name)
	}
	series := map[time.Duration]*Series{}
	for _, w := range opts.Windows {
		s := a.series(w)
		if len(s.Buckets) == 0 && a.counts.Total > 0 {
			sum.Warnings = append(sum.Warnings, fmt.Sprintf("no %s time series: too many buckets for the run's time span", w))
		}
		series[w] = s
		name := records.SeriesFile(w)
		note(name, writeFileAtomic(filepath.Join(runDir, name), func(f *os.File) error { return s.WriteCSV(f, a.faults) }))
	}
	took("time series")
	plots, err := a.drawPlots(sum, series, opts.Windows)
	took("plots")
	if err != nil {
		errs = append(errs, err)
	}
	for _, p := range plots {
		for _, ext := range []string{"png", "svg"} {
			name := p.name + "." + ext
			data := p.png
			if ext == "svg" {
				data = p.svg
			}
			note(name, writeFileAtomic(filepath.Join(runDir, name), func(f *os.File) error { _, err := f.Write(data); return err }))
		}
	}
	if sum.Linearizability.Visualization != "" {
		written = append(written, sum.Linearizability.Visualization)
	}
	written = append(written, records.SummaryFile, records.ReportFile)
	sum.Files = written
	note("", writeFileAtomic(filepath.Join(runDir, records.SummaryFile), func(f *os.File) error {
		enc := json.NewEncoder(f)
		enc.SetIndent("", "  ")
		return enc.Encode(sum)
	}))
	note("", writeFileAtomic(filepath.Join(runDir, records.ReportFile), func(f *os.File) error {
		return writeReport(f, run, sum, plots)
	}))
	took("report")
	if len(errs) > 0 {
		return sum, fmt.Errorf("analyze %s: %w", runDir, errors.Join(errs...))
	}
	return sum, nil
}

// writeFileAtomic writes path through a temporary file and a rename, so a reader (or a
// crash) never sees half a file.
func writeFileAtomic(path string, write func(*os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// opPoint is an operation reduced to what the statistics need.
type opPoint struct {
	start float64 // scheduled start (s)
	done  float64 // completion (s)
	lat   float64 // ms
	state uint8
}

const (
	stOK uint8 = iota
	stFailed
	stOverload
)

// analysis is a loaded run prepared for the statistics: operations sorted two ways, the
// workload period, the fault windows and leader changes.
type analysis struct {
	run      *records.Run
	period   Interval
	byStart  []opPoint // sorted by start
	okDone   []float64 // completion times of successes, sorted
	failDone []float64 // completion times of failures (not overload), sorted
	faults   []FaultWindow
	leaders  []LeaderEvent
	counts   OpCounts
}

// opStart is when the operation was scheduled to start: expected_start when the client
// recorded one (open loop), else when it was sent.
func opStart(op *records.Op) float64 {
	if op.ExpectedStart > 0 && op.ExpectedStart <= op.Submitted {
		return op.ExpectedStart
	}
	return op.Submitted
}

func prepare(run *records.Run) *analysis {
	a := &analysis{run: run}
	a.byStart = make([]opPoint, 0, len(run.Ops))
	minStart, maxDone := math.Inf(1), math.Inf(-1)
	for i := range run.Ops {
		op := &run.Ops[i]
		p := opPoint{start: opStart(op), done: op.Completed}
		if p.done < p.start {
			p.done = p.start
		}
		p.lat = (p.done - p.start) * 1000
		a.counts.Total++
		switch op.Kind {
		case records.KindRead:
			a.counts.Reads++
		case records.KindWrite:
			a.counts.Writes++
		case records.KindCAS:
			a.counts.CAS++
			if op.Swapped && op.OK() {
				a.counts.CASSwapped++
			}
		}
		switch {
		case op.OK():
			p.state = stOK
			a.counts.OK++
			a.okDone = append(a.okDone, p.done)
		case op.Result == records.ResultOverload:
			p.state = stOverload
			p.done = p.start
			a.counts.Overload++
		default:
			p.state = stFailed
			a.counts.Failed++
			a.failDone = append(a.failDone, p.done)
		}
		minStart, maxDone = min(minStart, p.start), max(maxDone, p.done)
		a.byStart = append(a.byStart, p)
	}
	slices.SortFunc(a.byStart, func(x, y opPoint) int {
		if x.start < y.start {
			return -1
		} else if x.start > y.start {
			return 1
		}
		return 0
	})
	slices.Sort(a.okDone)
	slices.Sort(a.failDone)

	// The workload period: its events when present, else the span of the operations.
	ws, we := math.NaN(), math.NaN()
	var lastT float64
	for _, ev := range run.Events {
		lastT = max(lastT, ev.T)
		switch ev.Type {
		case records.EventWorkloadStart:
			if math.IsNaN(ws) {
				ws = ev.T
			}
		case records.EventWorkloadEnd:
			we = ev.T
		}
	}
	if math.IsNaN(ws) {
		ws = minStart
	}
	if math.IsNaN(we) || we < ws {
		we = maxDone
	}
	if math.IsInf(ws, 0) || math.IsNaN(ws) { // no operations and no workload events
		ws, we = 0, lastT
	}
	if math.IsInf(we, 0) || math.IsNaN(we) || we < ws {
		we = max(ws, lastT)
	}
	a.period = Interval{ws, we}
	a.faults, a.leaders = faultWindows(run.Events)
	return a
}

// faultWindows pairs fault-start and fault-end events (by fault name, first in first out)
// and collects the leader events.
func faultWindows(events []records.Event) ([]FaultWindow, []LeaderEvent) {
	var faults []FaultWindow
	var leaders []LeaderEvent
	open := []int{} // indices of open windows, oldest first
	find := func(name string) int {
		for k := len(open) - 1; k >= 0; k-- { // the newest open window of that fault
			if name == "" || faults[open[k]].Name == name {
				return k
			}
		}
		return -1
	}
	for _, ev := range events {
		switch ev.Type {
		case records.EventFaultStart:
			f := FaultWindow{Name: ev.Fault, Targets: ev.Targets, Start: ev.T, Detail: ev.Detail}
			if ev.Action != "" { // the first action may be logged with the start
				f.Actions = []FaultAction{{T: ev.T, Action: ev.Action, Targets: ev.Targets, Detail: ev.Detail}}
			}
			faults = append(faults, f)
			open = append(open, len(faults)-1)
		case records.EventFaultAction:
			if k := find(ev.Fault); k >= 0 {
				f := &faults[open[k]]
				f.Actions = append(f.Actions, FaultAction{T: ev.T, Action: ev.Action, Targets: ev.Targets, Detail: ev.Detail})
			}
		case records.EventFaultEnd:
			k := -1
			for j, idx := range open { // the oldest open window of that fault
				if ev.Fault == "" || faults[idx].Name == ev.Fault {
					k = j
					break
				}
			}
			if k >= 0 {
				t := ev.T
				faults[open[k]].End = &t
				open = slices.Delete(open, k, k+1)
			}
		case records.EventLeader:
			leaders = append(leaders, LeaderEvent{T: ev.T, Leader: ev.Leader, Term: ev.Term})
		}
	}
	return faults, leaders
}

// faultEnd is where a window ends for the statistics: its fault-end, or the end of the
// period when the run ended inside it.
func (a *analysis) faultEnd(f FaultWindow) float64 {
	if f.End != nil {
		return *f.End
	}
	return max(a.period.End, f.Start)
}

func (a *analysis) summarize() *Summary {
	run := a.run
	s := &Summary{
		RunDir:         run.Dir,
		GeneratedAt:    time.Now().UTC().Format(time.RFC3339),
		Workload:       roundInterval(a.period),
		Ops:            a.counts,
		Faults:         a.faults,
		Leaders:        a.leaders,
		SkippedRecords: run.SkippedRecords,
		Skipped:        run.Skipped,
		Warnings:       append([]string(nil), run.Warnings...),
	}
	s.Title, s.Params = runTitle(run)
	s.Probes = probes(run.Events)
	for _, ev := range run.Events {
		if ev.Type == records.EventError && ev.Fault != "" {
			s.StepErrors = append(s.StepErrors, fmt.Sprintf("%.2f s %s: %s", ev.T, ev.Fault, ev.Detail))
		}
	}
	if s.Faults == nil {
		s.Faults = []FaultWindow{}
	}
	if s.Leaders == nil {
		s.Leaders = []LeaderEvent{}
	}

	p := a.period
	s.Windows.Overall = a.window([]Interval{p})
	if len(a.faults) > 0 {
		first := a.faults[0].Start
		s.Windows.Before = a.window([]Interval{{p.Start, min(first, p.End)}})
		s.Windows.During = a.window(a.faultSpans())
		healed := true
		last := math.Inf(-1)
		for _, f := range a.faults {
			if f.End == nil {
				healed = false
			}
			last = max(last, a.faultEnd(f))
		}
		if healed && last < p.End {
			s.Windows.After = a.window([]Interval{{max(last, p.Start), p.End}})
		}
	} else {
		s.Windows.Before = s.Windows.Overall
	}

	if gap := a.longestGap(); gap.Duration() > 0 {
		g := roundInterval(gap)
		s.Unavailable = &g
		s.UnavailabilityS = round3(gap.Duration())
	}

	if s.Windows.Before != nil {
		s.PreFaultThroughput = s.Windows.Before.ThroughputOpsS
	}
	for i := range s.Faults {
		s.Faults[i].RecoveryS = a.recovery(s.Faults[i], s.Windows.Before)
		s.Faults[i].DurationS = round3(a.faultEnd(s.Faults[i]) - s.Faults[i].Start)
	}
	if len(s.Faults) > 0 {
		s.RecoveryS = s.Faults[0].RecoveryS
	} else {
		s.RecoveryS.Note = "no fault"
	}

	s.LeaderChanges = len(a.leaderChanges())
	for _, ev := range run.Events {
		s.MaxTerm = max(s.MaxTerm, ev.Term)
	}
	return s
}

// faultSpans is the union of the fault windows, clipped to the workload period.
func (a *analysis) faultSpans() []Interval {
	var spans []Interval
	for _, f := range a.faults {
		lo, hi := max(f.Start, a.period.Start), min(a.faultEnd(f), a.period.End)
		if hi > lo {
			spans = append(spans, Interval{lo, hi})
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].Start < spans[j].Start })
	var merged []Interval
	for _, sp := range spans {
		if n := len(merged); n > 0 && sp.Start <= merged[n-1].End {
			merged[n-1].End = max(merged[n-1].End, sp.End)
			continue
		}
		merged = append(merged, sp)
	}
	return merged
}

// minWindow is the shortest window given statistics: a fault-end logged just before the
// workload ends must not produce an "after" window of a few milliseconds whose rate means
// nothing.
const minWindow = 1.0

// window computes the statistics of a set of disjoint spans; nil when shorter than
// minWindow in all.
func (a *analysis) window(spans []Interval) *WindowStats {
	w := &WindowStats{}
	var lats []float64
	for _, sp := range spans {
		if sp.End <= sp.Start {
			continue
		}
		w.Spans = append(w.Spans, roundInterval(sp))
		w.DurationS += sp.End - sp.Start
		w.OK += countIn(a.okDone, sp.Start, sp.End)
		w.Failed += countIn(a.failDone, sp.Start, sp.End)
		lo := sort.Search(len(a.byStart), func(i int) bool { return a.byStart[i].start >= sp.Start })
		for i := lo; i < len(a.byStart) && a.byStart[i].start < sp.End; i++ {
			switch a.byStart[i].state {
			case stOK:
				lats = append(lats, a.byStart[i].lat)
			case stOverload:
				w.Overload++
			}
		}
	}
	if w.DurationS < minWindow {
		return nil
	}
	w.ThroughputOpsS = round3(float64(w.OK) / w.DurationS)
	w.DurationS = round3(w.DurationS)
	w.LatencyMS = latencyOf(lats)
	return w
}

// latencyOf sorts lats in place and returns its percentiles, nil when empty.
func latencyOf(lats []float64) *Latency {
	if len(lats) == 0 {
		return nil
	}
	slices.Sort(lats)
	return &Latency{N: len(lats), P50: round3(quantile(lats, 0.50)), P99: round3(quantile(lats, 0.99)), Max: round3(lats[len(lats)-1])}
}

// quantile is the nearest-rank q-quantile of sorted values.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	k := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(k, 0), len(sorted)-1)]
}

// countIn counts sorted values in [lo, hi).
func countIn(sorted []float64, lo, hi float64) int {
	i := sort.SearchFloat64s(sorted, lo)
	j := sort.SearchFloat64s(sorted, hi)
	return j - i
}

// longestGap is the longest interval of the workload period without a successful
// completion, counting from the period's start and up to its end.
func (a *analysis) longestGap() Interval {
	p := a.period
	best := Interval{}
	prev := p.Start
	for _, t := range a.okDone {
		if t < p.Start {
			continue
		}
		if t > p.End {
			break
		}
		if t-prev > best.Duration() {
			best = Interval{prev, t}
		}
		prev = t
	}
	if p.End-prev > best.Duration() {
		best = Interval{prev, p.End}
	}
	return best
}

// recovery measures a fault window's recovery against the pre-fault window.
func (a *analysis) recovery(f FaultWindow, before *WindowStats) Recovery {
	var r Recovery
	if before == nil || before.DurationS < 1 || before.OK == 0 {
		r.Note = "no pre-fault throughput to recover to (less than 1 s of successful operations before the fault)"
		return r
	}
	target := 0.9 * before.ThroughputOpsS
	ok := func(t float64) bool { return float64(countIn(a.okDone, t, t+1)) >= target }
	end := a.period.End
	heal := a.faultEnd(f)

	// From the fault start: find the dip (within the window), then the first bucket back.
	dipped := false
	for t := f.Start; t+1 <= end; t++ {
		if !dipped {
			if t >= heal {
				break // throughput never fell below 90 % during the fault
			}
			if !ok(t) {
				dipped = true
			}
			continue
		}
		if ok(t) {
			v := round3(t - f.Start)
			r.FromFaultStart = &v
			break
		}
	}
	if !dipped {
		v := 0.0
		r.FromFaultStart = &v
	}
	if f.End == nil {
		r.Note = "the fault was never healed"
		return r
	}
	for t := heal; t+1 <= end; t++ {
		if ok(t) {
			v := round3(t - heal)
			r.FromHeal = &v
			break
		}
	}
	if r.FromFaultStart == nil || r.FromHeal == nil {
		r.Note = fmt.Sprintf("throughput did not return to 90%% of %.1f ops/s in a whole 1 s bucket before the workload ended", before.ThroughputOpsS)
	}
	return r
}

// Config keys that name a run, in title order.
var titleKeys = []string{"system", "topology", "workload", "fault"}

// Config keys shown after the title.
var paramKeys = []string{"rate", "number_nodes", "number_clients", "duration", "seed", "ops", "read_consistency"}

// runTitle names a run from its config ("etcd simple uniform leader") and returns the
// parameters it used; without a config it falls back on the run directory's name.
func runTitle(run *records.Run) (string, map[string]any) {
	params := map[string]any{}
	var parts []string
	for _, k := range append(append([]string{}, titleKeys...), paramKeys...) {
		if v, ok := configValue(run.Config, k); ok {
			params[k] = v
		}
	}
	for _, k := range titleKeys {
		if v, ok := params[k]; ok {
			parts = append(parts, formatValue(v))
		}
	}
	if len(parts) == 0 {
		// results/<system>-<topology>-<workload>-<fault>/<time>/
		abs, err := filepath.EvalSymlinks(run.Dir) // results/latest names nothing
		if err != nil {
			abs = run.Dir
		}
		abs, _ = filepath.Abs(abs)
		if p := strings.Split(filepath.Base(filepath.Dir(abs)), "-"); len(p) >= 4 {
			parts = p
		} else {
			parts = []string{filepath.Base(abs)}
		}
	}
	title := strings.Join(parts, " ")
	var extra []string
	if v, ok := params["rate"]; ok {
		extra = append(extra, formatValue(v)+" ops/s")
	}
	if v, ok := params["ops"]; ok && formatValue(v) != "" {
		extra = append(extra, formatValue(v))
	}
	if v, ok := params["read_consistency"]; ok && formatValue(v) != "" && formatValue(v) != "linearizable" {
		extra = append(extra, formatValue(v)+" reads")
	}
	if v, ok := params["number_nodes"]; ok {
		extra = append(extra, formatValue(v)+" nodes")
	}
	if len(extra) > 0 {
		title += " — " + strings.Join(extra, ", ")
	}
	return title, params
}

// configValue finds key at the top level of the config or one level down (a config may
// group parameters by component).
func configValue(cfg map[string]any, key string) (any, bool) {
	if v, ok := cfg[key]; ok && v != nil {
		return v, true
	}
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if m, ok := cfg[k].(map[string]any); ok {
			if v, ok := m[key]; ok && v != nil {
				return v, true
			}
		}
	}
	return nil, false
}

func formatValue(v any) string {
	switch x := v.(type) {
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case string:
		return x
	case nil:
		return ""
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(b)
	}
}

func round3(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	return math.Round(v*1000) / 1000
}

func roundInterval(i Interval) Interval { return Interval{round3(i.Start), round3(i.End)} }
