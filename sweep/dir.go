package sweep

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dtlab/dt/experiment"
	"github.com/dtlab/dt/results"
)

// Files of a sweep directory.
const (
	FileCopy     = "sweep.yaml"        // the sweep file the directory was made from
	FileMeta     = "sweep.json"        // name, hash and identity: what resuming compares
	FileState    = "sweep-state.jsonl" // the manifest: one record per session, run start and run end
	FileCSV      = "sweep.csv"         // one row per finished run
	FileLock     = "sweep.lock"        // held while a dt sweep works in the directory
	DirRuns      = "runs"              // runs/<point>-r<repeat>/ is each run's results root
	DirPlots     = "plots"             // aggregated plots
	FileIndex    = "index.html"        // the plots and a table of the runs
	stateVersion = 1
)

// Run statuses in the manifest.
const (
	StatusOK          = "ok"
	StatusFailed      = "failed"      // the run or the host check after it failed; kept unless --retry-failed
	StatusInterrupted = "interrupted" // Ctrl-C: torn down, retried on resume
	StatusCrashed     = "crashed"     // a start with no end: the sweep died; retried on resume
	StatusPending     = "pending"     // never started
)

// ErrChanged is returned by Open when the sweep file no longer matches the directory's.
var ErrChanged = errors.New("the sweep file changed since this sweep directory was made")

// ErrLocked is returned by Open when another dt sweep works in the directory.
var ErrLocked = errors.New("another dt sweep is running in this directory")

// Record is one line of sweep-state.jsonl.
type Record struct {
	Time  time.Time `json:"time"`
	Event string    `json:"event"` // session, start, end

	// session
	PID     int    `json:"pid,omitempty"`
	Hash    string `json:"hash,omitempty"`
	Version string `json:"dt_version,omitempty"`
	Note    string `json:"note,omitempty"`

	// start and end
	Run      string            `json:"run,omitempty"`   // p03-r2
	Point    string            `json:"point,omitempty"` // the point's key
	Repeat   int               `json:"repeat,omitempty"`
	Seed     int64             `json:"seed,omitempty"`
	Params   map[string]string `json:"params,omitempty"`
	Attempt  int               `json:"attempt,omitempty"`
	Duration float64           `json:"duration,omitempty"` // the experiment's --duration, for the ETA

	// end
	Status  string  `json:"status,omitempty"`
	Error   string  `json:"error,omitempty"`
	RunDir  string  `json:"run_dir,omitempty"` // relative to the sweep directory
	RunID   string  `json:"run_id,omitempty"`
	Seconds float64 `json:"seconds,omitempty"` // wall time of the run, teardown and checks included
}

// RunState is what the manifest says about one run.
type RunState struct {
	Status   string
	Attempts int
	End      *Record // the last end record, nil if none
	Start    *Record // the last start record, nil if none
}

type runKey struct {
	point  string
	repeat int
}

func keyOf(r Run) runKey { return runKey{r.Point.Key(), r.Repeat} }

// meta is sweep.json.
type meta struct {
	Version  int      `json:"version"`
	Name     string   `json:"name"`
	Hash     string   `json:"hash"`
	Created  string   `json:"created"`
	Source   string   `json:"source"` // where the sweep file was read from
	Identity identity `json:"identity"`
	Points   int      `json:"points"`
	Runs     int      `json:"runs"`
}

// Dir is an open sweep directory.
type Dir struct {
	Path  string
	Sweep *Sweep
	Warn  []string // problems reading the manifest (a torn last line after a crash)

	lock      *os.File
	state     map[runKey]*RunState
	manif     *os.File
	resume    bool
	summaries map[string]*results.Summary // by run dir: a finished run's summary does not change
}

// Resumed is true when the directory existed (this is not the sweep's first session).
func (d *Dir) Resumed() bool { return d.resume }

// SweepDir is where a sweep's directory goes by default: ROOT/sweeps/NAME.
func SweepDir(root, name string) string { return filepath.Join(root, "sweeps", name) }

// dirCandidates lists NAME, NAME-2, NAME-3, ... that exist under root/sweeps, oldest first.
func dirCandidates(root, name string) []string {
	base := SweepDir(root, name)
	var out []string
	if _, err := os.Stat(base); err == nil {
		out = append(out, base)
	}
	ents, _ := os.ReadDir(filepath.Dir(base))
	var nums []int
	for _, e := range ents {
		if rest, ok := strings.CutPrefix(e.Name(), name+"-"); ok && e.IsDir() {
			if n, err := strconv.Atoi(rest); err == nil && n >= 2 {
				nums = append(nums, n)
			}
		}
	}
	sort.Ints(nums)
	for _, n := range nums {
		out = append(out, fmt.Sprintf("%s-%d", base, n))
	}
	return out
}

