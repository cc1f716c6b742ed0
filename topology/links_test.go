package topology

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/shaping"
)

const msec = time.Millisecond

func TestLinkOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		o   LinkOptions
		err string
	}{
		{LinkOptions{}, ""},
		{LinkOptions{Latency: 20 * msec, Jitter: 0.1, Loss: 5, Bandwidth: 10e6}, ""},
		{LinkOptions{Latency: -msec}, "--link-latency -1: want 0..60000"},
		{LinkOptions{Latency: 2 * time.Minute}, "--link-latency 120000: want 0..60000"},
		{LinkOptions{Latency: msec, Jitter: 2}, "--link-jitter 2: want 0..1"},
		{LinkOptions{Jitter: 0.5}, "needs a --link-latency"},
		{LinkOptions{Loss: 100}, "--link-loss 100: want 0..100, below 100"},
		{LinkOptions{Loss: -1}, "--link-loss -1"},
		{LinkOptions{Bandwidth: 100}, "--link-bandwidth 100 bit/s: want 0 (unlimited) or at least 8000"},
	} {
		err := tc.o.Validate()
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.err)
		}
	}
	if _, err := Build("simple", BuildOptions{Servers: 3, Clients: 1, Link: LinkOptions{Loss: 200}}); err == nil || !strings.Contains(err.Error(), "--link-loss 200") {
		t.Errorf("Build with bad link options: %v", err)
	}
}

// TestSimpleLinks: reckon's split puts half of each end-to-end value on each node's link,
// and every path between two nodes adds back up to the end-to-end value, realised on the
// sender's egress as one default rule.
func TestSimpleLinks(t *testing.T) {
	o := LinkOptions{Latency: 20 * msec, Jitter: 0.1, Loss: 10, Bandwidth: 10e6}
	s, err := Build("simple", BuildOptions{Servers: 3, Clients: 1, Link: o})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := s.Node("s1")
	if n.Link.Delay != 10*msec || n.Link.Rate != 10e6 || n.Link.Loss < 5.13 || n.Link.Loss > 5.14 {
		t.Errorf("s1's link %v: want half of %v per link", n.Link, o.EndToEnd())
	}
	want := o.EndToEnd()
	for _, pair := range [][2]string{{"s1", "s2"}, {"c1", "s3"}, {"s3", "c1"}} {
		got, err := s.Path(pair[0], pair[1])
		if err != nil {
			t.Fatal(err)
		}
		if got.Delay != want.Delay || got.Jitter != want.Jitter || got.Rate != want.Rate || got.Loss-want.Loss > 1e-6 || want.Loss-got.Loss > 1e-6 {
			t.Errorf("path %s: %v, want %v", pair, got, want)
		}
	}
	rules, err := s.EgressRules("s1")
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 1 || !rules[0].IsDefault() || rules[0].Delay != 20*msec {
		t.Errorf("s1's egress rules %v: want one default rule with the end-to-end value", rules)
	}
	plain, _ := Build("simple", BuildOptions{Servers: 3, Clients: 1})
	if plain.HasImpairments() {
		t.Error("simple without link options has impairments")
	}
	if r, _ := plain.EgressRules("s1"); r != nil {
		t.Errorf("rules without impairments: %v", r)
	}
}

