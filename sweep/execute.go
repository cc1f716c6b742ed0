package sweep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/dtlab/dt/experiment"
)

// Runner runs one experiment. Experiment is the real one; tests use fakes.
type Runner interface {
	Run(ctx context.Context, cfg experiment.Config, o experiment.Options) (*experiment.Outcome, error)
}

// Experiment runs experiments: each point's configuration is planned (Config.Plan), and
// nothing of the run is created unless its plan is valid; then the plan runs.
type Experiment struct{}

// Run implements Runner.
func (Experiment) Run(ctx context.Context, cfg experiment.Config, o experiment.Options) (*experiment.Outcome, error) {
	p, err := cfg.Plan()
	if err != nil {
		return nil, err
	}
	return experiment.RunPlan(ctx, p, o)
}

// Options drive Execute.
type Options struct {
	Runner      Runner // default Experiment{}
	Host        Host   // default HostCheck{SweepDir: the directory}
	Only        Filter // runs to consider; the others are left as they are
	RetryFailed bool   // run failed runs again (crashed and interrupted ones always are)
	Progress    io.Writer
	TTY         bool   // Progress is a terminal: one line redrawn in place
	Exe         string // dt binary for the agents ("" = this executable)
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Result counts what a session did.
type Result struct {
	Dir         string
	Selected    int // runs the filter selects
	Done        int // of those, already complete before this session
	Ran         int
	OK          int
	Failed      int // in this session
	KeptFailed  int // failed earlier and not retried
	Interrupted bool
	Elapsed     time.Duration
}

// Execute runs, in order, every selected run that has not completed: pending, crashed
// and interrupted runs, and failed ones with RetryFailed. Each run goes into its own
// results root under runs/, is recorded in the manifest as it starts and ends, and is
// followed by a host check. A failing run is recorded and the sweep goes on; a
// cancelled ctx (Ctrl-C) ends the sweep after the current run is torn down. sweep.csv is
// rewritten after every run and the plots at the end.
func (d *Dir) Execute(ctx context.Context, o Options) (*Result, error) {
	if o.Runner == nil {
		o.Runner = Experiment{}
	}
	if o.Host == nil {
		o.Host = HostCheck{SweepDir: d.Path}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	res := &Result{Dir: d.Path}
	var todo []Run
	for _, r := range d.Sweep.Runs() {
		if !o.Only.Match(r) {
			continue
		}
		res.Selected++
		switch d.State(r).Status {
		case StatusOK:
			res.Done++
			continue
		case StatusFailed:
			if !o.RetryFailed {
				res.KeptFailed++
				res.Done++
				continue
			}
		}
		todo = append(todo, r)
	}
	note := fmt.Sprintf("%d of %d selected runs to do", len(todo), res.Selected)
	if !o.Only.Empty() {
		note += " (--only " + o.Only.String() + ")"
	}
	if err := d.sessionRecord(note); err != nil {
		return res, err
	}
	// A run of this sweep whose sweep was killed may still be on the host.
	if found, err := o.Host.Check(ctx, ""); err != nil {
		return res, fmt.Errorf("before the first run: %w", err)
	} else if len(found) > 0 {
		slog.Warn("removed what an earlier, killed session left", "found", strings.Join(found, "; "))
	}

	pr := newProgress(o, d, res, todo)
	defer pr.stop()
	start := o.Now()
	var errs []error
	for i, r := range todo {
		if ctx.Err() != nil {
			pr.mu.Lock()
			res.Interrupted = true
			pr.mu.Unlock()
			break
		}
		pr.begin(i, r)
		status, err := d.runOne(ctx, o, r, pr)
		pr.end(r, status, err) // counts the run in res
		if err := d.WriteCSV(); err != nil {
			slog.Warn("write sweep.csv", "err", err)
		}
		if errors.Is(err, ErrHostDirty) {
			errs = append(errs, fmt.Errorf("stopped after %s: %w", r.Name(), err))
			break
		}
		if res.Interrupted {
			break
		}
	}
	pr.stop()
	res.Elapsed = o.Now().Sub(start)
	if err := d.Report(nil); err != nil {
		errs = append(errs, fmt.Errorf("report: %w", err))
	}
	return res, errors.Join(errs...)
}

// runOne runs r, records its start and end, and checks the host after it. The error is
// the run's (or the host check's); status says how the run ended.
func (d *Dir) runOne(ctx context.Context, o Options, r Run, pr *progress) (string, error) {
	cfg := d.Sweep.Config(r)
	cfg.ResultsRoot = d.RunRoot(r)
	params := map[string]string{}
	for _, s := range r.Point.Params {
		params[s.Name] = FormatValue(s.Value)
	}
	st := d.State(r)
	rec := Record{Event: "start", Run: r.Name(), Point: r.Point.Key(), Repeat: r.Repeat, Seed: r.Seed,
		Params: params, Attempt: st.Attempts + 1, Duration: cfg.Duration}
	if err := d.append(rec); err != nil {
		return StatusFailed, err
	}
	t0 := o.Now()
	out, err := o.Runner.Run(ctx, cfg, experiment.Options{Progress: pr.runWriter(), TTY: o.TTY, Exe: o.Exe})
	end := rec
	end.Event, end.Time, end.Params = "end", time.Time{}, nil
	runID := ""
	if out != nil {
		runID = out.RunID
		end.RunID = out.RunID
		if rel, rerr := filepath.Rel(d.Path, out.RunDir); rerr == nil && out.RunDir != "" {
			end.RunDir = rel
		} else {
			end.RunDir = out.RunDir
		}
	}
	status := StatusOK
	switch {
	case err != nil && ctx.Err() != nil:
		status = StatusInterrupted
	case err != nil:
		status = StatusFailed
	}
	// The host check runs whatever happened: the next point needs a clean host.
	hctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	found, herr := o.Host.Check(hctx, runID)
	cancel()
	if len(found) > 0 {
		if status == StatusOK {
			status = StatusFailed
		}
		herr = errors.Join(fmt.Errorf("host not clean after the run: %s", strings.Join(found, "; ")), herr)
	}
	err = errors.Join(err, herr)
	if err != nil {
		end.Error = err.Error()
	}
	end.Status = status
	end.Seconds = o.Now().Sub(t0).Seconds()
	if aerr := d.append(end); aerr != nil {
		err = errors.Join(err, aerr)
	}
	return status, err
}
