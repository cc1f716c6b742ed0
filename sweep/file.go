package sweep

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/dtlab/dt/experiment"
	"github.com/dtlab/dt/internal/yamlfile"
)

// MaxAxisValues bounds the values one axis may expand to (a range with a tiny step is
// almost always a typo).
const MaxAxisValues = 10000

// Sweep is a parsed and resolved sweep file.
type Sweep struct {
	Name    string
	Path    string // the file it was read from
	Source  []byte // the file's bytes, copied into the sweep directory
	Base    experiment.Config
	BaseSet []Setting // the base parameters the file sets, in file order
	Axes    []Axis
	Zip     [][]string
	Repeats int
	Seed    int64
	Plots   []PlotSpec // as given in the file, or DefaultPlots
	Points  []Point
}

// Setting is one parameter and its value.
type Setting struct {
	Name  string
	Value Value
}

// Axis is one varied parameter and its values, in order.
type Axis struct {
	Name   string
	Kind   Kind
	Values []Value
	Log    bool // a log range: plot it on a log scale
}

// Point is one combination of axis values.
type Point struct {
	Index  int       // 0-based, in expansion order
	ID     string    // p01, p02, ...
	Params []Setting // one per axis, in axis order
}

// Key is the point's canonical name, "rate=100,number-nodes=3": the same parameters give
// the same key, whatever the point's index.
func (p Point) Key() string {
	var b strings.Builder
	for i, s := range p.Params {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s.Name + "=" + FormatValue(s.Value))
	}
	return b.String()
}

// Label is the key with spaces, for people.
func (p Point) Label() string {
	if len(p.Params) == 0 {
		return "(base)"
	}
	return strings.ReplaceAll(p.Key(), ",", " ")
}

// Get returns the point's value of an axis.
func (p Point) Get(axis string) (Value, bool) {
	for _, s := range p.Params {
		if s.Name == axis {
			return s.Value, true
		}
	}
	return nil, false
}

// Run is one point and one repeat (1-based), with its derived seed.
type Run struct {
	Point  Point
	Repeat int
	Seed   int64
}

// Name is "p03-r2": the run's directory under runs/ and its name in progress lines.
func (r Run) Name() string { return fmt.Sprintf("%s-r%d", r.Point.ID, r.Repeat) }

// Runs lists every run, point by point, repeats of a point together.
func (s *Sweep) Runs() []Run {
	out := make([]Run, 0, len(s.Points)*s.Repeats)
	for _, p := range s.Points {
		for r := 1; r <= s.Repeats; r++ {
			out = append(out, Run{Point: p, Repeat: r, Seed: DeriveSeed(s.Seed, p.Key(), r)})
		}
	}
	return out
}

// Config is the experiment of a run: the base, the point's parameters and the derived
// seed. ResultsRoot is left for the caller.
func (s *Sweep) Config(r Run) experiment.Config {
	c := s.Base
	for _, st := range r.Point.Params {
		p, _ := lookupParam(st.Name)
		p.set(&c, st.Value)
	}
	c.Seed = r.Seed
	return c
}

// Axis returns the axis named name.
func (s *Sweep) Axis(name string) (Axis, bool) {
	for _, a := range s.Axes {
		if a.Name == name {
			return a, true
		}
	}
	return Axis{}, false
}

// AxisNames lists the axes in order.
func (s *Sweep) AxisNames() []string {
	var out []string
	for _, a := range s.Axes {
		out = append(out, a.Name)
	}
	return out
}

// axisList names the axes for error messages.
func (s *Sweep) axisList() string {
	if len(s.Axes) == 0 {
		return "(none)"
	}
	return strings.Join(s.AxisNames(), ", ")
}

// Error is a problem at a line and column of a sweep file.
type Error = yamlfile.Error

// Parse reads and resolves a sweep file.
func Parse(path string) (*Sweep, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read sweep file: %w", err)
	}
	return ParseBytes(path, b)
}

