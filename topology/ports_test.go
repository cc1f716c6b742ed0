package topology

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/ovs"
)

// TestDropPortValidates: bad arguments are refused before anything is installed, with
// errors that say what is valid (no OVS needed: nothing is reached).
func TestDropPortValidates(t *testing.T) {
	spec, err := Build("simple", BuildOptions{Servers: 3, Clients: 1})
	if err != nil {
		t.Fatal(err)
	}
	live := &Live{Spec: spec, State: &State{RunID: "abc123", Spec: spec}}
	ctx := context.Background()
	for _, c := range []struct {
		node, proto string
		port        int
		want        string
	}{
		{"s9", "tcp", 2379, "valid nodes are s1, s2, s3, c1"},
		{"s2", "tcp", 0, "1 to 65535"},
		{"s2", "udp", 65536, "1 to 65535"},
		{"s2", "icmp", 2379, "want tcp, udp, or empty"},
		{"s2", "TCP", 2379, "want tcp, udp, or empty"},
	} {
		_, err := live.DropPort(ctx, c.node, c.proto, c.port, "")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("DropPort(%s, %q, %d): %v, want an error saying %q", c.node, c.proto, c.port, err, c.want)
		}
	}
	flows, err := live.PortFlows("s2", "", 2379)
	if err != nil || len(flows) != 2 {
		t.Fatalf("both protocols: %v %v", flows, err)
	}
	n, _ := spec.Node("s2")
	for i, p := range PortProtos {
		if want := ovs.DropPort(n.IP, p, 2379); flows[i] != want {
			t.Errorf("flow %d = %q, want %q", i, flows[i], want)
		}
	}
	if PortOwner("s2", "", 2379) == PortOwner("s2", "tcp", 2379) {
		t.Errorf("a drop of both protocols must not share its default owner with a drop of tcp")
	}
}

