package sweep

import (
	"fmt"
	"strconv"
	"strings"
)

// Filter selects runs: `fault=leader,rate=100|1000,repeat=1`. Terms joined by commas must
// all hold; values joined by | are alternatives. Keys are the sweep's axes, `repeat`
// (1-based) and `point` (p03). The zero Filter selects every run.
type Filter struct {
	terms []filterTerm
	text  []string
}

type filterTerm struct {
	key    string
	values []Value // axis values; ints for repeat, strings for point
}

// ParseFilter reads --only expressions against the sweep's axes; several expressions
// must all hold.
func ParseFilter(s *Sweep, exprs ...string) (Filter, error) {
	var f Filter
	for _, expr := range exprs {
		if strings.TrimSpace(expr) == "" {
			continue
		}
		f.text = append(f.text, expr)
		for _, t := range strings.Split(expr, ",") {
			key, vals, ok := strings.Cut(strings.TrimSpace(t), "=")
			key = strings.TrimSpace(key)
			if !ok || key == "" || strings.TrimSpace(vals) == "" {
				return Filter{}, fmt.Errorf("--only %q: each term is key=value (e.g. fault=leader,rate=1000)", expr)
			}
			ft := filterTerm{key: key}
			for _, v := range strings.Split(vals, "|") {
				v = strings.TrimSpace(v)
				val, err := filterValue(s, key, v)
				if err != nil {
					return Filter{}, fmt.Errorf("--only %q: %w", expr, err)
				}
				ft.values = append(ft.values, val)
			}
			f.terms = append(f.terms, ft)
		}
	}
	return f, nil
}

func filterValue(s *Sweep, key, v string) (Value, error) {
	switch key {
	case "repeat":
		r, err := strconv.Atoi(v)
		if err != nil || r < 1 || r > s.Repeats {
			return nil, fmt.Errorf("repeat %q: repeats are 1..%d", v, s.Repeats)
		}
		return r, nil
	case "point":
		for _, p := range s.Points {
			if p.ID == v {
				return v, nil
			}
		}
		return nil, fmt.Errorf("no point %q: points are %s..%s", v, s.Points[0].ID, s.Points[len(s.Points)-1].ID)
	}
	ax, ok := s.Axis(key)
	if !ok {
		valid := append(s.AxisNames(), "repeat", "point")
		return nil, fmt.Errorf("%q is not an axis of this sweep: valid keys are %s", key, strings.Join(valid, ", "))
	}
	val, err := parseValue(ax.Kind, v, "")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	for _, x := range ax.Values {
		if equalValues(x, val) {
			return val, nil
		}
	}
	var vals []string
	for _, x := range ax.Values {
		vals = append(vals, FormatValue(x))
	}
	return nil, fmt.Errorf("%s=%s is not a value of the axis: its values are %s", key, v, strings.Join(vals, ", "))
}

// Match reports whether the filter selects run r.
func (f Filter) Match(r Run) bool {
	for _, t := range f.terms {
		var got Value
		switch t.key {
		case "repeat":
			got = r.Repeat
		case "point":
			got = r.Point.ID
		default:
			got, _ = r.Point.Get(t.key)
		}
		any := false
		for _, v := range t.values {
			any = any || equalValues(got, v)
		}
		if !any {
			return false
		}
	}
	return true
}

// Empty is true for the filter that selects everything.
func (f Filter) Empty() bool { return len(f.terms) == 0 }

func (f Filter) String() string { return strings.Join(f.text, " and ") }
