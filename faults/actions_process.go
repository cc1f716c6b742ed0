package faults

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/dtlab/dt/records"
)

// The actions on the system's processes.
func init() {
	Register(upAction{name: "start", describe: "start the member again on the targets (after stop or kill), keeping its data",
		do: Processes.Start, ends: []Kind{KindDown, KindPaused}})
	Register(downAction{name: "stop", random: true, describe: "stop the targets' members gracefully (SIGTERM); undone by start", kind: KindDown, verb: "start",
		do: Processes.Stop, undo: Processes.Start})
	Register(downAction{name: "kill", random: true, describe: "SIGKILL the targets' members; undone by a restart", kind: KindDown, verb: "restart",
		do: Processes.Kill, undo: Processes.Restart})
	Register(upAction{name: "restart", random: true, describe: "stop (if alive) and start the targets' members, keeping their data",
		do: Processes.Restart, ends: []Kind{KindDown, KindPaused}})
	Register(downAction{name: "pause", random: true, describe: "SIGSTOP the targets' members; undone by continue", kind: KindPaused, verb: "continue",
		do: Processes.Pause, undo: Processes.Continue})
	Register(upAction{name: "continue", describe: "SIGCONT the targets' members",
		do: Processes.Continue, ends: []Kind{KindPaused}})
	Register(killUntilSnapshot{})
	Register(downAction{name: "shutdown", describe: "stop every member gracefully", kind: KindDown, verb: "start", all: true,
		do: Processes.Stop, undo: Processes.Start})
	Register(initAction{})
}

// downAction takes members down (kill, stop, pause, shutdown) until its undo.
type downAction struct {
	name, describe string
	kind           Kind
	verb           string
	all            bool // every server, no targets
	random         bool // drawn by random schedules
	do, undo       func(Processes, context.Context, string) error
}

func (a downAction) Name() string     { return a.name }
func (a downAction) Describe() string { return a.describe }
func (a downAction) Form() Form {
	t := TargetsRequired
	if a.all {
		t = TargetsNone
	}
	return Form{Targets: t, Needs: []Capability{CapProcesses}}
}

func (a downAction) Prepare(_ context.Context, call *Call) (Change, error) {
	p, err := Need[Processes](call, CapProcesses)
	if err != nil {
		return Change{}, err
	}
	nodes := call.Targets
	if a.all {
		nodes = call.Env().Servers()
	}
	return Change{Nodes: nodes, Kind: a.kind, UndoVerb: a.verb,
		Each: func(ctx context.Context, n string) (Undo, error) {
			return func(ctx context.Context) error { return a.undo(p, ctx, n) }, a.do(p, ctx, n)
		}}, nil
}

// upAction brings members back (start, restart, continue), ending the effects that held
// them down.
type upAction struct {
	name, describe string
	do             func(Processes, context.Context, string) error
	ends           []Kind
	random         bool // drawn by random schedules
}

func (a upAction) Name() string     { return a.name }
func (a upAction) Describe() string { return a.describe }
func (a upAction) Form() Form {
	return Form{Targets: TargetsRequired, Needs: []Capability{CapProcesses}}
}

func (a upAction) Run(ctx context.Context, call *Call) error {
	p, err := Need[Processes](call, CapProcesses)
	if err != nil {
		return err
	}
	call.Record(records.EventFaultAction, a.name, call.Targets, "")
	down := call.sc.eng.Down()
	for _, n := range call.Targets {
		// Restarting a member that runs is a disruption of its own: a window around it.
		window := a.name == "restart" && down[n] == ""
		if window {
			call.Record(records.EventFaultStart, a.name, []string{n}, "the member was running")
		}
		err := a.do(p, ctx, n)
		if window {
			detail := ""
			if err != nil {
				detail = "failed: " + err.Error()
			}
			call.Record(records.EventFaultEnd, a.name, []string{n}, detail)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", a.name, n, err)
		}
		call.Ended(n, a.ends...)
	}
	return nil
}

// initAction starts every member that is not running and waits for a leader.
type initAction struct{}

