package faults

import (
	"context"
	"fmt"
	"time"

	"github.com/dtlab/dt/records"
)

// The actions on data dirs, and the ones that only wait or look.
func init() {
	Register(dataAction{name: "backup", describe: "copy the targets' data dirs into the run directory"})
	Register(dataAction{name: "cleanup", describe: "delete the targets' data dirs (stop them first)"})
	Register(sleepAction{})
	Register(waitHealthyAction{})
	Register(probeAction{})
}

type dataAction struct{ name, describe string }

func (a dataAction) Name() string     { return a.name }
func (a dataAction) Describe() string { return a.describe }
func (a dataAction) Form() Form {
	return Form{Targets: TargetsRequired, Needs: []Capability{CapData}}
}

func (a dataAction) Run(ctx context.Context, call *Call) error {
	d, err := Need[Data](call, CapData)
	if err != nil {
		return err
	}
	for _, n := range call.Targets {
		detail := ""
		if a.name == "backup" {
			path, err := d.Backup(ctx, n, call.Label)
			if err != nil {
				return fmt.Errorf("backup %s: %w", n, err)
			}
			detail = path
		} else if err := d.Cleanup(ctx, n); err != nil {
			return fmt.Errorf("cleanup %s: %w", n, err)
		}
		call.Record(records.EventFaultAction, a.name, []string{n}, detail)
	}
	return nil
}

type sleepAction struct{}

func (sleepAction) Name() string     { return "sleep" }
func (sleepAction) Describe() string { return "wait (duration) before the next step" }
func (sleepAction) Form() Form       { return Form{Targets: TargetsNone, Fields: []string{"duration"}} }

func (sleepAction) Check(s Step, _ Cluster) []FieldError {
	if s.For == 0 {
		return []FieldError{fieldErrorf("duration", "sleep needs a duration")}
	}
	return nil
}

func (sleepAction) Run(ctx context.Context, call *Call) error {
	call.Record(records.EventFaultAction, "sleep", nil, call.Step.For.String())
	call.Sleep(ctx, call.Step.For.D())
	return nil
}

type waitHealthyAction struct{}

func (waitHealthyAction) Name() string { return "wait-healthy" }
func (waitHealthyAction) Describe() string {
	return "wait until every running member is healthy and agrees on a leader (timeout, default 30s)"
}
func (waitHealthyAction) Form() Form {
	return Form{Targets: TargetsNone, Fields: []string{"timeout"}, Needs: []Capability{CapClusterView}}
}

func (waitHealthyAction) Run(ctx context.Context, call *Call) error {
	call.Record(records.EventFaultAction, "wait-healthy", nil, "")
	return waitHealthy(ctx, call)
}

// waitHealthy waits (the step's timeout, default 30 s) until the cluster is healthy and
// records how long it took.
func waitHealthy(ctx context.Context, call *Call) error {
	cv, err := Need[ClusterView](call, CapClusterView)
	if err != nil {
		return err
	}
	timeout := call.Step.Timeout.D()
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	began := call.Since()
	if err := cv.WaitHealthy(ctx, timeout); err != nil {
		return err
	}
	call.Record(records.EventFaultAction, "healthy", nil, fmt.Sprintf("after %.2f s", (call.Since()-began).Seconds()))
	return nil
}

// probeAction only calls the step's probe (the engine calls every step's probe).
type probeAction struct{}

func (probeAction) Name() string     { return "probe" }
func (probeAction) Describe() string { return "only call the probe" }
func (probeAction) Form() Form       { return Form{Targets: TargetsNone, Needs: []Capability{CapProbe}} }

func (probeAction) Check(s Step, _ Cluster) []FieldError {
	if s.Probe == nil {
		return []FieldError{fieldErrorf("probe", "a probe step needs probe: {url: ...}")}
	}
	return nil
}

func (probeAction) Run(context.Context, *Call) error { return nil }
