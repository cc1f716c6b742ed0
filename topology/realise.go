package topology

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dtlab/dt/disk"
	"github.com/dtlab/dt/internal/nsrun"
	"github.com/dtlab/dt/ovs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NodeIface is the name of every node's interface inside its namespace.
const NodeIface = "eth0"

// Options control realising a spec.
type Options struct {
	RunID      string // "" = fresh
	Datapath   string // auto | system | netdev
	Command    string // recorded in the state file
	ResultsDir string
}

// Live is a realised topology.
type Live struct {
	State *State
	OVS   *ovs.Instance
	Spec  Spec
	// Shapers shape each node's links (its agent); nil until agents run. ApplyLinks,
	// ShapeLink and Impair need them.
	Shapers map[string]NodeShaper
}

// ErrNotRoot is returned when dt lacks the privileges to create namespaces.
var ErrNotRoot = errors.New("dt must run as root (it creates network namespaces, veths and an Open vSwitch instance)")

// CheckHost says whether Up can run here: as root, with Open vSwitch installed. It
// creates nothing, so a caller can ask before it makes anything of its own (a run dir).
func CheckHost() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	return ovs.CheckInstalled()
}

// Up creates the topology: state file first, then a private OVS, then one named
// namespace per node with a veth into its bridge. On any error everything created so far
// is removed before returning.
func Up(ctx context.Context, spec Spec, o Options) (live *Live, err error) {
	if err := CheckHost(); err != nil {
		return nil, err
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if o.RunID == "" {
		o.RunID = NewRunID()
	}
	dir := filepath.Join(RuntimeRoot(), o.RunID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create runtime dir: %w", err)
	}
	st := &State{RunID: o.RunID, Owner: os.Getpid(), Command: o.Command, Created: time.Now().UTC(),
		Dir: dir, ResultsDir: o.ResultsDir, Spec: spec, OVSDir: filepath.Join(dir, "ovs")}
	for _, sw := range spec.Switches {
		st.Bridges = append(st.Bridges, BridgeName(o.RunID, sw.Name))
	}
	st.Namespaces = append(st.Namespaces, SwitchNetnsName(o.RunID))
	for _, n := range spec.Nodes {
		st.Namespaces = append(st.Namespaces, NetnsName(o.RunID, n.Name))
		st.Veths = append(st.Veths, HostVethName(o.RunID, n.Name))
	}
	if err := st.Save(); err != nil {
		return nil, err
	}
	live = &Live{State: st, Spec: spec}
	defer func() {
		if err != nil {
			if derr := live.Down(context.Background()); derr != nil {
				slog.Warn("cleanup after failed topology up", "err", derr)
			}
		}
	}()

	// The switch lives in a namespace of its own: its tap devices and the switch ends of
	// the veths never appear on the host, and two topologies never collide.
	swNs, err := nsrun.NewNamed(SwitchNetnsName(o.RunID))
	if err != nil {
		return live, err
	}
	defer swNs.Close()
	inst, err := ovs.Start(ctx, ovs.Options{Dir: st.OVSDir, RunID: o.RunID, Datapath: o.Datapath, Netns: SwitchNetnsName(o.RunID)})
	if err != nil {
		return live, fmt.Errorf("start private ovs: %w", err)
	}
	live.OVS = inst
	st.Datapath = inst.Datapath
	if err := st.Save(); err != nil {
		return live, err
	}

	// The bridges go first, empty: creating the first userspace datapath costs ovs-vswitchd
	// ~100 ms of clock calibration, which then overlaps creating the nodes.
	bridgesDone := make(chan error, 1)
	go func() {
		var errs []error
		for _, sw := range spec.Switches {
			errs = append(errs, inst.AddBridge(ctx, BridgeName(o.RunID, sw.Name), nil))
		}
		bridgesDone <- errors.Join(errs...)
	}()

	// Nodes are independent: create them in parallel, a few at a time.
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	errs := make([]error, len(spec.Nodes))
	for i, n := range spec.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = createNode(swNs, o.RunID, n, inst.Datapath)
		}()
	}
	wg.Wait()
	if err := errors.Join(append(errs, <-bridgesDone)...); err != nil {
		return live, err
	}

	// All ports of the topology in one OVSDB transaction.
	ports := map[string][]ovs.Port{}
	for _, sw := range spec.Switches {
		br := BridgeName(o.RunID, sw.Name)
		for i, n := range spec.Nodes {
			if n.Switch == sw.Name {
				ports[br] = append(ports[br], ovs.Port{Name: HostVethName(o.RunID, n.Name), Ofport: i + 1, Node: n.Name})
			}
		}
		if sw.Uplink != "" {
			up, down := patchNames(o.RunID, sw.Name, sw.Uplink)
			ports[br] = append(ports[br], ovs.Port{Name: up, Peer: down})
		}
		for _, other := range spec.Switches {
			if other.Uplink == sw.Name {
				up, down := patchNames(o.RunID, other.Name, sw.Name)
				ports[br] = append(ports[br], ovs.Port{Name: down, Peer: up})
			}
		}
	}
	if err := inst.AddPorts(ctx, ports); err != nil {
		return live, err
	}
	// cur_cfg catches up even when vswitchd failed to create a bridge or a port; only an
	// OpenFlow port number proves the port forwards.
	ofports, err := inst.Ofports(ctx)
	if err != nil {
		return live, err
	}
	for _, n := range spec.Nodes {
		if p := ofports[HostVethName(o.RunID, n.Name)]; p <= 0 {
			return live, fmt.Errorf("node %s: ovs-vswitchd did not add its port (ofport %d)\n%s", n.Name, p, inst.LogTail("ovs-vswitchd", 8))
		}
	}
	return live, nil
}

