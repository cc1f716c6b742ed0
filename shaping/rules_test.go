package shaping

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func pfx(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

func TestValidateRules(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name  string
		rules []Rule
		err   string
	}{
		{"empty", nil, ""},
		{"default only", []Rule{{Impairment: Impairment{Delay: ms}}}, ""},
		{"per destination then default", []Rule{{Dst: pfx("10.0.0.1/32"), Impairment: Impairment{Delay: ms}}, {Impairment: Impairment{Loss: 1}}}, ""},
		{"default not last", []Rule{{Impairment: Impairment{Delay: ms}}, {Dst: pfx("10.0.0.1/32")}}, "must be the last"},
		{"prefix twice", []Rule{{Dst: pfx("10.0.0.1/32")}, {Dst: pfx("10.0.0.1/32")}}, "is in rules 1 and 2"},
		{"same after masking", []Rule{{Dst: pfx("10.0.0.0/24")}, {Dst: pfx("10.0.0.7/24")}}, "10.0.0.0/24 is in rules 1 and 2"},
		{"bad impairment", []Rule{{Dst: pfx("10.0.0.1/32"), Impairment: Impairment{Loss: 101}}}, "not within 0-100"},
		{"invalid prefix", []Rule{{Dst: []netip.Prefix{{}}}}, "invalid prefix"},
	} {
		err := ValidateRules(tc.rules)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		case err != nil && !errors.Is(err, ErrInvalidImpairment):
			t.Errorf("%s: %v does not wrap ErrInvalidImpairment", tc.name, err)
		}
	}
}

// TestComposeInvertsSplit: crossing the hops of a split path gives the end-to-end value
// back — the reckon split (half the delay, 1-√(1-L), jitter/√2) composes to what it split.
func TestComposeInvertsSplit(t *testing.T) {
	e2e := Impairment{Delay: 40 * time.Millisecond, Jitter: 4 * time.Millisecond, Loss: 10, Rate: 10e6}
	for hops := 1; hops <= 4; hops++ {
		per := Split(e2e, hops)
		got := Impairment{}
		for range hops {
			got = Compose(got, per)
		}
		if d := got.Delay - e2e.Delay; d.Abs() >= time.Duration(hops) || got.Rate != e2e.Rate {
			t.Errorf("%d hops: composed %v, want %v", hops, got, e2e)
		}
		if d := got.Jitter - e2e.Jitter; d.Abs() > time.Microsecond*time.Duration(hops) {
			t.Errorf("%d hops: jitter %v, want %v", hops, got.Jitter, e2e.Jitter)
		}
		if d := got.Loss - e2e.Loss; d > 1e-6 || d < -1e-6 {
			t.Errorf("%d hops: loss %v, want %v", hops, got.Loss, e2e.Loss)
		}
	}
	if got := Compose(Impairment{Rate: 5e6}, Impairment{Rate: 10e6}); got.Rate != 5e6 {
		t.Errorf("rate %d, want the slower 5e6", got.Rate)
	}
	if got := Compose(Impairment{}, Impairment{Loss: 3}); got.Loss != 3 {
		t.Errorf("loss %v, want 3 unchanged", got.Loss)
	}
}

