package topology

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/dtlab/dt/ovs"
)

// Attach opens the live topology a state file describes (created by this or another
// dt process).
func Attach(st *State) *Live {
	return &Live{State: st, Spec: st.Spec, OVS: ovs.Attach(st.OVSDir, st.RunID, st.Datapath)}
}

// Cut describes a partition between two groups of nodes. OneWay drops only traffic
// from A to B.
type Cut struct {
	A, B   []string
	OneWay bool
}

// String is the cut in the CLI's notation: "s1,s2 -> s3" or "s1 <-> s2".
func (c Cut) String() string {
	arrow := " <-> "
	if c.OneWay {
		arrow = " -> "
	}
	return strings.Join(c.A, ",") + arrow + strings.Join(c.B, ",")
}

// Owner is a stable name for the cut's rules (the same cut gives the same cookie, so
// `dt heal s1 s2` finds what `dt partition s1 s2` installed).
func (c Cut) Owner() string {
	a := append([]string(nil), c.A...)
	b := append([]string(nil), c.B...)
	sort.Strings(a)
	sort.Strings(b)
	if !c.OneWay && strings.Join(a, ",") > strings.Join(b, ",") {
		a, b = b, a
	}
	return "cut:" + Cut{A: a, B: b, OneWay: c.OneWay}.String()
}

// Flows turns the cut into drop rules by IP address.
func (l *Live) Flows(c Cut) ([]ovs.Flow, error) {
	if len(c.A) == 0 || len(c.B) == 0 {
		return nil, fmt.Errorf("partition needs two non-empty groups of nodes")
	}
	ips := func(names []string) ([]string, error) {
		var out []string
		for _, n := range names {
			node, err := l.Spec.Node(n)
			if err != nil {
				return nil, err
			}
			out = append(out, node.IP)
		}
		return out, nil
	}
	a, err := ips(c.A)
	if err != nil {
		return nil, err
	}
	b, err := ips(c.B)
	if err != nil {
		return nil, err
	}
	for _, x := range c.A {
		for _, y := range c.B {
			if x == y {
				return nil, fmt.Errorf("node %s is on both sides of the partition", x)
			}
		}
	}
	var flows []ovs.Flow
	for _, x := range a {
		for _, y := range b {
			flows = append(flows, ovs.DropIP(x, y))
			if !c.OneWay {
				flows = append(flows, ovs.DropIP(y, x))
			}
		}
	}
	return flows, nil
}

// Partition installs the cut's drop rules on every bridge under cookie owner's tag and
// returns the cookie. An empty owner uses the cut's own stable name.
func (l *Live) Partition(ctx context.Context, c Cut, owner string) (ovs.Cookie, error) {
	return l.PartitionCuts(ctx, []Cut{c}, owner)
}

// PartitionCuts installs several cuts as one partition: one cookie, one heal, and one
// ovs-ofctl call per bridge, so the whole pattern takes effect at once. It is how a
// partition that is not two groups is made — a ring, a bridge, a Jepsen grudge (node →
// the nodes it drops from: one one-way cut each). An empty owner uses the cuts' own
// names (the single cut's name when there is one).
func (l *Live) PartitionCuts(ctx context.Context, cuts []Cut, owner string) (ovs.Cookie, error) {
	if len(cuts) == 0 {
		return 0, fmt.Errorf("partition needs at least one cut")
	}
	var flows []ovs.Flow
	seen := map[ovs.Flow]bool{}
	var names, owners []string
	for _, c := range cuts {
		fs, err := l.Flows(c)
		if err != nil {
			return 0, err
		}
		for _, f := range fs {
			if !seen[f] {
				seen[f] = true
				flows = append(flows, f)
			}
		}
		names = append(names, c.String())
		owners = append(owners, c.Owner())
	}
	if owner == "" {
		sort.Strings(owners)
		owner = strings.Join(owners, ";")
	}
	cookie, err := l.addFlows(ctx, owner, flows)
	if err != nil {
		return 0, fmt.Errorf("partition %s: %w", strings.Join(names, "; "), err)
	}
	return cookie, nil
}

// addFlows installs rules on every bridge under owner's cookie and returns the cookie.
func (l *Live) addFlows(ctx context.Context, owner string, flows []ovs.Flow) (ovs.Cookie, error) {
	cookie := ovs.NewCookie(l.State.RunID, owner)
	for _, br := range l.State.Bridges {
		if err := l.OVS.AddFlows(ctx, br, cookie, flows); err != nil {
			return 0, err
		}
	}
	return cookie, nil
}

// Heal removes the rules of one cookie from every bridge.
func (l *Live) Heal(ctx context.Context, cookie ovs.Cookie) error {
	for _, br := range l.State.Bridges {
		if err := l.OVS.DelFlows(ctx, br, cookie); err != nil {
			return fmt.Errorf("heal: %w", err)
		}
	}
	return nil
}

// HealAll removes every rule dt installed in this run.
func (l *Live) HealAll(ctx context.Context) error {
	for _, br := range l.State.Bridges {
		if err := l.OVS.DelRunFlows(ctx, br); err != nil {
			return fmt.Errorf("heal all: %w", err)
		}
	}
	return nil
}

// SplitGroup parses a group of nodes written "s1,s2" into its names (blanks dropped).
func SplitGroup(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
