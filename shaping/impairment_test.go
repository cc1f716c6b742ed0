package shaping

import (
	"errors"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func TestImpairmentValidate(t *testing.T) {
	for _, tc := range []struct {
		imp  Impairment
		want string // substring of the error; "" = valid
	}{
		{Impairment{}, ""},
		{Impairment{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Loss: 10, Rate: 10e6}, ""},
		{Impairment{Delay: 5 * time.Millisecond, Jitter: 10 * time.Millisecond}, ""}, // clamped at 0, as netem
		{Impairment{Loss: 100}, ""},
		{Impairment{Delay: -1}, "negative"},
		{Impairment{Jitter: time.Millisecond}, "needs a non-zero delay"},
		{Impairment{Loss: 100.5}, "not within 0-100"},
		{Impairment{Loss: math.NaN()}, "not within 0-100"},
		{Impairment{Rate: 100}, "below"},
		{Impairment{Delay: 2 * time.Minute}, "exceeds"},
	} {
		err := tc.imp.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", tc.imp, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: error %v, want one containing %q", tc.imp, err, tc.want)
		case tc.want != "" && !errors.Is(err, ErrInvalidImpairment):
			t.Errorf("%+v: error %v does not wrap ErrInvalidImpairment", tc.imp, err)
		}
	}
}

func TestImpairmentString(t *testing.T) {
	for imp, want := range map[Impairment]string{
		{}: "none",
		{Delay: 20 * time.Millisecond, Jitter: 2 * time.Millisecond, Loss: 10, Rate: 10e6}: "delay 20ms jitter 2ms loss 10% rate 10Mbit",
		{Rate: 1500}: "rate 1500bit",
	} {
		if got := imp.String(); got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
}

func TestSplit(t *testing.T) {
	per := SplitEndToEnd(40*time.Millisecond, 10*time.Millisecond, 19)
	if per.Delay != 20*time.Millisecond {
		t.Errorf("delay per hop %v, want 20ms", per.Delay)
	}
	jit := float64(10 * time.Millisecond)
	if want := time.Duration(jit / math.Sqrt2); per.Jitter != want {
		t.Errorf("jitter per hop %v, want %v", per.Jitter, want)
	}
	// Two hops of 10% loss each let 0.9² = 81% through: 19% end to end.
	if math.Abs(per.Loss-10) > 1e-9 {
		t.Errorf("loss per hop %v%%, want 10%%", per.Loss)
	}
	// Variance adds up to the end-to-end one.
	if got := 2 * math.Pow(float64(per.Jitter), 2); math.Abs(got-math.Pow(float64(10*time.Millisecond), 2))/got > 1e-6 {
		t.Errorf("summed jitter variance %v", got)
	}
	e2e := Impairment{Delay: 30 * time.Millisecond, Loss: 5, Rate: 1e6}
	if got := Split(e2e, 1); got != e2e {
		t.Errorf("Split(e2e, 1) = %+v, want unchanged", got)
	}
	three := Split(e2e, 3)
	if three.Delay != 10*time.Millisecond || three.Rate != 1e6 {
		t.Errorf("Split(e2e, 3) = %+v", three)
	}
	if through := math.Pow(1-three.Loss/100, 3); math.Abs(through-0.95) > 1e-9 {
		t.Errorf("three hops let %v through, want 0.95", through)
	}
	if got := SplitEndToEnd(0, 0, 0); !got.IsZero() {
		t.Errorf("split of nothing = %+v", got)
	}
}

func TestOwnerTags(t *testing.T) {
	owner := "etcd-simple-uniform-leader/20250101T000000Z"
	if err := validOwner(owner); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "has space", `quo"te`, strings.Repeat("x", 201)} {
		if err := validOwner(bad); !errors.Is(err, ErrInvalidOwner) {
			t.Errorf("validOwner(%q) = %v, want ErrInvalidOwner", bad, err)
		}
	}
	chain := ChainName(owner, "abcdefghijklmno") // longest interface name
	if len(chain) > 28 {
		t.Errorf("chain %q has %d characters, iptables allows 28", chain, len(chain))
	}
	if !strings.HasPrefix(chain, "DT-"+OwnerHash(owner)+"-") {
		t.Errorf("chain %q lacks the owner prefix", chain)
	}
	h := QdiscHandle(owner)
	if h>>24 != 0xd7 || h&0xffff != 0 {
		t.Errorf("handle %s, want d7XX:", netlink.HandleStr(h))
	}
	first, last := QueueRange(owner)
	if first < queueBlock || first%queueBlock != 0 || last-first != queueBlock-1 {
		t.Errorf("queue range %d-%d", first, last)
	}
	if f2, _ := QueueRange(owner + "x"); f2 == first {
		t.Logf("note: owners %q and %q share a queue block", owner, owner+"x")
	}
}

