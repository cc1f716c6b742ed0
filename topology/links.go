package topology

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"

	"github.com/dtlab/dt/shaping"
	"github.com/vishvananda/netns"
)

// Where link impairments are realised.
//
// A spec puts an impairment on links: a node's link to its switch (Node.Link) and a
// switch's link to its uplink (Switch.Link), each applying to packets crossing it in
// either direction. Nothing can be shaped inside OVS, and the switch ends of the veths
// carry every node's traffic in both directions, so dt shapes where it can tell paths
// apart: on the egress of each node's eth0, per destination. The packet from a to b gets
// the composition (shaping.Compose) of every link on the tree path between them — a's
// link, the uplinks up to the switch they share and down again, b's link — once, on a's
// egress. A path then sees what its links add up to: simple's --link-latency L puts L/2
// on each node's link (reckon's split), and s1→s2 crosses two of them, so RTT = 2·L.
//
// Rates are the exception: they limit each sender towards each destination, not the
// link as a whole; two senders into one node each get the rate.

// NodeShaper sets and removes named layers of impairment rules (shaping.Layer) on an
// interface of one node: in dt, the node's agent, which owns the shaping backend of its
// namespace.
type NodeShaper interface {
	SetLayer(ctx context.Context, iface string, l shaping.Layer) error
	DeleteLayer(ctx context.Context, iface, name string) error
}

// Layer names and priorities used on every node's eth0.
const (
	// LayerTopology holds the spec's links (ModeSet, priority 0).
	LayerTopology = "topology"
	// LayerLinkPrefix + peer holds `dt link`'s setting for the path to peer (ModeSet,
	// priority LinkPriority: it overrides the topology for that peer).
	LayerLinkPrefix = "link:"
	LinkPriority    = 10
	// LayerFaultPrefix + owner holds a fault's added impairment (ModeAdd).
	LayerFaultPrefix = "fault:"
)

// uplinks returns the chain of switches from sw up to the root, sw first.
func (s Spec) uplinks(sw string) []string {
	up := map[string]string{}
	for _, w := range s.Switches {
		up[w.Name] = w.Uplink
	}
	var out []string
	for x := sw; x != "" && len(out) <= len(s.Switches); x = up[x] {
		out = append(out, x)
	}
	return out
}

func (s Spec) switchLink(name string) shaping.Impairment {
	for _, w := range s.Switches {
		if w.Name == name {
			return w.Link
		}
	}
	return shaping.Impairment{}
}

// Path is what the links between nodes a and b do to a packet from a to b: the
// composition of a's link, the uplinks of the switches up from a's switch to the lowest
// switch the two share and down to b's, and b's link.
func (s Spec) Path(a, b string) (shaping.Impairment, error) {
	na, err := s.Node(a)
	if err != nil {
		return shaping.Impairment{}, err
	}
	nb, err := s.Node(b)
	if err != nil {
		return shaping.Impairment{}, err
	}
	if a == b {
		return shaping.Impairment{}, nil
	}
	ua, ub := s.uplinks(na.Switch), s.uplinks(nb.Switch)
	inB := map[string]bool{}
	for _, x := range ub {
		inB[x] = true
	}
	imp := na.Link
	meet := ""
	for _, x := range ua {
		if inB[x] {
			meet = x
			break
		}
		imp = shaping.Compose(imp, s.switchLink(x))
	}
	var down []string
	for _, x := range ub {
		if x == meet {
			break
		}
		down = append(down, x)
	}
	for i := len(down) - 1; i >= 0; i-- {
		imp = shaping.Compose(imp, s.switchLink(down[i]))
	}
	return shaping.Compose(imp, nb.Link), nil
}

// HasImpairments reports whether any link of the spec impairs anything.
func (s Spec) HasImpairments() bool {
	for _, n := range s.Nodes {
		if !n.Link.IsZero() {
			return true
		}
	}
	for _, w := range s.Switches {
		if !w.Link.IsZero() {
			return true
		}
	}
	return false
}

