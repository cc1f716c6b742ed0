// Package topology owns the emulated network: the spec (nodes, roles, addresses, the
// switches they hang off), the builders that produce specs (simple, ...), realising a
// spec as named network namespaces with veths into a private OVS bridge, partitions as
// OpenFlow drop rules, and teardown of exactly what it created. It knows nothing of etcd
// or of fault schedules.
package topology

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"
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
}

// Switch is one OVS bridge. Uplink names another switch it is joined to by a patch
// port pair ("" for none).
type Switch struct {
	Name   string `json:"name" yaml:"name"`
	Uplink string `json:"uplink,omitempty" yaml:"uplink,omitempty"`
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

var nodeNameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,4}$`)

// Validate checks names, addresses and references.
func (s Spec) Validate() error {
	if len(s.Nodes) == 0 {
		return fmt.Errorf("topology %q has no nodes", s.Name)
	}
	sw := map[string]bool{}
	for _, w := range s.Switches {
		if sw[w.Name] {
			return fmt.Errorf("duplicate switch %q", w.Name)
		}
		sw[w.Name] = true
	}
	for _, w := range s.Switches {
		if w.Uplink != "" && !sw[w.Uplink] {
			return fmt.Errorf("switch %q: uplink to unknown switch %q", w.Name, w.Uplink)
		}
	}
	seenName, seenIP := map[string]bool{}, map[string]bool{}
	for _, n := range s.Nodes {
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
	}
	return nil
}

// Builder makes a spec from options.
type Builder func(o BuildOptions) (Spec, error)

// BuildOptions are the knobs builders understand.
type BuildOptions struct {
	Servers int // --number-nodes
	Clients int // --number-clients
}

var builders = map[string]Builder{}

// Register adds a builder; a duplicate name is a programming error.
func Register(name string, b Builder) {
	if _, dup := builders[name]; dup {
		panic("topology: duplicate builder " + name)
	}
	builders[name] = b
}

// Names lists registered builders.
func Names() []string {
	var out []string
	for n := range builders {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Build makes the spec of a named topology; an unknown name is an error listing the
// valid ones.
func Build(name string, o BuildOptions) (Spec, error) {
	b, ok := builders[name]
	if !ok {
		return Spec{}, fmt.Errorf("unknown topology %q: valid topologies are %s", name, strings.Join(Names(), ", "))
	}
	s, err := b(o)
	if err != nil {
		return Spec{}, fmt.Errorf("topology %s: %w", name, err)
	}
	return s, s.Validate()
}

func init() {
	Register("simple", Simple)
}

// Simple is a star: servers s1..sN (10.0.1.i) and clients c1..cM (10.0.2.i) on one switch.
func Simple(o BuildOptions) (Spec, error) {
	if o.Servers < 1 || o.Servers > 250 {
		return Spec{}, fmt.Errorf("--number-nodes %d: want 1..250", o.Servers)
	}
	if o.Clients < 0 || o.Clients > 250 {
		return Spec{}, fmt.Errorf("--number-clients %d: want 0..250", o.Clients)
	}
	s := Spec{Name: "simple", Switches: []Switch{{Name: "sw"}}}
	for i := 1; i <= o.Servers; i++ {
		s.Nodes = append(s.Nodes, Node{Name: fmt.Sprintf("s%d", i), Role: Server, Switch: "sw", IP: fmt.Sprintf("10.0.1.%d", i), Prefix: 16})
	}
	for i := 1; i <= o.Clients; i++ {
		s.Nodes = append(s.Nodes, Node{Name: fmt.Sprintf("c%d", i), Role: Client, Switch: "sw", IP: fmt.Sprintf("10.0.2.%d", i), Prefix: 16})
	}
	return s, nil
}
