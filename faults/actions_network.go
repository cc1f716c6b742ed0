package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/shaping"
	"github.com/dtlab/dt/topology"
)

// The actions on the emulated network.
func init() {
	Register(partitionAction{})
	Register(isolateAction{})
	Register(healAction{})
	Register(dropPort{})
	Register(recoverPort{})
	Register(impairAction{name: "droppkg", describe: "lose loss % of the targets' packets (direction in|out|both)",
		targets: TargetsRequired, fields: []string{"loss", "direction"}})
	Register(impairAction{name: "loss", describe: "lose loss % of the packets to or from the targets (direction in|out|both; no targets: every path)",
		targets: TargetsOptional, fields: []string{"loss", "direction"}})
	Register(impairAction{name: "delay", describe: "add delay (and jitter) to packets to or from the targets (no targets: every path)",
		targets: TargetsOptional, fields: []string{"delay", "jitter", "direction"}})
	Register(impairAction{name: "limitspeed", describe: "limit the targets' packets to rate (e.g. 1mbit)",
		targets: TargetsOptional, fields: []string{"rate", "direction"}})
	Register(linkAction{})
}

// PartitionModes are partition's generated shapes (Jepsen's nemeses).
var PartitionModes = []string{"random-halves", "majorities-ring", "bridge"}

type partitionAction struct{}

func (partitionAction) Name() string { return "partition" }
func (partitionAction) Describe() string {
	return "cut the network between groups: groups: [[a,b],[c]] (one-way: only from the first group to the second) or mode: random-halves | majorities-ring | bridge (of the targets, default all servers)"
}
func (partitionAction) Form() Form {
	return Form{Targets: TargetsOptional, Fields: []string{"groups", "mode", "one-way"}, Needs: []Capability{CapNetwork}}
}

func (partitionAction) Check(s Step, c Cluster) []FieldError {
	var errs []FieldError
	if (len(s.Groups) == 0) == (s.Mode == "") {
		errs = append(errs, fieldErrorf("groups", "partition needs groups: [[a,b],[c]] or mode: %s (one of them)", strings.Join(PartitionModes, " | ")))
	}
	if s.Mode != "" && !slices.Contains(PartitionModes, s.Mode) {
		errs = append(errs, fieldErrorf("mode", "unknown mode %q: valid are %s", s.Mode, strings.Join(PartitionModes, ", ")))
	}
	if len(s.Groups) > 0 && len(s.Targets) > 0 {
		errs = append(errs, fieldErrorf("targets", "partition with groups takes its nodes from the groups, not targets"))
	}
	if len(s.Groups) == 1 {
		errs = append(errs, fieldErrorf("groups", "partition needs at least two groups"))
	}
	if s.OneWay && len(s.Groups) != 2 {
		errs = append(errs, fieldErrorf("one-way", "one-way needs exactly two groups: traffic from the first to the second is dropped"))
	}
	for _, g := range s.Groups {
		if len(g) == 0 {
			errs = append(errs, fieldErrorf("groups", "a group is empty"))
		}
	}
	return errs
}

func (partitionAction) Prepare(ctx context.Context, call *Call) (Change, error) {
	net, err := Need[Network](call, CapNetwork)
	if err != nil {
		return Change{}, err
	}
	s := call.Step
	var cuts []topology.Cut
	if len(s.Groups) > 0 {
		var groups [][]string
		seen := map[string]bool{}
		for _, g := range s.Groups {
			r, err := call.Resolve(ctx, g)
			if err != nil {
				return Change{}, err
			}
			for _, n := range r {
				if seen[n] {
					return Change{}, fmt.Errorf("node %s is in two groups", n)
				}
				seen[n] = true
			}
			groups = append(groups, r)
		}
		for i := range groups {
			for j := i + 1; j < len(groups); j++ {
				cuts = append(cuts, topology.Cut{A: groups[i], B: groups[j], OneWay: s.OneWay})
			}
		}
	} else {
		nodes := call.Targets
		if len(nodes) == 0 {
			nodes = call.Env().Servers()
		}
		call.Rand(func(r *rand.Rand) { cuts, err = PartitionShape(s.Mode, nodes, r) })
		if err != nil {
			return Change{}, err
		}
	}
	return cutChange(net, call.Label, cuts, nil), nil
}