// hostPrefix is n's address as a one-host prefix (/32). Validate rejects a spec whose
// addresses do not parse; this reports one that was never validated.
func hostPrefix(n Node) (netip.Prefix, error) {
	a, err := netip.ParseAddr(n.IP)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("node %s: address: %w", n.Name, err)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// EgressRules are the rules on node's eth0 that give every path from node what Path says:
// the impairment most destinations get as the default rule, and a /32 rule for each
// destination that gets something else (nothing, for one near by). Nil when no path from
// node is impaired.
func (s Spec) EgressRules(node string) ([]shaping.Rule, error) {
	if _, err := s.Node(node); err != nil {
		return nil, err
	}
	type group struct {
		imp   shaping.Impairment
		dsts  []netip.Prefix
		first int
	}
	groups := map[shaping.Impairment]*group{}
	var order []*group
	for i, n := range s.Nodes {
		if n.Name == node {
			continue
		}
		imp, err := s.Path(node, n.Name)
		if err != nil {
			return nil, err
		}
		g := groups[imp]
		if g == nil {
			g = &group{imp: imp, first: i}
			groups[imp] = g
			order = append(order, g)
		}
		dst, err := hostPrefix(n)
		if err != nil {
			return nil, err
		}
		g.dsts = append(g.dsts, dst)
	}
	if len(order) == 0 {
		return nil, nil
	}
	// The largest group (the earliest on a tie) becomes the default.
	def := order[0]
	for _, g := range order[1:] {
		if len(g.dsts) > len(def.dsts) {
			def = g
		}
	}
	var rules []shaping.Rule
	for _, g := range order {
		if g == def {
			continue
		}
		if def.imp.IsZero() && g.imp.IsZero() {
			continue
		}
		rules = append(rules, shaping.Rule{Dst: g.dsts, Impairment: g.imp})
	}
	if !def.imp.IsZero() {
		rules = append(rules, shaping.Rule{Impairment: def.imp})
	} else {
		// Without a default, unimpaired destinations need no rule.
		kept := rules[:0]
		for _, r := range rules {
			if !r.IsZero() {
				kept = append(kept, r)
			}
		}
		rules = kept
	}
	if len(rules) == 0 {
		return nil, nil
	}
	return rules, nil
}

// ErrNoShapers is returned when a live topology has no agents to shape its links.
var ErrNoShapers = errors.New("no agents to shape links with (link impairments need an agent in every node: dt up and dt run start them)")

func (l *Live) shaper(node string) (NodeShaper, error) {
	if _, err := l.Spec.Node(node); err != nil {
		return nil, err
	}
	sh := l.Shapers[node]
	if sh == nil {
		return nil, fmt.Errorf("node %s: %w", node, ErrNoShapers)
	}
	return sh, nil
}

// forNodes runs fn for each node in parallel and joins the errors.
func forNodes(nodes []string, fn func(node string) error) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(n)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ApplyLinks realises the spec's link impairments: layer "topology" on the eth0 of every
// node that has an impaired path. It fails if any node's could not be applied.
func (l *Live) ApplyLinks(ctx context.Context) error {
	var nodes []string
	rules := map[string][]shaping.Rule{}
	for _, n := range l.Spec.Nodes {
		r, err := l.Spec.EgressRules(n.Name)
		if err != nil {
			return err
		}
		if len(r) > 0 {
			nodes = append(nodes, n.Name)
			rules[n.Name] = r
		}
	}
	return forNodes(nodes, func(node string) error {
		sh, err := l.shaper(node)
		if err != nil {
			return err
		}
		layer := shaping.Layer{Name: LayerTopology, Mode: shaping.ModeSet, Rules: rules[node]}
		if err := sh.SetLayer(ctx, NodeIface, layer); err != nil {
			return fmt.Errorf("node %s: links %s: %w", node, describeRules(rules[node]), err)
		}
		return nil
	})
}

func describeRules(rules []shaping.Rule) string {
	s := make([]string, len(rules))
	for i, r := range rules {
		s[i] = r.String()
	}
	return strings.Join(s, "; ")
}

// ShapeLink sets what the path between nodes a and b does, both ways, overriding the
// topology's links for that pair (layers "link:b" on a and "link:a" on b); a zero imp
// removes the setting, giving the pair the topology's links back. If b's side fails, a's
// is undone. It is the shell's `link` and `dt link`.
func (l *Live) ShapeLink(ctx context.Context, a, b string, imp shaping.Impairment) error {
	if a == b {
		return fmt.Errorf("link %s %s: the same node twice", a, b)
	}
	if err := imp.Validate(); err != nil {
		return err
	}
	na, err := l.Spec.Node(a)
	if err != nil {
		return err
	}
	nb, err := l.Spec.Node(b)
	if err != nil {
		return err
	}
	sa, err := l.shaper(a)
	if err != nil {
		return err
	}
	sb, err := l.shaper(b)
	if err != nil {
		return err
	}
	if imp.IsZero() {
		return errors.Join(
			sa.DeleteLayer(ctx, NodeIface, LayerLinkPrefix+b),
			sb.DeleteLayer(ctx, NodeIface, LayerLinkPrefix+a))
	}
	pa, err := hostPrefix(na)
	if err != nil {
		return err
	}
	pb, err := hostPrefix(nb)
	if err != nil {
		return err
	}
	layer := func(peer string, dst netip.Prefix) shaping.Layer {
		return shaping.Layer{Name: LayerLinkPrefix + peer, Mode: shaping.ModeSet, Priority: LinkPriority,
			Rules: []shaping.Rule{{Dst: []netip.Prefix{dst}, Impairment: imp}}}
	}
	if err := sa.SetLayer(ctx, NodeIface, layer(b, pb)); err != nil {
		return fmt.Errorf("link %s -> %s: %w", a, b, err)
	}
	if err := sb.SetLayer(ctx, NodeIface, layer(a, pa)); err != nil {
		uerr := sa.DeleteLayer(context.WithoutCancel(ctx), NodeIface, LayerLinkPrefix+b)
		return errors.Join(fmt.Errorf("link %s -> %s: %w", b, a, err), uerr)
	}
	return nil
}

// Impair adds imp to every path to or from the target nodes (every path, when targets is
// empty), one way, on top of the topology and other impairments, as layer
// "fault:<owner>": on a target's eth0 for every destination, on every other node's for
// the targets. A path between two targets gets imp once. It returns the undo; if a node
// fails, the others are undone.
func (l *Live) Impair(ctx context.Context, targets []string, imp shaping.Impairment, owner string) (func(context.Context) error, error) {
	return l.ImpairDirection(ctx, targets, imp, Both, owner)
}

// Directions of ImpairDirection, seen from the targets.
const (
	In   = "in"   // packets to the targets: on every other node's eth0, for the targets
	Out  = "out"  // packets from the targets: on the targets' eth0, for every destination
	Both = "both" // both: Impair
)

// ImpairDirection is Impair limited to the packets sent to the targets (In), or sent by
// them (Out), or both. With no targets it impairs every path whatever dir says.
func (l *Live) ImpairDirection(ctx context.Context, targets []string, imp shaping.Impairment, dir, owner string) (func(context.Context) error, error) {
	switch dir {
	case In, Out, Both:
	case "":
		dir = Both
	default:
		return nil, fmt.Errorf("direction %q: valid are %s, %s, %s", dir, In, Out, Both)
	}
	if err := imp.Validate(); err != nil {
		return nil, err
	}
	if imp.IsZero() {
		return nil, fmt.Errorf("impair %v: no impairment given", targets)
	}
	isTarget := map[string]bool{}
	var dsts []netip.Prefix
	for _, t := range targets {
		n, err := l.Spec.Node(t)
		if err != nil {
			return nil, err
		}
		isTarget[t] = true
		dst, err := hostPrefix(n)
		if err != nil {
			return nil, err
		}
		dsts = append(dsts, dst)
	}
	sort.Slice(dsts, func(i, j int) bool { return dsts[i].Addr().Less(dsts[j].Addr()) })
	name := LayerFaultPrefix + owner
	var nodes []string
	layers := map[string]shaping.Layer{}
	for _, n := range l.Spec.Nodes {
		layer := shaping.Layer{Name: name, Mode: shaping.ModeAdd}
		switch {
		case len(targets) == 0 || (isTarget[n.Name] && dir != In):
			layer.Rules = []shaping.Rule{{Impairment: imp}}
		case dir != Out: // a target too receives from the other targets
			layer.Rules = []shaping.Rule{{Dst: dsts, Impairment: imp}}
		default:
			continue // this node sends nothing the impairment covers
		}
		nodes = append(nodes, n.Name)
		layers[n.Name] = layer
	}
	for _, n := range nodes {
		if _, err := l.shaper(n); err != nil {
			return nil, err
		}
	}
	undo := func(ctx context.Context) error {
		return forNodes(nodes, func(node string) error {
			sh, _ := l.shaper(node)
			if err := sh.DeleteLayer(ctx, NodeIface, name); err != nil {
				return fmt.Errorf("node %s: remove %s: %w", node, name, err)
			}
			return nil
		})
	}
	err := forNodes(nodes, func(node string) error {
		sh, _ := l.shaper(node)
		if err := sh.SetLayer(ctx, NodeIface, layers[node]); err != nil {
			return fmt.Errorf("node %s: %s %s: %w", node, name, describeRules(layers[node].Rules), err)
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(err, undo(context.WithoutCancel(ctx)))
	}
	return undo, nil
}

// CleanupShaping removes every shaping object of the run from its node namespaces
// (shaping.CleanupNamespace, owner = run id), the namespaces in parallel.
func CleanupShaping(ctx context.Context, st *State) error {
	return forNodes(st.Spec.NodeNames(), func(node string) error {
		name := NetnsName(st.RunID, node)
		ns, err := netns.GetFromName(name)
		if err != nil {
			return nil // gone already
		}
		defer ns.Close()
		if err := shaping.CleanupNamespace(ctx, st.RunID, shaping.InNamespace(ns)); err != nil {
			return fmt.Errorf("netns %s: %w", name, err)
		}
		return nil
	})
}