func TestCombine(t *testing.T) {
	ms := time.Millisecond
	topo := Layer{Name: "topology", Mode: ModeSet, Rules: []Rule{
		{Dst: pfx("10.0.1.2/32"), Impairment: Impairment{}}, // the local client: near
		{Impairment: Impairment{Delay: 40 * ms}},            // everything else: far
	}}
	link := Layer{Name: "link:s2", Mode: ModeSet, Priority: 10, Rules: []Rule{
		{Dst: pfx("10.0.2.1/32"), Impairment: Impairment{Delay: 5 * ms}},
	}}
	fault := Layer{Name: "fault:slow-leader#1", Mode: ModeAdd, Rules: []Rule{
		{Dst: pfx("10.0.2.1/32", "10.0.3.1/32"), Impairment: Impairment{Delay: 100 * ms}},
	}}
	for _, tc := range []struct {
		name   string
		layers []Layer
		want   []Rule
	}{
		{"nothing", nil, nil},
		{"topology alone", []Layer{topo}, []Rule{
			{Dst: pfx("10.0.1.2/32")},
			{Impairment: Impairment{Delay: 40 * ms}},
		}},
		{"a link setting beats the topology for its peer", []Layer{topo, link}, []Rule{
			{Dst: pfx("10.0.1.2/32")},
			{Dst: pfx("10.0.2.1/32"), Impairment: Impairment{Delay: 5 * ms}},
			{Impairment: Impairment{Delay: 40 * ms}},
		}},
		{"a fault adds to whatever decides", []Layer{fault, link, topo}, []Rule{
			{Dst: pfx("10.0.1.2/32")},
			{Dst: pfx("10.0.2.1/32"), Impairment: Impairment{Delay: 105 * ms}},
			{Dst: pfx("10.0.3.1/32"), Impairment: Impairment{Delay: 140 * ms}},
			{Impairment: Impairment{Delay: 40 * ms}},
		}},
		{"a fault alone: unimpaired destinations need no rule", []Layer{fault}, []Rule{
			{Dst: pfx("10.0.2.1/32", "10.0.3.1/32"), Impairment: Impairment{Delay: 100 * ms}},
		}},
		{"ties between set layers go to the higher priority", []Layer{
			{Name: "a", Mode: ModeSet, Rules: []Rule{{Dst: pfx("10.0.2.1/32"), Impairment: Impairment{Loss: 1}}}},
			{Name: "b", Mode: ModeSet, Priority: 1, Rules: []Rule{{Dst: pfx("10.0.2.1/32"), Impairment: Impairment{Loss: 2}}}},
		}, []Rule{{Dst: pfx("10.0.2.1/32"), Impairment: Impairment{Loss: 2}}}},
		{"the more specific prefix wins over priority", []Layer{
			{Name: "a", Mode: ModeSet, Rules: []Rule{{Dst: pfx("10.0.2.1/32"), Impairment: Impairment{Loss: 1}}}},
			{Name: "b", Mode: ModeSet, Priority: 1, Rules: []Rule{{Dst: pfx("10.0.2.0/24"), Impairment: Impairment{Loss: 2}}}},
		}, []Rule{
			{Dst: pfx("10.0.2.1/32"), Impairment: Impairment{Loss: 1}},
			{Dst: pfx("10.0.2.0/24"), Impairment: Impairment{Loss: 2}},
		}},
	} {
		got, err := Combine(tc.layers)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if g, w := rulesString(got), rulesString(tc.want); g != w || len(got) != len(tc.want) {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, g, w)
		}
		if err := ValidateRules(got); err != nil {
			t.Errorf("%s: combined rules invalid: %v", tc.name, err)
		}
	}
	if _, err := Combine([]Layer{{Name: "x", Mode: "mul"}}); err == nil || !strings.Contains(err.Error(), "valid are set, add") {
		t.Errorf("bad mode: %v", err)
	}
	big := Layer{Name: "big", Mode: ModeAdd, Rules: []Rule{{Impairment: Impairment{Delay: MaxDelay}}}}
	if _, err := Combine([]Layer{big, big}); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("two layers of MaxDelay: %v", err)
	}
}

