package shaping

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The tolerance for RTT: ±(1 ms + 5 %).
func rttTolerance(want time.Duration) time.Duration { return time.Millisecond + want/20 }

func testOwner(t testing.TB) string {
	return fmt.Sprintf("dtshtest-%d-%s", os.Getpid(), strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
}

// userspacePair returns a userspace backend in each namespace, closed when the test ends.
func userspacePair(t testing.TB, tn *testNet, owner string) (a, b *Userspace) {
	t.Helper()
	var err error
	if a, err = NewUserspace(owner, InNamespace(tn.nsA)); err != nil {
		t.Fatal(err)
	}
	if b, err = NewUserspace(owner, InNamespace(tn.nsB)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := errors.Join(a.Close(ctx), b.Close(ctx)); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return a, b
}

func apply(t testing.TB, b Backend, iface string, imp Impairment) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Apply(ctx, iface, imp); err != nil {
		t.Fatalf("%s: apply %s to %s: %v", b.Name(), imp, iface, err)
	}
}

func clearIface(t testing.TB, b Backend, iface string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Clear(ctx, iface); err != nil {
		t.Fatalf("%s: clear %s: %v", b.Name(), iface, err)
	}
}

// medianRTT measures 50 UDP probes 20 ms apart, as `ping -c 50 -i 0.02` would.
func medianRTT(t testing.TB, tn *testNet, echo netip.AddrPort) time.Duration {
	t.Helper()
	rtts, lost := probeRTT(t, tn.nsA, echo, 50, 20*time.Millisecond)
	if lost > 0 {
		t.Errorf("%d of 50 probes lost on a link without loss", lost)
	}
	t.Logf("UDP RTT over %d probes: p50 %v, p99 %v", len(rtts), quantile(rtts, 0.5), quantile(rtts, 0.99))
	return quantile(rtts, 0.5)
}

var pingAvg = regexp.MustCompile(`= [\d.]+/([\d.]+)/[\d.]+/[\d.]+ ms`)

// pingRTT runs iputils ping from nsName and returns its average RTT; ok is false when
// ping is not installed.
func pingRTT(t testing.TB, nsName string, to netip.Addr) (avg time.Duration, ok bool) {
	t.Helper()
	if _, err := exec.LookPath("ping"); err != nil {
		t.Logf("ping not installed (Debian iputils-ping); ICMP check skipped")
		return 0, false
	}
	out, err := exec.Command("ip", "netns", "exec", nsName, "ping", "-n", "-q", "-c", "50", "-i", "0.02", to.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	m := pingAvg.FindSubmatch(out)
	if m == nil {
		t.Fatalf("cannot parse ping output:\n%s", out)
	}
	ms, _ := strconv.ParseFloat(string(m[1]), 64)
	return time.Duration(ms * float64(time.Millisecond)), true
}

// assertClean fails if owner has anything left in the namespace, checking List and, apart
// from it, the raw iptables-save, tc and /proc output.
func assertClean(t testing.TB, ns netns.NsHandle, nsName, owner string) {
	t.Helper()
	ctx := context.Background()
	inv, err := List(ctx, owner, InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	if !inv.Empty() {
		t.Errorf("%s: owner %s left:\n%s", nsName, owner, inv)
	}
	for _, argv := range [][]string{{"iptables-save"}, {"ip6tables-save"}, {"tc", "qdisc", "show"}} {
		out, err := exec.Command("ip", append([]string{"netns", "exec", nsName}, argv...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", argv[0], err, out)
		}
		for _, mark := range []string{"dt:" + owner, chainPrefix(owner), netlink.HandleStr(QdiscHandle(owner)) + " root"} {
			if strings.Contains(string(out), mark) {
				t.Errorf("%s: %s still shows %q:\n%s", nsName, strings.Join(argv, " "), mark, out)
			}
		}
	}
	queues, err := (&config{ns: ns}).boundQueues()
	if err != nil {
		t.Fatal(err)
	}
	first, last := QueueRange(owner)
	for _, q := range queues {
		if q >= first && q <= last {
			t.Errorf("%s: nfqueue %d of owner %s still bound", nsName, q, owner)
		}
	}
}

// TestUserspaceDelay: 20 ms one-way delay on both sides gives a 40 ms RTT, and Clear
// restores the original RTT and leaves nothing behind.
func TestUserspaceDelay(t *testing.T) {
	tn := newTestNet(t)
	owner := testOwner(t)
	echo := udpEcho(t, tn.nsB, tn.ipB)
	base := medianRTT(t, tn, echo)

	ua, ub := userspacePair(t, tn, owner)
	const oneWay = 20 * time.Millisecond
	apply(t, ua, tn.ifA, Impairment{Delay: oneWay})
	apply(t, ub, tn.ifB, Impairment{Delay: oneWay})

	want := 2 * oneWay
	got := medianRTT(t, tn, echo)
	if d := got - want; d.Abs() > rttTolerance(want) {
		t.Errorf("UDP RTT %v, want %v ±%v", got, want, rttTolerance(want))
	}
	if avg, ok := pingRTT(t, tn.nameA, tn.ipB); ok {
		t.Logf("ICMP RTT (ping -c 50 -i 0.02) avg %v", avg)
		if d := avg - want; d.Abs() > rttTolerance(want) {
			t.Errorf("ICMP RTT %v, want %v ±%v", avg, want, rttTolerance(want))
		}
	}
	if st, ok := ua.Stats(tn.ifA); !ok || st.Received == 0 || st.Sent != st.Received {
		t.Errorf("reader stats %+v (present %v)", st, ok)
	}

	clearIface(t, ua, tn.ifA)
	clearIface(t, ub, tn.ifB)
	after := medianRTT(t, tn, echo)
	if after > base+time.Millisecond {
		t.Errorf("RTT after Clear %v, before shaping %v", after, base)
	}
	assertClean(t, tn.nsA, tn.nameA, owner)
	assertClean(t, tn.nsB, tn.nameB, owner)
}

// binomialBounds returns the 0.5 % and 99.5 % quantiles of Binomial(n, p): a count outside
// them has less than a 1 % chance.
func binomialBounds(n int, p float64) (lo, hi int) {
	lg := func(x float64) float64 { v, _ := math.Lgamma(x); return v }
	cdf := 0.0
	lo, hi = -1, n
	for k := 0; k <= n; k++ {
		logPMF := lg(float64(n+1)) - lg(float64(k+1)) - lg(float64(n-k+1)) +
			float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p)
		cdf += math.Exp(logPMF)
		if lo < 0 && cdf >= 0.005 {
			lo = k
		}
		if cdf >= 0.995 {
			hi = k
			break
		}
	}
	return lo, hi
}

// udpSink counts distinct sequence numbers arriving on ip in ns.
type udpSink struct {
	mu   sync.Mutex
	seen map[uint64]time.Duration // seq -> one-way delay
	seq  []uint64                 // arrival order
	addr netip.AddrPort
}

func newUDPSink(t testing.TB, ns netns.NsHandle, ip netip.Addr) *udpSink {
	t.Helper()
	var pc *net.UDPConn
	if err := in(ns, func() (err error) {
		pc, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_ = pc.SetReadBuffer(8 << 20)
	t.Cleanup(func() { pc.Close() })
	s := &udpSink{seen: map[uint64]time.Duration{}, addr: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := pc.Read(buf)
			if err != nil {
				return
			}
			if n < 16 {
				continue
			}
			// Both namespaces share the host clock, so one-way delays are exact.
			oneWay := time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(buf[8:])))
			seq := binary.BigEndian.Uint64(buf)
			s.mu.Lock()
			if _, dup := s.seen[seq]; !dup {
				s.seen[seq] = oneWay
				s.seq = append(s.seq, seq)
			}
			s.mu.Unlock()
		}
	}()
	return s
}

// sendSeq sends datagrams numbered first to first+n-1, carrying their send time,
// interval apart from ns.
func sendSeq(t testing.TB, ns netns.NsHandle, to netip.AddrPort, first, n int, interval time.Duration) {
	t.Helper()
	c := dialUDP(t, ns, to)
	msg := make([]byte, 64)
	next := time.Now()
	for i := range n {
		binary.BigEndian.PutUint64(msg, uint64(first+i))
		binary.BigEndian.PutUint64(msg[8:], uint64(time.Now().UnixNano()))
		// Loss must be silent, as on a wire: an error here (EPERM from a DROP rule) would
		// tell the sender what was lost.
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		next = next.Add(interval)
		time.Sleep(time.Until(next))
	}
}

// TestUserspaceLoss: 10 % loss over 2000 one-way datagrams lies within the binomial 99 %
// bounds.
func TestUserspaceLoss(t *testing.T) {
	tn := newTestNet(t)
	ua, _ := userspacePair(t, tn, testOwner(t))
	apply(t, ua, tn.ifA, Impairment{Loss: 10})

	const n = 2000
	lo, hi := binomialBounds(n, 0.10)
	// A correct 10 % falls outside its 99 % bounds once in a hundred measurements; only
	// two misses in a row (one in ten thousand) count as a failure.
	for try := 1; ; try++ {
		sink := newUDPSink(t, tn.nsB, tn.ipB)
		sendSeq(t, tn.nsA, sink.addr, 0, n, 250*time.Microsecond)
		time.Sleep(300 * time.Millisecond)
		sink.mu.Lock()
		lost := n - len(sink.seen)
		sink.mu.Unlock()
		t.Logf("lost %d of %d (%.2f %%), 99 %% bounds %d-%d", lost, n, 100*float64(lost)/n, lo, hi)
		if lost >= lo && lost <= hi {
			break
		}
		if try == 2 {
			t.Errorf("lost %d of %d twice outside the binomial 99 %% bounds %d-%d for 10 %%", lost, n, lo, hi)
			break
		}
	}
}

// TestUserspaceLossTCP: TCP sees the loss as loss: it retransmits about the share lost.
func TestUserspaceLossTCP(t *testing.T) {
	tn := newTestNet(t)
	ua, _ := userspacePair(t, tn, testOwner(t))
	apply(t, ua, tn.ifA, Impairment{Loss: 10})
	before := tcpCounters(t, tn.nsA)
	got := tcpBulk(t, tn.nsA, tn.nsB, tn.ipB, 2*time.Second, "")
	after := tcpCounters(t, tn.nsA)
	out, retrans := after["OutSegs"]-before["OutSegs"], after["RetransSegs"]-before["RetransSegs"]
	share := float64(retrans) / float64(out)
	t.Logf("TCP through 10 %% loss: %.0f Mbit/s, %d of %d segments retransmitted (%.1f %%)", got/1e6, retrans, out, 100*share)
	if share < 0.05 || share > 0.25 {
		t.Errorf("TCP retransmitted %.1f %% of its segments through 10 %% loss; want about 10 %%", 100*share)
	}
	if st, ok := ua.Stats(tn.ifA); !ok || st.Lost == 0 || st.Sent != 0 {
		t.Errorf("delayer stats %+v: want lost packets only", st)
	}
}

// tcpCounters reads the Tcp line of /proc/net/snmp in ns.
func tcpCounters(t testing.TB, ns netns.NsHandle) map[string]int64 {
	t.Helper()
	var data []byte
	if err := in(ns, func() (err error) {
		data, err = os.ReadFile("/proc/thread-self/net/snmp")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var names []string
	out := map[string]int64{}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		for i, v := range f[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			out[names[i]] = n
		}
	}
	return out
}

// TestUserspaceRate: a 10 Mbit/s link carries a TCP bulk transfer at 10 Mbit/s ±10 %.
func TestUserspaceRate(t *testing.T) {
	tn := newTestNet(t)
	owner := testOwner(t)
	ua, ub := userspacePair(t, tn, owner)
	const rate = 10e6
	apply(t, ua, tn.ifA, Impairment{Rate: rate})
	inv, err := List(context.Background(), owner, InNamespace(tn.nsA))
	if err != nil || len(inv.Qdiscs) != 1 || !strings.Contains(inv.Qdiscs[0], "tbf") {
		t.Fatalf("inventory %v, %v; want one tbf", inv, err)
	}
	got := tcpBulk(t, tn.nsA, tn.nsB, tn.ipB, 5*time.Second, "")
	t.Logf("TCP goodput %.2f Mbit/s through a %.0f Mbit/s tbf", got/1e6, rate/1e6)
	if math.Abs(got-rate)/rate > 0.10 {
		t.Errorf("TCP goodput %.2f Mbit/s, want %.0f ±10 %%", got/1e6, rate/1e6)
	}

	// The same link with 20 ms each way: delayed copies meet the tbf queue, and TCP sees
	// its tail drops as a bottleneck's.
	apply(t, ua, tn.ifA, Impairment{Rate: rate, Delay: 20 * time.Millisecond})
	apply(t, ub, tn.ifB, Impairment{Delay: 20 * time.Millisecond})
	got = tcpBulk(t, tn.nsA, tn.nsB, tn.ipB, 5*time.Second, "")
	st, _ := ua.Stats(tn.ifA)
	t.Logf("TCP goodput %.2f Mbit/s through the tbf and a 40 ms RTT (delayer %+v)", got/1e6, st)
	if math.Abs(got-rate)/rate > 0.10 {
		t.Errorf("TCP goodput %.2f Mbit/s with 40 ms RTT, want %.0f ±10 %%", got/1e6, rate/1e6)
	}
}

// TestUserspaceTCPThroughQueue: TCP connects and moves data through the NFQUEUE path, with
// the veths' checksum offload left on.
func TestUserspaceTCPThroughQueue(t *testing.T) {
	tn := newTestNet(t)
	ua, ub := userspacePair(t, tn, testOwner(t))
	const oneWay = 10 * time.Millisecond
	apply(t, ua, tn.ifA, Impairment{Delay: oneWay})
	apply(t, ub, tn.ifB, Impairment{Delay: oneWay})

	var ln net.Listener
	if err := in(tn.nsB, func() (err error) { ln, err = net.Listen("tcp4", netip.AddrPortFrom(tn.ipB, 0).String()); return }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	var c net.Conn
	start := time.Now()
	if err := in(tn.nsA, func() (err error) { c, err = net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second); return }); err != nil {
		t.Fatalf("TCP connect through the queue: %v", err)
	}
	defer c.Close()
	connect := time.Since(start)
	t.Logf("TCP connect %v (one round trip, want %v)", connect, 2*oneWay)
	if d := connect - 2*oneWay; d.Abs() > rttTolerance(2*oneWay)+2*time.Millisecond {
		t.Errorf("TCP connect took %v, want about %v", connect, 2*oneWay)
	}
	// 4 MiB echoed back: full-size and GSO segments through both queues.
	payload := make([]byte, 4<<20)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	go func() { _, _ = c.Write(payload) }()
	back := make([]byte, len(payload))
	if _, err := io.ReadFull(c, back); err != nil {
		t.Fatalf("TCP echo through the queue: %v", err)
	}
	if string(back) != string(payload) {
		t.Fatal("TCP echo corrupted")
	}
	t.Logf("4 MiB echoed in %v", time.Since(start))

	// A queued packet that stayed charged to its socket would let TCP Small Queues cap a
	// flow at a few Mbit/s behind 10 ms; the delayer's copies are not, so TCP fills the
	// window as through netem.
	for _, cc := range []string{"cubic", "bbr"} {
		got := tcpBulk(t, tn.nsA, tn.nsB, tn.ipB, 3*time.Second, cc)
		t.Logf("TCP %s goodput through 10 ms each way: %.0f Mbit/s", cc, got/1e6)
		if got < 50e6 {
			t.Errorf("TCP %s goodput %.1f Mbit/s through the delay; want far above TSQ's few Mbit/s", cc, got/1e6)
		}
	}
}

// TestUserspaceJitterKeepsFlowOrder: jitter spreads the one-way delay over
// [delay-jitter, delay+jitter] but one flow arrives in order.
func TestUserspaceJitterKeepsFlowOrder(t *testing.T) {
	tn := newTestNet(t)
	ua, _ := userspacePair(t, tn, testOwner(t))
	const delay, jitter = 20 * time.Millisecond, 10 * time.Millisecond
	apply(t, ua, tn.ifA, Impairment{Delay: delay, Jitter: jitter})

	sink := newUDPSink(t, tn.nsB, tn.ipB)
	const n = 500
	// 25 ms apart, wider than the jitter window, so order never holds a packet back and
	// the delays show the jitter distribution itself.
	sendSeq(t, tn.nsA, sink.addr, 0, n/5, 25*time.Millisecond)
	// 1 ms apart, inside it: order must hold.
	sendSeq(t, tn.nsA, sink.addr, n/5, n, time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.seq) != n/5+n {
		t.Fatalf("received %d of %d", len(sink.seq), n/5+n)
	}
	var spread []time.Duration
	for i, s := range sink.seq[:n/5] {
		if s != uint64(i) {
			t.Fatalf("sparse flow: arrival %d is seq %d", i, s)
		}
		spread = append(spread, sink.seen[s])
	}
	// Never early is exact; lateness depends on how busy the machine is, so the upper
	// end is checked loosely.
	lo, p50, hi := quantile(spread, 0), quantile(spread, 0.5), quantile(spread, 0.9)
	t.Logf("one-way delay, sparse probes: min %v p50 %v p90 %v (uniform over %v-%v)", lo, p50, hi, delay-jitter, delay+jitter)
	if lo < delay-jitter {
		t.Errorf("a packet took %v, less than delay-jitter %v", lo, delay-jitter)
	}
	if lo > delay-jitter/2 || hi < delay+jitter/2 || hi > delay+jitter+3*time.Millisecond {
		t.Errorf("delay spread min-p90 %v-%v, want across most of %v-%v", lo, hi, delay-jitter, delay+jitter)
	}
	if d := p50 - delay; d.Abs() > 3*time.Millisecond {
		t.Errorf("median one-way delay %v, want about %v", p50, delay)
	}
	dense := sink.seq[n/5:]
	for i := 1; i < len(dense); i++ {
		if dense[i] < dense[i-1] {
			t.Fatalf("dense flow reordered: seq %d after %d", dense[i], dense[i-1])
		}
	}
}

// TestUserspaceChangeWhileRunning: changing the impairment under traffic loses nothing
// and the RTT follows each step.
func TestUserspaceChangeWhileRunning(t *testing.T) {
	tn := newTestNet(t)
	ua, _ := userspacePair(t, tn, testOwner(t))
	echo := udpEcho(t, tn.nsB, tn.ipB)

	steps := []Impairment{
		{Delay: 10 * time.Millisecond},
		{Delay: 30 * time.Millisecond},
		{Rate: 50e6}, // delay off: the delayer drains and stops
		{Delay: 20 * time.Millisecond, Jitter: time.Millisecond}, // and a new one starts
		{},
	}
	const stepLen = 400 * time.Millisecond
	var probes []probe
	done := make(chan struct{})
	go func() {
		defer close(done)
		probes = probeEcho(t, tn.nsA, echo, int(time.Duration(len(steps))*stepLen/(5*time.Millisecond)), 5*time.Millisecond)
	}()
	applied := make([]time.Time, len(steps))
	for i, imp := range steps {
		apply(t, ua, tn.ifA, imp)
		applied[i] = time.Now()
		time.Sleep(stepLen)
	}
	<-done

	lost := 0
	for _, p := range probes {
		if p.rtt == 0 {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d probes lost while changing the impairment", lost, len(probes))
	}
	for i, imp := range steps {
		// Probes sent well inside the step: after it was applied, before the next one.
		var rtts []time.Duration
		for _, p := range probes {
			inStep := p.sent.After(applied[i].Add(50*time.Millisecond)) && (i+1 == len(steps) || p.sent.Before(applied[i+1].Add(-stepLen/10)))
			if inStep && p.rtt > 0 {
				rtts = append(rtts, p.rtt)
			}
		}
		got := quantile(rtts, 0.5)
		t.Logf("%s: %d probes, RTT p50 %v", imp, len(rtts), got)
		if len(rtts) < 20 {
			t.Errorf("%s: only %d probes in the step", imp, len(rtts))
			continue
		}
		if d := got - imp.Delay; d < 0 || d > rttTolerance(imp.Delay) {
			t.Errorf("%s: RTT p50 %v, want %v +%v", imp, got, imp.Delay, rttTolerance(imp.Delay))
		}
	}
}

// TestUserspaceFailuresLeaveNothing: an Apply that cannot complete returns an error and
// leaves no rule, qdisc or queue.
func TestUserspaceFailuresLeaveNothing(t *testing.T) {
	tn := newTestNet(t)
	owner := testOwner(t)
	ua, _ := userspacePair(t, tn, owner)
	ctx := context.Background()

	if err := ua.Apply(ctx, "nosuchif0", Impairment{Delay: time.Millisecond}); err == nil {
		t.Error("Apply on a missing interface succeeded")
	}
	// Someone else's root qdisc: dt must not replace it, and must undo its rules.
	h, err := netlink.NewHandleAt(tn.nsA)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	link, err := h.LinkByName(tn.ifA)
	if err != nil {
		t.Fatal(err)
	}
	foreign := buildTbf(link.Attrs().Index, 1500, netlink.MakeHandle(1, 0), 1e9)
	if err := h.QdiscAdd(foreign); err != nil {
		t.Fatal(err)
	}
	err = ua.Apply(ctx, tn.ifA, Impairment{Delay: time.Millisecond, Loss: 1, Rate: 1e6})
	if !errors.Is(err, ErrForeignQdisc) {
		t.Errorf("Apply over a foreign qdisc: %v, want ErrForeignQdisc", err)
	}
	if q, _ := rootQdisc(h, link); q == nil || q.Attrs().Handle != netlink.MakeHandle(1, 0) {
		t.Errorf("foreign qdisc replaced: %v", q)
	}
	assertClean(t, tn.nsA, tn.nameA, owner)
	if err := ua.Apply(ctx, tn.ifA, Impairment{Delay: -1}); !errors.Is(err, ErrInvalidImpairment) {
		t.Errorf("invalid impairment: %v", err)
	}
}

// TestAgentProcess runs the backend the way dt does: in a separate process inside the
// namespace, with no InNamespace. Closing its stdin clears; killing it leaves rules that
// drop (never pass undelayed) until CleanupNamespace.
func TestAgentProcess(t *testing.T) {
	tn := newTestNet(t)
	owner := testOwner(t)
	echo := udpEcho(t, tn.nsB, tn.ipB)
	base := medianRTT(t, tn, echo)
	const oneWay = 20 * time.Millisecond

	start := func() (*exec.Cmd, io.WriteCloser, *bufio.Reader) {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("ip", "netns", "exec", tn.nameA, exe)
		cmd.Env = append(os.Environ(), "DTSHAPING_AGENT=1", "DTSHAPING_OWNER="+owner,
			"DTSHAPING_IFACE="+tn.ifA, "DTSHAPING_DELAY="+oneWay.String())
		cmd.Stderr = os.Stderr
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		r := bufio.NewReader(stdout)
		line, err := r.ReadString('\n')
		if err != nil || line != "ready\n" {
			t.Fatalf("agent: %q, %v", line, err)
		}
		return cmd, stdin, r
	}

	// Graceful: the agent clears on exit.
	cmd, stdin, out := start()
	want := oneWay + base
	if got := medianRTT(t, tn, echo); (got - want).Abs() > rttTolerance(want) {
		t.Errorf("RTT with the agent's delay %v, want %v ±%v", got, want, rttTolerance(want))
	}
	stdin.Close()
	if line, _ := out.ReadString('\n'); line != "cleared\n" {
		t.Errorf("agent said %q on exit", line)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("agent: %v", err)
	}
	assertClean(t, tn.nsA, tn.nameA, owner)

	// Crash: the rules stay and, without --queue-bypass, drop.
	cmd, _, _ = start()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if _, lost := probeRTT(t, tn.nsA, echo, 20, 10*time.Millisecond); lost != 20 {
		t.Errorf("%d of 20 probes lost after the agent died; want all (fail closed)", lost)
	}
	inv, err := List(context.Background(), owner, InNamespace(tn.nsA))
	if err != nil || len(inv.Chains) == 0 || len(inv.Queues) != 0 {
		t.Errorf("after the crash: %v, %v; want chains and no bound queue", inv, err)
	}
	if err := CleanupNamespace(context.Background(), owner, InNamespace(tn.nsA)); err != nil {
		t.Fatal(err)
	}
	assertClean(t, tn.nsA, tn.nameA, owner)
	if got := medianRTT(t, tn, echo); got > base+time.Millisecond {
		t.Errorf("RTT after cleanup %v, before %v", got, base)
	}
}

// agentMain is the child of TestAgentProcess: an agent already inside the namespace.
func agentMain() int {
	delay, err := time.ParseDuration(os.Getenv("DTSHAPING_DELAY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx := context.Background()
	u, err := NewUserspace(os.Getenv("DTSHAPING_OWNER"))
	if err == nil {
		err = u.Apply(ctx, os.Getenv("DTSHAPING_IFACE"), Impairment{Delay: delay})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		return 1
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := u.Close(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		return 1
	}
	fmt.Println("cleared")
	return 0
}

func TestMain(m *testing.M) {
	if os.Getenv("DTSHAPING_AGENT") != "" {
		os.Exit(agentMain())
	}
	os.Exit(m.Run())
}

// TestCleanupNamespaceOwnerOnly: cleanup removes one owner's objects and not another's.
func TestCleanupNamespaceOwnerOnly(t *testing.T) {
	tn := newTestNet(t)
	mine, theirs := testOwner(t)+"-mine", testOwner(t)+"-theirs"
	ctx := context.Background()
	um, err := NewUserspace(mine, InNamespace(tn.nsA))
	if err != nil {
		t.Fatal(err)
	}
	ut, err := NewUserspace(theirs, InNamespace(tn.nsA))
	if err != nil {
		t.Fatal(err)
	}
	defer ut.Close(ctx)
	apply(t, um, tn.ifA, Impairment{Loss: 1, Rate: 100e6})
	apply(t, ut, "lo", Impairment{Loss: 1, Delay: time.Millisecond})
	// Forget um without clearing, as a crash would: its queues go, its rules stay.
	um.mu.Lock()
	for _, l := range um.links {
		for _, d := range l.ds {
			_ = d.stop(ctx)
		}
	}
	um.links = map[string]*usLink{}
	um.mu.Unlock()

	if err := CleanupNamespace(ctx, mine, InNamespace(tn.nsA)); err != nil {
		t.Fatal(err)
	}
	assertClean(t, tn.nsA, tn.nameA, mine)
	inv, err := List(ctx, theirs, InNamespace(tn.nsA))
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Chains) == 0 || len(inv.Rules) == 0 || len(inv.Queues) != 1 {
		t.Errorf("the other owner's objects went too:\n%s", inv)
	}
}

// TestSelect checks names, and that netem is refused, loudly, where the kernel lacks it.
func TestSelect(t *testing.T) {
	if _, err := Select("tc", "run1"); !errors.Is(err, ErrUnknownBackend) || !strings.Contains(err.Error(), "auto, netem, userspace") {
		t.Errorf("Select(tc): %v, want ErrUnknownBackend listing the names", err)
	}
	if _, err := Select(NameUserspace, "bad owner"); !errors.Is(err, ErrInvalidOwner) {
		t.Errorf("bad owner: %v", err)
	}
	auto, err := Select(NameAuto, "run1")
	if err != nil {
		t.Fatal(err)
	}
	netem, err := Select(NameNetem, "run1")
	if Detect() {
		if err != nil || auto.Name() != NameNetem || netem.Name() != NameNetem {
			t.Errorf("netem present: auto=%s, netem=%v", auto.Name(), err)
		}
		return
	}
	t.Logf("netem unavailable here: %v", err)
	if !errors.Is(err, ErrNetemUnavailable) {
		t.Errorf("Select(netem) without netem: %v, want ErrNetemUnavailable", err)
	}
	if auto.Name() != NameUserspace {
		t.Errorf("auto chose %s without netem", auto.Name())
	}
}

// TestNetem exercises the netem backend where the kernel has sch_netem.
func TestNetem(t *testing.T) {
	needRoot(t)
	if err := detectNetem(); err != nil {
		t.Skipf("netem backend not exercised: %v; its qdisc is checked by TestBuildNetem", err)
	}
	tn := newTestNet(t)
	owner := testOwner(t)
	echo := udpEcho(t, tn.nsB, tn.ipB)
	base := medianRTT(t, tn, echo)
	na, err := NewNetem(owner, InNamespace(tn.nsA))
	if err != nil {
		t.Fatal(err)
	}
	nb, err := NewNetem(owner, InNamespace(tn.nsB))
	if err != nil {
		t.Fatal(err)
	}
	const oneWay = 20 * time.Millisecond
	apply(t, na, tn.ifA, Impairment{Delay: oneWay})
	apply(t, nb, tn.ifB, Impairment{Delay: oneWay})
	if got, want := medianRTT(t, tn, echo), 2*oneWay; (got - want).Abs() > rttTolerance(want) {
		t.Errorf("RTT %v, want %v ±%v", got, want, rttTolerance(want))
	}
	ctx := context.Background()
	if err := errors.Join(na.Close(ctx), nb.Close(ctx)); err != nil {
		t.Fatal(err)
	}
	if got := medianRTT(t, tn, echo); got > base+time.Millisecond {
		t.Errorf("RTT after Clear %v, before %v", got, base)
	}
	assertClean(t, tn.nsA, tn.nameA, owner)
	assertClean(t, tn.nsB, tn.nameB, owner)
}

// TestUserspaceIPv6: ip6tables rules and the IPv6 raw socket delay IPv6 too, link-local
// neighbour discovery included.
func TestUserspaceIPv6(t *testing.T) {
	tn := newTestNet(t)
	a6, b6 := netip.MustParseAddr("fd00:d7::1"), netip.MustParseAddr("fd00:d7::2")
	for _, s := range []struct {
		ns    netns.NsHandle
		iface string
		ip    netip.Addr
	}{{tn.nsA, tn.ifA, a6}, {tn.nsB, tn.ifB, b6}} {
		h, err := netlink.NewHandleAt(s.ns)
		if err != nil {
			t.Fatal(err)
		}
		l, err := h.LinkByName(s.iface)
		if err == nil {
			err = h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: s.ip.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD})
		}
		h.Close()
		if err != nil {
			t.Fatalf("ip -6 addr add %s dev %s nodad: %v", s.ip, s.iface, err)
		}
	}
	echo := udpEcho(t, tn.nsB, b6)
	// The first probes wait for IPv6 neighbour discovery (seen: a 540 ms median); measure
	// the base only once the path is warm.
	base := medianRTT(t, tn, echo)
	for try := 0; try < 5 && base > 5*time.Millisecond; try++ {
		base = medianRTT(t, tn, echo)
	}
	ua, _ := userspacePair(t, tn, testOwner(t))
	const oneWay = 15 * time.Millisecond
	apply(t, ua, tn.ifA, Impairment{Delay: oneWay})
	want := oneWay + base
	if got := medianRTT(t, tn, echo); (got - want).Abs() > rttTolerance(want) {
		t.Errorf("IPv6 RTT %v, want %v ±%v", got, want, rttTolerance(want))
	}
	if st, _ := ua.Stats(tn.ifA); st.SendErrors > 0 || st.Sent == 0 {
		t.Errorf("delayer %+v", st)
	}
}

// TestUserspaceForwarded: on a router (a wan core) the delayer handles forwarded packets,
// whose source address is not the router's own.
func TestUserspaceForwarded(t *testing.T) {
	needRoot(t)
	pid := os.Getpid()
	ns := map[string]netns.NsHandle{}
	for _, n := range []string{"a", "r", "b"} {
		h, err := newNamedNS(t, fmt.Sprintf("dtshtest-%d-%s", pid, n))
		if err != nil {
			t.Fatal(err)
		}
		ns[n] = h
	}
	x := pid%200 + 1
	ip := func(net, host int) netip.Addr {
		return netip.AddrFrom4([4]byte{10, byte(250 + net), byte(x), byte(host)})
	}
	// a (10.251.x.1) -- (10.251.x.2) r (10.252.x.2) -- (10.252.x.1) b
	links := []struct {
		left, right string
		lif, rif    string
		lip, rip    netip.Addr
	}{
		{"a", "r", "dtsh-a", "dtsh-ra", ip(1, 1), ip(1, 2)},
		{"r", "b", "dtsh-rb", "dtsh-b", ip(2, 2), ip(2, 1)},
	}
	for _, l := range links {
		h, err := netlink.NewHandleAt(ns[l.left])
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: l.lif}, PeerName: l.rif, PeerNamespace: netlink.NsFd(ns[l.right])}); err != nil {
			t.Fatal(err)
		}
		h.Close()
		for _, end := range []struct {
			ns    string
			iface string
			ip    netip.Addr
		}{{l.left, l.lif, l.lip}, {l.right, l.rif, l.rip}} {
			h, err := netlink.NewHandleAt(ns[end.ns])
			if err != nil {
				t.Fatal(err)
			}
			link, err := h.LinkByName(end.iface)
			if err == nil {
				err = h.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: end.ip.AsSlice(), Mask: net.CIDRMask(24, 32)}})
			}
			if err == nil {
				err = h.LinkSetUp(link)
			}
			h.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	route := func(n string, dst netip.Prefix, via netip.Addr) {
		h, err := netlink.NewHandleAt(ns[n])
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		if err := h.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), 32)}, Gw: via.AsSlice()}); err != nil {
			t.Fatalf("route in %s: %v", n, err)
		}
	}
	route("a", netip.PrefixFrom(ip(2, 0), 24), ip(1, 2))
	route("b", netip.PrefixFrom(ip(1, 0), 24), ip(2, 2))
	if err := in(ns["r"], func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644) }); err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		waitUp(t, ns[l.left], l.lif)
		waitUp(t, ns[l.right], l.rif)
	}

	tn := &testNet{nsA: ns["a"], nsB: ns["b"]}
	echo := udpEcho(t, ns["b"], ip(2, 1))
	base := medianRTT(t, tn, echo)
	ur, err := NewUserspace(testOwner(t), InNamespace(ns["r"]))
	if err != nil {
		t.Fatal(err)
	}
	defer ur.Close(context.Background())
	const oneWay = 15 * time.Millisecond
	apply(t, ur, "dtsh-rb", Impairment{Delay: oneWay}) // a -> b, forwarded
	apply(t, ur, "dtsh-ra", Impairment{Delay: oneWay}) // b -> a, forwarded
	want := 2*oneWay + base
	if got := medianRTT(t, tn, echo); (got - want).Abs() > rttTolerance(want) {
		t.Errorf("RTT through the delayed router %v, want %v ±%v", got, want, rttTolerance(want))
	}
}
