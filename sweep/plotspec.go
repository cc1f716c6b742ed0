package sweep

import (
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// PlotSpec is one aggregated plot: figure Y (a sweep.csv column) against axis X, one line
// per value of axis By (none: one line), error bars over repeats. Axes that are neither X
// nor By and have several values give one plot file per combination of their values.
type PlotSpec struct {
	X, Y, By   string
	Title      string
	LogX, LogY bool
}

// Name is the plot's file name stem: y_vs_x[_by_by].
func (p PlotSpec) Name() string {
	n := safe(p.Y) + "_vs_" + safe(p.X)
	if p.By != "" {
		n += "_by_" + safe(p.By)
	}
	return n
}

func safe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		case r == '.':
			return '-'
		}
		return '_'
	}, s)
}

// plotKeys are the keys of one entry of plots.
var plotKeys = []string{"x", "y", "by", "title", "log-x", "log-y"}

type rawPlot struct {
	X     string    `yaml:"x"`
	Y     yaml.Node `yaml:"y"`
	By    string    `yaml:"by"`
	Title string    `yaml:"title"`
	LogX  *bool     `yaml:"log-x"`
	LogY  *bool     `yaml:"log-y"`
}

// plot reads one entry of plots; y may be a list, which makes one PlotSpec per figure.
func (p *parser) plot(s *Sweep, n *yaml.Node) (out []PlotSpec) {
	before := len(p.errs)
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "plots: each plot is a mapping {x: AXIS, y: FIGURE, by: AXIS}")
		return nil
	}
	p.checkKeys(n, " in a plot", plotKeys)
	if len(p.errs) > before {
		return nil
	}
	var r rawPlot
	if err := n.Decode(&r); err != nil {
		p.yamlError(err)
		return nil
	}
	if r.X == "" {
		p.errorf(n, "plots: x (an axis) is required")
	} else if _, ok := s.Axis(r.X); !ok {
		p.errorf(valueNode(n, "x"), "plots: x %q is not an axis: axes are %s", r.X, s.axisList())
	}
	if r.By != "" {
		if _, ok := s.Axis(r.By); !ok {
			p.errorf(valueNode(n, "by"), "plots: by %q is not an axis: axes are %s", r.By, s.axisList())
		} else if r.By == r.X {
			p.errorf(valueNode(n, "by"), "plots: by and x are both %q", r.By)
		}
	}
	var ys []*yaml.Node
	switch r.Y.Kind {
	case yaml.ScalarNode:
		ys = []*yaml.Node{&r.Y}
	case yaml.SequenceNode:
		ys = r.Y.Content
	default:
		p.errorf(n, "plots: y (a figure, or a list of them) is required: e.g. p99, throughput, unavailability, or a sweep.csv column")
	}
	for _, yn := range ys {
		col, ok := resolveFigure(yn.Value)
		if !ok {
			p.errorf(yn, "plots: y %q is not a figure: use %s, or a column such as %s", yn.Value, aliasList(), strings.Join(SummaryColumns()[:6], ", "))
			continue
		}
		ps := PlotSpec{X: r.X, Y: col, By: r.By, Title: r.Title}
		ps.LogX = autoLog(s, r.X)
		if r.LogX != nil {
			ps.LogX = *r.LogX
		}
		if r.LogY != nil {
			ps.LogY = *r.LogY
		}
		out = append(out, ps)
	}
	if len(p.errs) > before {
		return nil
	}
	return out
}

func aliasList() string {
	var a []string
	for k := range figureAliases {
		a = append(a, k)
	}
	sort.Strings(a)
	return strings.Join(a, ", ")
}

// autoLog puts an axis on a log scale when it was a log range or its positive values span
// two decades or more.
func autoLog(s *Sweep, axis string) bool {
	ax, ok := s.Axis(axis)
	if !ok {
		return false
	}
	if ax.Log {
		return true
	}
	lo, hi := 0.0, 0.0
	for i, v := range ax.Values {
		f, ok := numeric(v)
		if !ok || f <= 0 {
			return false
		}
		if i == 0 || f < lo {
			lo = f
		}
		if f > hi {
			hi = f
		}
	}
	return lo > 0 && hi/lo >= 100
}

// DefaultPlots are the plots of a sweep file without plots: p99 latency, throughput and
// unavailability against the first numeric axis with several values (else the first
// axis), one line per value of the next axis with several values.
func DefaultPlots(s *Sweep) []PlotSpec {
	if len(s.Axes) == 0 {
		return nil
	}
	x := ""
	for _, a := range s.Axes {
		if (a.Kind == KindInt || a.Kind == KindFloat) && len(a.Values) > 1 {
			x = a.Name
			break
		}
	}
	if x == "" {
		x = s.Axes[0].Name
	}
	by := ""
	for _, a := range s.Axes {
		if a.Name != x && len(a.Values) > 1 {
			by = a.Name
			break
		}
	}
	var out []PlotSpec
	for _, y := range []string{"p99", "throughput", "unavailability"} {
		col, _ := resolveFigure(y)
		out = append(out, PlotSpec{X: x, Y: col, By: by, LogX: autoLog(s, x)})
	}
	return out
}

// ParsePlotFlag reads `x=rate,y=p99,by=fault[,log-x=true]` (dt sweep report --plot).
func ParsePlotFlag(s *Sweep, spec string) ([]PlotSpec, error) {
	var b strings.Builder
	b.WriteString("plots:\n  - {")
	for i, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--plot %q: each term is key=value with keys %s", spec, strings.Join(plotKeys, ", "))
		}
		if i > 0 {
			b.WriteString(", ")
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if v == "true" || v == "false" {
			fmt.Fprintf(&b, "%q: %s", k, v)
		} else {
			fmt.Fprintf(&b, "%q: %q", k, v)
		}
	}
	b.WriteString("}\n")
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(b.String()), &doc); err != nil {
		return nil, fmt.Errorf("--plot %q: %w", spec, err)
	}
	p := &parser{file: "--plot"}
	list := valueNode(doc.Content[0], "plots")
	out := p.plot(s, list.Content[0])
	if len(p.errs) > 0 {
		var msgs []string
		for _, e := range p.errs {
			if fe, ok := e.(*Error); ok {
				msgs = append(msgs, fe.Msg)
			} else {
				msgs = append(msgs, e.Error())
			}
		}
		return nil, fmt.Errorf("--plot %q: %s", spec, strings.Join(msgs, "; "))
	}
	return out, nil
}