// patchNames names the two ends of the patch link between switch sw and its uplink.
func patchNames(runID, sw, uplink string) (string, string) {
	return trim15("p" + runID + sw + "u"), trim15("p" + runID + uplink + "d" + sw)
}

func trim15(s string) string {
	if len(s) > 15 {
		return s[:15]
	}
	return s
}

// createNode makes one node's namespace and a veth from the switch namespace into it,
// addresses it and brings it up.
//
// Equivalent to: ip netns add NS; ip -n SW link add HOST type veth peer name eth0 netns NS;
// ip -n NS addr add IP/P dev eth0; ip -n NS link set lo up; ip -n NS link set eth0 up;
// ip -n SW link set HOST up; ip netns exec NS ethtool -K eth0 tx off
func createNode(swNs netns.NsHandle, runID string, n Node, datapath string) error {
	nsName := NetnsName(runID, n.Name)
	ns, err := nsrun.NewNamed(nsName)
	if err != nil {
		return err
	}
	defer ns.Close()
	sw, err := netlink.NewHandleAt(swNs)
	if err != nil {
		return fmt.Errorf("node %s: netlink handle in the switch namespace: %w", n.Name, err)
	}
	defer sw.Close()
	hostName := HostVethName(runID, n.Name)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: hostName},
		PeerName:      NodeIface,
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := sw.LinkAdd(veth); err != nil {
		return fmt.Errorf("node %s: create veth %s: %w", n.Name, hostName, err)
	}
	host, err := sw.LinkByName(hostName)
	if err != nil {
		return fmt.Errorf("node %s: find veth %s: %w", n.Name, hostName, err)
	}
	if err := sw.LinkSetAlias(host, VethAlias(runID)); err != nil {
		return fmt.Errorf("node %s: tag veth %s: %w", n.Name, hostName, err)
	}
	if err := sw.LinkSetUp(host); err != nil {
		return fmt.Errorf("node %s: set %s up: %w", n.Name, hostName, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("node %s: netlink handle in %s: %w", n.Name, nsName, err)
	}
	defer h.Close()
	for _, name := range []string{"lo", NodeIface} {
		l, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("node %s: find %s: %w", n.Name, name, err)
		}
		if name == NodeIface {
			addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(n.IP), Mask: net.CIDRMask(n.Prefix, 32)}}
			if err := h.AddrAdd(l, addr); err != nil {
				return fmt.Errorf("node %s: address %s/%d: %w", n.Name, n.IP, n.Prefix, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("node %s: set %s up: %w", n.Name, name, err)
		}
	}
	if datapath == ovs.DatapathNetdev {
		if err := nsrun.Do(ns, func() error { return disableTxChecksum(NodeIface) }); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return nil
}