// eventually retries probe for up to 3 s: on a loaded host the first packets of a flow
// wait for ovs-vswitchd's upcall handler, which must not read as a drop.
func eventually(probe func() error) error {
	err := probe()
	for deadline := time.Now().Add(3 * time.Second); err != nil && time.Now().Before(deadline); {
		err = probe()
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// runRules counts the rules of the run on every bridge, and of them those of cookie.
func runRules(t *testing.T, live *Live, cookie ovs.Cookie) (run, mine int) {
	t.Helper()
	for _, br := range live.State.Bridges {
		flows, err := live.OVS.DumpFlows(context.Background(), br)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range flows {
			if strings.Contains(f, fmt.Sprintf("cookie=%#x,", uint64(cookie))) {
				mine++
			}
			var c uint64
			if _, err := fmt.Sscanf(f, "cookie=%v,", &c); err == nil && ovs.Cookie(c)&^0xffffffff == ovs.RunCookiePrefix(live.State.RunID) {
				run++
			}
		}
	}
	return run, mine
}

// TestDropPort: with s2's tcp/2379 dropped, nobody outside s2 can use it, everything else
// flows, s2 still reaches itself; heals by cookie and by HealAll; coexists with a
// partition and with another owner's drop of the same port. Real traffic throughout.
func TestDropPort(t *testing.T) {
	needRoot(t)
	testRuntimeDir(t)
	live := upSimple(t, 3, 1)
	ctx := context.Background()
	s2, _ := live.Spec.Node("s2")
	tcpServeAt(t, live, "s2", 2379)
	tcpServeAt(t, live, "s2", 2380)
	reach := func(src string, port int) error { return tcpRoundTrip(live, src, s2.IP, port) }
	mustReach := func(when, src string, port int) {
		t.Helper()
		if err := eventually(func() error { return reach(src, port) }); err != nil {
			t.Errorf("%s: %s -> s2:%d: %v, want a round trip", when, src, port, err)
		}
	}
	mustTimeOut := func(when, src string, port int) {
		t.Helper()
		if err := reach(src, port); !isTimeout(err) {
			t.Errorf("%s: %s -> s2:%d: %v, want a timeout", when, src, port, err)
		}
	}
	for _, src := range []string{"c1", "s1", "s3", "s2"} {
		mustReach("before", src, 2379)
		mustReach("before", src, 2380)
	}
	// A connection established before the drop.
	est, err := tcpDial(live, "c1", s2.IP, 2379)
	if err != nil {
		t.Fatal(err)
	}
	defer est.Close()
	if err := echoOnce(est, 3*time.Second); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	cookie, err := live.DropPort(ctx, "s2", "tcp", 2379, "")
	if err != nil {
		t.Fatal(err)
	}
	installed := time.Since(start)
	if want := ovs.NewCookie(live.State.RunID, PortOwner("s2", "tcp", 2379)); cookie != want {
		t.Errorf("cookie %#x, want the default owner's %#x", cookie, want)
	}
	if run, mine := runRules(t, live, cookie); mine != len(live.State.Bridges) || run != mine {
		t.Errorf("after DropPort: %d rules with its cookie, %d of the run, want %d and %d", mine, run, len(live.State.Bridges), len(live.State.Bridges))
	}
	mustTimeOut("dropped", "c1", 2379)
	mustTimeOut("dropped", "s1", 2379)
	mustReach("dropped 2379", "c1", 2380)
	mustReach("dropped 2379", "s1", 2380)
	mustReach("dropped 2379, from inside s2", "s2", 2379)
	if !udpReachAt(t, live, "c1", "s2", 2379) || !udpReachAt(t, live, "s1", "s2", 7001) {
		t.Errorf("dropping tcp/2379 dropped UDP")
	}

	if err := echoOnce(est, 400*time.Millisecond); !isTimeout(err) {
		t.Errorf("connection established before the drop: %v, want it stalled", err)
	}

	start = time.Now()
	if err := live.Heal(ctx, cookie); err != nil {
		t.Fatal(err)
	}
	healed := time.Since(start)
	start = time.Now()
	mustReach("healed", "c1", 2379)
	firstConnect := time.Since(start)
	mustReach("healed", "s1", 2379)
	// The stalled byte is retransmitted with TCP's backoff; the connection recovers.
	if err := echoOnce(est, 5*time.Second); err != nil {
		t.Errorf("connection established before the drop, after heal: %v", err)
	}
	if run, _ := runRules(t, live, cookie); run != 0 {
		t.Errorf("after Heal: %d rules of the run left", run)
	}
	t.Logf("DropPort returned in %v, Heal in %v; first connect after heal took %v", installed, healed, firstConnect)

	// Both protocols, removed by HealAll (what `dt heal` without arguments and a run's end do).
	if _, err := live.DropPort(ctx, "s2", "", 2379, ""); err != nil {
		t.Fatal(err)
	}
	mustTimeOut("tcp+udp dropped", "c1", 2379)
	if udpReachAt(t, live, "c1", "s2", 2379) {
		t.Errorf("tcp+udp dropped: UDP c1 -> s2:2379 still arrives")
	}
	if !udpReachAt(t, live, "c1", "s2", 7001) {
		t.Errorf("tcp+udp/2379 dropped: UDP to another port dropped too")
	}
	if !udpReachFrom(t, live, "s2", 2379, "c1", 7001) {
		t.Errorf("dropping s2's udp/2379 dropped datagrams s2 sends from that port")
	}
	if err := live.HealAll(ctx); err != nil {
		t.Fatal(err)
	}
	if run, _ := runRules(t, live, 0); run != 0 {
		t.Errorf("after HealAll: %d rules of the run left", run)
	}
	mustReach("after HealAll", "c1", 2379)
	if !udpReachAt(t, live, "c1", "s2", 2379) {
		t.Errorf("after HealAll: UDP c1 -> s2:2379 still dropped")
	}

	// With a partition: each heal removes only its own rules.
	pc, err := live.Partition(ctx, Cut{A: []string{"s1"}, B: []string{"s2"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	dc, err := live.DropPort(ctx, "s2", "tcp", 2379, "")
	if err != nil {
		t.Fatal(err)
	}
	mustTimeOut("partition s1|s2 and drop", "s1", 2380)
	mustTimeOut("partition s1|s2 and drop", "c1", 2379)
	if err := live.Heal(ctx, pc); err != nil {
		t.Fatal(err)
	}
	mustReach("partition healed, drop kept", "s1", 2380)
	mustTimeOut("partition healed, drop kept", "s1", 2379)

	// Two owners of the same drop: the port stays dropped until both heal. The later one
	// heals first: were the two one rule, it would carry the later cookie by now.
	other, err := live.DropPort(ctx, "s2", "tcp", 2379, "other-fault")
	if err != nil {
		t.Fatal(err)
	}
	if err := live.Heal(ctx, other); err != nil {
		t.Fatal(err)
	}
	mustTimeOut("one of two owners healed", "c1", 2379)
	if err := live.Heal(ctx, dc); err != nil {
		t.Fatal(err)
	}
	mustReach("both owners healed", "c1", 2379)
}

// BenchmarkDropPort times DropPort and Heal on the simple star (one bridge).
//
//	go test -run '^$' -bench DropPort -benchtime 20x ./topology/
func BenchmarkDropPort(b *testing.B) {
	benchNeedRoot(b)
	testRuntimeDir(b)
	live := upSimple(b, 3, 1)
	ctx := context.Background()
	var drop, heal []time.Duration
	for b.Loop() {
		start := time.Now()
		c, err := live.DropPort(ctx, "s2", "tcp", 2379, "")
		if err != nil {
			b.Fatal(err)
		}
		drop = append(drop, time.Since(start))
		start = time.Now()
		if err := live.Heal(ctx, c); err != nil {
			b.Fatal(err)
		}
		heal = append(heal, time.Since(start))
	}
	slices.Sort(drop)
	slices.Sort(heal)
	b.ReportMetric(float64(drop[len(drop)/2].Microseconds())/1000, "drop-p50-ms")
	b.ReportMetric(float64(heal[len(heal)/2].Microseconds())/1000, "heal-p50-ms")
}
