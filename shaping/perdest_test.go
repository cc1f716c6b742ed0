package shaping

import (
	"context"
	"math"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// addSecondAddr gives B a second address on its interface, so that one egress on A has
// two destinations to tell apart.
func addSecondAddr(t *testing.T, tn *testNet) netip.Addr {
	t.Helper()
	b := tn.ipB.As4()
	b[3] = 3
	ip2 := netip.AddrFrom4(b)
	h, err := netlink.NewHandleAt(tn.nsB)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(tn.ifB)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: ip2.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatalf("ip addr add %s dev %s: %v", ip2, tn.ifB, err)
	}
	return ip2
}

func applyRules(t *testing.T, b Backend, iface string, rules []Rule) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.ApplyRules(ctx, iface, rules); err != nil {
		t.Fatalf("%s: apply %s to %s: %v", b.Name(), rulesString(rules), iface, err)
	}
}

func medianTo(t *testing.T, tn *testNet, echo netip.AddrPort) time.Duration {
	t.Helper()
	rtts, lost := probeRTT(t, tn.nsA, echo, 30, 10*time.Millisecond)
	if lost > 0 {
		t.Errorf("%d of 30 probes to %s lost on a link without loss", lost, echo)
	}
	return quantile(rtts, 0.5)
}

// TestUserspacePerDestination: rules on one egress apply to their destinations only,
// first match wins, a change swaps rules without leaving anything of the old ones, and
// Clear leaves nothing.
func TestUserspacePerDestination(t *testing.T) {
	tn := newTestNet(t)
	ip2 := addSecondAddr(t, tn)
	owner := testOwner(t)
	echo1 := udpEcho(t, tn.nsB, tn.ipB)
	echo2 := udpEcho(t, tn.nsB, ip2)
	base := medianTo(t, tn, echo2)
	ua, _ := userspacePair(t, tn, owner)
	ms := time.Millisecond
	p1 := netip.PrefixFrom(tn.ipB, 32)
	p2 := netip.PrefixFrom(ip2, 32)
	// Only A is shaped: a one-way delay is the RTT's increase.
	check := func(what string, echo netip.AddrPort, want time.Duration) {
		t.Helper()
		got := medianTo(t, tn, echo)
		tol := rttTolerance(want) + base
		if (got - base - want).Abs() > tol {
			t.Errorf("%s: RTT %v, want %v + base %v ±%v", what, got, want, base, tol)
		} else {
			t.Logf("%s: RTT %v (configured one-way %v, base %v)", what, got, want, base)
		}
	}

	applyRules(t, ua, tn.ifA, []Rule{{Dst: []netip.Prefix{p1}, Impairment: Impairment{Delay: 30 * ms}}})
	check("to the shaped address", echo1, 30*ms)
	check("to the other address", echo2, 0)

	// A per-destination rule before a default: first match wins.
	applyRules(t, ua, tn.ifA, []Rule{
		{Dst: []netip.Prefix{p2}, Impairment: Impairment{Delay: 10 * ms}},
		{Impairment: Impairment{Delay: 30 * ms}},
	})
	check("default", echo1, 30*ms)
	check("rule before the default", echo2, 10*ms)
	if st, ok := ua.Stats(tn.ifA); !ok || st.Sent == 0 {
		t.Errorf("stats %+v", st)
	}
	if n := len(ua.links[tn.ifA].ds); n != 2 {
		t.Errorf("%d readers for two distinct delays", n)
	}

	// An exception without impairment shields its destination from the default.
	applyRules(t, ua, tn.ifA, []Rule{
		{Dst: []netip.Prefix{p2}},
		{Impairment: Impairment{Delay: 20 * ms}},
	})
	check("default after the exception", echo1, 20*ms)
	check("exception", echo2, 0)
	if n := len(ua.links[tn.ifA].ds); n != 1 {
		t.Errorf("%d readers for one delay: the unused one was not stopped", n)
	}

	// Loss for one destination only.
	applyRules(t, ua, tn.ifA, []Rule{{Dst: []netip.Prefix{p1}, Impairment: Impairment{Loss: 100}}})
	if _, lost := probeRTT(t, tn.nsA, echo1, 20, 5*ms); lost != 20 {
		t.Errorf("100%% loss towards %s: %d of 20 lost", tn.ipB, lost)
	}
	if _, lost := probeRTT(t, tn.nsA, echo2, 20, 5*ms); lost != 0 {
		t.Errorf("no loss towards %s: %d of 20 lost", ip2, lost)
	}

	// Rates per destination need the htb tree; changing it keeps one generation only.
	const rate = 10e6
	applyRules(t, ua, tn.ifA, []Rule{{Dst: []netip.Prefix{p1}, Impairment: Impairment{Rate: rate}}})
	got := tcpBulk(t, tn.nsA, tn.nsB, tn.ipB, 4*time.Second, "")
	other := tcpBulk(t, tn.nsA, tn.nsB, ip2, 2*time.Second, "")
	t.Logf("TCP goodput %.2f Mbit/s to the limited address, %.0f Mbit/s to the other", got/1e6, other/1e6)
	if math.Abs(got-rate)/rate > 0.10 {
		t.Errorf("TCP goodput %.2f Mbit/s, want %.0f ±10 %%", got/1e6, rate/1e6)
	}
	if other < 5*rate {
		t.Errorf("the unlimited destination got only %.1f Mbit/s", other/1e6)
	}
	gens := func() map[int]int {
		h, _ := netlink.NewHandleAt(tn.nsA)
		defer h.Close()
		l, _ := h.LinkByName(tn.ifA)
		cs, err := h.ClassList(l, QdiscHandle(owner))
		if err != nil {
			t.Fatal(err)
		}
		out := map[int]int{}
		for _, c := range cs {
			out[genOfMinor(uint16(c.Attrs().Handle))]++
		}
		return out
	}
	first := gens()
	applyRules(t, ua, tn.ifA, []Rule{
		{Dst: []netip.Prefix{p2}, Impairment: Impairment{Rate: 2 * rate}},
		{Dst: []netip.Prefix{p1}, Impairment: Impairment{Rate: rate / 2, Delay: 5 * ms}},
	})
	second := gens()
	if len(first) != 1 || len(second) != 1 || first[0]+first[1] != 2 || second[0]+second[1] != 3 || (first[0] > 0) == (second[0] > 0) {
		t.Errorf("classes by generation: %v then %v; want one generation each, alternating", first, second)
	}
	got = tcpBulk(t, tn.nsA, tn.nsB, tn.ipB, 4*time.Second, "")
	if math.Abs(got-rate/2)/(rate/2) > 0.10 {
		t.Errorf("after the change: TCP goodput %.2f Mbit/s, want %.0f ±10 %%", got/1e6, rate/2e6)
	}
	inv, err := List(context.Background(), owner, InNamespace(tn.nsA))
	if err != nil || len(inv.Qdiscs) != 1 || !strings.Contains(inv.Qdiscs[0], "htb") {
		t.Errorf("inventory %v, %v; want the htb root", inv, err)
	}

	// Back to one rate for everything: a single tbf again.
	applyRules(t, ua, tn.ifA, []Rule{{Impairment: Impairment{Rate: rate}}})
	inv, err = List(context.Background(), owner, InNamespace(tn.nsA))
	if err != nil || len(inv.Qdiscs) != 1 || !strings.Contains(inv.Qdiscs[0], "tbf") {
		t.Errorf("inventory %v, %v; want one tbf", inv, err)
	}

	clearIface(t, ua, tn.ifA)
	assertClean(t, tn.nsA, tn.nameA, owner)
	if after := medianTo(t, tn, echo1); after > base+time.Millisecond {
		t.Errorf("RTT after Clear %v, before shaping %v", after, base)
	}
}
