package sweep

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtlab/dt/experiment"
	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/results"
)

// fakeRunner stands in for experiment.Run: it makes a run directory under the results
// root the way experiment.Run does, writes config.json and a summary whose figures are a
// function of the parameters and the seed, and records every call.
type fakeRunner struct {
	mu    sync.Mutex
	calls []experiment.Config
	// fail makes a run fail (with a summary, as a real failed run has) when it returns true.
	fail func(cfg experiment.Config) bool
	// after is called after each run (e.g. to cancel the sweep's context).
	after func(n int)
}

func (f *fakeRunner) Run(ctx context.Context, cfg experiment.Config, o experiment.Options) (*experiment.Outcome, error) {
	f.mu.Lock()
	f.calls = append(f.calls, cfg)
	n := len(f.calls)
	f.mu.Unlock()
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "building topology\n\r\033[K[ 1.0/%gs] 100 ok ops/s", cfg.Duration)
	}
	dir := filepath.Join(cfg.ResultsRoot, cfg.Name(), fmt.Sprintf("run%03d", n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(cfg)
	os.WriteFile(filepath.Join(dir, records.ConfigFile), b, 0o644)
	sum := synthSummary(dir, cfg.Rate, cfg.Nodes, cfg.Seed)
	b, _ = json.Marshal(sum)
	os.WriteFile(filepath.Join(dir, records.SummaryFile), b, 0o644)
	out := &experiment.Outcome{RunDir: dir, RunID: fmt.Sprintf("fa%04d", n), Summary: sum}
	var err error
	if f.fail != nil && f.fail(cfg) {
		err = errors.New("workload on c1: boom")
	}
	if f.after != nil {
		f.after(n)
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return out, err
}

func (f *fakeRunner) seeds() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int64
	for _, c := range f.calls {
		out = append(out, c.Seed)
	}
	return out
}

// synthSummary has figures that depend on the parameters (p99 grows with rate, falls with
// nodes) plus seed noise, so aggregation can be checked.
func synthSummary(dir string, rate float64, nodes int, seed int64) *results.Summary {
	noise := float64(seed%7) - 3
	lat := &results.Latency{N: 100, P50: rate / 100, P99: rate/10 + 10*float64(5-nodes) + noise, Max: rate}
	rec := 1.5
	return &results.Summary{
		RunDir: dir, Title: "synthetic",
		Ops:             results.OpCounts{Total: 100, OK: 90, Failed: 10},
		Windows:         results.Windows{Overall: &results.WindowStats{DurationS: 3, OK: 90, ThroughputOpsS: rate * 0.9, LatencyMS: lat}},
		UnavailabilityS: 0.5 + float64(nodes)/10, RecoveryS: results.Recovery{FromFaultStart: &rec},
		Faults:          []results.FaultWindow{{Name: "x"}},
		Linearizability: results.Linearizability{Result: results.LinOK, Ops: 90},
	}
}

// fakeHost reports leftovers for the run ids in dirty; dirty ones in stuck cannot be removed.
type fakeHost struct {
	mu     sync.Mutex
	checks []string
	dirty  map[string]bool
	stuck  map[string]bool
}

func (h *fakeHost) Check(_ context.Context, runID string) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks = append(h.checks, runID)
	if h.dirty[runID] {
		if h.stuck[runID] {
			return []string{"netns dt-" + runID + "-s1"}, fmt.Errorf("%w: still there: netns dt-%s-s1", ErrHostDirty, runID)
		}
		return []string{"netns dt-" + runID + "-s1"}, nil
	}
	return nil, nil
}

const small = `
name: small
base: {fault: partial-partition, duration: 2}
axes:
  rate: [100, 1000]
  number-nodes: [3, 5]
repeats: 2
seed: 7
`

func openSmall(t *testing.T, root, src string, fresh bool) *Dir {
	t.Helper()
	s := mustParse(t, src)
	d, err := Open(root, s, fresh)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func execute(t *testing.T, d *Dir, o Options) *Result {
	t.Helper()
	if o.Host == nil {
		o.Host = &fakeHost{}
	}
	res, err := d.Execute(context.Background(), o)
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	return res
}

func readRows(t *testing.T, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, h := range recs[0] {
			m[h] = r[i]
		}
		out = append(out, m)
	}
	return out
}

