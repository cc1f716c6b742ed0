package shaping

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/dtlab/dt/internal/nsrun"
)

// testNet is two namespaces, dtshtest-<pid>-a and -b, joined by one veth pair: the
// smallest path that crosses one shaped egress each way.
type testNet struct {
	nameA, nameB string
	nsA, nsB     netns.NsHandle
	ifA, ifB     string
	ipA, ipB     netip.Addr
}

// needRoot skips unless the test can create namespaces and run iptables.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create network namespaces; CI runs as root")
	}
	for _, tool := range []string{"iptables-save", "iptables-restore", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian packages iptables, iproute2): %v", tool, err)
		}
	}
}

var testNetSeq atomic.Int32

func newTestNet(t testing.TB) *testNet {
	t.Helper()
	needRoot(t)
	pid := os.Getpid()
	n := testNetSeq.Add(1)
	x := (pid+int(n))%250 + 1
	tn := &testNet{
		nameA: fmt.Sprintf("dtshtest-%d-a", pid),
		nameB: fmt.Sprintf("dtshtest-%d-b", pid),
		ifA:   "dtsh-a",
		ifB:   "dtsh-b",
		ipA:   netip.AddrFrom4([4]byte{10, 250, byte(x), 1}),
		ipB:   netip.AddrFrom4([4]byte{10, 250, byte(x), 2}),
	}
	var err error
	if tn.nsA, err = newNamedNS(t, tn.nameA); err != nil {
		t.Fatal(err)
	}
	if tn.nsB, err = newNamedNS(t, tn.nameB); err != nil {
		t.Fatal(err)
	}
	ha, err := netlink.NewHandleAt(tn.nsA)
	if err != nil {
		t.Fatal(err)
	}
	defer ha.Close()
	hb, err := netlink.NewHandleAt(tn.nsB)
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: tn.ifA}, PeerName: tn.ifB, PeerNamespace: netlink.NsFd(tn.nsB)}
	if err := ha.LinkAdd(veth); err != nil {
		t.Fatalf("ip link add %s type veth peer %s netns %s: %v", tn.ifA, tn.ifB, tn.nameB, err)
	}
	for _, s := range []struct {
		h     *netlink.Handle
		iface string
		ip    netip.Addr
	}{{ha, tn.ifA, tn.ipA}, {hb, tn.ifB, tn.ipB}} {
		l, err := s.h.LinkByName(s.iface)
		if err != nil {
			t.Fatal(err)
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: s.ip.AsSlice(), Mask: net.CIDRMask(24, 32)}}
		if err := s.h.AddrAdd(l, addr); err != nil {
			t.Fatalf("ip addr add %s dev %s: %v", s.ip, s.iface, err)
		}
		if err := s.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		lo, err := s.h.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.h.LinkSetUp(lo); err != nil {
			t.Fatal(err)
		}
	}
	waitUp(t, tn.nsA, tn.ifA)
	waitUp(t, tn.nsB, tn.ifB)
	return tn
}