// TestRuleJSON: rules travel to the agents as JSON with readable prefixes.
func TestRuleJSON(t *testing.T) {
	r := Rule{Dst: pfx("10.0.1.2/32"), Impairment: Impairment{Delay: 20 * time.Millisecond, Loss: 5, Rate: 1e6}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"dst":["10.0.1.2/32"],"delay":20000000,"loss":5,"rate":1000000}`; string(b) != want {
		t.Errorf("json %s, want %s", b, want)
	}
	var back Rule
	if err := json.Unmarshal(b, &back); err != nil || back.String() != r.String() {
		t.Errorf("round trip %v (%v), want %v", back, err, r)
	}
}

// TestBuildTree checks the tc objects of a per-destination tree: one htb class per
// distinct leaf, leaves that implement what the backend leaves to tc, filters in rule
// order with the match-all last, and the generations apart.
func TestBuildTree(t *testing.T) {
	ms := time.Millisecond
	handle := QdiscHandle("run1")
	major := uint16(handle >> 16)
	rules := []Rule{
		{Dst: pfx("10.0.2.1/32", "fd00::2/127"), Impairment: Impairment{Delay: 40 * ms, Rate: 10e6}},
		{Dst: pfx("10.0.1.2/32")}, // unimpaired, shielded from the default
		{Dst: pfx("10.0.3.0/24"), Impairment: Impairment{Delay: 40 * ms, Rate: 10e6}},
		{Impairment: Impairment{Loss: 1, Rate: 1e6}},
	}

	// netem: three distinct impairments, the unimpaired one without a leaf.
	plan, err := planTree(rules, treeNetem)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.leaves) != 3 || plan.def != 2 {
		t.Fatalf("plan %+v: want 3 classes, default class 2", plan)
	}
	if _, uniform := plan.uniform(); uniform {
		t.Error("a per-destination plan called uniform")
	}
	for gen := range 2 {
		o := buildTree(5, 1500, handle, gen, plan, treeNetem)
		if a := o.root.Attrs(); a.Handle != handle || a.Parent != netlink.HANDLE_ROOT || o.root.Defcls != 0 {
			t.Errorf("root %+v defcls %d: want %s at the root, no default class", a, o.root.Defcls, netlink.HandleStr(handle))
		}
		if len(o.classes) != 3 || len(o.leaves) != 2 {
			t.Fatalf("gen %d: %d classes, %d leaves; want 3 and 2", gen, len(o.classes), len(o.leaves))
		}
		for i, c := range o.classes {
			minor := uint16(c.Handle)
			if c.Handle>>16 != uint32(major) || c.Parent != handle || genOfMinor(minor) != gen || minor&0x7f != uint16(i+1) {
				t.Errorf("gen %d class %d: %s parent %s", gen, i, netlink.HandleStr(c.Handle), netlink.HandleStr(c.Parent))
			}
			if c.Rate != unlimitedBit/8 || c.Ceil != unlimitedBit/8 {
				t.Errorf("class %d rate %d ceil %d: a classifier's class must not limit", i, c.Rate, c.Ceil)
			}
		}
		n0 := o.leaves[0].(*netlink.Netem)
		if n0.Parent != o.classes[0].Handle || n0.Handle>>16 != uint32(leafMajor|classMinor(gen, 0)) {
			t.Errorf("leaf 0 %s under %s", netlink.HandleStr(n0.Handle), netlink.HandleStr(n0.Parent))
		}
		if n0.Latency != uint32(40000*netlink.TickInUsec()) || n0.Rate64 != 1_250_000 {
			t.Errorf("leaf 0 latency %d rate %d", n0.Latency, n0.Rate64)
		}
		if n1 := o.leaves[1].(*netlink.Netem); n1.Parent != o.classes[2].Handle || n1.Loss != netlink.Percentage2u32(1) {
			t.Errorf("leaf 1 %+v: want loss 1%% under the default class", n1)
		}
		// Filters: 10.0.2.1, fd00::2/127, 10.0.1.2, 10.0.3.0/24, then match-all.
		if len(o.filters) != 5 {
			t.Fatalf("%d filters", len(o.filters))
		}
		wantClass := []int{0, 0, 1, 0, 2}
		for i, f := range o.filters {
			if f.Priority != filterBase(gen)+uint16(i) && i < 4 {
				t.Errorf("filter %d prio %#x", i, f.Priority)
			}
			if f.ClassId != o.classes[wantClass[i]].Handle {
				t.Errorf("filter %d to %s, want class %d", i, netlink.HandleStr(f.ClassId), wantClass[i])
			}
			if f.Parent != handle || f.Sel.Flags&0x1 == 0 {
				t.Errorf("filter %d parent %s flags %#x", i, netlink.HandleStr(f.Parent), f.Sel.Flags)
			}
		}
		last := o.filters[4]
		if last.Protocol != unix.ETH_P_ALL || last.Priority != filterBase(gen)+filterSpan-1 || len(last.Sel.Keys) != 1 || last.Sel.Keys[0].Mask != 0 {
			t.Errorf("match-all %+v", last)
		}
	}

	// userspace: the tree only carries rates; delay and loss are iptables' business.
	plan, err = planTree(rules, treeRate)
	if err != nil {
		t.Fatal(err)
	}
	o := buildTree(5, 1500, handle, 0, plan, treeRate)
	if len(o.classes) != 3 || len(o.leaves) != 2 {
		t.Fatalf("rate tree: %d classes, %d leaves", len(o.classes), len(o.leaves))
	}
	if tb := o.leaves[0].(*netlink.Tbf); tb.Rate != 1_250_000 || tb.Parent != o.classes[0].Handle {
		t.Errorf("tbf leaf %+v", tb)
	}
	// One rate for everything needs no tree.
	plan, _ = planTree([]Rule{{Dst: pfx("10.0.0.1/32"), Impairment: Impairment{Delay: ms, Rate: 1e6}}, {Impairment: Impairment{Rate: 1e6}}}, treeRate)
	if leaf, uniform := plan.uniform(); !uniform || leaf.Rate != 1e6 {
		t.Errorf("uniform rate: %v %v", leaf, uniform)
	}
}

func TestU32Keys(t *testing.T) {
	be := binary.BigEndian.Uint32
	for _, tc := range []struct {
		dst   string
		proto uint16
		keys  [][3]uint32 // mask, value, offset
	}{
		{"10.0.2.1/32", unix.ETH_P_IP, [][3]uint32{{0xffffffff, be([]byte{10, 0, 2, 1}), 16}}},
		{"10.0.2.0/23", unix.ETH_P_IP, [][3]uint32{{0xfffffe00, be([]byte{10, 0, 2, 0}), 16}}},
		{"0.0.0.0/0", unix.ETH_P_IP, [][3]uint32{{0, 0, 16}}},
		{"fd00::2/128", unix.ETH_P_IPV6, [][3]uint32{{0xffffffff, 0xfd000000, 24}, {0xffffffff, 0, 28}, {0xffffffff, 0, 32}, {0xffffffff, 2, 36}}},
		{"fd00:1:2::/48", unix.ETH_P_IPV6, [][3]uint32{{0xffffffff, 0xfd000001, 24}, {0xffff0000, 0x00020000, 28}}},
		{"fd00::/64", unix.ETH_P_IPV6, [][3]uint32{{0xffffffff, 0xfd000000, 24}, {0xffffffff, 0, 28}}},
	} {
		f := u32Dst(3, QdiscHandle("x"), 0x100, netip.MustParsePrefix(tc.dst), 0xd7010001)
		if f.Protocol != tc.proto {
			t.Errorf("%s: protocol %#x", tc.dst, f.Protocol)
		}
		var got [][3]uint32
		for _, k := range f.Sel.Keys {
			got = append(got, [3]uint32{k.Mask, k.Val, uint32(k.Off)})
		}
		if len(got) != len(tc.keys) {
			t.Errorf("%s: keys %x, want %x", tc.dst, got, tc.keys)
			continue
		}
		for i := range got {
			if got[i] != tc.keys[i] {
				t.Errorf("%s: keys %x, want %x", tc.dst, got, tc.keys)
				break
			}
		}
	}
}
