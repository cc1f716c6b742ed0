package topology

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/dtlab/dt/internal/yamlfile"
	"github.com/dtlab/dt/shaping"
	"gopkg.in/yaml.v3"
)

// A topology file describes nodes, their switches and what each link does:
//
//	name: two-sites                # optional: the file's name without .yaml
//	switches:                      # optional: one switch "sw" when left out
//	  - name: core
//	  - name: w1
//	    uplink: core
//	    link: {delay: 20ms, jitter: 2ms, loss: 1%, rate: 100mbit}   # the uplink, each way
//	  - name: w2
//	    uplink: core
//	    link: {delay: 20ms}
//	nodes:
//	  - {name: s1, role: server, switch: w1, ip: 10.0.1.1/16}
//	  - {name: s2, role: server, switch: w2, ip: 10.0.2.1/16}
//	  - name: c1
//	    role: client
//	    switch: w1                 # optional when there is one switch
//	    ip: 10.0.1.2               # prefix optional: /16
//	    link: {delay: 1ms}         # the node's link to its switch, each way
//
// A packet from a to b crosses a's link, the uplinks between their switches and b's link,
// and gets all of them (see Spec.Path): above, s1 -> s2 has 40 ms one way.
//
// Parsing is strict: unknown fields, wrong kinds and bad values are errors that name
// file:line:column and the valid choices or range. Values: delay and jitter are durations
// (20ms; a bare number is ms, at most 1m), loss a percentage (5% or 5, 0..100), rate
// bits/s with a unit (10mbit, 500kbit; at least 8kbit).

type fileTopology struct {
	Name     yaml.Node    `yaml:"name"`
	Switches []fileSwitch `yaml:"switches"`
	Nodes    []fileNode   `yaml:"nodes"`
}

type fileSwitch struct {
	Name   yaml.Node `yaml:"name"`
	Uplink yaml.Node `yaml:"uplink"`
	Link   *fileLink `yaml:"link"`
}

type fileNode struct {
	Name   yaml.Node `yaml:"name"`
	Role   yaml.Node `yaml:"role"`
	Switch yaml.Node `yaml:"switch"`
	IP     yaml.Node `yaml:"ip"`
	Link   *fileLink `yaml:"link"`
}

type fileLink struct {
	Delay  yaml.Node `yaml:"delay"`
	Jitter yaml.Node `yaml:"jitter"`
	Loss   yaml.Node `yaml:"loss"`
	Rate   yaml.Node `yaml:"rate"`
}

// validFields lists each element's fields for the "unknown field" error.
var validFields = map[string]string{
	"fileTopology": "name, switches, nodes",
	"fileSwitch":   "name, uplink, link",
	"fileNode":     "name, role, switch, ip, link",
	"fileLink":     "delay, jitter, loss, rate",
}

var fileWhat = map[string]string{
	"fileTopology": "the topology", "fileSwitch": "a switch", "fileNode": "a node", "fileLink": "a link",
}

// FileError is a problem at a place in a topology file.
type FileError = yamlfile.Error

// LoadFile reads a topology file (see the format above) into a validated spec.
func LoadFile(path string) (Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Spec{}, fmt.Errorf("topology file: %w", err)
	}
	name := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(path), ".yaml"), ".yml")
	return ParseFile(path, name, b)
}

// ParseFile parses the contents of a topology file; file names it in errors and name is
// the topology's name unless the file sets one.
func ParseFile(file, name string, b []byte) (Spec, error) {
	p := &fileParser{file: file}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return Spec{}, p.yamlError(err, nil)
	}
	if len(doc.Content) == 0 {
		return Spec{}, &FileError{File: file, Msg: "empty topology file: want nodes (and switches)"}
	}
	var raw fileTopology
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil {
		return Spec{}, p.yamlError(err, &doc)
	}
	spec := p.spec(raw, name)
	if len(p.errs) > 0 {
		return Spec{}, errors.Join(p.errs...)
	}
	if err := spec.Validate(); err != nil {
		return Spec{}, &FileError{File: file, Msg: err.Error()}
	}
	return spec, nil
}

type fileParser struct {
	file string
	errs []error
}

