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

	"github.com/dtlab/dt/records"
)

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

// RegisterFault adds a named fault; a duplicate name is a programming error.
func RegisterFault(f Fault) {
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

// RunNow fires the named fault now on e, compressed: its schedule is shifted so that its
// active window opens at once and lasts window (the schedule's T is chosen to make it
// so; p.Duration is ignored). Its steps are validated against e's nodes and capabilities
// first. It blocks until the fault is over; when ctx ends early the fault undoes what it
// did before RunNow returns. notify, if not nil, sees every event the fault records.
func (e *Engine) RunNow(ctx context.Context, name string, window time.Duration, p Params, notify func(records.Event)) error {
	f, err := Lookup(name)
	if err != nil {
		return err
	}
	if window <= 0 {
		return fmt.Errorf("fault %s: window %v must be positive", name, window)
	}
	// Ask for the window of a unit schedule and scale it.
	unit := p
	unit.Duration = time.Hour
	a, b := f.Window(unit)
	from, to := a.Hours(), b.Hours()
	if to <= from {
		return fmt.Errorf("fault %s: empty window [%g·T, %g·T]", name, from, to)
	}
	p.Duration = time.Duration(float64(window) / (to - from))
	if err := ValidateParams(name, p, len(e.env.Servers())); err != nil {
		return fmt.Errorf("fault %s: %w", name, err)
	}
	steps := f.Steps(p)
	if err := ValidateTimeline(steps, e.Cluster()); err != nil {
		return fmt.Errorf("fault %s: %w", name, err)
	}
	lead := time.Duration(from * float64(p.Duration))
	return e.runFrom(ctx, steps, p.Duration, lead, notify)
}
