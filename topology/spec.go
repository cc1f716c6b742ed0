// Package topology owns the emulated network: the spec (nodes, roles, addresses, the
// switches they hang off, what each link does to packets), the builders that produce
// specs (simple, wan) and topology files, realising a spec as named network namespaces
// with veths into a private OVS bridge, link impairments as rules on each node's egress
// (applied through a NodeShaper: the node's agent), partitions as OpenFlow drop rules,
// and teardown of exactly what it created. It knows nothing of etcd or of fault
// schedules.
package topology

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/dtlab/dt/shaping"
)

// Role of a node.
type Role string

// Node roles.
const (
	Server Role = "server"
	Client Role = "client"
)

// Node is one emulated host: its own network namespace with one interface (eth0) into
// its switch.
type Node struct {
	Name   string `json:"name" yaml:"name"` // s1, c1, ...
	Role   Role   `json:"role" yaml:"role"`
	Switch string `json:"switch" yaml:"switch"` // logical switch name
	IP     string `json:"ip" yaml:"ip"`         // IPv4 address on eth0
	Prefix int    `json:"prefix" yaml:"prefix"` // prefix length of IP
	// Link is what the node's link to its switch does to packets crossing it, each way.
	Link shaping.Impairment `json:"link,omitzero" yaml:"-"`
}

// Switch is one OVS bridge. Uplink names another switch it is joined to by a patch
// port pair ("" for none); the switches form one tree.
type Switch struct {
	Name   string `json:"name" yaml:"name"`
	Uplink string `json:"uplink,omitempty" yaml:"uplink,omitempty"`
	// Link is what the link to the uplink does to packets crossing it, each way.
	Link shaping.Impairment `json:"link,omitzero" yaml:"-"`
}

// Spec is a whole topology, before it exists.
type Spec struct {
	Name     string   `json:"name"`
	Switches []Switch `json:"switches"`
	Nodes    []Node   `json:"nodes"`
}

// Servers returns the server nodes in order.
func (s Spec) Servers() []Node { return s.byRole(Server) }

// Clients returns the client nodes in order.
func (s Spec) Clients() []Node { return s.byRole(Client) }

func (s Spec) byRole(r Role) []Node {
	var out []Node
	for _, n := range s.Nodes {
		if n.Role == r {
			out = append(out, n)
		}
	}
	return out
}

// Node finds a node by name; the error lists the valid names.
func (s Spec) Node(name string) (Node, error) {
	for _, n := range s.Nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return Node{}, fmt.Errorf("unknown node %q: valid nodes are %s", name, strings.Join(s.NodeNames(), ", "))
}

// NodeNames lists every node name in spec order.
func (s Spec) NodeNames() []string {
	var out []string
	for _, n := range s.Nodes {
		out = append(out, n.Name)
	}
	return out
}

