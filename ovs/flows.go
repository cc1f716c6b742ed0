package ovs

import (
	"context"
	"fmt"
	"hash/fnv"
	"os/exec"
	"strings"
)

// Cookie tags OpenFlow rules: the high 32 bits identify the run, the low 32 bits the
// fault (or CLI partition) that installed them, so one fault's rules can be removed
// without touching another's, and every rule names its run.
type Cookie uint64

// RunCookiePrefix derives the high 32 bits from a run id.
func RunCookiePrefix(runID string) Cookie {
	h := fnv.New32a()
	h.Write([]byte(runID))
	return Cookie(h.Sum32()) << 32
}

// NewCookie returns the cookie for the rules of one named owner (a fault instance, a CLI
// partition) within a run. The same names always give the same cookie.
func NewCookie(runID, owner string) Cookie {
	h := fnv.New32a()
	h.Write([]byte(owner))
	low := h.Sum32()
	if low == 0 {
		low = 1
	}
	return RunCookiePrefix(runID) | Cookie(low)
}

// Match is "cookie=0x…/-1", selecting exactly this cookie's rules.
func (c Cookie) Match() string { return fmt.Sprintf("cookie=%#x/-1", uint64(c)) }

// Flow is one OpenFlow rule in ovs-ofctl syntax without the cookie, e.g.
// "priority=100,ip,nw_src=10.0.0.1,nw_dst=10.0.0.2,actions=drop".
type Flow string

// DropPriority is the priority of every dt drop rule, above the bridge's default NORMAL
// rule (priority 0). Partitions (DropIP) and port drops (DropPort) share it: their
// matches differ, so one never replaces the other, and where a packet matches both, either
// rule drops it.
const DropPriority = 100

// DropIP returns the rule dropping IPv4 traffic from src to dst (ARP still flows, so
// the hosts keep their neighbour entries and traffic resumes at once on heal).
func DropIP(src, dst string) Flow {
	return Flow(fmt.Sprintf("priority=%d,ip,nw_src=%s,nw_dst=%s,actions=drop", DropPriority, src, dst))
}

// DropPort returns the rule dropping IPv4 packets of proto ("tcp" or "udp") to dst's
// port, from any source: what `iptables -A INPUT -p PROTO --dport PORT -j DROP` on dst does
// to packets from other hosts. Packets dst sends from that port still flow.
func DropPort(dst, proto string, port int) Flow {
	return Flow(fmt.Sprintf("priority=%d,%s,nw_dst=%s,tp_dst=%d,actions=drop", DropPriority, proto, dst, port))
}

// ownerMatch is a match that every packet entering table 0 satisfies (metadata is 0
// there) but whose mask is the cookie's owner bits, so that the same rule installed under
// two cookies is two rules. OpenFlow replaces a rule with an identical match and priority,
// cookie included: without it, two faults dropping the same traffic shared one rule,
// and healing either one healed both.
func (c Cookie) ownerMatch() string { return fmt.Sprintf("metadata=0/%#x", uint64(c)&0xffffffff) }

// AddFlows installs rules on bridge, all tagged with cookie, in one ovs-ofctl call. Each
// rule also matches metadata=0 under a mask unique to the cookie's owner (ownerMatch): the
// same rule under another cookie stays a separate rule, and each heal removes only its own.
// Rules must be for table 0 and must not match metadata themselves.
//
// Equivalent to: ovs-ofctl add-flows unix:DIR/BRIDGE.mgmt - <<< "cookie=C,metadata=0/OWNER,FLOW..."
func (i *Instance) AddFlows(ctx context.Context, bridge string, cookie Cookie, flows []Flow) error {
	var b strings.Builder
	for _, f := range flows {
		fmt.Fprintf(&b, "cookie=%#x,%s,%s\n", uint64(cookie), cookie.ownerMatch(), f)
	}
	if err := i.ofctl(ctx, b.String(), "add-flows", "unix:"+i.MgmtSocket(bridge), "-"); err != nil {
		return err
	}
	return i.purgeDatapathFlows(ctx)
}

// DelFlows removes exactly the rules carrying cookie.
//
// Equivalent to: ovs-ofctl del-flows unix:DIR/BRIDGE.mgmt cookie=C/-1
func (i *Instance) DelFlows(ctx context.Context, bridge string, cookie Cookie) error {
	if err := i.ofctl(ctx, "", "del-flows", "unix:"+i.MgmtSocket(bridge), cookie.Match()); err != nil {
		return err
	}
	return i.purgeDatapathFlows(ctx)
}

// DelRunFlows removes every rule of this run (all cookies with the run's prefix), leaving
// the bridge's default forwarding in place.
func (i *Instance) DelRunFlows(ctx context.Context, bridge string) error {
	m := fmt.Sprintf("cookie=%#x/0xffffffff00000000", uint64(RunCookiePrefix(i.RunID)))
	if err := i.ofctl(ctx, "", "del-flows", "unix:"+i.MgmtSocket(bridge), m); err != nil {
		return err
	}
	return i.purgeDatapathFlows(ctx)
}

// DumpFlows returns the bridge's rules as ovs-ofctl prints them.
func (i *Instance) DumpFlows(ctx context.Context, bridge string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "ovs-ofctl", "dump-flows", "--no-stats", "unix:"+i.MgmtSocket(bridge))
	cmd.Env = i.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ovs-ofctl dump-flows %s: %w: %s", bridge, err, strings.TrimSpace(string(out)))
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "NXST_FLOW") && !strings.HasPrefix(l, "OFPST_FLOW") {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

func (i *Instance) ofctl(ctx context.Context, stdin string, args ...string) error {
	cmd := exec.CommandContext(ctx, "ovs-ofctl", args...)
	cmd.Env = i.env()
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ovs-ofctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// purgeDatapathFlows drops the datapath's cached flows so the next packet of every flow is
// classified against the new rules. Without it a cut took effect only when the
// revalidator next ran: an established TCP connection kept flowing for a moment after
// ovs-ofctl returned (and a healed one kept being dropped).
//
// Equivalent to: ovs-appctl -t DIR/ovs-vswitchd.ctl revalidator/purge
func (i *Instance) purgeDatapathFlows(ctx context.Context) error {
	if err := i.run(ctx, "ovs-appctl", "-t", i.ctlFile("ovs-vswitchd"), "revalidator/purge"); err != nil {
		return fmt.Errorf("purge datapath flows: %w", err)
	}
	return nil
}
