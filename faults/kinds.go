package faults

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dtlab/dt/results"
	"github.com/dtlab/dt/topology"
)

func init() {
	for _, f := range []Fault{
		none{}, leaderKill{}, leaderRecovery{}, partialPartition{},
		intermittent{name: "intermittent-partial"}, intermittent{name: "intermittent-full", full: true},
		killN{}, pauseLeader{},
	} {
		Register(f)
	}
}

// window returns reckon's fault window [T/3, 2T/3].
func window(p Params) (time.Duration, time.Duration) { return p.Duration / 3, 2 * p.Duration / 3 }

type none struct{}

func (none) Name() string     { return "none" }
func (none) Describe() string { return "no fault: a baseline" }
func (none) Run(ctx context.Context, env Env, p Params) error {
	sleepUntil(ctx, env, p.Duration)
	return nil
}

type leaderKill struct{}

func (leaderKill) Name() string     { return "leader" }
func (leaderKill) Describe() string { return "kill the leader at T/2; it is not restarted" }
func (leaderKill) Run(ctx context.Context, env Env, p Params) error {
	if !sleepUntil(ctx, env, p.Duration/2) {
		return nil
	}
	l, err := env.Leader(ctx)
	if err != nil {
		return err
	}
	env.Record(results.Event{Type: results.EventFaultStart, Fault: "leader", Action: "kill", Targets: []string{l}})
	if err := env.Kill(ctx, l); err != nil {
		return fmt.Errorf("kill leader %s: %w", l, err)
	}
	sleepUntil(ctx, env, p.Duration)
	env.Record(results.Event{Type: results.EventFaultEnd, Fault: "leader", Targets: []string{l}, Detail: "end of run; the killed member stays down"})
	return nil
}

// windowed applies one action over reckon's window [T/3, 2T/3]: targets are resolved
// when the window opens, fault-start is recorded before the action is applied, and the
// undo runs when the window closes — also when ctx ends early — before fault-end.
func windowed(ctx context.Context, env Env, p Params, name, action string,
	resolve func(ctx context.Context) (targets []string, detail string, err error),
	apply func(ctx context.Context, targets []string) (Undo, error)) error {
	from, to := window(p)
	if !sleepUntil(ctx, env, from) {
		return nil
	}
	targets, detail, err := resolve(ctx)
	if err != nil {
		return err
	}
	env.Record(results.Event{Type: results.EventFaultStart, Fault: name, Action: action, Targets: targets, Detail: detail})
	undo, err := apply(ctx, targets)
	if err != nil {
		return fmt.Errorf("%s %v: %w", action, targets, err)
	}
	sleepUntil(ctx, env, to)
	cctx, cancel := cleanupCtx()
	defer cancel()
	if err := undo(cctx); err != nil {
		return fmt.Errorf("undo %s %v: %w", action, targets, err)
	}
	env.Record(results.Event{Type: results.EventFaultEnd, Fault: name, Targets: targets})
	return nil
}

// theLeader resolves to the current leader.
func theLeader(env Env) func(ctx context.Context) ([]string, string, error) {
	return func(ctx context.Context) ([]string, string, error) {
		l, err := env.Leader(ctx)
		return []string{l}, "", err
	}
}

type leaderRecovery struct{}

func (leaderRecovery) Name() string { return "leader-recovery" }
func (leaderRecovery) Describe() string {
	return "kill the leader at T/3, restart it (same data dir) at 2T/3"
}
func (f leaderRecovery) Run(ctx context.Context, env Env, p Params) error {
	return windowed(ctx, env, p, f.Name(), "kill", theLeader(env), func(ctx context.Context, t []string) (Undo, error) {
		return func(ctx context.Context) error {
			env.Record(results.Event{Type: results.EventFaultAction, Fault: f.Name(), Action: "restart", Targets: t})
			return env.Restart(ctx, t[0])
		}, env.Kill(ctx, t[0])
	})
}

type partialPartition struct{}

func (partialPartition) Name() string { return "partial-partition" }
func (partialPartition) Describe() string {
	return "cut the leader from one follower (both ways) from T/3 to 2T/3"
}
func (f partialPartition) Run(ctx context.Context, env Env, p Params) error {
	resolve := func(ctx context.Context) ([]string, string, error) {
		l, err := env.Leader(ctx)
		if err != nil {
			return nil, "", err
		}
		fs := followers(env, l)
		if len(fs) == 0 {
			return nil, "", errors.New("partial-partition needs at least 2 servers")
		}
		t := []string{l, pick(env.Rand(), fs, 1)[0]}
		return t, topology.Cut{A: t[:1], B: t[1:]}.String(), nil
	}
	return windowed(ctx, env, p, f.Name(), "partition", resolve, func(ctx context.Context, t []string) (Undo, error) {
		return env.Partition(ctx, topology.Cut{A: t[:1], B: t[1:]}, f.Name())
	})
}

// intermittent toggles a cut every MTBF between T/3 and 2T/3 and always heals at the end
// (reckon's intermittent faults never heal). Partial: leader ↔ one follower. Full: that
// follower from every other node.
type intermittent struct {
	name string
	full bool
}

func (f intermittent) Name() string { return f.name }
func (f intermittent) Describe() string {
	if f.full {
		return "from T/3 to 2T/3, every --mtbf s toggle a cut of one follower from every other node; healed at the end"
	}
	return "from T/3 to 2T/3, every --mtbf s toggle a cut between the leader and one follower; healed at the end"
}
func (f intermittent) Run(ctx context.Context, env Env, p Params) error {
	from, to := window(p)
	if !sleepUntil(ctx, env, from) {
		return nil
	}
	l, err := env.Leader(ctx)
	if err != nil {
		return err
	}
	fs := followers(env, l)
	if len(fs) == 0 {
		return fmt.Errorf("%s needs at least 2 servers", f.name)
	}
	victim := pick(env.Rand(), fs, 1)[0]
	cut := topology.Cut{A: []string{l}, B: []string{victim}}
	targets := []string{l, victim}
	if f.full {
		cut = topology.Cut{A: []string{victim}, B: others(env, victim)}
		targets = []string{victim}
	}
	env.Record(results.Event{Type: results.EventFaultStart, Fault: f.name, Targets: targets, Detail: cut.String()})
	var undo Undo
	defer func() {
		cctx, cancel := cleanupCtx()
		defer cancel()
		if undo != nil {
			env.Record(results.Event{Type: results.EventFaultAction, Fault: f.name, Action: "heal", Targets: targets})
			_ = undo(cctx)
		}
		env.Record(results.Event{Type: results.EventFaultEnd, Fault: f.name, Targets: targets})
	}()
	for at := from; at < to; at += p.MTBF {
		if !sleepUntil(ctx, env, at) {
			return nil
		}
		if undo == nil {
			env.Record(results.Event{Type: results.EventFaultAction, Fault: f.name, Action: "partition", Targets: targets, Detail: cut.String()})
			if undo, err = env.Partition(ctx, cut, f.name); err != nil {
				return err
			}
		} else {
			env.Record(results.Event{Type: results.EventFaultAction, Fault: f.name, Action: "heal", Targets: targets})
			if err := undo(ctx); err != nil {
				return err
			}
			undo = nil
		}
	}
	sleepUntil(ctx, env, to)
	return nil
}

type killN struct{}

func (killN) Name() string { return "kill-n" }
func (killN) Describe() string {
	return "kill --kill-n members at T/2 (--kill-target leader|follower|any); not restarted"
}
func (killN) Run(ctx context.Context, env Env, p Params) error {
	if !sleepUntil(ctx, env, p.Duration/2) {
		return nil
	}
	var victims []string
	switch p.KillTarget {
	case "leader", "follower":
		l, err := env.Leader(ctx)
		if err != nil {
			return err
		}
		n := p.KillN
		if p.KillTarget == "leader" {
			victims = []string{l}
			n--
		}
		victims = append(victims, pick(env.Rand(), followers(env, l), n)...)
	default:
		victims = pick(env.Rand(), env.Servers(), p.KillN)
	}
	env.Record(results.Event{Type: results.EventFaultStart, Fault: "kill-n", Action: "kill", Targets: victims})
	for _, v := range victims {
		if err := env.Kill(ctx, v); err != nil {
			return fmt.Errorf("kill %s: %w", v, err)
		}
	}
	sleepUntil(ctx, env, p.Duration)
	env.Record(results.Event{Type: results.EventFaultEnd, Fault: "kill-n", Targets: victims, Detail: "end of run; killed members stay down"})
	return nil
}

type pauseLeader struct{}

func (pauseLeader) Name() string     { return "pause-leader" }
func (pauseLeader) Describe() string { return "SIGSTOP the leader at T/3, SIGCONT at 2T/3" }
func (f pauseLeader) Run(ctx context.Context, env Env, p Params) error {
	return windowed(ctx, env, p, f.Name(), "pause", theLeader(env), func(ctx context.Context, t []string) (Undo, error) {
		return func(ctx context.Context) error { return env.Continue(ctx, t[0]) }, env.Pause(ctx, t[0])
	})
}
