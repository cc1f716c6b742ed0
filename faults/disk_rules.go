package faults

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dtlab/dt/disk"
	"github.com/dtlab/dt/records"
)

// diskRuleAction puts a rule of the disk layer in force on the targets' data dirs
// (disk-error, disk-slow, disk-full, one file each), checks its effect through the mount
// and records what it measured; the undo takes the rule out of force.
type diskRuleAction struct {
	name, describe string
	kind           string // disk.KindError, KindSlow, KindFull
	fields         []string
	random         bool
}

func (a diskRuleAction) Name() string     { return a.name }
func (a diskRuleAction) Describe() string { return a.describe }
func (a diskRuleAction) Form() Form {
	return Form{Targets: TargetsRequired, Fields: a.fields, Needs: []Capability{CapDisk}}
}

// rule is the step's rule (without its id).
func (a diskRuleAction) rule(s Step) (disk.Rule, []FieldError) {
	var errs []FieldError
	r := disk.Rule{Kind: a.kind, Errno: strings.ToUpper(s.Errno), Ops: s.Ops, Path: s.Path, Probability: s.Probability,
		Delay: s.Delay.D(), Jitter: s.Jitter.D()}
	if ops, err := disk.ParseOps(s.Ops); err != nil {
		errs = append(errs, FieldError{"ops", err})
	} else {
		r.Ops = ops
	}
	if s.Bytes != "" {
		n, err := disk.ParseBytes(s.Bytes)
		if err != nil {
			errs = append(errs, FieldError{"bytes", err})
		}
		r.Bytes = n
	}
	return r, errs
}

// Check validates the fields, each error on its field.
func (a diskRuleAction) Check(s Step, _ Cluster) []FieldError {
	r, errs := a.rule(s)
	if len(errs) > 0 {
		return errs
	}
	switch {
	case a.kind == disk.KindError && s.Errno == "":
		return []FieldError{fieldErrorf("errno", "%s needs errno: one of %s", a.name, strings.Join(disk.ErrnoNames(), ", "))}
	case a.kind == disk.KindSlow && s.Delay == 0:
		return []FieldError{fieldErrorf("delay", "%s needs delay: the latency added to each operation, e.g. 50ms", a.name)}
	}
	r.ID = "check"
	if err := r.Check(); err != nil {
		field := ""
		switch msg := err.Error(); {
		case strings.Contains(msg, "errno"):
			field = "errno"
		case strings.Contains(msg, "probability"):
			field = "probability"
		case strings.Contains(msg, "path"):
			field = "path"
		case strings.Contains(msg, "jitter"):
			field = "jitter"
		case strings.Contains(msg, "delay"):
			field = "delay"
		case strings.Contains(msg, "bytes"):
			field = "bytes"
		}
		return []FieldError{{field, err}}
	}
	return nil
}

// ruleSeq makes every rule's id unique on its layer, also for repetitions and for
// overlapping instances of one step.
var ruleSeq atomic.Int64

func (a diskRuleAction) Prepare(_ context.Context, call *Call) (Change, error) {
	d, err := Need[Disk](call, CapDisk)
	if err != nil {
		return Change{}, err
	}
	r, errs := a.rule(call.Step)
	if len(errs) > 0 {
		return Change{}, errs[0].Err
	}
	probes := 2
	switch {
	case a.kind == disk.KindError && r.Probability > 0 && r.Probability < 1:
		probes = 20
	case a.kind == disk.KindSlow:
		probes = 3
	case a.kind == disk.KindFull:
		probes = 1
	}
	return Change{Nodes: call.Targets, Text: r.String(), Kind: KindDisk, UndoVerb: "clear", Tag: "disk " + a.kind,
		Each: func(ctx context.Context, n string) (Undo, error) {
			r := r
			r.ID = fmt.Sprintf("%s#%d", call.Label, ruleSeq.Add(1))
			got, undo, err := d.DiskRule(ctx, n, call.Label, r, probes)
			if err != nil {
				return nil, err
			}
			detail, verr := verifyRule(r, got)
			if verr != nil {
				cctx, cancel := cleanupCtx()
				defer cancel()
				return nil, errors.Join(fmt.Errorf("%s: effect not verified through the mount: %w", n, verr), undo(cctx))
			}
			call.Record(records.EventFaultAction, records.ActionVerified, []string{n}, detail)
			return undo, nil
		}}, nil
}

