package faults

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// RandomOptions are the knobs of a seeded random schedule (Trogdor's and Jepsen's
// random nemesis): fault arrivals with exponential gaps, each drawn with concrete
// targets so that a replay of the schedule hits the same nodes.
type RandomOptions struct {
	Seed int64
	// Duration is the workload's length T; every fault is undone at least 0.5 s before it.
	Duration time.Duration
	// MTBF is the mean time between fault arrivals, and the mean length of a fault.
	MTBF time.Duration
	// Faults are the kinds to draw from (see RandomKinds); empty: all of them, less those
	// the options cannot support (dropport without ClientPort, process faults with fewer
	// than three servers, partition with one).
	Faults []string
	// Servers are the server nodes the faults target; Nodes every node (default: Servers).
	Servers []string
	Nodes   []string
	// ClientPort is the servers' client port, which dropport blocks (0: no dropport).
	ClientPort int
	// Caps are the capabilities the run offers (nil: every one): a kind that needs
	// another is not drawn by default, and refused when asked for.
	Caps []Capability
}

// RandomKind is an action that seeded random schedules can draw (--schedule random).
// An action that needs CapProcesses is a process kind: it takes a member out of
// service, and RandomSchedule draws it only where a majority stays free of them.
type RandomKind interface {
	Action
	// Draw fills in the targets and amounts of s, whose ID, Action, At and For are set
	// (Draw may set For to 0 for an instantaneous kind), from d.
	Draw(s *Step, d RandomDraw)
	// Unsupported says why the kind cannot be drawn with o ("" when it can).
	Unsupported(o RandomOptions) string
	// Drawn says whether random schedules draw this action at all (a type may serve
	// several actions, only some of them drawn).
	Drawn() bool
}

// RandomDraw is what a RandomKind draws from: the seeded source, the servers, those free
// of process faults at the step's time, and the options.
type RandomDraw struct {
	Rand    *rand.Rand
	Servers []string
	Free    []string
	Options RandomOptions
}

// One picks one server.
func (d RandomDraw) One() []string { return []string{d.Servers[d.Rand.IntN(len(d.Servers))]} }

const (
	// randomMinFault is the shortest fault, and randomEndMargin how long before the end of
	// the workload every fault is undone.
	randomMinFault  = 500 * time.Millisecond
	randomEndMargin = 500 * time.Millisecond
	// randomSettle is how long a server still counts as under a process fault after it is
	// restarted or continued (and how long a restart counts as one): it is rejoining the
	// cluster, so faulting another member then could leave no majority in practice.
	randomSettle = 2 * time.Second
	// randomMaxArrivals bounds Duration/MTBF: more is surely a typo in one of them.
	randomMaxArrivals = 100_000
	// randomStream is the PCG stream of random schedules: any constant, but fixed, so
	// that a seed gives the same schedule in every version.
	randomStream = 0x64742d72616e646f // "dt-rando"
)

// RandomKinds lists the fault kinds RandomSchedule can draw: the registered actions
// that are RandomKinds, in the order of ActionNames.
func RandomKinds() []string {
	var out []string
	for _, n := range ActionNames() {
		if k, ok := actions[n].(RandomKind); ok && k.Drawn() {
			out = append(out, n)
		}
	}
	return out
}

func isProcessKind(kind string) bool {
	a, ok := actions[kind]
	return ok && slices.Contains(a.Form().Needs, CapProcesses)
}

// randomWindow is when a server is under a process fault: [from, to).
type randomWindow struct {
	server   string
	from, to time.Duration
}