// waitUp waits until iface in ns is operationally up. Until linkwatch has seen the
// carrier (it may wait up to a second), a veth has the noop qdisc and drops everything,
// ARP requests included.
func waitUp(t testing.TB, ns netns.NsHandle, iface string) {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := h.LinkByName(iface)
		if err != nil {
			t.Fatal(err)
		}
		if l.Attrs().OperState == netlink.OperUp {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not up after 5 s: %s", iface, l.Attrs().OperState)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// newNamedNS creates name (deleting a leftover of a crashed run first) and deletes it when
// the test ends.
func newNamedNS(t testing.TB, name string) (netns.NsHandle, error) {
	_ = netns.DeleteNamed(name)
	h, err := nsrun.NewNamed(name)
	if err != nil {
		return -1, err
	}
	t.Cleanup(func() {
		h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	return h, nil
}

// in runs fn in ns on a locked thread; sockets fn creates stay in ns.
func in(ns netns.NsHandle, fn func() error) error {
	c := config{ns: ns}
	return c.do(fn)
}

// udpEcho serves UDP echo on ip in ns until the test ends.
func udpEcho(t testing.TB, ns netns.NsHandle, ip netip.Addr) netip.AddrPort {
	t.Helper()
	var pc *net.UDPConn
	if err := in(ns, func() (err error) {
		pc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// dialUDP connects from ns to to.
func dialUDP(t testing.TB, ns netns.NsHandle, to netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := in(ns, func() (err error) {
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// probe is one echo request: when it was sent and its round trip (0: unanswered).
type probe struct {
	sent time.Time
	rtt  time.Duration
}

// probeRTT sends n probes interval apart from ns to the echo server and returns the round
// trip of each answered probe, and how many went unanswered.
func probeRTT(t testing.TB, ns netns.NsHandle, echo netip.AddrPort, n int, interval time.Duration) (rtts []time.Duration, lost int) {
	t.Helper()
	for _, p := range probeEcho(t, ns, echo, n, interval) {
		if p.rtt == 0 {
			lost++
		} else {
			rtts = append(rtts, p.rtt)
		}
	}
	return rtts, lost
}

// probeEcho sends n UDP probes interval apart from ns to the echo server.
func probeEcho(t testing.TB, ns netns.NsHandle, echo netip.AddrPort, n int, interval time.Duration) []probe {
	t.Helper()
	c := dialUDP(t, ns, echo)
	sent := make([]atomic.Int64, n)
	start := time.Now()
	got := make([]time.Duration, n)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64)
		for {
			m, err := c.Read(buf)
			if err != nil {
				return
			}
			if m < 8 {
				continue
			}
			seq := binary.BigEndian.Uint64(buf)
			if seq < uint64(n) && got[seq] == 0 {
				got[seq] = time.Since(start) - time.Duration(sent[seq].Load())
			}
		}
	}()
	msg := make([]byte, 64)
	tick := time.NewTicker(interval)
	for i := range n {
		binary.BigEndian.PutUint64(msg, uint64(i))
		sent[i].Store(int64(time.Since(start)))
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("probe %d: %v", i, err)
		}
		<-tick.C
	}
	tick.Stop()
	time.Sleep(time.Second) // stragglers
	_ = c.SetReadDeadline(time.Now())
	wg.Wait()
	out := make([]probe, n)
	for i := range out {
		out[i] = probe{sent: start.Add(time.Duration(sent[i].Load())), rtt: got[i]}
	}
	return out
}

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// tcpBulk sends from ns src to dst's listener for d and returns the receiver's goodput in
// bits/s, measured from the first to the last byte received. cc picks the sender's
// congestion control; "" keeps the namespace's default.
func tcpBulk(t testing.TB, src, dst netns.NsHandle, dstIP netip.Addr, d time.Duration, cc string) float64 {
	t.Helper()
	var ln net.Listener
	if err := in(dst, func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(dstIP, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		bytes       int64
		first, last time.Time
		err         error
	}
	res := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			res <- result{err: err}
			return
		}
		defer c.Close()
		var r result
		buf := make([]byte, 256<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				now := time.Now()
				if r.first.IsZero() {
					r.first = now
				}
				r.last = now
				r.bytes += int64(n)
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					r.err = err
				}
				res <- r
				return
			}
		}
	}()
	var c net.Conn
	if err := in(src, func() (err error) {
		dialer := net.Dialer{Timeout: 5 * time.Second}
		if cc != "" {
			dialer.Control = func(_, _ string, rc syscall.RawConn) error {
				var serr error
				if err := rc.Control(func(fd uintptr) {
					serr = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, cc)
				}); err != nil {
					return err
				}
				if serr != nil {
					return fmt.Errorf("TCP_CONGESTION %s: %w", cc, serr)
				}
				return nil
			}
		}
		c, err = dialer.Dial("tcp4", ln.Addr().String())
		return err
	}); err != nil {
		t.Fatalf("tcp connect: %v", err)
	}
	buf := make([]byte, 256<<10)
	_ = c.SetWriteDeadline(time.Now().Add(d))
	for {
		if _, err := c.Write(buf); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("tcp write: %v", err)
			}
			break
		}
	}
	c.Close()
	r := <-res
	if r.err != nil {
		t.Fatalf("tcp read: %v", r.err)
	}
	span := r.last.Sub(r.first)
	if span <= 0 {
		t.Fatalf("received %d bytes in no time", r.bytes)
	}
	return float64(r.bytes) * 8 / span.Seconds()
}
