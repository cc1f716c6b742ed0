package faults

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dtlab/dt/disk"
	"github.com/dtlab/dt/records"
)

// power-loss: the targets lose power together.
func init() { Register(powerLoss{}) }

// powerLoss kills the targets' members, discards from their data dirs what they wrote
// and did not fsync (and the directory entries not synced), keeps them down for the
// step's duration, restarts them and watches what becomes of them: a power cut of
// those nodes, all at the same moment.
type powerLoss struct{}

func (powerLoss) Name() string { return "power-loss" }
func (powerLoss) Describe() string {
	return "cut the targets' power together: kill their members, discard what they wrote since each file's last fsync and the unsynced directory entries (mode: strict, or ordered: entries made before any fsync are kept, as ext4 keeps them), restart them after duration, watch them come back (timeout, default 20s)"
}
func (powerLoss) Form() Form {
	return Form{Targets: TargetsRequired, Fields: []string{"mode", "duration", "timeout"}, Needs: []Capability{CapDisk, CapProcesses}}
}

func (powerLoss) Check(s Step, _ Cluster) []FieldError {
	if s.Mode != "" && !slices.Contains(disk.PowerModels, s.Mode) {
		return []FieldError{fieldErrorf("mode", "mode %q: valid are %s", s.Mode, strings.Join(disk.PowerModels, ", "))}
	}
	return nil
}

// defaultOutcomeWait is how long a restarted member is watched after a disk action.
const defaultOutcomeWait = 20 * time.Second

func (powerLoss) Run(ctx context.Context, call *Call) error {
	p, err := Need[Processes](call, CapProcesses)
	if err != nil {
		return err
	}
	d, err := Need[Disk](call, CapDisk)
	if err != nil {
		return err
	}
	targets := call.Targets
	model := call.Step.Mode
	if model == "" {
		model = disk.PowerStrict
	}
	call.Record(records.EventFaultStart, "power-loss", targets, "kill, discard what was not fsynced ("+model+"), restart")
	var errs []error
	var cut []string
	for _, n := range targets {
		if err := p.Kill(ctx, n); err != nil {
			errs = append(errs, fmt.Errorf("kill %s: %w", n, err))
			continue
		}
		cut = append(cut, n)
	}
	for _, n := range cut {
		detail, err := d.PowerLoss(ctx, n, model)
		if err != nil {
			errs = append(errs, fmt.Errorf("power loss %s: %w", n, err))
			detail = "failed: " + err.Error()
		}
		call.Record(records.EventFaultAction, records.ActionDiscard, []string{n}, detail)
	}
	call.Sleep(ctx, call.Step.For.D())
	restartAndWatch(call, p, d, cut, &errs)
	return errors.Join(errs...)
}

// restartAndWatch restarts the members a disk action took down and records what became
// of each ("outcome"), closing the step's window with it.
func restartAndWatch(call *Call, p Processes, d Disk, nodes []string, errs *[]error) {
	cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, n := range nodes {
		if err := p.Restart(cctx, n); err != nil {
			*errs = append(*errs, fmt.Errorf("restart %s: %w", n, err))
		}
		call.Ended(n, KindDown, KindPaused)
	}
	call.Record(records.EventFaultAction, "restart", nodes, "")
	wait := call.Step.Timeout.D()
	if wait == 0 {
		wait = defaultOutcomeWait
	}
	outcomes := make([]string, len(nodes))
	done := make(chan struct{}, len(nodes))
	for i, n := range nodes {
		go func() {
			detail, _ := d.Outcome(cctx, n, wait)
			outcomes[i] = detail
			done <- struct{}{}
		}()
	}
	for range nodes {
		<-done
	}
	for i, n := range nodes {
		call.Record(records.EventFaultAction, records.ActionOutcome, []string{n}, outcomes[i])
	}
	end := ""
	if len(nodes) == 1 {
		end = outcomes[0]
	}
	call.Record(records.EventFaultEnd, "", call.Targets, end)
}

// Draw cuts the power of one free server for the drawn duration.
func (powerLoss) Draw(s *Step, d RandomDraw) {
	s.Targets = []string{d.Free[d.Rand.IntN(len(d.Free))]}
}

// Unsupported: a process kind needs three servers.
func (powerLoss) Unsupported(o RandomOptions) string { return processUnsupported("power-loss", o) }

// Drawn: yes.
func (powerLoss) Drawn() bool { return true }