func (p *fileParser) errorf(n *yaml.Node, format string, a ...any) {
	p.errs = append(p.errs, yamlfile.Errorf(p.file, n, format, a...))
}

var (
	yamlLineRE    = regexp.MustCompile(`^line (\d+): (.*)$`)
	yamlUnknownRE = regexp.MustCompile(`^field (\S+) not found in type topology\.(\w+)$`)
)

// yamlError turns yaml.v3's errors ("line 7: field dleay not found in type ...") into
// FileErrors with the column of the offending key and the valid fields.
func (p *fileParser) yamlError(err error, doc *yaml.Node) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			var line int
			fmt.Sscan(m[1], &line)
			return &FileError{File: p.file, Line: line, Msg: m[2]}
		}
		return &FileError{File: p.file, Msg: msg}
	}
	var errs []error
	for _, e := range te.Errors {
		fe := &FileError{File: p.file, Msg: e}
		if m := yamlLineRE.FindStringSubmatch(e); m != nil {
			fmt.Sscan(m[1], &fe.Line)
			fe.Msg = m[2]
			if u := yamlUnknownRE.FindStringSubmatch(m[2]); u != nil {
				fe.Msg = fmt.Sprintf("unknown field %q in %s; valid fields are %s", u[1], fileWhat[u[2]], validFields[u[2]])
				fe.Column = keyColumn(doc, fe.Line, u[1])
			} else {
				fe.Msg = strings.ReplaceAll(fe.Msg, "topology.file", "")
			}
		}
		errs = append(errs, fe)
	}
	return errors.Join(errs...)
}

// keyColumn finds the column of mapping key name on line in the tree; 0 if not found.
func keyColumn(n *yaml.Node, line int, name string) int {
	if n == nil {
		return 0
	}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Line == line && k.Value == name {
				return k.Column
			}
		}
	}
	for _, c := range n.Content {
		if col := keyColumn(c, line, name); col > 0 {
			return col
		}
	}
	return 0
}

// scalar returns n's value if it is a scalar; ok is false (with an error recorded) when it
// is something else, and when it is absent and required.
func (p *fileParser) scalar(n *yaml.Node, at *yaml.Node, field string, required bool) (string, bool) {
	switch {
	case n.Kind == 0:
		if required {
			p.errorf(at, "%s is required", field)
		}
		return "", false
	case n.Kind != yaml.ScalarNode:
		p.errorf(n, "%s: want a single value, not a %s", field, kindName(n.Kind))
		return "", false
	}
	return n.Value, true
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "mapping"
	}
	return "value"
}

