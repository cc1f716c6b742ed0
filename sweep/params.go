package sweep

import (
	"fmt"
	"maps"
	"math"
	"strconv"
	"strings"

	"github.com/dtlab/dt/experiment"
)

// Kind is the type of a parameter's values.
type Kind int

// Parameter kinds.
const (
	KindString Kind = iota
	KindInt
	KindFloat
	KindBool
)

func (k Kind) String() string {
	return [...]string{"string", "integer", "number", "boolean"}[k]
}

// param is one `dt run` parameter a sweep may set, by its flag name (the four positional
// arguments by their names). field returns a pointer into the Config: *string, *int,
// *float64 or *bool; that pointer's type is the parameter's kind.
type param struct {
	name  string
	field func(c *experiment.Config) any
	// opt, for system-opt.KEY, is the --system-opt KEY it sets (a string; the system
	// checks key and value when every point is validated).
	opt string
}

// systemOptPrefix names a --system-opt as a sweep parameter: system-opt.version.
const systemOptPrefix = "system-opt."

// params is the one table from flag names to experiment.Config. `seed` and `results` are
// left out on purpose: a sweep derives every run's seed and owns where runs go.
var params = []param{
	{name: "system", field: func(c *experiment.Config) any { return &c.System }},
	{name: "topology", field: func(c *experiment.Config) any { return &c.Topology }},
	{name: "workload", field: func(c *experiment.Config) any { return &c.Workload }},
	{name: "fault", field: func(c *experiment.Config) any { return &c.Fault }},
	{name: "number-nodes", field: func(c *experiment.Config) any { return &c.Nodes }},
	{name: "number-clients", field: func(c *experiment.Config) any { return &c.Clients }},
	{name: "datapath", field: func(c *experiment.Config) any { return &c.Datapath }},
	{name: "disk", field: func(c *experiment.Config) any { return &c.Disk }},
	{name: "duration", field: func(c *experiment.Config) any { return &c.Duration }},
	{name: "rate", field: func(c *experiment.Config) any { return &c.Rate }},
	{name: "arrival-process", field: func(c *experiment.Config) any { return &c.Arrival }},
	{name: "max-key", field: func(c *experiment.Config) any { return &c.MaxKey }},
	{name: "payload-size", field: func(c *experiment.Config) any { return &c.PayloadSize }},
	{name: "write-ratio", field: func(c *experiment.Config) any { return &c.WriteRatio }},
	{name: "ops", field: func(c *experiment.Config) any { return &c.Ops }},
	{name: "read-consistency", field: func(c *experiment.Config) any { return &c.ReadConsistency }},
	{name: "max-inflight", field: func(c *experiment.Config) any { return &c.MaxInflight }},
	{name: "op-timeout", field: func(c *experiment.Config) any { return &c.OpTimeout }},
	{name: "client-endpoints", field: func(c *experiment.Config) any { return &c.ClientEndpoints }},
	{name: "failure-timeout", field: func(c *experiment.Config) any { return &c.FailureTimeout }},
	{name: "pre-vote", field: func(c *experiment.Config) any { return &c.PreVote }},
	{name: "system-bin", field: func(c *experiment.Config) any { return &c.SystemBin }},
	{name: "etcd-bin", field: func(c *experiment.Config) any { return &c.SystemBin }},
	{name: "mtbf", field: func(c *experiment.Config) any { return &c.MTBF }},
	{name: "kill-n", field: func(c *experiment.Config) any { return &c.KillN }},
	{name: "kill-target", field: func(c *experiment.Config) any { return &c.KillTarget }},
	{name: "link-latency", field: func(c *experiment.Config) any { return &c.LinkLatency }},
	{name: "link-loss", field: func(c *experiment.Config) any { return &c.LinkLoss }},
	{name: "link-jitter", field: func(c *experiment.Config) any { return &c.LinkJitter }},
	{name: "link-bandwidth", field: func(c *experiment.Config) any { return &c.LinkBandwidth }},
	{name: "shaper", field: func(c *experiment.Config) any { return &c.Shaper }},
	{name: "fault-delay", field: func(c *experiment.Config) any { return &c.FaultDelay }},
	{name: "fault-jitter", field: func(c *experiment.Config) any { return &c.FaultJitter }},
	{name: "fault-loss", field: func(c *experiment.Config) any { return &c.FaultLoss }},
	{name: "fault-rate", field: func(c *experiment.Config) any { return &c.FaultRate }},
	{name: "check-timeout", field: func(c *experiment.Config) any { return &c.CheckTimeout }},
	{name: "snapshot-count", field: func(c *experiment.Config) any { return &c.SnapshotCount }},
	// schedule: random with a fault label draws each run's faults from its derived seed.
	{name: "schedule", field: func(c *experiment.Config) any { return &c.Schedule }},
}