// cutChange installs cuts as one partition; the nodes involved are nodes, or every
// node of the cuts.
func cutChange(net Network, label string, cuts []topology.Cut, nodes []string) Change {
	var texts, involved []string
	for _, c := range cuts {
		texts = append(texts, c.String())
		for _, n := range append(slices.Clone(c.A), c.B...) {
			if !slices.Contains(involved, n) {
				involved = append(involved, n)
			}
		}
	}
	if nodes == nil {
		nodes = involved
	}
	return Change{Nodes: nodes, Text: strings.Join(texts, "; "), Kind: KindNetwork, UndoVerb: "heal",
		Apply: func(ctx context.Context) (Undo, error) { return net.Partition(ctx, cuts, label) }}
}

type isolateAction struct{}

func (isolateAction) Name() string { return "isolate" }
func (isolateAction) Describe() string {
	return "cut the targets from every other node (each target alone)"
}
func (isolateAction) Form() Form {
	return Form{Targets: TargetsRequired, Needs: []Capability{CapNetwork}}
}

func (isolateAction) Prepare(_ context.Context, call *Call) (Change, error) {
	net, err := Need[Network](call, CapNetwork)
	if err != nil {
		return Change{}, err
	}
	var cuts []topology.Cut
	for _, n := range call.Targets {
		cuts = append(cuts, topology.Cut{A: []string{n}, B: others(call.Env(), n)})
	}
	return cutChange(net, call.Label, cuts, call.Targets), nil
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

type healAction struct{}

func (healAction) Name() string { return "heal" }
func (healAction) Describe() string {
	return "undo every partition, isolate, port and link fault still in place (targets: @id heals that step, a node or selector the faults that involve it)"
}
func (healAction) Form() Form {
	return Form{Targets: TargetsOptional, RawTargets: true, Needs: []Capability{CapNetwork}}
}

func (healAction) Run(ctx context.Context, call *Call) error {
	var ids, sel []string
	for _, t := range call.Targets {
		if strings.HasPrefix(t, "@") {
			ids = append(ids, t[1:])
		} else {
			sel = append(sel, t)
		}
	}
	nodes, err := call.Resolve(ctx, sel)
	if err != nil {
		return err
	}
	match := func(e Effect) bool {
		if len(call.Targets) == 0 || slices.Contains(ids, e.Label) {
			return true
		}
		return slices.ContainsFunc(e.Nodes, func(n string) bool { return slices.Contains(nodes, n) })
	}
	var names []string
	for _, e := range call.sc.eng.Active() {
		if e.Kind == KindNetwork && match(e) {
			names = append(names, e.Label)
		}
	}
	call.Record(records.EventFaultAction, "heal", nil, strings.Join(names, ", "))
	call.Heal(ctx, match)
	return nil
}

func protoName(p string) string {
	if p == "" {
		return "tcp+udp"
	}
	return p
}

// portTag names a port fault, for recoverport to find it.
func portTag(port int, proto string) string { return fmt.Sprintf("port %d %s", port, protoName(proto)) }

// checkPort validates port and proto.
func checkPort(s Step) []FieldError {
	var errs []FieldError
	if s.Port < 1 || s.Port > 65535 {
		errs = append(errs, fieldErrorf("port", "port %d: want 1..65535", s.Port))
	}
	if s.Proto != "" && s.Proto != "tcp" && s.Proto != "udp" {
		errs = append(errs, fieldErrorf("proto", "proto %q: valid are tcp, udp (empty: both)", s.Proto))
	}
	return errs
}

type dropPort struct{}

func (dropPort) Name() string { return "dropport" }
func (dropPort) Describe() string {
	return "drop packets from other nodes to port (proto tcp|udp, default both) on the targets"
}
func (dropPort) Form() Form {
	return Form{Targets: TargetsRequired, Fields: []string{"port", "proto"}, Needs: []Capability{CapNetwork}}
}
func (dropPort) Check(s Step, _ Cluster) []FieldError { return checkPort(s) }

func (dropPort) Prepare(_ context.Context, call *Call) (Change, error) {
	net, err := Need[Network](call, CapNetwork)
	if err != nil {
		return Change{}, err
	}
	s := call.Step
	tag := portTag(s.Port, s.Proto)
	return Change{Nodes: call.Targets, Text: tag, Kind: KindNetwork, UndoVerb: "recoverport", Tag: tag,
		Each: func(ctx context.Context, n string) (Undo, error) {
			return net.DropPort(ctx, n, s.Proto, s.Port, call.Label)
		}}, nil
}

type recoverPort struct{}

func (recoverPort) Name() string                         { return "recoverport" }
func (recoverPort) Describe() string                     { return "undo dropport of that port on the targets" }
func (recoverPort) Check(s Step, _ Cluster) []FieldError { return checkPort(s) }
func (recoverPort) Form() Form {
	return Form{Targets: TargetsRequired, Fields: []string{"port", "proto"}, Needs: []Capability{CapNetwork}}
}

func (recoverPort) Run(ctx context.Context, call *Call) error {
	s := call.Step
	tag := portTag(s.Port, s.Proto)
	call.Record(records.EventFaultAction, "recoverport", call.Targets, tag)
	var missing []string
	for _, n := range call.Targets {
		if !call.UndoOn(ctx, n, func(e Effect) bool { return e.Action == "dropport" && e.Tag == tag }) {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("no dropport of %s in place on %s", tag, strings.Join(missing, ", "))
	}
	return nil
}

// impairAction adds loss, delay or a rate limit to the paths of the targets.
type impairAction struct {
	name, describe string
	targets        Arity
	fields         []string
}

func (a impairAction) Name() string     { return a.name }
func (a impairAction) Describe() string { return a.describe }
func (a impairAction) Form() Form {
	return Form{Targets: a.targets, Fields: a.fields, Needs: []Capability{CapNetwork}}
}

func (a impairAction) Check(s Step, _ Cluster) []FieldError {
	var errs []FieldError
	switch a.name {
	case "droppkg", "loss":
		if s.Loss <= 0 || s.Loss > 100 {
			errs = append(errs, fieldErrorf("loss", "loss %g: want a percentage in (0, 100]", s.Loss))
		}
	case "delay":
		if s.Delay <= 0 || s.Delay.D() > shaping.MaxDelay {
			errs = append(errs, fieldErrorf("delay", "delay %v: want (0, %v]", s.Delay, shaping.MaxDelay))
		}
		if s.Jitter.D() > shaping.MaxDelay {
			errs = append(errs, fieldErrorf("jitter", "jitter %v: want at most %v", s.Jitter, shaping.MaxDelay))
		}
	case "limitspeed":
		if s.Rate == "" {
			errs = append(errs, fieldErrorf("rate", "limitspeed needs rate (e.g. 1mbit, 500kbit)"))
		} else if r, err := shaping.ParseRate(s.Rate, 1e6); err != nil {
			errs = append(errs, FieldError{"rate", err})
		} else if r < shaping.MinRate {
			errs = append(errs, fieldErrorf("rate", "rate %s: want at least %d bit/s", s.Rate, shaping.MinRate))
		}
	}
	if s.Direction != "" && s.Direction != "in" && s.Direction != "out" && s.Direction != "both" {
		errs = append(errs, fieldErrorf("direction", "direction %q: valid are in, out, both", s.Direction))
	}
	return errs
}

func (a impairAction) Prepare(_ context.Context, call *Call) (Change, error) {
	net, err := Need[Network](call, CapNetwork)
	if err != nil {
		return Change{}, err
	}
	s, targets := call.Step, call.Targets
	imp, err := impairmentOf(s)
	if err != nil {
		return Change{}, err
	}
	dir := s.Direction
	if dir == "" {
		dir = topology.Both
	}
	where := "every path"
	if len(targets) > 0 {
		where = map[string]string{topology.In: "every path to ", topology.Out: "every path from ", topology.Both: "every path to or from "}[dir] + strings.Join(targets, ",")
	}
	return Change{Nodes: targets, Text: fmt.Sprintf("%s on %s", imp, where), Kind: KindNetwork, UndoVerb: "heal",
		Apply: func(ctx context.Context) (Undo, error) { return net.Impair(ctx, targets, imp, dir, call.Label) }}, nil
}

// impairmentOf is the shaping a link-degrading step adds.
func impairmentOf(s Step) (shaping.Impairment, error) {
	switch s.Action {
	case "droppkg", "loss":
		return shaping.Impairment{Loss: s.Loss}, nil
	case "delay", "link":
		imp := shaping.Impairment{Delay: s.Delay.D(), Jitter: s.Jitter.D(), Loss: s.Loss}
		if s.Rate != "" {
			r, err := shaping.ParseRate(s.Rate, 1e6)
			if err != nil {
				return imp, err
			}
			imp.Rate = r
		}
		return imp, nil
	}
	r, err := shaping.ParseRate(s.Rate, 1e6)
	return shaping.Impairment{Rate: r}, err
}

// linkAction sets what the link between two nodes does, in place of the topology's
// (the prompt's `link`); its undo gives the link back to the topology.
type linkAction struct{}

func (linkAction) Name() string { return "link" }
func (linkAction) Describe() string {
	return "set the link between two nodes (delay, jitter, loss, rate; both ways) in place of the topology's"
}
func (linkAction) Form() Form {
	return Form{Targets: TargetsRequired, Fields: []string{"delay", "jitter", "loss", "rate"}, Needs: []Capability{CapLinks}}
}

func (linkAction) Check(s Step, _ Cluster) []FieldError {
	var errs []FieldError
	if len(s.Targets) != 2 {
		errs = append(errs, fieldErrorf("targets", "link needs two nodes, got %d", len(s.Targets)))
	}
	if s.Delay.D() > shaping.MaxDelay || s.Jitter.D() > shaping.MaxDelay {
		errs = append(errs, fieldErrorf("delay", "delay and jitter: want at most %v", shaping.MaxDelay))
	}
	if s.Loss < 0 || s.Loss > 100 {
		errs = append(errs, fieldErrorf("loss", "loss %g: want a percentage in [0, 100]", s.Loss))
	}
	if s.Rate != "" {
		if r, err := shaping.ParseRate(s.Rate, 1e6); err != nil {
			errs = append(errs, FieldError{"rate", err})
		} else if r < shaping.MinRate {
			errs = append(errs, fieldErrorf("rate", "rate %s: want at least %d bit/s", s.Rate, shaping.MinRate))
		}
	}
	if s.Delay == 0 && s.Jitter == 0 && s.Loss == 0 && s.Rate == "" {
		errs = append(errs, fieldErrorf("", "link needs delay, jitter, loss or rate"))
	}
	return errs
}

func (linkAction) Prepare(_ context.Context, call *Call) (Change, error) {
	l, err := Need[Links](call, CapLinks)
	if err != nil {
		return Change{}, err
	}
	if len(call.Targets) != 2 || call.Targets[0] == call.Targets[1] {
		return Change{}, fmt.Errorf("link needs two different nodes, got %v", call.Targets)
	}
	imp, err := impairmentOf(call.Step)
	if err != nil {
		return Change{}, err
	}
	a, b := call.Targets[0], call.Targets[1]
	return Change{Nodes: call.Targets, Text: fmt.Sprintf("%s <-> %s: %s", a, b, imp), Kind: KindNetwork, UndoVerb: "heal",
		Apply: func(ctx context.Context) (Undo, error) {
			if err := l.ShapeLink(ctx, a, b, imp); err != nil {
				return nil, err
			}
			return func(ctx context.Context) error { return l.ShapeLink(ctx, a, b, shaping.Impairment{}) }, nil
		}}, nil
}