func TestExecuteRunsEveryRunOnce(t *testing.T) {
	root := t.TempDir()
	d := openSmall(t, root, small, false)
	fr := &fakeRunner{}
	var progress bytes.Buffer
	res := execute(t, d, Options{Runner: fr, Progress: &progress})
	if res.Ran != 8 || res.OK != 8 || res.Selected != 8 || res.Failed != 0 {
		t.Fatalf("result %+v", res)
	}
	var want []int64
	for _, r := range d.Sweep.Runs() {
		want = append(want, r.Seed)
	}
	if got := fr.seeds(); !slices.Equal(got, want) {
		t.Errorf("seeds passed to the runner %v, want %v", got, want)
	}
	for i, c := range fr.calls {
		r := d.Sweep.Runs()[i]
		if c.ResultsRoot != filepath.Join(d.Path, "runs", r.Name()) {
			t.Errorf("run %s: results root %s", r.Name(), c.ResultsRoot)
		}
	}
	if d.Path != filepath.Join(root, "sweeps", "small") {
		t.Errorf("sweep dir %s", d.Path)
	}
	rows := readRows(t, filepath.Join(d.Path, FileCSV))
	if len(rows) != 8 {
		t.Fatalf("%d rows", len(rows))
	}
	r := rows[5] // p03-r2: rate 1000, nodes 3
	if r["run"] != "p03-r2" || r["rate"] != "1000" || r["number-nodes"] != "3" || r["status"] != "ok" ||
		r["fault"] != "partial-partition" || r["duration"] != "2" || r["repeat"] != "2" {
		t.Errorf("row 5: %v", r)
	}
	if r["seed"] != fmt.Sprint(d.Sweep.Runs()[5].Seed) || !strings.HasPrefix(r["run_dir"], "runs/p03-r2/") || r["run_id"] != "fa0006" {
		t.Errorf("row 5 bookkeeping: seed %s dir %s id %s", r["seed"], r["run_dir"], r["run_id"])
	}
	if r["windows.overall.throughput_ops_s"] != "900" || r["faults.count"] != "1" || r["linearizability.result"] != "ok" ||
		r["windows.before.latency_ms.p99"] != "" || r["recovery_s.from_fault_start"] != "1.5" {
		t.Errorf("row 5 figures: %v", r)
	}
	for _, f := range []string{FileCopy, FileMeta, FileState, FileIndex} {
		if _, err := os.Stat(filepath.Join(d.Path, f)); err != nil {
			t.Error(err)
		}
	}
	if out := progress.String(); !strings.Contains(out, "[8/8] p04-r2 rate=1000 number-nodes=5: ok in") || !strings.Contains(out, "ETA 0s, 0 failed") {
		t.Errorf("progress:\n%s", out)
	}
	// A second session has nothing to do.
	fr2 := &fakeRunner{}
	res = execute(t, d, Options{Runner: fr2})
	if res.Ran != 0 || res.Done != 8 || len(fr2.calls) != 0 {
		t.Errorf("second session: %+v, %d calls", res, len(fr2.calls))
	}
}