// Down removes everything the topology's state lists, whether or not it was created
// and whoever created it in this process or an earlier one. Errors are collected, not
// fatal: teardown always tries everything.
func (l *Live) Down(ctx context.Context) error {
	return Teardown(ctx, l.State)
}

// Teardown removes the objects a state file lists, and only those: processes carrying
// the run id, host veths whose alias names the run, the named namespaces, the private
// OVS daemons, and the runtime dir.
func Teardown(ctx context.Context, st *State) error {
	var errs []error
	// The order is for speed as much as for exactness (measured at 50 nodes: 1.7 s down
	// to ~0.1 s): ovs-vswitchd spends ~15 ms per port removing ports on exit, and
	// deleting veths one by one ~20 ms each. So the node namespaces go first, taking their
	// veth pairs with them, and vswitchd is killed once it has nothing left to tear down.
	// Its datapath (kernel or userspace) goes with the switch namespace.
	inst := ovs.Attach(st.OVSDir, st.RunID, st.Datapath)
	var ovsPids []int
	if st.OVSDir != "" {
		for _, p := range inst.Pids() {
			ovsPids = append(ovsPids, p)
		}
	}
	if err := KillRunProcesses(st.RunID, ovsPids...); err != nil {
		errs = append(errs, err)
	}
	// The disk layers' mounts (their agents unmount them on the way out, but an agent
	// killed with -9 leaves its mount without a server): found by the run id in their
	// source and, when the runtime dir is known, under it; detached lazily, so that a
	// mount whose server is gone goes too. The runtime dir cannot be removed before.
	if _, err := disk.DetachRun(st.RunID, st.Dir); err != nil {
		errs = append(errs, err)
	}
	// The agents that shaped the links are gone; their rules and qdiscs go with the
	// namespaces anyway, but remove them first and exactly, as a crashed run's would be.
	if st.Shaper != "" {
		errs = append(errs, CleanupShaping(ctx, st))
	}
	swName := SwitchNetnsName(st.RunID)
	deleteNetns := func(ns string) {
		if !strings.HasPrefix(ns, "dt-"+st.RunID+"-") {
			errs = append(errs, fmt.Errorf("namespace %s does not carry run id %s; left in place", ns, st.RunID))
			return
		}
		if err := netns.DeleteNamed(ns); err != nil && !os.IsNotExist(err) && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("delete netns %s: %w", ns, err))
		}
	}
	for _, ns := range st.Namespaces {
		if ns != swName {
			deleteNetns(ns)
		}
	}
	// Wait for the switch ends to vanish with their peers' namespaces, then delete what
	// is left (a veth whose node namespace is still held open, or an older run's host veth).
	h, closeHandle := switchHandle(st.RunID)
	defer closeHandle()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if len(existingVeths(h, st.Veths)) == 0 {
			break
		}
	}
	for _, l := range existingVeths(h, st.Veths) {
		if l.Attrs().Alias != VethAlias(st.RunID) {
			errs = append(errs, fmt.Errorf("veth %s does not carry run id %s; left in place", l.Attrs().Name, st.RunID))
			continue
		}
		if err := h.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete veth %s: %w", l.Attrs().Name, err))
		}
	}
	if st.OVSDir != "" {
		if err := inst.Kill(); err != nil {
			errs = append(errs, err)
		}
	}
	deleteNetns(swName)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if st.Dir != "" && strings.HasPrefix(filepath.Base(st.Dir), st.RunID) {
		if err := os.RemoveAll(st.Dir); err != nil {
			return fmt.Errorf("remove runtime dir: %w", err)
		}
	}
	return nil
}

// switchHandle is a netlink handle in the run's switch namespace, or in ours when there
// is none (runs from before the switch namespace kept their veths on the host).
func switchHandle(runID string) (*netlink.Handle, func()) {
	sw, err := netns.GetFromName(SwitchNetnsName(runID))
	if err != nil {
		return &netlink.Handle{}, func() {}
	}
	defer sw.Close()
	h, err := netlink.NewHandleAt(sw)
	if err != nil {
		return &netlink.Handle{}, func() {}
	}
	return h, h.Close
}

// existingVeths returns those of names that still exist.
func existingVeths(h *netlink.Handle, names []string) []netlink.Link {
	var out []netlink.Link
	for _, v := range names {
		if l, err := h.LinkByName(v); err == nil {
			out = append(out, l)
		}
	}
	return out
}
