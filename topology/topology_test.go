package topology

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/dtlab/dt/internal/nsrun"
)

// needRoot skips tests that need root and Open vSwitch, saying which is missing.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and an OVS instance (CI runs as root)")
	}
	if _, err := exec.LookPath("ovs-vswitchd"); err != nil {
		t.Skip("needs Open vSwitch: apt-get install openvswitch-switch")
	}
}

func testRuntimeDir(t testing.TB) {
	t.Helper()
	d, err := os.MkdirTemp("/tmp", "dtrt")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("DT_RUNTIME_DIR", d)
	t.Cleanup(func() { os.RemoveAll(d) })
}

func upSimple(t testing.TB, servers, clients int) *Live {
	t.Helper()
	spec, err := Build("simple", BuildOptions{Servers: servers, Clients: clients})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	live, err := Up(ctx, spec, Options{Datapath: os.Getenv("DT_TEST_DATAPATH"), Command: "test"})
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	t.Cleanup(func() { _ = live.Down(context.Background()) })
	return live
}

// tcpServe listens on port 7000 inside node's namespace and echoes what it reads.
func tcpServe(t testing.TB, live *Live, node string) { tcpServeAt(t, live, node, 7000) }

// tcpServeAt listens on node's IP and port inside node's namespace and echoes what it
// reads on every connection.
func tcpServeAt(t testing.TB, live *Live, node string, port int) {
	t.Helper()
	n, _ := live.Spec.Node(node)
	var ln net.Listener
	err := InNetns(NetnsName(live.State.RunID, node), func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(n.IP, fmt.Sprint(port)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
}

// tcpReach reports whether a TCP connection from src to dst:7000 completes a round trip.
func tcpReach(live *Live, src, dst string) bool {
	d, _ := live.Spec.Node(dst)
	return tcpRoundTrip(live, src, d.IP, 7000) == nil
}

// tcpDial connects from inside src's namespace to ip:port.
func tcpDial(live *Live, src, ip string, port int) (conn net.Conn, err error) {
	err = InNetns(NetnsName(live.State.RunID, src), func() (err error) {
		// The socket is created on this thread, so it lives in src's namespace.
		conn, err = net.DialTimeout("tcp", net.JoinHostPort(ip, fmt.Sprint(port)), 400*time.Millisecond)
		return err
	})
	return conn, err
}

// tcpRoundTrip connects from src to ip:port and sends one byte through the echo server.
func tcpRoundTrip(live *Live, src, ip string, port int) error {
	conn, err := tcpDial(live, src, ip, port)
	if err != nil {
		return err
	}
	defer conn.Close()
	return echoOnce(conn, 400*time.Millisecond)
}

// echoOnce sends one byte on conn and waits up to timeout for the echo server to return it.
func echoOnce(conn net.Conn, timeout time.Duration) error {
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte{'x'}); err != nil {
		return err
	}
	b := make([]byte, 1)
	if _, err := conn.Read(b); err != nil {
		return err
	}
	if b[0] != 'x' {
		return fmt.Errorf("echo returned %q", b)
	}
	return nil
}

// reachMatrix probes every ordered pair. A pair that fails is probed again for up to 3 s:
// on a loaded host the first packets of a flow wait for ovs-vswitchd's upcall handler,
// which must not read as a cut. A pair that is really cut fails every time.
func reachMatrix(live *Live) map[string]bool {
	m := map[string]bool{}
	for _, a := range live.Spec.NodeNames() {
		for _, b := range live.Spec.NodeNames() {
			if a == b {
				continue
			}
			ok := tcpReach(live, a, b)
			for deadline := time.Now().Add(3 * time.Second); !ok && time.Now().Before(deadline); {
				ok = tcpReach(live, a, b)
			}
			m[a+">"+b] = ok
		}
	}
	return m
}

// upServing brings up simple (needs root, skips otherwise) with a tcpServe on every node.
func upServing(t testing.TB, servers, clients int) *Live {
	t.Helper()
	needRoot(t)
	testRuntimeDir(t)
	live := upSimple(t, servers, clients)
	for _, n := range live.Spec.NodeNames() {
		tcpServe(t, live, n)
	}
	return live
}

func TestSimpleTCPAndPartitions(t *testing.T) {
	live := upServing(t, 3, 1)
	for k, ok := range reachMatrix(live) {
		if !ok {
			t.Errorf("before any partition: TCP %s fails", k)
		}
	}
	ctx := context.Background()

	cookie, err := live.Partition(ctx, Cut{A: []string{"s1"}, B: []string{"s2"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	for k, ok := range reachMatrix(live) {
		cut := k == "s1>s2" || k == "s2>s1"
		if ok == cut {
			t.Errorf("after partition s1 s2: TCP %s reachable=%v, want %v", k, ok, !cut)
		}
	}
	if err := live.Heal(ctx, cookie); err != nil {
		t.Fatal(err)
	}

	// One way s1 -> s2: s1 can send nothing to s2, so neither direction completes a TCP
	// handshake; probe the raw direction with UDP instead.
	cookie, err = live.Partition(ctx, Cut{A: []string{"s1"}, B: []string{"s2"}, OneWay: true}, "")
	if err != nil {
		t.Fatal(err)
	}
	if udpReach(t, live, "s1", "s2") {
		t.Errorf("one-way cut s1->s2: UDP s1->s2 still arrives")
	}
	if !udpReach(t, live, "s2", "s1") {
		t.Errorf("one-way cut s1->s2: UDP s2->s1 dropped too")
	}
	if !tcpReach(live, "s1", "s3") || !tcpReach(live, "c1", "s2") {
		t.Errorf("one-way cut s1->s2 affected other pairs")
	}

	// Groups, and a second cut with its own cookie: healing one leaves the other.
	if _, err := live.Partition(ctx, Cut{A: []string{"s1", "c1"}, B: []string{"s3"}}, "group"); err != nil {
		t.Fatal(err)
	}
	if tcpReach(live, "c1", "s3") || tcpReach(live, "s3", "s1") || !tcpReach(live, "c1", "s2") {
		t.Errorf("group cut {s1,c1}|{s3} not exact")
	}
	if err := live.Heal(ctx, cookie); err != nil {
		t.Fatal(err)
	}
	if !udpReach(t, live, "s1", "s2") {
		t.Errorf("after healing the one-way cut s1->s2 still dropped")
	}
	if tcpReach(live, "c1", "s3") {
		t.Errorf("healing one cut removed another's rules")
	}
	if err := live.HealAll(ctx); err != nil {
		t.Fatal(err)
	}
	for k, ok := range reachMatrix(live) {
		if !ok {
			t.Errorf("after heal all: TCP %s fails", k)
		}
	}
}

// udpReach sends a few datagrams from src to dst:7001 and reports whether any arrived.
func udpReach(t testing.TB, live *Live, src, dst string) bool {
	return udpReachAt(t, live, src, dst, 7001)
}

// udpReachAt sends a few datagrams from src to dst's port and reports whether any arrived.
func udpReachAt(t testing.TB, live *Live, src, dst string, port int) bool {
	t.Helper()
	return udpReachFrom(t, live, src, 0, dst, port)
}

// udpReachFrom is udpReachAt with the datagrams sent from src's port srcPort (0 = any).
func udpReachFrom(t testing.TB, live *Live, src string, srcPort int, dst string, port int) bool {
	t.Helper()
	s, _ := live.Spec.Node(src)
	d, _ := live.Spec.Node(dst)
	var rc, sc *net.UDPConn
	if err := InNetns(NetnsName(live.State.RunID, dst), func() (err error) {
		rc, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(d.IP), Port: port})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := InNetns(NetnsName(live.State.RunID, src), func() (err error) {
		sc, err = net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(s.IP), Port: srcPort}, &net.UDPAddr{IP: net.ParseIP(d.IP), Port: port})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	for i := 0; i < 5; i++ {
		sc.Write([]byte("p"))
	}
	rc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	b := make([]byte, 8)
	_, _, err := rc.ReadFromUDP(b)
	return err == nil
}

func TestTeardownLeavesNothingAndSparesOthers(t *testing.T) {
	needRoot(t)
	testRuntimeDir(t)
	// Objects dt did not create must survive.
	foreign := fmt.Sprintf("dtforeign%d", os.Getpid()%100000)
	fns, err := nsrun.NewNamed(foreign)
	if err != nil {
		t.Fatal(err)
	}
	fns.Close()
	defer netns.DeleteNamed(foreign)
	dummy := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "dtfdummy0"}, PeerName: "dtfdummy1"}
	if err := netlink.LinkAdd(dummy); err != nil {
		t.Fatal(err)
	}
	defer netlink.LinkDel(dummy)

	live := upSimple(t, 3, 1)
	st := *live.State
	pids := live.OVS.Pids()
	if len(pids) != 2 {
		t.Fatalf("want ovsdb-server and ovs-vswitchd running, got %v", pids)
	}
	if err := live.Down(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertGone(t, &st)
	if _, err := netns.GetFromName(foreign); err != nil {
		t.Errorf("foreign namespace %s was removed", foreign)
	}
	if _, err := netlink.LinkByName("dtfdummy0"); err != nil {
		t.Errorf("foreign interface dtfdummy0 was removed")
	}
}

// assertGone checks that nothing of a run is left on the host.
func assertGone(t testing.TB, st *State) {
	t.Helper()
	for _, ns := range st.Namespaces {
		if _, err := os.Stat("/var/run/netns/" + ns); err == nil {
			t.Errorf("namespace %s left behind", ns)
		}
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		if strings.Contains(l.Attrs().Name, st.RunID) {
			t.Errorf("interface %s left behind", l.Attrs().Name)
		}
	}
	if p := RunProcesses(st.RunID); len(p) > 0 {
		t.Errorf("processes of the run left behind: %v", p)
	}
	if _, err := os.Stat(st.Dir); err == nil {
		t.Errorf("runtime dir %s left behind", st.Dir)
	}
}

// TestOrphansAreFoundAndRemoved: a run whose state file is gone is still found by its
// names and tags, and removed completely.
func TestOrphansAreFoundAndRemoved(t *testing.T) {
	needRoot(t)
	testRuntimeDir(t)
	live := upSimple(t, 2, 1)
	st := *live.State
	if err := os.RemoveAll(st.Dir); err != nil { // the state file goes with it
		t.Fatal(err)
	}
	var orphan *State
	for _, o := range Orphans() {
		if o.RunID == st.RunID {
			orphan = o
		}
	}
	if orphan == nil {
		t.Fatalf("run %s without its state file is not reported as an orphan", st.RunID)
	}
	if len(orphan.Namespaces) != len(st.Namespaces) {
		t.Errorf("orphan has namespaces %v, want %v", orphan.Namespaces, st.Namespaces)
	}
	if err := Teardown(context.Background(), orphan); err != nil {
		t.Fatal(err)
	}
	assertGone(t, &st)
}

// TestLiveRunOfAnotherRootIsNoOrphan: a run managed under another DT_RUNTIME_DIR is
// alive, not orphaned, and `dt clean --orphans` from here must not touch it.
func TestLiveRunOfAnotherRootIsNoOrphan(t *testing.T) {
	needRoot(t)
	testRuntimeDir(t)
	live := upSimple(t, 1, 0)
	other, err := os.MkdirTemp("/tmp", "dtrt-other")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(other)
	mine := os.Getenv("DT_RUNTIME_DIR")
	t.Setenv("DT_RUNTIME_DIR", other)
	for _, o := range Orphans() {
		if o.RunID == live.State.RunID {
			t.Errorf("live run %s of runtime dir %s reported as an orphan from %s", o.RunID, mine, other)
		}
	}
	t.Setenv("DT_RUNTIME_DIR", mine)
}