func (initAction) Name() string { return "init" }
func (initAction) Describe() string {
	return "start every member that is not running and wait for a leader"
}
func (initAction) Form() Form {
	return Form{Targets: TargetsNone, Fields: []string{"timeout"}, Needs: []Capability{CapProcesses, CapClusterView}}
}

func (initAction) Run(ctx context.Context, call *Call) error {
	p, err := Need[Processes](call, CapProcesses)
	if err != nil {
		return err
	}
	call.Record(records.EventFaultAction, "init", nil, "")
	for _, n := range call.Env().Servers() {
		if err := p.Start(ctx, n); err != nil {
			return fmt.Errorf("start %s: %w", n, err)
		}
		call.Ended(n, KindDown)
	}
	return waitHealthy(ctx, call)
}

// killUntilSnapshot kills each target and keeps it down until the leader has compacted
// its log past the index the member had applied, so that it must catch up from a
// snapshot rather than from the log (etcd's functional tester's
// SIGTERM_*_UNTIL_TRIGGER_SNAPSHOT), or until timeout; then restarts it.
type killUntilSnapshot struct{}

func (killUntilSnapshot) Name() string { return "kill-until-snapshot" }
func (killUntilSnapshot) Describe() string {
	return "kill the targets, keep them down until the leader has compacted its log past them (or timeout), restart them: they must catch up from a snapshot"
}
func (killUntilSnapshot) Form() Form {
	return Form{Targets: TargetsRequired, Fields: []string{"timeout"}, Needs: []Capability{CapProcesses, CapClusterView}}
}

func (killUntilSnapshot) Run(ctx context.Context, call *Call) error {
	p, err := Need[Processes](call, CapProcesses)
	if err != nil {
		return err
	}
	cv, err := Need[ClusterView](call, CapClusterView)
	if err != nil {
		return err
	}
	targets := call.Targets
	timeout := call.Step.Timeout.D()
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	applied := map[string]uint64{}
	for _, n := range targets {
		a, err := cv.AppliedIndex(ctx, n)
		if err != nil {
			return fmt.Errorf("applied index of %s: %w", n, err)
		}
		applied[n] = a
	}
	call.Record(records.EventFaultStart, "kill", targets, fmt.Sprintf("applied index %v", applied))
	for _, n := range targets {
		if err := p.Kill(ctx, n); err != nil {
			call.Record(records.EventFaultEnd, "", targets, "failed")
			return fmt.Errorf("kill %s: %w", n, err)
		}
	}
	need := slices.Max(slices.Collect(maps.Values(applied)))
	// The indexes above are as last polled; a member may have applied a little more before
	// the kill. The leader's commit index a moment after the kill bounds it.
	call.Sleep(ctx, 500*time.Millisecond)
	if l, err := cv.Leader(ctx); err == nil {
		if c, err := cv.AppliedIndex(ctx, l); err == nil {
			need = max(need, c)
		}
	}
	began := call.Since()
	detail := ""
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for detail == "" {
		leader, err := cv.Leader(ctx)
		if err == nil {
			if snap, err := cv.CompactedIndex(ctx, leader); err == nil && snap > need {
				detail = fmt.Sprintf("leader %s compacted its log to index %d > %d after %.1f s", leader, snap, need, (call.Since() - began).Seconds())
				break
			}
		}
		if call.Since()-began > timeout {
			detail = fmt.Sprintf("timeout %v: the leader did not compact its log past index %d", timeout, need)
			break
		}
		select {
		case <-ctx.Done():
			detail = "run ended first"
		case <-tick.C:
		}
	}
	call.Record(records.EventFaultAction, "restart", targets, detail)
	cctx, cancel := cleanupCtx()
	defer cancel()
	var errs []error
	for _, n := range targets {
		if err := p.Restart(cctx, n); err != nil {
			errs = append(errs, fmt.Errorf("restart %s: %w", n, err))
		}
	}
	call.Record(records.EventFaultEnd, "", targets, detail)
	if strings.HasPrefix(detail, "timeout") {
		errs = append(errs, errors.New(detail))
	}
	return errors.Join(errs...)
}
