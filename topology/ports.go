package topology

import (
	"context"
	"fmt"

	"github.com/dtlab/dt/ovs"
)

// PortProtos are the protocols DropPort accepts; "" means both.
var PortProtos = []string{"tcp", "udp"}

// PortOwner is the stable name of a port drop's rules when DropPort is given no owner
// ("dropport:s2:tcp/2379", "dropport:s2:tcp+udp/2379" for both), so a later heal of the
// same node, protocol and port finds them.
func PortOwner(node, proto string, port int) string {
	if proto == "" {
		proto = "tcp+udp"
	}
	return fmt.Sprintf("dropport:%s:%s/%d", node, proto, port)
}

// PortFlows returns the rules that drop proto packets ("tcp", "udp", or "" for both) sent
// to node's port by any other node.
func (l *Live) PortFlows(node, proto string, port int) ([]ovs.Flow, error) {
	n, err := l.Spec.Node(node)
	if err != nil {
		return nil, err
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("port %d: want 1 to 65535", port)
	}
	var protos []string
	switch proto {
	case "":
		protos = PortProtos
	case "tcp", "udp":
		protos = []string{proto}
	default:
		return nil, fmt.Errorf("protocol %q: want tcp, udp, or empty for both", proto)
	}
	var flows []ovs.Flow
	for _, p := range protos {
		flows = append(flows, ovs.DropPort(n.IP, p, port))
	}
	return flows, nil
}

// DropPort makes node's port refuse traffic from outside the node: every bridge drops
// proto packets ("tcp", "udp", or "" for both) addressed to node's IP and port, whoever
// sends them. Traffic from the node to itself never crosses OVS and still flows. Like
// `iptables -A INPUT -p PROTO --dport PORT -j DROP` on the node, only inbound packets are
// dropped: new TCP connections to the port time out (no RST), connections already
// established to it stall both ways (the peer's data and ACKs are dropped), datagrams
// the node sends from the port still leave. The rules carry the cookie of owner (""
// = PortOwner(node, proto, port)) under the run's prefix; Heal(cookie) removes them, and
// HealAll and teardown remove them with everything else of the run. They share the
// partitions' priority (ovs.DropPriority): their matches differ, both drop.
func (l *Live) DropPort(ctx context.Context, node, proto string, port int, owner string) (ovs.Cookie, error) {
	flows, err := l.PortFlows(node, proto, port)
	if err != nil {
		return 0, err
	}
	if owner == "" {
		owner = PortOwner(node, proto, port)
	}
	cookie, err := l.addFlows(ctx, owner, flows)
	if err != nil {
		return 0, fmt.Errorf("drop port %s %s/%d: %w", node, proto, port, err)
	}
	return cookie, nil
}