// reserved are `dt run` flags a sweep file may not set, with the reason.
var reserved = map[string]string{
	"seed":    "every run's seed is derived from the top-level `seed`, the point and the repeat",
	"results": "runs go into the sweep directory; use `dt sweep --results DIR` to move its root",
	"file":    "a sweep point is one experiment given by its parameters; a scenario's timeline cannot vary along axes",
	"replay":  "a replay runs one fixed timeline; sweep its experiment's parameters instead",
	"faults":  "not yet a sweep parameter (a list); with schedule: random every kind is drawn",
}

// ParamNames lists the parameters a sweep file may set in base and axes, in table order.
func ParamNames() []string {
	out := make([]string, len(params))
	for i, p := range params {
		out[i] = p.name
	}
	return out
}

func lookupParam(name string) (param, error) {
	if key, ok := strings.CutPrefix(name, systemOptPrefix); ok && key != "" {
		return param{name: name, field: func(*experiment.Config) any { return new(string) }, opt: key}, nil
	}
	for _, p := range params {
		if p.name == name {
			return p, nil
		}
	}
	if why, ok := reserved[name]; ok {
		return param{}, fmt.Errorf("%q cannot be set in a sweep file: %s", name, why)
	}
	return param{}, fmt.Errorf("unknown parameter %q%s: valid are %s", name, suggest(name, ParamNames()), strings.Join(ParamNames(), ", "))
}

func (p param) kind() Kind {
	var c experiment.Config
	switch p.field(&c).(type) {
	case *int:
		return KindInt
	case *float64:
		return KindFloat
	case *bool:
		return KindBool
	default:
		return KindString
	}
}

// Value is one parameter value: a string, int, float64 or bool, as the parameter's kind says.
type Value = any

// set stores v (already of the parameter's kind) into c.
func (p param) set(c *experiment.Config, v Value) {
	if p.opt != "" {
		// Points are copies of one Config: never write into a map they share.
		m := maps.Clone(c.SystemOpts)
		if m == nil {
			m = map[string]string{}
		}
		m[p.opt] = v.(string)
		c.SystemOpts = m
		return
	}
	switch f := p.field(c).(type) {
	case *string:
		*f = v.(string)
	case *int:
		*f = v.(int)
	case *float64:
		*f = v.(float64)
	case *bool:
		*f = v.(bool)
	}
}

// parseValue reads text (from a YAML scalar or an --only filter) as a value of kind k.
// tag is the YAML tag ("" when the text is not YAML): a number is not accepted for a bool,
// and a quoted string not for a number.
func parseValue(k Kind, text, tag string) (Value, error) {
	switch k {
	case KindInt:
		if tag != "" && tag != "!!int" && tag != "!!float" {
			return nil, fmt.Errorf("%q is not an integer", text)
		}
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			if i, err := strconv.ParseInt(text, 0, 64); err == nil {
				return int(i), nil
			}
			return nil, fmt.Errorf("%q is not an integer", text)
		}
		if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return nil, fmt.Errorf("%s is not an integer", text)
		}
		return int(f), nil
	case KindFloat:
		if tag != "" && tag != "!!int" && tag != "!!float" {
			return nil, fmt.Errorf("%q is not a number", text)
		}
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			if i, err := strconv.ParseInt(text, 0, 64); err == nil {
				return float64(i), nil
			}
			return nil, fmt.Errorf("%q is not a number", text)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%s is not a finite number", text)
		}
		return f, nil
	case KindBool:
		if tag != "" && tag != "!!bool" {
			return nil, fmt.Errorf("%q is not a boolean (true or false)", text)
		}
		b, err := strconv.ParseBool(text)
		if err != nil {
			return nil, fmt.Errorf("%q is not a boolean (true or false)", text)
		}
		return b, nil
	default:
		if tag == "!!null" {
			return nil, fmt.Errorf("a value is required")
		}
		if text == "" {
			return nil, fmt.Errorf("empty string")
		}
		return text, nil
	}
}

// FormatValue writes a value the way sweep files, --only, sweep.csv and plot labels show it.
func FormatValue(v Value) string {
	switch x := v.(type) {
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case int:
		return strconv.Itoa(x)
	case bool:
		return strconv.FormatBool(x)
	case string:
		return x
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// numeric returns v as a float64 and whether it is a number.
func numeric(v Value) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	}
	return 0, false
}

// equalValues compares two values of the same parameter.
func equalValues(a, b Value) bool {
	if x, ok := numeric(a); ok {
		y, ok := numeric(b)
		return ok && x == y
	}
	return a == b
}

// suggest is " (did you mean X?)" for the valid name closest to a misspelt one, or "".
func suggest(name string, valid []string) string {
	best, bestD := "", max(1, len(name)/3)+1 // a third of the name may be wrong
	for _, v := range valid {
		if d := editDistance(name, v); d < bestD {
			best, bestD = v, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
