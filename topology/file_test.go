package topology

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const twoSites = `# two sites 40 ms apart
name: two-sites
switches:
  - name: core
  - name: w1
    uplink: core
    link: {delay: 20ms, jitter: 2ms, loss: 1%, rate: 100mbit}
  - name: w2
    uplink: core
    link: {delay: 20}
nodes:
  - {name: s1, role: server, switch: w1, ip: 10.0.1.1/16}
  - {name: s2, role: server, switch: w2, ip: 10.0.2.1/16}
  - name: c1
    role: client
    switch: w1
    ip: 10.0.1.2
    link: {delay: 1ms}
`

func TestParseFile(t *testing.T) {
	s, err := ParseFile("two.yaml", "two", []byte(twoSites))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "two-sites" || len(s.Switches) != 3 || len(s.Servers()) != 2 || len(s.Clients()) != 1 {
		t.Fatalf("spec %+v", s)
	}
	c1, _ := s.Node("c1")
	if c1.IP != "10.0.1.2" || c1.Prefix != 16 || c1.Link.Delay != time.Millisecond {
		t.Errorf("c1 %+v", c1)
	}
	p, err := s.Path("s1", "s2")
	if err != nil || p.Delay != 40*time.Millisecond || p.Jitter != 2*time.Millisecond || p.Loss != 1 || p.Rate != 100e6 {
		t.Errorf("path s1 -> s2: %v (%v)", p, err)
	}
	p, _ = s.Path("c1", "s1")
	if p.Delay != time.Millisecond {
		t.Errorf("path c1 -> s1: %v, want c1's own link only", p)
	}

	// One switch is implied; the name comes from the file.
	s, err = ParseFile("x/mini.yaml", "mini", []byte("nodes:\n  - {name: s1, role: server, ip: 10.0.0.1/24}\n  - {name: s2, role: server, ip: 10.0.0.2/24, link: {loss: 5}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "mini" || len(s.Switches) != 1 || s.Nodes[1].Switch != "sw" || s.Nodes[1].Link.Loss != 5 {
		t.Errorf("mini %+v", s)
	}
}

// TestParseFileErrors: every problem is named with file:line:column and, for a bad
// value, the valid choices or range.
func TestParseFileErrors(t *testing.T) {
	base := "nodes:\n  - {name: s1, role: server, ip: 10.0.0.1/24}\n"
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"unknown top-level field", "nodez: []\n", "t.yaml:1:1: unknown field \"nodez\" in the topology; valid fields are name, switches, nodes"},
		{"unknown node field", "nodes:\n  - name: s1\n    role: server\n    ip: 10.0.0.1\n    adress: x\n", "t.yaml:5:5: unknown field \"adress\" in a node; valid fields are name, role, switch, ip, link"},
		{"unknown link field", base + "  - {name: s2, role: server, ip: 10.0.0.2/24, link: {dleay: 5ms}}\n", "t.yaml:3:54: unknown field \"dleay\" in a link; valid fields are delay, jitter, loss, rate"},
		{"bad role", "nodes:\n  - {name: s1, role: leader, ip: 10.0.0.1/24}\n", "t.yaml:2:22: role \"leader\": valid roles are server, client"},
		{"bad delay", base + "  - {name: s2, role: server, ip: 10.0.0.2/24, link: {delay: fast}}\n", "t.yaml:3:61: delay \"fast\" is not a duration like 50ms"},
		{"delay out of range", base + "  - {name: s2, role: server, ip: 10.0.0.2/24, link: {delay: 2h}}\n", "delay 2h: want 0..1m0s"},
		{"loss out of range", base + "  - {name: s2, role: server, ip: 10.0.0.2/24, link: {loss: 150%}}\n", "t.yaml:3:60: loss 150%: want 0..100 (percent)"},
		{"rate without a unit", base + "  - {name: s2, role: server, ip: 10.0.0.2/24, link: {rate: 10}}\n", "rate \"10\": give a unit, e.g. 10mbit"},
		{"rate too slow", base + "  - {name: s2, role: server, ip: 10.0.0.2/24, link: {rate: 1kbit}}\n", "rate 1kbit: want 0 (unlimited) or at least 8kbit"},
		{"jitter without delay", base + "  - {name: s2, role: server, ip: 10.0.0.2/24, link: {jitter: 1ms}}\n", "jitter 1ms needs a delay"},
		{"unknown switch", "switches: [{name: a}]\nnodes:\n  - {name: s1, role: server, switch: b, ip: 10.0.0.1/24}\n", "t.yaml:3:38: switch \"b\": no such switch; switches are a"},
		{"unknown uplink", "switches:\n  - {name: a}\n  - {name: b, uplink: c}\nnodes:\n  - {name: s1, role: server, switch: a, ip: 10.0.0.1/24}\n", "t.yaml:3:23: uplink \"c\": no such switch; switches are a, b"},
		{"switch needed", "switches:\n  - {name: a}\n  - {name: b, uplink: a}\nnodes:\n  - {name: s1, role: server, ip: 10.0.0.1/24}\n", "t.yaml:5:12: node s1: switch is required when there are several switches (a, b)"},
		{"missing ip", "nodes:\n  - {name: s1, role: server}\n", "t.yaml:2:12: node s1: ip is required"},
		{"bad ip", "nodes:\n  - {name: s1, role: server, ip: 10.0.0.300}\n", "t.yaml:2:34: ip \"10.0.0.300\": want an IPv4 address"},
		{"bad prefix", "nodes:\n  - {name: s1, role: server, ip: 10.0.0.1/4}\n", "ip \"10.0.0.1/4\": prefix /4: want 8..30"},
		{"duplicate node", base + "  - {name: s1, role: client, ip: 10.0.0.2/24}\n", "t.yaml:3:12: node \"s1\" defined twice"},
		{"long node name", "nodes:\n  - {name: server1, role: server, ip: 10.0.0.1/24}\n", "node name \"server1\": want a lower-case letter then up to 4"},
		{"list for a value", "nodes:\n  - {name: [s1], role: server, ip: 10.0.0.1/24}\n", "t.yaml:2:12: node name: want a single value, not a list"},
		{"link as a value", base + "  - {name: s2, role: server, ip: 10.0.0.2/24, link: 5ms}\n", "t.yaml:3:"},
		{"not yaml", "nodes: [\n", "t.yaml:"},
		{"empty", "", "empty topology file"},
		{"no nodes", "name: x\n", "no nodes"},
		{"not on-link", "nodes:\n  - {name: s1, role: server, ip: 10.0.0.1/24}\n  - {name: s2, role: server, ip: 10.0.1.1/24}\n", "t.yaml: node s1 (10.0.0.1/24) does not have s2 (10.0.1.1) on-link"},
	} {
		_, err := ParseFile("t.yaml", "t", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v\n want it to contain %q", tc.name, err, tc.want)
		}
	}
}

func TestBuildFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "two.yaml")
	if err := os.WriteFile(path, []byte(twoSites), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Build(path, BuildOptions{Servers: 3, Clients: 1})
	if err != nil || s.Name != "two-sites" || len(s.Nodes) != 3 {
		t.Errorf("Build(%s): %+v, %v", path, s, err)
	}
	if _, err := Build(path, BuildOptions{Link: LinkOptions{Latency: time.Millisecond}}); err == nil || !strings.Contains(err.Error(), "--link-* flags are for builders") {
		t.Errorf("file with link flags: %v", err)
	}
	if _, err := Build(filepath.Join(dir, "missing.yaml"), BuildOptions{}); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Build("mesh", BuildOptions{}); err == nil || !strings.Contains(err.Error(), "valid topologies are simple, wan, or a topology file") {
		t.Errorf("unknown builder: %v", err)
	}
	if !IsFile("./x") || !IsFile("t.yml") || IsFile("wan") {
		t.Error("IsFile")
	}
}