// topKeys are the keys of a sweep file.
var topKeys = []string{"name", "base", "axes", "zip", "repeats", "seed", "plots"}

// rawFile is the file as written; base and axes keep their nodes for positions and order.
type rawFile struct {
	Name    string      `yaml:"name"`
	Base    yaml.Node   `yaml:"base"`
	Axes    yaml.Node   `yaml:"axes"`
	Zip     yaml.Node   `yaml:"zip"`
	Repeats *int        `yaml:"repeats"`
	Seed    int64       `yaml:"seed"`
	Plots   []yaml.Node `yaml:"plots"`
}

// parser collects every problem of one file, each at its position.
type parser struct {
	file    string
	errs    []error
	badAxes map[string]bool // axes already reported as wrong: not reported again by zip
}

func (p *parser) errorf(n *yaml.Node, format string, a ...any) {
	p.errs = append(p.errs, yamlfile.Errorf(p.file, n, format, a...))
}

// yamlError turns yaml.v3's "line N: msg" errors into Errors of this file.
func (p *parser) yamlError(err error) {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for _, m := range msgs {
		if line, msg, ok := yamlfile.SplitLine(m); ok {
			p.errs = append(p.errs, &Error{File: p.file, Line: line, Msg: msg})
			continue
		}
		e := &Error{File: p.file, Msg: strings.TrimPrefix(m, "yaml: ")}
		if te == nil {
			e.Line = 1 // yaml.v3 leaves out "line 1" of syntax errors on the first line
		}
		p.errs = append(p.errs, e)
	}
}

// ParseBytes parses a sweep file's content; file names it in errors and gives the
// default sweep name.
func ParseBytes(file string, data []byte) (*Sweep, error) { return parse(file, data, true) }