// verifyRule checks what the probes through the mount saw against what r should do,
// and describes it ("fsync: EIO 2/2 in 0.05 ms"). With a probability below 1 any
// share of failures passes; a slow rule must have added at least its delay less its
// jitter (less 20 %, for the timer's rounding) on average.
func verifyRule(r disk.Rule, p DiskProbes) (string, error) {
	byOp := func(rs []disk.ProbeResult) ([]string, map[string][]disk.ProbeResult) {
		var ops []string
		m := map[string][]disk.ProbeResult{}
		for _, x := range rs {
			if _, ok := m[x.Op]; !ok {
				ops = append(ops, x.Op)
			}
			m[x.Op] = append(m[x.Op], x)
		}
		return ops, m
	}
	mean := func(rs []disk.ProbeResult) float64 {
		s := 0.0
		for _, x := range rs {
			s += x.Seconds
		}
		return s / float64(max(len(rs), 1))
	}
	ops, after := byOp(p.After)
	_, before := byOp(p.Baseline)
	if len(ops) == 0 {
		return "", errors.New("no probe was made")
	}
	always := r.Probability <= 0 || r.Probability >= 1
	var parts []string
	var errs []error
	for _, op := range ops {
		rs := after[op]
		for _, x := range rs {
			if x.Setup != "" {
				errs = append(errs, fmt.Errorf("%s probe: could not %s first: %s", op, x.Setup, x.Errno))
			}
		}
		switch r.Kind {
		case disk.KindError, disk.KindFull:
			want := r.Errno
			if r.Kind == disk.KindFull {
				want = "ENOSPC"
				if r.Bytes > 0 {
					want = "ok"
				}
			}
			hit := 0
			var other []string
			for _, x := range rs {
				if x.Errno == want {
					hit++
				} else if !slices.Contains(other, x.Errno) {
					other = append(other, x.Errno)
				}
			}
			parts = append(parts, fmt.Sprintf("%s %s %d/%d in %.2f ms", op, want, hit, len(rs), 1000*mean(rs)))
			if always && hit < len(rs) {
				errs = append(errs, fmt.Errorf("%s through the mount returned %s, want %s", op, strings.Join(other, ", "), want))
			}
		case disk.KindSlow:
			added := mean(rs) - mean(before[op])
			parts = append(parts, fmt.Sprintf("%s +%.1f ms (%.2f → %.1f ms, %d probes)", op, 1000*added, 1000*mean(before[op]), 1000*mean(rs), len(rs)))
			floor := (r.Delay - r.Jitter).Seconds() * 0.8
			if always && added < floor {
				errs = append(errs, fmt.Errorf("%s took %.1f ms longer through the mount, want about %v", op, 1000*added, r.Delay))
			}
		}
	}
	detail := "through the mount: " + strings.Join(parts, "; ")
	if r.Kind == disk.KindFull && r.Bytes > 0 {
		detail += fmt.Sprintf("; ENOSPC once %s more are written", disk.FormatBytes(r.Bytes))
	}
	return detail, errors.Join(errs...)
}

// diskDraw is what random schedules draw for a slow disk: 10–200 ms (steps of 10) on
// writes and fsyncs of one server.
func diskSlowDraw(s *Step, d RandomDraw) {
	s.Targets = d.One()
	s.Delay = Duration(time.Duration(1+d.Rand.IntN(20)) * 10 * time.Millisecond)
	s.Ops = Words{disk.OpWrite, disk.OpFsync}
}

// Draw: see diskSlowDraw; disk-error and disk-full are not drawn (an error takes a
// member down for good: nothing restarts it).
func (a diskRuleAction) Draw(s *Step, d RandomDraw) { diskSlowDraw(s, d) }

// Unsupported: the disk layer is checked against the run's capabilities.
func (a diskRuleAction) Unsupported(RandomOptions) string { return "" }

// Drawn: disk-slow.
func (a diskRuleAction) Drawn() bool { return a.random }
