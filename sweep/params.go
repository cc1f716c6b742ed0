package sweep

import (
	"fmt"
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
}

// params is the one table from flag names to experiment.Config. `seed` and `results` are
// left out on purpose: a sweep derives every run's seed and owns where runs go.
var params = []param{
	{"system", func(c *experiment.Config) any { return &c.System }},
	{"topology", func(c *experiment.Config) any { return &c.Topology }},
	{"workload", func(c *experiment.Config) any { return &c.Workload }},
	{"fault", func(c *experiment.Config) any { return &c.Fault }},
	{"number-nodes", func(c *experiment.Config) any { return &c.Nodes }},
	{"number-clients", func(c *experiment.Config) any { return &c.Clients }},
	{"datapath", func(c *experiment.Config) any { return &c.Datapath }},
	{"duration", func(c *experiment.Config) any { return &c.Duration }},
	{"rate", func(c *experiment.Config) any { return &c.Rate }},
	{"arrival-process", func(c *experiment.Config) any { return &c.Arrival }},
	{"max-key", func(c *experiment.Config) any { return &c.MaxKey }},
	{"payload-size", func(c *experiment.Config) any { return &c.PayloadSize }},
	{"write-ratio", func(c *experiment.Config) any { return &c.WriteRatio }},
	{"max-inflight", func(c *experiment.Config) any { return &c.MaxInflight }},
	{"op-timeout", func(c *experiment.Config) any { return &c.OpTimeout }},
	{"client-endpoints", func(c *experiment.Config) any { return &c.ClientEndpoints }},
	{"failure-timeout", func(c *experiment.Config) any { return &c.FailureTimeout }},
	{"pre-vote", func(c *experiment.Config) any { return &c.PreVote }},
	{"system-bin", func(c *experiment.Config) any { return &c.SystemBin }},
	{"etcd-bin", func(c *experiment.Config) any { return &c.SystemBin }},
	{"mtbf", func(c *experiment.Config) any { return &c.MTBF }},
	{"kill-n", func(c *experiment.Config) any { return &c.KillN }},
	{"kill-target", func(c *experiment.Config) any { return &c.KillTarget }},
	{"link-latency", func(c *experiment.Config) any { return &c.LinkLatency }},
	{"link-loss", func(c *experiment.Config) any { return &c.LinkLoss }},
	{"link-jitter", func(c *experiment.Config) any { return &c.LinkJitter }},
	{"link-bandwidth", func(c *experiment.Config) any { return &c.LinkBandwidth }},
	{"shaper", func(c *experiment.Config) any { return &c.Shaper }},
	{"fault-delay", func(c *experiment.Config) any { return &c.FaultDelay }},
	{"fault-jitter", func(c *experiment.Config) any { return &c.FaultJitter }},
	{"fault-loss", func(c *experiment.Config) any { return &c.FaultLoss }},
	{"fault-rate", func(c *experiment.Config) any { return &c.FaultRate }},
	{"check-timeout", func(c *experiment.Config) any { return &c.CheckTimeout }},
	{"snapshot-count", func(c *experiment.Config) any { return &c.SnapshotCount }},
	// schedule: random with a fault label draws each run's faults from its derived seed.
	{"schedule", func(c *experiment.Config) any { return &c.Schedule }},
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