// RandomSchedule draws a fault schedule from o.Seed; the same options give the same steps.
//
// Faults arrive with exponential gaps of mean MTBF from t=0. Each arrival draws a kind
// uniformly, one server (or, for partition, two random halves of the servers) by name, a
// duration (exponential, mean MTBF, at least 0.5 s, undone at least 0.5 s before
// Duration; an arrival with no room for that is dropped) and its amounts (delay 20–200 ms
// in steps of 10, loss 5–50 % in steps of 5). Faults may overlap, each undone on its own
// (every step has its own at and duration), except the process faults (kill, pause,
// stop, restart): they never hit a server already under one, and never leave fewer than
// a majority of the servers free of them — a server counts as under one until 2 s after
// it is restarted or continued. An arrival whose kind would break that rule draws again
// among the kinds that would not, or is dropped when there is none.
//
// Steps are named r1-kill, r2-partition... in order of At, which every step sets.
func RandomSchedule(o RandomOptions) ([]Step, error) {
	kinds, err := o.check()
	if err != nil {
		return nil, err
	}
	servers := append([]string(nil), o.Servers...)
	nodes := o.Nodes
	if len(nodes) == 0 {
		nodes = servers
	}
	// The most servers that may be under a process fault at once, leaving a majority.
	maxDown := (len(servers) - 1) / 2

	rng := rand.New(rand.NewPCG(uint64(o.Seed), randomStream))
	exp := func() time.Duration { return time.Duration(rng.ExpFloat64() * float64(o.MTBF)) }
	var (
		steps   []Step
		windows []randomWindow
		t       time.Duration
	)
	for {
		t += exp()
		at := t.Round(time.Millisecond)
		room := o.Duration - randomEndMargin - at
		if room < randomMinFault {
			break // every later arrival has less room still
		}
		d := min(max(exp().Round(time.Millisecond), randomMinFault), room)

		// Arrivals come in order of at, so the windows that matter started at or before
		// it: the number of servers under a process fault only falls during the new one.
		var free []string
		for _, s := range servers {
			if !slices.ContainsFunc(windows, func(w randomWindow) bool { return w.server == s && w.from <= at && at < w.to }) {
				free = append(free, s)
			}
		}
		processOK := len(servers)-len(free) < maxDown
		var feasible []string
		for _, k := range kinds {
			if isProcessKind(k) && !processOK {
				continue
			}
			feasible = append(feasible, k)
		}
		if len(feasible) == 0 {
			continue
		}
		// Uniform over the feasible kinds: the same law as drawing over all of them and
		// drawing again among the feasible ones after an infeasible draw.
		kind := feasible[rng.IntN(len(feasible))]

		atD := Duration(at)
		s := Step{ID: fmt.Sprintf("r%d-%s", len(steps)+1, kind), Action: kind, At: &atD, For: Duration(d)}
		actions[kind].(RandomKind).Draw(&s, RandomDraw{Rand: rng, Servers: servers, Free: free, Options: o})
		if isProcessKind(kind) {
			windows = append(windows, randomWindow{s.Targets[0], at, at + s.For.D() + randomSettle})
		}
		steps = append(steps, s)
	}
	if err := ValidateTimeline(steps, Cluster{Nodes: nodes, Servers: servers}); err != nil {
		return nil, fmt.Errorf("random schedule (seed %d) is invalid, a bug: %w", o.Seed, err)
	}
	return steps, nil
}

// check validates the options and returns the kinds to draw from.
func (o RandomOptions) check() ([]string, error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if o.Duration <= 0 {
		bad("random schedule: duration %v: must be positive", o.Duration)
	}
	if o.MTBF <= 0 {
		bad("random schedule: mtbf %v: must be positive", o.MTBF)
	} else if o.Duration/o.MTBF > randomMaxArrivals {
		bad("random schedule: duration %v / mtbf %v would draw over %d faults: raise mtbf", o.Duration, o.MTBF, randomMaxArrivals)
	}
	if len(o.Servers) == 0 {
		bad("random schedule: no servers to fault")
	}
	for i, s := range o.Servers {
		if slices.Contains(o.Servers[:i], s) {
			bad("random schedule: server %q listed twice", s)
		}
		if len(o.Nodes) > 0 && !slices.Contains(o.Nodes, s) {
			bad("random schedule: server %q is not a node; nodes are %s", s, strings.Join(o.Nodes, ", "))
		}
	}
	if o.ClientPort < 0 || o.ClientPort > 65535 {
		bad("random schedule: client port %d: want 1..65535 (0: no dropport)", o.ClientPort)
	}
	// Why a kind cannot be drawn with these options ("" when it can).
	unsupported := func(kind string) string {
		if miss := (Cluster{Caps: o.Caps}).missing(actions[kind].Form().Needs); len(miss) > 0 {
			return needError(kind, miss).Error()
		}
		return actions[kind].(RandomKind).Unsupported(o)
	}
	var kinds []string
	if len(o.Faults) == 0 {
		for _, k := range RandomKinds() {
			if unsupported(k) == "" {
				kinds = append(kinds, k)
			}
		}
		if len(kinds) == 0 && len(o.Servers) > 0 {
			bad("random schedule: no fault kind fits %d server(s)", len(o.Servers))
		}
	}
	for i, k := range o.Faults {
		switch {
		case !slices.Contains(RandomKinds(), k):
			bad("random schedule: unknown fault kind %q: valid kinds are %s", k, strings.Join(RandomKinds(), ", "))
		case slices.Contains(o.Faults[:i], k):
			bad("random schedule: fault kind %q listed twice", k)
		case len(o.Servers) > 0 && unsupported(k) != "":
			bad("random schedule: %s", unsupported(k))
		default:
			kinds = append(kinds, k)
		}
	}
	return kinds, errors.Join(errs...)
}