// parse parses a sweep file; validate checks every point as an experiment (a report of
// finished runs does not need to, and may run where a topology file is not).
func parse(file string, data []byte, validate bool) (*Sweep, error) {
	p := &parser{file: file}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p.yamlError(err)
		return nil, errors.Join(p.errs...)
	}
	if len(doc.Content) == 0 {
		return nil, &Error{File: file, Msg: "empty sweep file"}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		p.errorf(root, "a sweep file is a mapping with keys %s", strings.Join(topKeys, ", "))
		return nil, errors.Join(p.errs...)
	}
	p.checkKeys(root, "", topKeys)
	var raw rawFile
	if len(p.errs) == 0 {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&raw); err != nil {
			p.yamlError(err)
			return nil, errors.Join(p.errs...)
		}
		var extra yaml.Node
		if err := dec.Decode(&extra); err != io.EOF {
			p.errorf(&extra, "a sweep file holds one YAML document")
		}
	} else if err := root.Decode(&raw); err != nil {
		// unknown keys are reported already; go on to report the rest of the file too
		p.yamlError(err)
		return nil, errors.Join(p.errs...)
	}

	s := &Sweep{Path: file, Source: data, Base: experiment.Defaults(), Repeats: 1, Seed: raw.Seed}
	s.Name = raw.Name
	if s.Name == "" {
		s.Name = strings.TrimSuffix(strings.TrimSuffix(filepath.Base(file), ".yaml"), ".yml")
	}
	if !validName.MatchString(s.Name) {
		p.errorf(valueNode(root, "name"), "name %q: use letters, digits, '.', '_' and '-' (it names a directory)", s.Name)
	}
	if raw.Repeats != nil {
		s.Repeats = *raw.Repeats
		if s.Repeats < 1 {
			p.errorf(valueNode(root, "repeats"), "repeats %d: must be at least 1", s.Repeats)
		}
	}
	p.base(s, &raw.Base)
	p.axes(s, &raw.Axes)
	p.zip(s, &raw.Zip)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	s.Points = expand(s.Axes, s.Zip)
	for i := range raw.Plots {
		s.Plots = append(s.Plots, p.plot(s, &raw.Plots[i])...)
	}
	if valueNode(root, "plots") == nil {
		s.Plots = DefaultPlots(s)
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	if !validate {
		return s, nil
	}
	// Every point must be a valid experiment: better to learn it now than hours in.
	var bad []error
	for _, pt := range s.Points {
		if err := s.Config(Run{Point: pt, Seed: 1}).Validate(); err != nil {
			bad = append(bad, fmt.Errorf("point %s (%s): %w", pt.ID, pt.Label(), err))
			if len(bad) == 5 {
				bad = append(bad, errors.New("(further points not checked)"))
				break
			}
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%s: invalid experiments:\n%w", file, errors.Join(bad...))
	}
	return s, nil
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// checkKeys reports keys of mapping n not in valid, and duplicate keys.
func (p *parser) checkKeys(n *yaml.Node, where string, valid []string) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		switch {
		case !contains(valid, k.Value):
			p.errorf(k, "unknown key %q%s%s: valid are %s", k.Value, where, suggest(k.Value, valid), strings.Join(valid, ", "))
		case seen[k.Value]:
			p.errorf(k, "key %q given twice%s", k.Value, where)
		}
		seen[k.Value] = true
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// valueNode returns the value of key in mapping n, or nil (yamlfile.ValueNode, by the
// name plotspec.go uses too).
func valueNode(n *yaml.Node, key string) *yaml.Node { return yamlfile.ValueNode(n, key) }

// base applies the base mapping onto the defaults.
func (p *parser) base(s *Sweep, n *yaml.Node) {
	if yamlfile.IsNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "base: a mapping of parameters, e.g. {system: etcd, fault: leader, rate: 100}")
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		prm, err := lookupParam(k.Value)
		if err != nil {
			p.errorf(k, "base: %v", err)
			continue
		}
		if seen[k.Value] {
			p.errorf(k, "base: %q given twice", k.Value)
			continue
		}
		seen[k.Value] = true
		if v.Kind != yaml.ScalarNode {
			p.errorf(v, "base.%s: a single %s value (to vary it, put it under axes)", k.Value, prm.kind())
			continue
		}
		val, err := parseValue(prm.kind(), v.Value, v.ShortTag())
		if err != nil {
			p.errorf(v, "base.%s: %v", k.Value, err)
			continue
		}
		prm.set(&s.Base, val)
		s.BaseSet = append(s.BaseSet, Setting{Name: k.Value, Value: val})
	}
}

// axes reads the axes mapping in order.
func (p *parser) axes(s *Sweep, n *yaml.Node) {
	if yamlfile.IsNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "axes: a mapping from parameter to a list [a, b] or a range {from, to, step}")
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		prm, err := lookupParam(k.Value)
		if err != nil {
			p.errorf(k, "axes: %v", err)
			continue
		}
		if _, dup := s.Axis(k.Value); dup {
			p.errorf(k, "axes: %q given twice", k.Value)
			continue
		}
		for _, b := range s.BaseSet {
			if b.Name == k.Value {
				p.errorf(k, "axes: %q is also set in base; set it in one place", k.Value)
			}
		}
		ax := Axis{Name: k.Value, Kind: prm.kind()}
		nerr := len(p.errs)
		switch v.Kind {
		case yaml.SequenceNode:
			ax.Values = p.list(k.Value, prm.kind(), v)
		case yaml.MappingNode:
			ax.Values, ax.Log = p.rangeValues(k.Value, prm.kind(), v)
		default:
			p.errorf(v, "axes.%s: give a list [a, b, ...] or a range {from, to, step} (a single value belongs in base)", k.Value)
			continue
		}
		if ax.Values == nil || len(p.errs) > nerr {
			if p.badAxes == nil {
				p.badAxes = map[string]bool{}
			}
			p.badAxes[k.Value] = true
			continue
		}
		s.Axes = append(s.Axes, ax)
	}
}