// Locate returns the directory a sweep uses under root: its newest directory
// (NAME, or NAME-N after --fresh), or NAME when there is none. exists says whether it does.
func Locate(root string, s *Sweep) (dir string, exists bool) {
	c := dirCandidates(root, s.Name)
	if len(c) == 0 {
		return SweepDir(root, s.Name), false
	}
	return c[len(c)-1], true
}

// Open opens (resuming) or creates the sweep's directory under root and locks it. A
// directory made from a different sweep (by Hash) is refused with ErrChanged unless fresh,
// which makes a new directory NAME-N beside it and leaves the old one untouched.
func Open(root string, s *Sweep, fresh bool) (*Dir, error) {
	dir, exists := Locate(root, s)
	if exists && fresh {
		for n := len(dirCandidates(root, s.Name)) + 1; ; n++ {
			dir = fmt.Sprintf("%s-%d", SweepDir(root, s.Name), n)
			if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
				break
			}
		}
		exists = false
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	d := &Dir{Path: abs, Sweep: s, state: map[runKey]*RunState{}, resume: exists}
	if exists {
		if err := d.checkSame(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(abs, DirRuns), 0o755); err != nil {
		return nil, fmt.Errorf("create sweep directory: %w", err)
	}
	if err := d.takeLock(); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			d.Close()
		}
	}()
	if err := d.writeMeta(); err != nil {
		return nil, err
	}
	if err := d.loadState(); err != nil {
		return nil, err
	}
	if d.manif, err = os.OpenFile(filepath.Join(abs, FileState), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err != nil {
		return nil, fmt.Errorf("open manifest: %w", err)
	}
	ok = true
	return d, nil
}

// checkSame refuses a directory whose sweep differs from s, saying what differs.
func (d *Dir) checkSame() error {
	b, err := os.ReadFile(filepath.Join(d.Path, FileMeta))
	if errors.Is(err, os.ErrNotExist) {
		if ents, _ := os.ReadDir(d.Path); len(ents) == 0 {
			return nil
		}
		return fmt.Errorf("%s exists but is not a sweep directory (no %s): move it away or use --fresh", d.Path, FileMeta)
	}
	if err != nil {
		return err
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("read %s: %w", filepath.Join(d.Path, FileMeta), err)
	}
	if m.Hash == d.Sweep.Hash() {
		return nil
	}
	diffs := diffIdentity(m.Identity, d.Sweep.identity())
	return fmt.Errorf("%w: %s was made from a different sweep (%s); re-run with --fresh to start a new directory beside it, or restore the old file (a copy is %s)",
		ErrChanged, d.Path, strings.Join(diffs, "; "), filepath.Join(d.Path, FileCopy))
}

// diffIdentity names what differs between two identities, briefly.
func diffIdentity(old, cur identity) []string {
	flat := func(id identity) map[string]string {
		m := map[string]string{"format": id.Format, "repeats": strconv.Itoa(id.Repeats), "seed": strconv.FormatInt(id.Seed, 10)}
		for k, v := range id.Base {
			m["base."+k] = fmt.Sprint(v)
		}
		for _, a := range id.Axes {
			m["axes."+a.Name] = "[" + strings.Join(a.Values, ", ") + "]"
		}
		for i, g := range id.Zip {
			m[fmt.Sprintf("zip[%d]", i)] = "[" + strings.Join(g, ", ") + "]"
		}
		return m
	}
	a, b := flat(old), flat(cur)
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var out []string
	for _, k := range sorted {
		x, okx := a[k]
		y, oky := b[k]
		switch {
		case !okx:
			out = append(out, fmt.Sprintf("%s added (%s)", k, y))
		case !oky:
			out = append(out, fmt.Sprintf("%s removed (was %s)", k, x))
		case x != y:
			out = append(out, fmt.Sprintf("%s: %s → %s", k, x, y))
		}
	}
	if len(out) > 6 {
		out = append(out[:6], fmt.Sprintf("and %d more", len(out)-6))
	}
	if len(out) == 0 {
		out = []string{"identical parameters, different format"}
	}
	return out
}