// TestResume: an interrupted session, a crashed run and a failed run, then a resume that
// runs exactly what is missing.
func TestResume(t *testing.T) {
	root := t.TempDir()
	d := openSmall(t, root, small, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fr := &fakeRunner{
		fail: func(c experiment.Config) bool {
			return c.Rate == 100 && c.Nodes == 5 && c.Seed == d.Sweep.Runs()[2].Seed
		},
		after: func(n int) {
			if n == 5 {
				cancel()
			}
		}, // Ctrl-C during the 5th run
	}
	res, err := d.Execute(ctx, Options{Runner: fr, Host: &fakeHost{}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || res.Ran != 5 || res.OK != 3 || res.Failed != 1 {
		t.Fatalf("first session: %+v", res)
	}
	runs := d.Sweep.Runs()
	wantStatus := []string{StatusOK, StatusOK, StatusFailed, StatusOK, StatusInterrupted, StatusPending, StatusPending, StatusPending}
	for i, r := range runs {
		if got := d.State(r).Status; got != wantStatus[i] {
			t.Errorf("%s: status %s, want %s", r.Name(), got, wantStatus[i])
		}
	}
	if st := d.State(runs[2]); !strings.Contains(st.End.Error, "boom") {
		t.Errorf("failed run's error not recorded: %+v", st.End)
	}
	// A crash: the process dies after recording the start of p03-r2 (kill -9).
	if err := d.append(Record{Event: "start", Run: runs[5].Name(), Point: runs[5].Point.Key(), Repeat: 2, Seed: runs[5].Seed, Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(filepath.Join(d.Path, FileState), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"time":"2026-01-01T00:00:00Z","event":"end","run":"p03-r2","status":"o`) // torn by the crash
	f.Close()
	d.Close()

	d = openSmall(t, root, small, false)
	if len(d.Warn) != 1 || !strings.Contains(d.Warn[0], "skipped unreadable record") {
		t.Errorf("torn line: warnings %q", d.Warn)
	}
	if st := d.State(runs[5]); st.Status != StatusCrashed || st.Attempts != 1 {
		t.Errorf("crashed run: %+v", st)
	}
	fr2 := &fakeRunner{}
	res = execute(t, d, Options{Runner: fr2})
	// Interrupted p03-r1, crashed p03-r2 and the pending p04s run; the failed p02-r1 stays.
	var ran []string
	for _, c := range fr2.calls {
		ran = append(ran, filepath.Base(c.ResultsRoot))
	}
	if want := []string{"p03-r1", "p03-r2", "p04-r1", "p04-r2"}; !slices.Equal(ran, want) {
		t.Errorf("resume ran %v, want %v", ran, want)
	}
	if res.KeptFailed != 1 || res.Done != 4 || res.OK != 4 {
		t.Errorf("resume: %+v", res)
	}
	if st := d.State(runs[5]); st.Status != StatusOK || st.Attempts != 2 {
		t.Errorf("retried crash: %+v", st)
	}
	rows := readRows(t, filepath.Join(d.Path, FileCSV))
	if len(rows) != 8 || rows[2]["status"] != "failed" || !strings.Contains(rows[2]["error"], "boom") || rows[2]["windows.overall.throughput_ops_s"] != "90" {
		t.Errorf("%d rows; failed row %v", len(rows), rows[2])
	}
	// --retry-failed runs the failed one, and only it.
	fr3 := &fakeRunner{}
	res = execute(t, d, Options{Runner: fr3, RetryFailed: true})
	if len(fr3.calls) != 1 || fr3.calls[0].Seed != runs[2].Seed || res.OK != 1 {
		t.Errorf("retry-failed: %+v, calls %d", res, len(fr3.calls))
	}
}

func TestExecuteOnly(t *testing.T) {
	d := openSmall(t, t.TempDir(), small, false)
	f, err := ParseFilter(d.Sweep, "rate=1000", "repeat=1")
	if err != nil {
		t.Fatal(err)
	}
	fr := &fakeRunner{}
	res := execute(t, d, Options{Runner: fr, Only: f})
	if res.Selected != 2 || res.Ran != 2 || fr.calls[0].Rate != 1000 || fr.calls[1].Nodes != 5 {
		t.Errorf("%+v, calls %+v", res, fr.calls)
	}
	if rows := readRows(t, filepath.Join(d.Path, FileCSV)); len(rows) != 2 {
		t.Errorf("%d rows", len(rows))
	}
}

func TestOpenRefusesChangedSweep(t *testing.T) {
	root := t.TempDir()
	d := openSmall(t, root, small, false)
	execute(t, d, Options{Runner: &fakeRunner{}, Only: must(ParseFilter(d.Sweep, "point=p01"))})
	d.Close()

	// Cosmetic changes resume the same directory, and its copy of the file is refreshed.
	cosmetic := "# plots only\n" + small + "plots:\n  - {x: number-nodes, y: unavailability}\n"
	d2 := openSmall(t, root, cosmetic, false)
	if d2.Path != d.Path || !d2.Resumed() {
		t.Errorf("cosmetic change: %s resumed %v", d2.Path, d2.Resumed())
	}
	if b, _ := os.ReadFile(filepath.Join(d.Path, FileCopy)); string(b) != cosmetic {
		t.Error("the copy of the sweep file was not refreshed")
	}
	d2.Close()

	changed := strings.Replace(small, "[100, 1000]", "[100, 2000]", 1)
	_, err := Open(root, mustParse(t, changed), false)
	if !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), "axes.rate: [100, 1000] → [100, 2000]") || !strings.Contains(err.Error(), "--fresh") {
		t.Fatalf("changed sweep: %v", err)
	}
	d3 := openSmall(t, root, changed, true)
	if d3.Path != d.Path+"-2" || d3.Resumed() {
		t.Errorf("--fresh made %s (resumed %v)", d3.Path, d3.Resumed())
	}
	if st := d3.State(d3.Sweep.Runs()[0]); st.Status != StatusPending {
		t.Errorf("fresh directory has state %+v", st)
	}
	d3.Close()
	// The newest directory is the one resumed: the changed file now resumes NAME-2 and the
	// original is refused (it would need --fresh again).
	if d4 := openSmall(t, root, changed, false); d4.Path != d.Path+"-2" {
		t.Errorf("resumed %s", d4.Path)
	} else {
		d4.Close()
	}
	if _, err := Open(root, mustParse(t, small), false); !errors.Is(err, ErrChanged) {
		t.Errorf("original file against NAME-2: %v", err)
	}
	// The old directory is untouched.
	if st := mustOpenReport(t, d.Path).State(d.Sweep.Runs()[0]); st.Status != StatusOK {
		t.Errorf("old directory lost its state: %+v", st)
	}
}

func TestOpenLocks(t *testing.T) {
	root := t.TempDir()
	d := openSmall(t, root, small, false)
	if _, err := Open(root, d.Sweep, false); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
		t.Errorf("second open: %v", err)
	}
	d.Close()
	d2, err := Open(root, d.Sweep, false)
	if err != nil {
		t.Fatalf("after close: %v", err)
	}
	d2.Close()
}

func TestHostLeftovers(t *testing.T) {
	d := openSmall(t, t.TempDir(), small, false)
	// Run 2 leaves something that the check removes: the run fails, the sweep goes on.
	h := &fakeHost{dirty: map[string]bool{"fa0002": true}}
	fr := &fakeRunner{}
	res, err := d.Execute(context.Background(), Options{Runner: fr, Host: h})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ran != 8 || res.Failed != 1 {
		t.Errorf("%+v", res)
	}
	st := d.State(d.Sweep.Runs()[1])
	if st.Status != StatusFailed || !strings.Contains(st.End.Error, "host not clean after the run: netns dt-fa0002-s1") {
		t.Errorf("dirty run: %+v", st.End)
	}
	// One check before the first run (runs of killed sessions), one after each run.
	if want := []string{"", "fa0001", "fa0002"}; !slices.Equal(h.checks[:3], want) || len(h.checks) != 9 {
		t.Errorf("checks %v", h.checks)
	}
	// Leftovers that cannot be removed stop the sweep.
	d2 := openSmall(t, t.TempDir(), small, false)
	h2 := &fakeHost{dirty: map[string]bool{"fa0003": true}, stuck: map[string]bool{"fa0003": true}}
	fr2 := &fakeRunner{}
	res, err = d2.Execute(context.Background(), Options{Runner: fr2, Host: h2})
	if !errors.Is(err, ErrHostDirty) || res.Ran != 3 || len(fr2.calls) != 3 {
		t.Errorf("stuck leftovers: %v, %+v", err, res)
	}
}

func TestProgressTTY(t *testing.T) {
	d := openSmall(t, t.TempDir(), small, false)
	var buf syncBuffer
	now := time.Unix(0, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); now = now.Add(400 * time.Millisecond); return now }
	defer func(d time.Duration) { redrawInterval = d }(redrawInterval)
	redrawInterval = 2 * time.Millisecond
	fr := &fakeRunner{after: func(int) { time.Sleep(20 * time.Millisecond) }} // redraws during every run
	fr.fail = func(c experiment.Config) bool { return c.Rate == 1000 && c.Nodes == 3 }
	if _, err := d.Execute(context.Background(), Options{Runner: fr, Host: &fakeHost{}, Progress: &buf, TTY: true, Now: clock}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"small [0/8] elapsed", "ETA ?", "| p01-r1 rate=100 number-nodes=3", "| [ 1.0/2s] 100 ok ops/s", // live line
		"\r\x1b[K[5/8] p03-r1 rate=1000 number-nodes=3: failed in", "workload on c1: boom", "2 failed", // finished lines
	} {
		if !strings.Contains(out, want) {
			t.Errorf("progress lacks %q:\n%q", want, out)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func mustOpenReport(t *testing.T, dir string) *Dir {
	t.Helper()
	d, err := OpenReport(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestList(t *testing.T) {
	root := t.TempDir()
	s := mustParse(t, small)
	var b bytes.Buffer
	if err := List(&b, root, s, Filter{}, false); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "4 points × 2 repeats = 8 runs") || !strings.Contains(out, "(new)") ||
		!strings.Contains(out, fmt.Sprintf("p02-r1  %d  pending  rate=100 number-nodes=5", s.Runs()[2].Seed)) {
		t.Errorf("new sweep:\n%s", out)
	}
	if _, err := os.Stat(SweepDir(root, "small")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a dry run created the directory")
	}
	d := openSmall(t, root, small, false)
	execute(t, d, Options{Runner: &fakeRunner{}, Only: must(ParseFilter(s, "point=p01"))})
	d.Close()
	b.Reset()
	List(&b, root, s, must(ParseFilter(s, "rate=100")), false)
	if out := b.String(); !strings.Contains(out, "4 selected by --only rate=100") || !strings.Contains(out, "(resuming)") ||
		!strings.Contains(out, "p01-r2") || !strings.Contains(out, " ok ") || strings.Contains(out, "p03") {
		t.Errorf("resumed sweep:\n%s", out)
	}
	b.Reset()
	List(&b, root, mustParse(t, strings.Replace(small, "seed: 7", "seed: 8", 1)), Filter{}, false)
	if out := b.String(); !strings.Contains(out, "seed: 7 → 8") || !strings.Contains(out, "would refuse it without --fresh") {
		t.Errorf("changed sweep:\n%s", out)
	}
}