func (p *parser) list(name string, k Kind, n *yaml.Node) []Value {
	if len(n.Content) == 0 {
		p.errorf(n, "axes.%s: empty list", name)
		return nil
	}
	var out []Value
	ok := true
	for _, item := range n.Content {
		if item.Kind != yaml.ScalarNode {
			p.errorf(item, "axes.%s: each value is a single %s", name, k)
			ok = false
			continue
		}
		v, err := parseValue(k, item.Value, item.ShortTag())
		if err != nil {
			p.errorf(item, "axes.%s: %v", name, err)
			ok = false
			continue
		}
		for _, prev := range out {
			if equalValues(prev, v) {
				p.errorf(item, "axes.%s: %s listed twice", name, FormatValue(v))
				ok = false
			}
		}
		out = append(out, v)
	}
	if !ok {
		return nil
	}
	return out
}

// rangeKeys are the keys of a range.
var rangeKeys = []string{"from", "to", "step", "steps", "log"}

type rangeSpec struct {
	From  *float64 `yaml:"from"`
	To    *float64 `yaml:"to"`
	Step  *float64 `yaml:"step"`
	Steps *int     `yaml:"steps"`
	Log   bool     `yaml:"log"`
}

// rangeValues expands {from, to, step} (additive), {from, to, steps} (that many values,
// ends included), and with log: true a factor step or steps spaced evenly in log scale.
func (p *parser) rangeValues(name string, k Kind, n *yaml.Node) ([]Value, bool) {
	before := len(p.errs)
	p.checkKeys(n, " in range axes."+name, rangeKeys)
	if len(p.errs) > before {
		return nil, false
	}
	if k != KindInt && k != KindFloat {
		p.errorf(n, "axes.%s: a range needs a numeric parameter; %s is a %s: list its values", name, name, k)
		return nil, false
	}
	var r rangeSpec
	if err := n.Decode(&r); err != nil {
		p.yamlError(err)
		return nil, false
	}
	fail := func(format string, a ...any) ([]Value, bool) {
		p.errorf(n, "axes.%s: "+format, append([]any{name}, a...)...)
		return nil, false
	}
	switch {
	case r.From == nil || r.To == nil:
		return fail("a range needs from and to")
	case (r.Step == nil) == (r.Steps == nil):
		return fail("a range needs exactly one of step (the increment; with log, the factor) and steps (how many values)")
	}
	from, to := *r.From, *r.To
	var fs []float64
	switch {
	case r.Steps != nil:
		n := *r.Steps
		if n < 1 || (n == 1 && from != to) {
			return fail("steps %d: at least 2 values from %g to %g", n, from, to)
		}
		if n > MaxAxisValues {
			return fail("steps %d: more than %d values", n, MaxAxisValues)
		}
		if r.Log && (from <= 0 || to <= 0) {
			return fail("a log range needs from and to > 0")
		}
		for i := 0; i < n; i++ {
			t := 0.0
			if n > 1 {
				t = float64(i) / float64(n-1)
			}
			if r.Log {
				fs = append(fs, from*math.Pow(to/from, t))
			} else {
				fs = append(fs, from+(to-from)*t)
			}
		}
	case r.Log:
		f := *r.Step
		if from <= 0 || to < from || f <= 1 {
			return fail("a log range with step multiplies by step: needs 0 < from <= to and step > 1")
		}
		for v := from; v <= to*(1+1e-9); v *= f {
			if len(fs) == MaxAxisValues {
				return fail("more than %d values", MaxAxisValues)
			}
			fs = append(fs, v)
		}
	default:
		st := *r.Step
		if st == 0 || (to-from)*st < 0 {
			return fail("step %g never gets from %g to %g", st, from, to)
		}
		count := int(math.Floor((to-from)/st+1e-9)) + 1
		if count > MaxAxisValues {
			return fail("%d values: more than %d", count, MaxAxisValues)
		}
		for i := 0; i < count; i++ {
			fs = append(fs, from+float64(i)*st)
		}
	}
	var out []Value
	for _, f := range fs {
		f = roundSig(f)
		var v Value = f
		if k == KindInt {
			v = int(math.Round(f))
		}
		dup := false
		for _, prev := range out {
			dup = dup || equalValues(prev, v)
		}
		if !dup {
			out = append(out, v)
		}
	}
	return out, r.Log
}