func (p *fileParser) spec(raw fileTopology, name string) Spec {
	s := Spec{Name: name}
	if v, ok := p.scalar(&raw.Name, nil, "name", false); ok {
		s.Name = v
	}
	if len(raw.Nodes) == 0 {
		p.errorf(nil, "no nodes: a topology file needs a nodes: list")
	}
	switches := map[string]bool{}
	for _, w := range raw.Switches {
		var sw Switch
		sw.Name, _ = p.scalar(&w.Name, nil, "switch name", true)
		if sw.Name != "" {
			if !switchNameRE.MatchString(sw.Name) {
				p.errorf(&w.Name, "switch name %q: want a lower-case letter then up to 5 letters or digits", sw.Name)
			}
			if switches[sw.Name] {
				p.errorf(&w.Name, "switch %q defined twice", sw.Name)
			}
			switches[sw.Name] = true
		}
		sw.Uplink, _ = p.scalar(&w.Uplink, nil, "uplink", false)
		if w.Link != nil {
			if sw.Uplink == "" {
				p.errorf(&w.Name, "switch %s: link: needs an uplink (the link impaired is the one to the uplink)", sw.Name)
			}
			sw.Link = p.link(w.Link, &w.Name)
		}
		s.Switches = append(s.Switches, sw)
	}
	for _, w := range raw.Switches {
		if up, ok := p.scalar(&w.Uplink, nil, "uplink", false); ok && !switches[up] {
			p.errorf(&w.Uplink, "uplink %q: no such switch; switches are %s", up, strings.Join(keys(switches), ", "))
		}
	}
	if len(raw.Switches) == 0 {
		s.Switches = []Switch{{Name: "sw"}}
		switches["sw"] = true
	}
	nodes := map[string]bool{}
	for _, rn := range raw.Nodes {
		var n Node
		n.Name, _ = p.scalar(&rn.Name, nil, "node name", true)
		if n.Name != "" {
			if !nodeNameRE.MatchString(n.Name) {
				p.errorf(&rn.Name, "node name %q: want a lower-case letter then up to 4 letters or digits (it becomes part of 15-byte interface names)", n.Name)
			}
			if nodes[n.Name] {
				p.errorf(&rn.Name, "node %q defined twice", n.Name)
			}
			nodes[n.Name] = true
		}
		at := &rn.Name
		if role, ok := p.scalar(&rn.Role, at, "node "+n.Name+": role", true); ok {
			n.Role = Role(role)
			if n.Role != Server && n.Role != Client {
				p.errorf(&rn.Role, "role %q: valid roles are server, client", role)
			}
		}
		if sw, ok := p.scalar(&rn.Switch, at, "switch", false); ok {
			n.Switch = sw
			if !switches[sw] {
				p.errorf(&rn.Switch, "switch %q: no such switch; switches are %s", sw, strings.Join(keys(switches), ", "))
			}
		} else if len(s.Switches) == 1 {
			n.Switch = s.Switches[0].Name
		} else if rn.Switch.Kind == 0 {
			p.errorf(at, "node %s: switch is required when there are several switches (%s)", n.Name, strings.Join(keys(switches), ", "))
		}
		if ip, ok := p.scalar(&rn.IP, at, "node "+n.Name+": ip", true); ok {
			n.IP, n.Prefix = p.address(&rn.IP, ip)
		}
		if rn.Link != nil {
			n.Link = p.link(rn.Link, at)
		}
		s.Nodes = append(s.Nodes, n)
	}
	return s
}

// address reads "10.0.1.1/16" or "10.0.1.1" (prefix 16).
func (p *fileParser) address(n *yaml.Node, v string) (string, int) {
	if !strings.Contains(v, "/") {
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() {
			p.errorf(n, "ip %q: want an IPv4 address such as 10.0.1.1/16", v)
			return "", 0
		}
		return a.String(), 16
	}
	pf, err := netip.ParsePrefix(v)
	if err != nil || !pf.Addr().Is4() {
		p.errorf(n, "ip %q: want an IPv4 address with a prefix such as 10.0.1.1/16", v)
		return "", 0
	}
	if pf.Bits() < 8 || pf.Bits() > 30 {
		p.errorf(n, "ip %q: prefix /%d: want 8..30", v, pf.Bits())
	}
	if pf.Addr().IsLoopback() {
		p.errorf(n, "ip %q is a loopback address", v)
	}
	return pf.Addr().String(), pf.Bits()
}

func (p *fileParser) link(l *fileLink, at *yaml.Node) shaping.Impairment {
	var imp shaping.Impairment
	var err error
	if v, ok := p.scalar(&l.Delay, at, "delay", false); ok {
		if imp.Delay, err = shaping.ParseDelay(v); err != nil {
			p.errorf(&l.Delay, "delay %v", err)
		}
	}
	if v, ok := p.scalar(&l.Jitter, at, "jitter", false); ok {
		if imp.Jitter, err = shaping.ParseDelay(v); err != nil {
			p.errorf(&l.Jitter, "jitter %v", err)
		} else if imp.Delay == 0 && imp.Jitter > 0 {
			p.errorf(&l.Jitter, "jitter %v needs a delay (it varies the delay)", imp.Jitter)
		}
	}
	if v, ok := p.scalar(&l.Loss, at, "loss", false); ok {
		if imp.Loss, err = shaping.ParseLoss(v); err != nil {
			p.errorf(&l.Loss, "loss %v", err)
		}
	}
	if v, ok := p.scalar(&l.Rate, at, "rate", false); ok {
		if imp.Rate, err = shaping.ParseRate(v, 0); err != nil {
			p.errorf(&l.Rate, "rate %v", err)
		}
	}
	if imp.Delay+imp.Jitter > shaping.MaxDelay {
		p.errorf(&l.Jitter, "delay+jitter %v: want at most %v", imp.Delay+imp.Jitter, shaping.MaxDelay)
	}
	return imp
}

func keys(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }
