// Package faults owns what goes wrong in a run: the Fault interface and its registry,
// target resolution at the moment a fault fires (the leader, a follower, a random
// minority...), schedules over the run (reckon's fixed T/3–2T/3 windows, MTBF toggles),
// and the event log of every action — written with its concrete targets before it is
// applied, and its heal after. A fault always undoes what it did before it returns.
// It never touches the kernel itself: it acts through Env.
package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/dtlab/dt/results"
	"github.com/dtlab/dt/shaping"
	"github.com/dtlab/dt/topology"
)

// Undo reverses one applied action.
type Undo func(ctx context.Context) error

// Env is what a fault acts through; the experiment implements it over the topology,
// the agents and the system monitor.
type Env interface {
	// Servers lists the server nodes (s1..sN); Nodes lists every node.
	Servers() []string
	Nodes() []string
	// Leader returns the current leader, waiting briefly for one if there is none.
	Leader(ctx context.Context) (string, error)
	// Partition installs cuts as one partition (its rules in one go, one heal); owner
	// names its rules.
	Partition(ctx context.Context, cuts []topology.Cut, owner string) (Undo, error)
	// Kill SIGKILLs the system's process on node; Restart starts it again keeping its data.
	Kill(ctx context.Context, node string) error
	Restart(ctx context.Context, node string) error
	// Pause and Continue send SIGSTOP and SIGCONT.
	Pause(ctx context.Context, node string) error
	Continue(ctx context.Context, node string) error
	// Stop stops the system's process on node gracefully; Start starts it again keeping
	// its data (nothing when it runs).
	Stop(ctx context.Context, node string) error
	Start(ctx context.Context, node string) error
	// Impair adds imp to the packets to (dir "in"), from ("out") or to and from ("both")
	// the target nodes — every path when targets is empty —, once per packet, on top of
	// the topology's links; owner names it. The Undo removes exactly it.
	Impair(ctx context.Context, targets []string, imp shaping.Impairment, dir, owner string) (Undo, error)
	// DropPort drops packets from other nodes to port (proto tcp, udp, or "" for both)
	// on node; the Undo recovers it.
	DropPort(ctx context.Context, node, proto string, port int, owner string) (Undo, error)
	// Backup copies node's data dir into the run directory, under a name with label,
	// and returns where; Cleanup deletes the data dir.
	Backup(ctx context.Context, node, label string) (string, error)
	Cleanup(ctx context.Context, node string) error
	// WaitHealthy waits until every running member is healthy and they agree on a leader.
	WaitHealthy(ctx context.Context, timeout time.Duration) error
	// AppliedIndex is the raft index node's member has applied (as last seen);
	// CompactedIndex the index up to which its raft log is compacted: entries at or below
	// it can reach a follower only as a snapshot (0: nothing compacted yet).
	AppliedIndex(ctx context.Context, node string) (uint64, error)
	CompactedIndex(ctx context.Context, node string) (uint64, error)
	// Probe makes p's request from inside node's namespace.
	Probe(ctx context.Context, node string, p Probe) (ProbeResult, error)
	// Record appends an event to events.jsonl, stamping it with the current run time.
	Record(e results.Event)
	// Since is the time since the workload started (the fault schedule's zero).
	Since() time.Duration
	// Rand is the run's seeded source: the same seed picks the same targets.
	Rand() *rand.Rand
}

// Params are the knobs of the fault schedule (reckon's flags).
type Params struct {
	Duration   time.Duration // T: the workload's length
	MTBF       time.Duration // intermittent faults toggle every MTBF
	KillN      int           // kill-n: how many members
	KillTarget string        // kill-n: leader | follower | any

	// The amounts of the faults that degrade links; zero takes the default (DefaultDelay,
	// DefaultLoss, DefaultRate) for the fault that needs it.
	Delay  time.Duration // slow-*: added one-way delay
	Jitter time.Duration // slow-*: jitter of the added delay
	Loss   float64       // lossy-*: added loss, percent
	Rate   uint64        // bandwidth-limit*: bit/s
}

// Fault is one kind of fault with its schedule over the run.
type Fault interface {
	Name() string
	// Describe is one line for `dt run --help` and errors.
	Describe() string
	// Steps is the fault's timeline over a run of p.Duration.
	Steps(p Params) []Step
	// Window is where the fault acts in a run of p.Duration (the debug prompt fires a
	// fault now by shifting its schedule so that the window opens at once).
	Window(p Params) (from, to time.Duration)
	// Run executes the schedule, blocking until it is over or ctx ends, and undoes
	// everything it did before returning, also when ctx ends early.
	Run(ctx context.Context, env Env, p Params) error
}

var registry = map[string]Fault{}

// Register adds a fault; a duplicate name is a programming error.
func Register(f Fault) {
	if _, dup := registry[f.Name()]; dup {
		panic("faults: duplicate fault " + f.Name())
	}
	registry[f.Name()] = f
}

// Names lists the registered faults.
func Names() []string {
	var out []string
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Lookup finds a fault; an unknown name is an error listing the valid ones.
func Lookup(name string) (Fault, error) {
	f, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("unknown fault %q: valid faults are %s", name, strings.Join(Names(), ", "))
	}
	return f, nil
}

// Help lists every fault with its description.
func Help() string {
	var b strings.Builder
	for _, n := range Names() {
		fmt.Fprintf(&b, "  %-22s %s\n", n, registry[n].Describe())
	}
	return b.String()
}

// ValidateParams checks the knobs a fault uses.
func ValidateParams(name string, p Params, servers int) error {
	if p.Duration <= 0 {
		return fmt.Errorf("--duration must be positive")
	}
	if strings.HasPrefix(name, "intermittent") && p.MTBF <= 0 {
		return fmt.Errorf("--mtbf must be positive for %s", name)
	}
	if err := validateDegrade(name, p); err != nil {
		return err
	}
	if name == "kill-n" {
		if p.KillN < 1 || p.KillN > servers {
			return fmt.Errorf("--kill-n %d: want 1..%d (the number of servers)", p.KillN, servers)
		}
		switch p.KillTarget {
		case "leader", "follower", "any":
		default:
			return fmt.Errorf("--kill-target %q: valid are leader, follower, any", p.KillTarget)
		}
		if p.KillTarget == "follower" && p.KillN > servers-1 {
			return fmt.Errorf("--kill-n %d with --kill-target follower: only %d followers", p.KillN, servers-1)
		}
	}
	return nil
}

// sleepUntil waits until the schedule reaches at; false when ctx ended first.
func sleepUntil(ctx context.Context, env Env, at time.Duration) bool {
	d := at - env.Since()
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// followers returns the servers other than leader.
func followers(env Env, leader string) []string {
	var out []string
	for _, s := range env.Servers() {
		if s != leader {
			out = append(out, s)
		}
	}
	return out
}

// others returns every node except n.
func others(env Env, n string) []string {
	var out []string
	for _, s := range env.Nodes() {
		if s != n {
			out = append(out, s)
		}
	}
	return out
}

// pick chooses k distinct elements with the run's seeded source.
func pick(r *rand.Rand, from []string, k int) []string {
	c := append([]string(nil), from...)
	r.Shuffle(len(c), func(i, j int) { c[i], c[j] = c[j], c[i] })
	if k > len(c) {
		k = len(c)
	}
	out := c[:k]
	sort.Strings(out)
	return out
}

// cleanupCtx gives undo work its own deadline: it must run even when the run's context
// has been cancelled (Ctrl-C).
func cleanupCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}