// roundSig rounds to 12 significant digits, so 0.1+0.2 steps and 10^(k/n) read as written.
func roundSig(f float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(f, 'g', 12, 64), 64)
	return r
}

// zip reads the zip groups: lists of axes that vary together.
func (p *parser) zip(s *Sweep, n *yaml.Node) {
	if yamlfile.IsNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "zip: a list of groups of axes, e.g. [[number-nodes, kill-n]]")
		return
	}
	inGroup := map[string]bool{}
	for _, g := range n.Content {
		if g.Kind != yaml.SequenceNode || len(g.Content) < 2 {
			p.errorf(g, "zip: each group is a list of at least two axes, e.g. [number-nodes, kill-n]")
			continue
		}
		var names []string
		length := -1
		for _, item := range g.Content {
			ax, ok := s.Axis(item.Value)
			switch {
			case item.Kind != yaml.ScalarNode:
				p.errorf(item, "zip: an axis name")
				continue
			case p.badAxes[item.Value]:
				continue
			case !ok:
				p.errorf(item, "zip: %q is not an axis: axes are %s", item.Value, s.axisList())
				continue
			case inGroup[item.Value]:
				p.errorf(item, "zip: axis %q is in more than one group", item.Value)
				continue
			}
			inGroup[item.Value] = true
			if length >= 0 && len(ax.Values) != length {
				p.errorf(item, "zip: axis %s has %d values, %s has %d: zipped axes need the same number", item.Value, len(ax.Values), names[0], length)
			}
			length = len(ax.Values)
			names = append(names, item.Value)
		}
		s.Zip = append(s.Zip, names)
	}
}

// expand makes the points: the product of the axes, the first varying slowest; a zip
// group is one factor, at the place of its first axis.
func expand(axes []Axis, zip [][]string) []Point {
	type factor struct {
		axes []int // indices into axes, varying together
		n    int
	}
	group := map[string]int{}
	for gi, g := range zip {
		for _, a := range g {
			group[a] = gi
		}
	}
	var factors []factor
	done := map[int]bool{}
	for i, a := range axes {
		gi, zipped := group[a.Name]
		if !zipped {
			factors = append(factors, factor{axes: []int{i}, n: len(a.Values)})
			continue
		}
		if done[gi] {
			continue
		}
		done[gi] = true
		f := factor{n: len(a.Values)}
		for j, b := range axes {
			if g, ok := group[b.Name]; ok && g == gi {
				f.axes = append(f.axes, j)
			}
		}
		factors = append(factors, f)
	}
	total := 1
	for _, f := range factors {
		total *= f.n
	}
	width := len(strconv.Itoa(total))
	if width < 2 {
		width = 2
	}
	points := make([]Point, 0, total)
	idx := make([]int, len(factors))
	for i := 0; i < total; i++ {
		vals := make([]Value, len(axes))
		for fi, f := range factors {
			for _, ai := range f.axes {
				vals[ai] = axes[ai].Values[idx[fi]]
			}
		}
		pt := Point{Index: i, ID: fmt.Sprintf("p%0*d", width, i+1)}
		for ai, a := range axes {
			pt.Params = append(pt.Params, Setting{Name: a.Name, Value: vals[ai]})
		}
		points = append(points, pt)
		for fi := len(factors) - 1; fi >= 0; fi-- { // odometer: the last factor fastest
			idx[fi]++
			if idx[fi] < factors[fi].n {
				break
			}
			idx[fi] = 0
		}
	}
	return points
}