func TestChainRules(t *testing.T) {
	chain := "-A DT-" + OwnerHash("run1") + "-eth0 "
	tag := "-m comment --comment dt:run1 "
	q := func(n uint16) func(int) (uint16, bool) { return func(int) (uint16, bool) { return n, true } }
	got := chainRules("run1", "eth0", familyIPv4, []Rule{{Impairment: Impairment{Delay: time.Millisecond, Loss: 10}}}, q(4096))
	want := []string{
		chain + "-m mark --mark 0xd7000000/0xff000000 " + tag + "-j RETURN",
		chain + "-m statistic --mode random --probability 0.1 " + tag + "-j MARK --set-xmark 0xd6000000/0xff000000",
		chain + tag + "-j NFQUEUE --queue-num 4096",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, r := range got {
		if strings.Contains(r, "bypass") || strings.Contains(r, "DROP") {
			t.Errorf("rule %q bypasses the queue or drops in the kernel", r)
		}
	}
	// Loss alone: only the marked packets go to the queue.
	got = chainRules("run1", "eth0", familyIPv4, []Rule{{Impairment: Impairment{Loss: 100}}}, q(4096))
	want = []string{
		chain + "-m mark --mark 0xd7000000/0xff000000 " + tag + "-j RETURN",
		chain + tag + "-j MARK --set-xmark 0xd6000000/0xff000000",
		chain + "-m mark --mark 0xd6000000/0xff000000 " + tag + "-j NFQUEUE --queue-num 4096",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("100%% loss rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestChainRulesPerDestination: first match wins, so every rule that does not queue a
// packet returns it; prefixes go to their own family's chain; the default rule applies to
// both families.
func TestChainRulesPerDestination(t *testing.T) {
	chain := "-A DT-" + OwnerHash("run1") + "-eth0 "
	tag := "-m comment --comment dt:run1 "
	rules := []Rule{
		{Dst: []netip.Prefix{netip.MustParsePrefix("10.0.1.2/32"), netip.MustParsePrefix("fd00::2/128")}, Impairment: Impairment{Delay: 50 * time.Millisecond}},
		{Dst: []netip.Prefix{netip.MustParsePrefix("10.0.1.3/32")}, Impairment: Impairment{Loss: 5}},
		{Dst: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24")}},
		{Impairment: Impairment{Delay: 20 * time.Millisecond}},
	}
	queues := []uint16{4097, 4097, 0, 4098}
	queue := func(i int) (uint16, bool) { return queues[i], queues[i] != 0 }
	got := chainRules("run1", "eth0", familyIPv4, rules, queue)
	want := []string{
		chain + "-m mark --mark 0xd7000000/0xff000000 " + tag + "-j RETURN",
		chain + "-d 10.0.1.2/32 " + tag + "-j NFQUEUE --queue-num 4097",
		chain + "-d 10.0.1.3/32 -m statistic --mode random --probability 0.05 " + tag + "-j MARK --set-xmark 0xd6000000/0xff000000",
		chain + "-d 10.0.1.3/32 -m mark --mark 0xd6000000/0xff000000 " + tag + "-j NFQUEUE --queue-num 4097",
		chain + "-d 10.0.1.3/32 " + tag + "-j RETURN",
		chain + "-d 10.0.1.0/24 " + tag + "-j RETURN",
		chain + tag + "-j NFQUEUE --queue-num 4098",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ipv4 rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	got = chainRules("run1", "eth0", familyIPv6, rules, queue)
	want = []string{
		chain + "-m mark --mark 0xd7000000/0xff000000 " + tag + "-j RETURN",
		chain + "-d fd00::2/128 " + tag + "-j NFQUEUE --queue-num 4097",
		chain + tag + "-j NFQUEUE --queue-num 4098",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ipv6 rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseSave(t *testing.T) {
	out := `# Generated by iptables-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [0:0]
-A INPUT -j DT-aaaaaaaa-x
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DT-1234abcd-eth0 - [0:0]
-A POSTROUTING -o eth0 -m comment --comment "dt:run1" -j DT-1234abcd-eth0
-A POSTROUTING -o eth1 -m comment --comment "some \"other\" rule" -j ACCEPT
-A DT-1234abcd-eth0 -m comment --comment "dt:run1" -j NFQUEUE --queue-num 4096
COMMIT
`
	st := parseSave(out)
	if want := []string{"PREROUTING", "POSTROUTING", "DT-1234abcd-eth0"}; strings.Join(st.chains, ",") != strings.Join(want, ",") {
		t.Errorf("chains %q, want %q (filter table ignored)", st.chains, want)
	}
	if len(st.rules) != 3 {
		t.Fatalf("rules %+v", st.rules)
	}
	r := st.rules[0]
	if r.chain != "POSTROUTING" || r.target != "DT-1234abcd-eth0" || r.comment != "dt:run1" ||
		r.spec != `-o eth0 -m comment --comment "dt:run1" -j DT-1234abcd-eth0` {
		t.Errorf("rule %+v", r)
	}
	if st.rules[1].comment != `some "other" rule` {
		t.Errorf("quoted comment %q", st.rules[1].comment)
	}
	body := removalBody(st, func(c string) bool { return strings.HasPrefix(c, "DT-1234abcd-") }, "dt:run1")
	want := []string{
		`-D POSTROUTING -o eth0 -m comment --comment "dt:run1" -j DT-1234abcd-eth0`,
		"-F DT-1234abcd-eth0", "-X DT-1234abcd-eth0",
	}
	if strings.Join(body, "\n") != strings.Join(want, "\n") {
		t.Errorf("removal:\n%s\nwant:\n%s", strings.Join(body, "\n"), strings.Join(want, "\n"))
	}
}

func TestBuildNetem(t *testing.T) {
	imp := Impairment{Delay: 20 * time.Millisecond, Jitter: 2 * time.Millisecond, Loss: 10, Rate: 10e6}
	handle := QdiscHandle("run1")
	q := buildNetem(7, handle, imp)
	if a := q.Attrs(); a.LinkIndex != 7 || a.Handle != handle || a.Parent != netlink.HANDLE_ROOT {
		t.Errorf("attrs %+v, want link 7, handle %s, root", a, netlink.HandleStr(handle))
	}
	if q.Type() != "netem" {
		t.Errorf("kind %q", q.Type())
	}
	// The kernel counts delay in scheduler ticks, loss as a fraction of 2³², rate in bytes/s.
	tick := netlink.TickInUsec()
	if want := uint32(20000 * tick); q.Latency != want {
		t.Errorf("latency %d ticks, want %d", q.Latency, want)
	}
	if want := uint32(2000 * tick); q.Jitter != want {
		t.Errorf("jitter %d ticks, want %d", q.Jitter, want)
	}
	if want := netlink.Percentage2u32(10); q.Loss != want {
		t.Errorf("loss %d, want %d", q.Loss, want)
	}
	if q.Rate64 != 1_250_000 {
		t.Errorf("rate %d B/s, want 1250000", q.Rate64)
	}
	if q.Limit < 64 {
		t.Errorf("limit %d", q.Limit)
	}
	if got := buildNetem(1, handle, Impairment{Delay: 50 * time.Millisecond}).Limit; got != 5000 {
		t.Errorf("limit for 50 ms without rate = %d, want 5000 (100 kpkt/s)", got)
	}
	if got := buildNetem(1, handle, Impairment{Loss: 1}).Limit; got != 1000 {
		t.Errorf("limit without delay = %d, want the default 1000", got)
	}
}

func TestBuildTbf(t *testing.T) {
	handle := QdiscHandle("run1")
	q := buildTbf(3, 1500, handle, 10e6)
	if a := q.Attrs(); a.LinkIndex != 3 || a.Handle != handle || a.Parent != netlink.HANDLE_ROOT {
		t.Errorf("attrs %+v", a)
	}
	if q.Rate != 1_250_000 {
		t.Errorf("rate %d B/s", q.Rate)
	}
	burst := netlink.Xmitsize(q.Rate, q.Buffer)
	if burst < 4900 || burst > 5100 { // 4 ms at 1.25 MB/s
		t.Errorf("burst %d bytes, want about 5000", burst)
	}
	if want := uint32(5000 + 62500); q.Limit != want {
		t.Errorf("limit %d, want %d (burst + 50 ms)", q.Limit, want)
	}
	if slow := buildTbf(3, 1500, handle, 100e3); netlink.Xmitsize(slow.Rate, slow.Buffer) < 2*1514-10 {
		t.Errorf("slow link burst %d, want two full frames", netlink.Xmitsize(slow.Rate, slow.Buffer))
	}
}

func TestFlowKey(t *testing.T) {
	v4 := func(proto byte, sport, dport uint16, frag bool) []byte {
		p := make([]byte, 28)
		p[0] = 0x45
		p[9] = proto
		copy(p[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
		if frag {
			p[6] = 0x20
		}
		p[20], p[21], p[22], p[23] = byte(sport>>8), byte(sport), byte(dport>>8), byte(dport)
		return p
	}
	a := flowKey(v4(6, 1000, 80, false))
	if a == 0 || a != flowKey(v4(6, 1000, 80, false)) {
		t.Error("same flow, different keys")
	}
	if a == flowKey(v4(6, 1001, 80, false)) {
		t.Error("different ports, same key")
	}
	if a == flowKey(v4(17, 1000, 80, false)) {
		t.Error("different protocol, same key")
	}
	if flowKey(v4(17, 1, 2, true)) != flowKey(v4(17, 3, 4, true)) {
		t.Error("fragments of one datagram must share a key whatever their bytes")
	}
	v6 := make([]byte, 48)
	v6[0] = 0x60
	v6[6] = 17
	if flowKey(v6) == 0 {
		t.Error("IPv6 flow key is zero")
	}
	if flowKey(nil) != 0 || flowKey([]byte{0x45}) != 0 {
		t.Error("short packets must fall back to flow 0")
	}
}
