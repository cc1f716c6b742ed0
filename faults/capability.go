package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/shaping"
	"github.com/dtlab/dt/topology"
)

// Undo reverses one applied action.
type Undo func(ctx context.Context) error

// Env is what every engine needs: the nodes, the clock, the event log and the seeded
// source. What an action acts through is a capability on top of it (Network,
// Processes, Data, ClusterView, Prober), found by type assertion; an action declares
// the ones it needs (Form.Needs) and a plan that needs one its Env lacks is refused
// before anything runs.
type Env interface {
	// Servers lists the server nodes (s1..sN); Nodes lists every node.
	Servers() []string
	Nodes() []string
	// Record appends an event to events.jsonl, stamping it with the current run time.
	Record(e records.Event)
	// Since is the time since the workload started (the fault schedule's zero).
	Since() time.Duration
	// Rand is the run's seeded source: the same seed picks the same targets. The engine
	// serialises its use.
	Rand() *rand.Rand
}

// Network cuts and shapes the emulated network.
type Network interface {
	// Partition installs cuts as one partition (its rules in one go, one heal); owner
	// names its rules.
	Partition(ctx context.Context, cuts []topology.Cut, owner string) (Undo, error)
	// Impair adds imp to the packets to (dir "in"), from ("out") or to and from ("both")
	// the target nodes — every path when targets is empty —, once per packet, on top of
	// the topology's links; owner names it. The Undo removes exactly it.
	Impair(ctx context.Context, targets []string, imp shaping.Impairment, dir, owner string) (Undo, error)
	// DropPort drops packets from other nodes to port (proto tcp, udp, or "" for both)
	// on node; the Undo recovers it.
	DropPort(ctx context.Context, node, proto string, port int, owner string) (Undo, error)
}

// Links sets what one link of the topology does (the prompt's and `dt link`'s links).
type Links interface {
	// ShapeLink sets the impairment of the link between a and b, both ways, in place of
	// the topology's; a zero Impairment gives the link back to the topology.
	ShapeLink(ctx context.Context, a, b string, imp shaping.Impairment) error
}

// Processes acts on the system's process on a server.
type Processes interface {
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
}

// Data acts on a member's data dir.
type Data interface {
	// Backup copies node's data dir into the run directory, under a name with label,
	// and returns where; Cleanup deletes the data dir.
	Backup(ctx context.Context, node, label string) (string, error)
	Cleanup(ctx context.Context, node string) error
}

// ClusterView is the system's own view: its leader, health and log.
type ClusterView interface {
	// Leader returns the current leader, waiting briefly for one if there is none.
	Leader(ctx context.Context) (string, error)
	// WaitHealthy waits until every running member is healthy and they agree on a leader.
	WaitHealthy(ctx context.Context, timeout time.Duration) error
	// AppliedIndex is the raft index node's member has applied (as last seen);
	// CompactedIndex the index up to which its raft log is compacted: entries at or below
	// it can reach a follower only as a snapshot (0: nothing compacted yet).
	AppliedIndex(ctx context.Context, node string) (uint64, error)
	CompactedIndex(ctx context.Context, node string) (uint64, error)
}

// Prober makes HTTP requests from inside a node's namespace.
type Prober interface {
	// Probe makes p's request from inside node's namespace.
	Probe(ctx context.Context, node string, p Probe) (ProbeResult, error)
}

// Capability names one of the interfaces above.
type Capability string

// The capabilities an Env may offer.
const (
	CapNetwork     Capability = "network"      // Network: partitions, link faults, ports
	CapLinks       Capability = "links"        // Links: a link's impairment set in place of the topology's
	CapProcesses   Capability = "processes"    // Processes: kill, pause, stop, restart
	CapData        Capability = "data"         // Data: data dir backup and cleanup
	CapClusterView Capability = "cluster-view" // ClusterView: leader, health, raft indexes
	CapProbe       Capability = "probe"        // Prober: HTTP probes from inside a node
	CapDisk        Capability = "disk"         // Disk: the disk layer under members' data dirs
)

// AllCapabilities lists every capability, in the order `dt faults` shows them.
var AllCapabilities = []Capability{CapNetwork, CapLinks, CapProcesses, CapData, CapClusterView, CapProbe, CapDisk}

// describeCapability says what offers a capability, for errors.
var describeCapability = map[Capability]string{
	CapNetwork:     "the emulated network",
	CapLinks:       "the topology's links",
	CapProcesses:   "a system's processes",
	CapData:        "a system's data dirs",
	CapClusterView: "a system that reports its leader",
	CapProbe:       "agents in the nodes",
	CapDisk:        "the disk layer: dt run --disk fuse",
}

// Narrower is an Env that offers less than its methods say (a topology without agents
// cannot probe; a system that does not report its leader has no cluster view).
type Narrower interface {
	Capabilities() []Capability
}

// Offers lists the capabilities env offers.
func Offers(env Env) []Capability {
	var out []Capability
	for _, c := range AllCapabilities {
		if offers(env, c) {
			out = append(out, c)
		}
	}
	if n, ok := env.(Narrower); ok {
		allowed := n.Capabilities()
		out = slices.DeleteFunc(out, func(c Capability) bool { return !slices.Contains(allowed, c) })
	}
	return out
}

func offers(env Env, c Capability) bool {
	var ok bool
	switch c {
	case CapNetwork:
		_, ok = env.(Network)
	case CapLinks:
		_, ok = env.(Links)
	case CapProcesses:
		_, ok = env.(Processes)
	case CapData:
		_, ok = env.(Data)
	case CapClusterView:
		_, ok = env.(ClusterView)
	case CapProbe:
		_, ok = env.(Prober)
	case CapDisk:
		_, ok = env.(Disk)
	}
	return ok
}

// missing lists what of need c does not offer (nil Caps offers everything).
func (c Cluster) missing(need []Capability) []Capability {
	if c.Caps == nil {
		return nil
	}
	var out []Capability
	for _, n := range need {
		if !slices.Contains(c.Caps, n) {
			out = append(out, n)
		}
	}
	return out
}

// needError says that what needs caps cannot run here.
func needError(what string, caps []Capability) error {
	var names []string
	for _, c := range caps {
		names = append(names, fmt.Sprintf("%s (%s)", c, describeCapability[c]))
	}
	return fmt.Errorf("%s needs %s, which this run does not have", what, strings.Join(names, " and "))
}

// capabilityOf returns env as the interface T, or an error naming what is missing (a plan
// validated against Offers(env) never sees it).
func capabilityOf[T any](env Env, c Capability) (T, error) {
	v, ok := env.(T)
	if !ok {
		return v, needError("this action", []Capability{c})
	}
	return v, nil
}