// TestWanLinks: sites are near inside and far apart; a client's local server is
// unimpaired, every other node gets the end-to-end value.
func TestWanLinks(t *testing.T) {
	s, err := Build("wan", BuildOptions{Servers: 3, Clients: 1, Link: LinkOptions{Latency: 40 * msec}})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Servers()) != 3 || len(s.Clients()) != 3 || len(s.Switches) != 4 {
		t.Fatalf("wan 3: %d servers, %d clients, %d switches", len(s.Servers()), len(s.Clients()), len(s.Switches))
	}
	for _, tc := range []struct {
		a, b string
		want time.Duration
	}{{"c1", "s1", 0}, {"s1", "c1", 0}, {"c1", "s2", 40 * msec}, {"s1", "s3", 40 * msec}, {"c3", "c2", 40 * msec}} {
		got, err := s.Path(tc.a, tc.b)
		if err != nil || got.Delay != tc.want || got.Jitter != 0 || got.Loss != 0 {
			t.Errorf("path %s -> %s: %v (%v), want delay %v", tc.a, tc.b, got, err, tc.want)
		}
	}
	rules, err := s.EgressRules("c2")
	if err != nil {
		t.Fatal(err)
	}
	want := []shaping.Rule{
		{Dst: []netip.Prefix{netip.MustParsePrefix("10.0.2.1/32")}},
		{Impairment: shaping.Impairment{Delay: 40 * msec}},
	}
	if len(rules) != 2 || rules[0].String() != want[0].String() || rules[1].String() != want[1].String() {
		t.Errorf("c2's rules %v, want %v", rules, want)
	}
	if err := shaping.ValidateRules(rules); err != nil {
		t.Error(err)
	}
	for _, tc := range []struct {
		o   BuildOptions
		err string
	}{
		{BuildOptions{Servers: 0, Clients: 1}, "--number-nodes 0: want 1..50"},
		{BuildOptions{Servers: 51, Clients: 1}, "want 1..50"},
		{BuildOptions{Servers: 3, Clients: 2}, "one client per site"},
	} {
		if _, err := Build("wan", tc.o); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("wan %+v: %v, want %q", tc.o, err, tc.err)
		}
	}
	if s50, err := Build("wan", BuildOptions{Servers: MaxSites, Clients: 1}); err != nil || len(s50.Nodes) != 2*MaxSites {
		t.Errorf("wan %d: %v", MaxSites, err)
	}
}

func TestValidateSwitchTree(t *testing.T) {
	node := func(name, sw, ip string) Node { return Node{Name: name, Role: Server, Switch: sw, IP: ip, Prefix: 16} }
	for _, tc := range []struct {
		name string
		s    Spec
		err  string
	}{
		{"two roots", Spec{Switches: []Switch{{Name: "a"}, {Name: "b"}}, Nodes: []Node{node("s1", "a", "10.0.0.1")}}, "must form one tree with a single root"},
		{"cycle", Spec{Switches: []Switch{{Name: "r"}, {Name: "a", Uplink: "b"}, {Name: "b", Uplink: "a"}}, Nodes: []Node{node("s1", "a", "10.0.0.1")}}, "round in a circle"},
		{"long names", Spec{Switches: []Switch{{Name: "root"}, {Name: "site12", Uplink: "root"}}, Nodes: []Node{node("s1", "root", "10.0.0.1")}}, "at most 7 characters together"},
		{"link on the root", Spec{Switches: []Switch{{Name: "r", Link: shaping.Impairment{Delay: msec}}}, Nodes: []Node{node("s1", "r", "10.0.0.1")}}, "needs an uplink"},
		{"not on-link", Spec{Switches: []Switch{{Name: "r"}}, Nodes: []Node{node("s1", "r", "10.0.0.1"), {Name: "s2", Role: Server, Switch: "r", IP: "10.1.0.1", Prefix: 24}}}, "on-link"},
		{"bad link", Spec{Switches: []Switch{{Name: "r"}}, Nodes: []Node{{Name: "s1", Role: Server, Switch: "r", IP: "10.0.0.1", Prefix: 16, Link: shaping.Impairment{Loss: 300}}}}, "node s1: link"},
	} {
		if err := tc.s.Validate(); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
		}
	}
}

// fakeShaper records the layers a node would get.
type fakeShaper struct{ layers map[string]shaping.Layer }

func (f *fakeShaper) SetLayer(_ context.Context, iface string, l shaping.Layer) error {
	f.layers[l.Name] = l
	return nil
}

func (f *fakeShaper) DeleteLayer(_ context.Context, iface, name string) error {
	delete(f.layers, name)
	return nil
}