var (
	nodeNameRE   = regexp.MustCompile(`^[a-z][a-z0-9]{0,4}$`)
	switchNameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,5}$`)
)

// Validate checks names, addresses, references, that the switches form one tree and that
// every link's impairment is valid.
func (s Spec) Validate() error {
	if len(s.Nodes) == 0 {
		return fmt.Errorf("topology %q has no nodes", s.Name)
	}
	sw := map[string]bool{}
	for _, w := range s.Switches {
		if !switchNameRE.MatchString(w.Name) {
			return fmt.Errorf("switch name %q: want a lower-case letter then up to 5 letters or digits (it becomes part of 15-byte bridge names)", w.Name)
		}
		if sw[w.Name] {
			return fmt.Errorf("duplicate switch %q", w.Name)
		}
		sw[w.Name] = true
	}
	for _, w := range s.Switches {
		if w.Uplink != "" && !sw[w.Uplink] {
			return fmt.Errorf("switch %q: uplink to unknown switch %q", w.Name, w.Uplink)
		}
		if w.Uplink == "" && !w.Link.IsZero() {
			return fmt.Errorf("switch %q: a link impairment needs an uplink to impair", w.Name)
		}
		if err := w.Link.Validate(); err != nil {
			return fmt.Errorf("switch %q: link: %w", w.Name, err)
		}
		if w.Uplink != "" {
			// patchNames: "p" + run id + uplink + "d" + switch must fit 15 bytes untrimmed.
			if len(w.Name)+len(w.Uplink) > 7 {
				return fmt.Errorf("switch %q with uplink %q: the two names may have at most 7 characters together (they name a 15-byte patch port)", w.Name, w.Uplink)
			}
		}
	}
	if err := s.checkTree(); err != nil {
		return err
	}
	seenName, seenIP := map[string]bool{}, map[string]bool{}
	addrs := make([]netip.Addr, len(s.Nodes))
	for i, n := range s.Nodes {
		if !nodeNameRE.MatchString(n.Name) {
			return fmt.Errorf("node name %q: want a lower-case letter then up to 4 letters or digits (it becomes part of 15-byte interface names)", n.Name)
		}
		if seenName[n.Name] {
			return fmt.Errorf("duplicate node %q", n.Name)
		}
		seenName[n.Name] = true
		if n.Role != Server && n.Role != Client {
			return fmt.Errorf("node %s: role %q: valid roles are server, client", n.Name, n.Role)
		}
		if !sw[n.Switch] {
			return fmt.Errorf("node %s: unknown switch %q", n.Name, n.Switch)
		}
		a, err := netip.ParseAddr(n.IP)
		if err != nil || !a.Is4() {
			return fmt.Errorf("node %s: address %q is not an IPv4 address", n.Name, n.IP)
		}
		addrs[i] = a
		if a.IsLoopback() {
			return fmt.Errorf("node %s: address %s is loopback", n.Name, n.IP)
		}
		if n.Prefix < 8 || n.Prefix > 30 {
			return fmt.Errorf("node %s: prefix /%d out of range 8..30", n.Name, n.Prefix)
		}
		if seenIP[n.IP] {
			return fmt.Errorf("node %s: address %s used twice", n.Name, n.IP)
		}
		seenIP[n.IP] = true
		if err := n.Link.Validate(); err != nil {
			return fmt.Errorf("node %s: link: %w", n.Name, err)
		}
	}
	// One L2 network: every node must have every other on-link.
	for i, a := range s.Nodes {
		pa := netip.PrefixFrom(addrs[i], a.Prefix).Masked()
		for j, b := range s.Nodes {
			if !pa.Contains(addrs[j]) {
				return fmt.Errorf("node %s (%s/%d) does not have %s (%s) on-link: the switches form one L2 network, so every address must lie inside every node's prefix", a.Name, a.IP, a.Prefix, b.Name, b.IP)
			}
		}
	}
	return nil
}

// checkTree checks that the uplinks join all switches into one tree: one root, no cycle.
func (s Spec) checkTree() error {
	up := map[string]string{}
	var roots []string
	for _, w := range s.Switches {
		up[w.Name] = w.Uplink
		if w.Uplink == "" {
			roots = append(roots, w.Name)
		}
	}
	for _, w := range s.Switches {
		seen := map[string]bool{}
		for x := w.Name; x != ""; x = up[x] {
			if seen[x] {
				return fmt.Errorf("switch %q: its uplinks go round in a circle", w.Name)
			}
			seen[x] = true
		}
	}
	if len(s.Switches) > 0 && len(roots) != 1 {
		return fmt.Errorf("switches %s have no uplink: the switches must form one tree with a single root", strings.Join(roots, ", "))
	}
	return nil
}

// Builder makes a spec from options.
type Builder func(o BuildOptions) (Spec, error)

// BuildOptions are the knobs builders understand.
type BuildOptions struct {
	Servers int // --number-nodes
	Clients int // --number-clients
	// Link is the impairment between two nodes, end to end (--link-*); builders split it
	// over the links of their paths.
	Link LinkOptions
}

// LinkOptions are reckon's --link-* flags (and --link-bandwidth): what a path between two
// nodes does to a packet, end to end, one way.
type LinkOptions struct {
	Latency   time.Duration // one-way delay
	Jitter    float64       // reckon's meaning: a fraction of Latency (0..1)
	Loss      float64       // percent
	Bandwidth uint64        // bit/s; 0 = unlimited
}

// IsZero reports whether the options impair nothing.
func (o LinkOptions) IsZero() bool { return o == LinkOptions{} }

// EndToEnd is the impairment of a whole path: Latency with a jitter of Jitter·Latency.
func (o LinkOptions) EndToEnd() shaping.Impairment {
	return shaping.Impairment{
		Delay:  o.Latency,
		Jitter: time.Duration(o.Jitter * float64(o.Latency)),
		Loss:   o.Loss,
		Rate:   o.Bandwidth,
	}
}

// Validate checks each option against its range, naming the flag.
func (o LinkOptions) Validate() error {
	var errs []error
	if o.Latency < 0 || o.Latency > shaping.MaxDelay {
		errs = append(errs, fmt.Errorf("--link-latency %g: want 0..%d (ms, one way, end to end)", float64(o.Latency)/1e6, shaping.MaxDelay.Milliseconds()))
	}
	if math.IsNaN(o.Jitter) || o.Jitter < 0 || o.Jitter > 1 {
		errs = append(errs, fmt.Errorf("--link-jitter %g: want 0..1 (a fraction of --link-latency, as in reckon)", o.Jitter))
	} else if o.Jitter > 0 && o.Latency == 0 {
		errs = append(errs, fmt.Errorf("--link-jitter %g needs a --link-latency (the jitter is a fraction of it)", o.Jitter))
	}
	if math.IsNaN(o.Loss) || o.Loss < 0 || o.Loss >= 100 {
		errs = append(errs, fmt.Errorf("--link-loss %g: want 0..100, below 100 (percent, end to end)", o.Loss))
	}
	if o.Bandwidth != 0 && o.Bandwidth < shaping.MinRate {
		errs = append(errs, fmt.Errorf("--link-bandwidth %d bit/s: want 0 (unlimited) or at least %d bit/s", o.Bandwidth, shaping.MinRate))
	}
	return errors.Join(errs...)
}

var builders = map[string]Builder{}

// Register adds a builder under name; a name registered twice is an error. Builders are
// registered from init (not safe to call concurrently with Build).
func Register(name string, b Builder) error {
	if name == "" {
		return errors.New("register topology builder: empty name")
	}
	if _, dup := builders[name]; dup {
		return fmt.Errorf("register topology builder %q: already registered", name)
	}
	builders[name] = b
	return nil
}

// Names lists registered builders.
func Names() []string {
	return slices.Sorted(maps.Keys(builders))
}

// IsFile reports whether a topology argument names a file rather than a builder: it
// contains a slash or ends in .yaml or .yml.
func IsFile(name string) bool {
	return strings.Contains(name, "/") || strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

// Build makes the spec of a named topology, or reads a topology file (see IsFile and
// LoadFile: a file sets its own nodes and links, so o must not carry link options); an
// unknown name is an error listing the valid ones.
func Build(name string, o BuildOptions) (Spec, error) {
	if IsFile(name) {
		if !o.Link.IsZero() {
			return Spec{}, fmt.Errorf("topology file %s: the --link-* flags are for builders; a file sets each link's impairment (link: on nodes and switches)", name)
		}
		return LoadFile(name)
	}
	b, ok := builders[name]
	if !ok {
		return Spec{}, fmt.Errorf("unknown topology %q: valid topologies are %s, or a topology file (./name.yaml)", name, strings.Join(Names(), ", "))
	}
	if err := o.Link.Validate(); err != nil {
		return Spec{}, err
	}
	s, err := b(o)
	if err != nil {
		return Spec{}, fmt.Errorf("topology %s: %w", name, err)
	}
	return s, s.Validate()
}

// The one place built-in builders are registered; a duplicate is a programming error.
func init() {
	for name, b := range map[string]Builder{"simple": Simple, "wan": Wan} {
		if err := Register(name, b); err != nil {
			panic(err)
		}
	}
}

// Simple is a star: servers s1..sN (10.0.1.i) and clients c1..cM (10.0.2.i) on one switch.
// Every path between two nodes crosses two links, the sender's and the receiver's: each
// link gets half of o.Link the way reckon splits it (half the latency, per-link loss
// 1-√(1-L), jitter/√2), so that a path gets o.Link end to end.
func Simple(o BuildOptions) (Spec, error) {
	if o.Servers < 1 || o.Servers > 250 {
		return Spec{}, fmt.Errorf("--number-nodes %d: want 1..250", o.Servers)
	}
	if o.Clients < 0 || o.Clients > 250 {
		return Spec{}, fmt.Errorf("--number-clients %d: want 0..250", o.Clients)
	}
	s := Spec{Name: "simple", Switches: []Switch{{Name: "sw"}}}
	link := shaping.Split(o.Link.EndToEnd(), 2)
	for i := 1; i <= o.Servers; i++ {
		s.Nodes = append(s.Nodes, Node{Name: fmt.Sprintf("s%d", i), Role: Server, Switch: "sw", IP: fmt.Sprintf("10.0.1.%d", i), Prefix: 16, Link: link})
	}
	for i := 1; i <= o.Clients; i++ {
		s.Nodes = append(s.Nodes, Node{Name: fmt.Sprintf("c%d", i), Role: Client, Switch: "sw", IP: fmt.Sprintf("10.0.2.%d", i), Prefix: 16, Link: link})
	}
	return s, nil
}

// MaxSites bounds the wan builder: two nodes (an agent, a member, a client) per site.
const MaxSites = 50

// Wan is reckon's wan: N sites, each a switch wI with server sI (10.0.I.1) and client cI
// (10.0.I.2), every site switch uplinked to a core switch. The impairment is on the site
// uplinks only: a path between two sites crosses two of them, so each gets half of o.Link
// (reckon's split), and a client reaches its own site's server unimpaired. The sites share
// one L2 network (10.0.0.0/16); 10.0.I.0/24 is site I.
func Wan(o BuildOptions) (Spec, error) {
	if o.Servers < 1 || o.Servers > MaxSites {
		return Spec{}, fmt.Errorf("--number-nodes %d: want 1..%d (sites, each with a server and a client)", o.Servers, MaxSites)
	}
	if o.Clients != 1 {
		return Spec{}, fmt.Errorf("--number-clients %d: wan has one client per site (c1..cN); leave it at 1", o.Clients)
	}
	s := Spec{Name: "wan", Switches: []Switch{{Name: "core"}}}
	link := shaping.Split(o.Link.EndToEnd(), 2)
	for i := 1; i <= o.Servers; i++ {
		s.Switches = append(s.Switches, Switch{Name: fmt.Sprintf("w%d", i), Uplink: "core", Link: link})
	}
	for i := 1; i <= o.Servers; i++ {
		s.Nodes = append(s.Nodes, Node{Name: fmt.Sprintf("s%d", i), Role: Server, Switch: fmt.Sprintf("w%d", i), IP: fmt.Sprintf("10.0.%d.1", i), Prefix: 16})
	}
	for i := 1; i <= o.Servers; i++ {
		s.Nodes = append(s.Nodes, Node{Name: fmt.Sprintf("c%d", i), Role: Client, Switch: fmt.Sprintf("w%d", i), IP: fmt.Sprintf("10.0.%d.2", i), Prefix: 16})
	}
	return s, nil
}