func (d *Dir) takeLock() error {
	f, err := os.OpenFile(filepath.Join(d.Path, FileLock), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("lock sweep directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(f.Name())
		f.Close()
		return fmt.Errorf("%w: %s (pid %s)", ErrLocked, d.Path, strings.TrimSpace(string(b)))
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	d.lock = f
	return nil
}

// writeMeta records what the directory holds; on resume it refreshes the copy of the
// sweep file (same hash: only comments, name or plots may differ).
func (d *Dir) writeMeta() error {
	s := d.Sweep
	m := meta{Version: stateVersion, Name: s.Name, Hash: s.Hash(), Created: time.Now().UTC().Format(time.RFC3339),
		Source: s.Path, Identity: s.identity(), Points: len(s.Points), Runs: len(s.Points) * s.Repeats}
	if old, err := os.ReadFile(filepath.Join(d.Path, FileMeta)); err == nil {
		var om meta
		if json.Unmarshal(old, &om) == nil && om.Created != "" {
			m.Created = om.Created
		}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(d.Path, FileMeta), append(b, '\n')); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(d.Path, FileCopy), s.Source)
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// loadState replays the manifest.
func (d *Dir) loadState() error {
	recs, warn, err := ReadState(filepath.Join(d.Path, FileState))
	if err != nil {
		return err
	}
	d.Warn = append(d.Warn, warn...)
	for i := range recs {
		d.apply(&recs[i])
	}
	return nil
}

// apply folds one record into the per-run state.
func (d *Dir) apply(r *Record) {
	if r.Event != "start" && r.Event != "end" {
		return
	}
	k := runKey{r.Point, r.Repeat}
	st := d.state[k]
	if st == nil {
		st = &RunState{}
		d.state[k] = st
	}
	switch r.Event {
	case "start":
		st.Attempts++
		st.Start = r
		st.Status = StatusCrashed
	case "end":
		st.End = r
		st.Status = r.Status
	}
}

// ReadState reads a manifest. Lines that do not parse (a line torn by a crash) are
// skipped and reported in warnings.
func ReadState(path string) (recs []Record, warnings []string, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read manifest: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			warnings = append(warnings, fmt.Sprintf("%s:%d: skipped unreadable record: %v", path, n, err))
			continue
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		return recs, warnings, fmt.Errorf("read manifest: %w", err)
	}
	return recs, warnings, nil
}

// State returns what the manifest says about run r.
func (d *Dir) State(r Run) RunState {
	if st := d.state[keyOf(r)]; st != nil {
		return *st
	}
	return RunState{Status: StatusPending}
}

// append writes one record as one line with one write, and syncs end records: a crash
// leaves at most a torn last line, which ReadState skips.
func (d *Dir) append(r Record) error {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := d.manif.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if r.Event == "end" {
		_ = d.manif.Sync()
	}
	d.apply(&r)
	return nil
}

// RunRoot is the results root of run r: experiment.Run makes its run directory below it.
func (d *Dir) RunRoot(r Run) string { return filepath.Join(d.Path, DirRuns, r.Name()) }

// Close releases the lock and the manifest.
func (d *Dir) Close() error {
	var errs []error
	if d.manif != nil {
		errs = append(errs, d.manif.Close())
		d.manif = nil
	}
	if d.lock != nil {
		_ = syscall.Flock(int(d.lock.Fd()), syscall.LOCK_UN)
		errs = append(errs, d.lock.Close())
		d.lock = nil
	}
	return errors.Join(errs...)
}

// sessionRecord opens a session in the manifest.
func (d *Dir) sessionRecord(note string) error {
	return d.append(Record{Event: "session", PID: os.Getpid(), Hash: d.Sweep.Hash(), Version: experiment.DtVersion(), Note: note})
}

// OpenReport opens an existing sweep directory read-only, for `dt sweep report`: the
// sweep is the directory's copy of its file.
func OpenReport(dir string) (*Dir, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	src, err := os.ReadFile(filepath.Join(abs, FileCopy))
	if err != nil {
		return nil, fmt.Errorf("%s is not a sweep directory: %w", dir, err)
	}
	s, err := parse(filepath.Join(abs, FileCopy), src, false)
	if err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(abs, FileMeta)); err == nil {
		var m meta
		if json.Unmarshal(b, &m) == nil && m.Name != "" {
			s.Name = m.Name // the copy is sweep.yaml: its default name would be "sweep"
		}
	}
	d := &Dir{Path: abs, Sweep: s, state: map[runKey]*RunState{}, resume: true}
	if err := d.loadState(); err != nil {
		return nil, err
	}
	return d, nil
}