func (f *fakeShaper) rules(t *testing.T) []shaping.Rule {
	var ls []shaping.Layer
	for _, l := range f.layers {
		ls = append(ls, l)
	}
	r, err := shaping.Combine(ls)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestLiveLinkLayers: ApplyLinks, ShapeLink and Impair put the right layers on each node,
// and what a node ends up with is what its paths should get.
func TestLiveLinkLayers(t *testing.T) {
	spec, err := Build("simple", BuildOptions{Servers: 3, Clients: 1, Link: LinkOptions{Latency: 20 * msec}})
	if err != nil {
		t.Fatal(err)
	}
	live := &Live{Spec: spec, Shapers: map[string]NodeShaper{}}
	fakes := map[string]*fakeShaper{}
	for _, n := range spec.Nodes {
		fakes[n.Name] = &fakeShaper{layers: map[string]shaping.Layer{}}
		live.Shapers[n.Name] = fakes[n.Name]
	}
	ctx := context.Background()
	if err := live.ApplyLinks(ctx); err != nil {
		t.Fatal(err)
	}
	if err := live.ShapeLink(ctx, "s1", "s2", shaping.Impairment{Delay: 50 * msec}); err != nil {
		t.Fatal(err)
	}
	undo, err := live.Impair(ctx, []string{"s3"}, shaping.Impairment{Delay: 100 * msec}, "slow-leader#1")
	if err != nil {
		t.Fatal(err)
	}
	if got := rulesText(fakes["s1"].rules(t)); got != "to 10.0.1.2/32: delay 50ms; to 10.0.1.3/32: delay 120ms; default: delay 20ms" {
		t.Errorf("s1: %s", got)
	}
	if got := rulesText(fakes["s3"].rules(t)); got != "default: delay 120ms" {
		t.Errorf("s3: %s", got)
	}
	if got := rulesText(fakes["s2"].rules(t)); got != "to 10.0.1.1/32: delay 50ms; to 10.0.1.3/32: delay 120ms; default: delay 20ms" {
		t.Errorf("s2: %s", got)
	}
	if err := undo(ctx); err != nil {
		t.Fatal(err)
	}
	if err := live.ShapeLink(ctx, "s2", "s1", shaping.Impairment{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range spec.NodeNames() {
		if got := rulesText(fakes[n].rules(t)); got != "default: delay 20ms" {
			t.Errorf("%s after undo and clear: %s", n, got)
		}
	}
	if err := live.ShapeLink(ctx, "s1", "zz", shaping.Impairment{Delay: msec}); err == nil || !strings.Contains(err.Error(), "valid nodes are") {
		t.Errorf("unknown node: %v", err)
	}
	bare := &Live{Spec: spec}
	if err := bare.ApplyLinks(ctx); err == nil || !strings.Contains(err.Error(), "no agents") {
		t.Errorf("no shapers: %v", err)
	}
}

func rulesText(rules []shaping.Rule) string {
	s := make([]string, len(rules))
	for i, r := range rules {
		s[i] = r.String()
	}
	return strings.Join(s, "; ")
}

func TestRegisterRejectsDuplicatesAndEmptyNames(t *testing.T) {
	if err := Register("simple", Simple); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Errorf("registering simple again: %v, want already registered", err)
	}
	if err := Register("", Simple); err == nil {
		t.Errorf("registering an empty name must be an error")
	}
	if got := strings.Join(Names(), ","); got != "simple,wan" {
		t.Errorf("Names() = %s, want simple,wan", got)
	}
}

func TestEgressRulesOfAnUnvalidatedSpec(t *testing.T) {
	s, err := Build("simple", BuildOptions{Servers: 2, Link: LinkOptions{Latency: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	s.Nodes[1].IP = "not-an-address"
	if _, err := s.EgressRules(s.Nodes[0].Name); err == nil || !strings.Contains(err.Error(), s.Nodes[1].Name) {
		t.Errorf("EgressRules with a bad address: %v, want an error naming node %s", err, s.Nodes[1].Name)
	}
}
