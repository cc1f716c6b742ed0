package faults

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dtlab/dt/shaping"
)

// Step is one entry of a fault timeline: an action on targets, at a time, optionally
// undone after a duration and followed by a probe. Scenario files, the positional
// faults of `dt run` and seeded random schedules are all lists of steps, run by
// RunTimeline. Fields an action does not use must stay empty (ValidateStep says which).
type Step struct {
	// ID names the step in events (default: "<action>#<index>"); later steps refer to its
	// resolved targets as "@ID".
	ID     string `json:"id,omitempty" yaml:"id"`
	Action string `json:"action" yaml:"action"`
	// Targets are node names or selectors resolved when the step fires (see Selectors).
	Targets []string `json:"targets,omitempty" yaml:"targets"`

	// At is the time from the workload's start at which the step fires; After, the time
	// after the previous step fired. Neither: right after the previous step.
	At    *Duration `json:"at,omitempty" yaml:"at"`
	After Duration  `json:"after,omitempty" yaml:"after"`
	// For undoes the step's effect that long after it was applied (a kill is undone by a
	// restart, a pause by a continue, a partition by its heal...). Zero: it lasts until a
	// later step undoes it, or to the end of the run.
	For Duration `json:"duration,omitempty" yaml:"duration"`
	// Every re-applies the step (same targets) every Every until Until, each time undone
	// after For: an intermittent fault.
	Every Duration `json:"every,omitempty" yaml:"every"`
	Until Duration `json:"until,omitempty" yaml:"until"`

	// Arguments, by action.
	Groups    [][]string `json:"groups,omitempty" yaml:"groups"`       // partition: explicit groups of targets
	Mode      string     `json:"mode,omitempty" yaml:"mode"`           // partition: random-halves | majorities-ring | bridge
	Port      int        `json:"port,omitempty" yaml:"port"`           // dropport, recoverport, droppkg
	Proto     string     `json:"proto,omitempty" yaml:"proto"`         // dropport, recoverport: tcp | udp | "" (both)
	Direction string     `json:"direction,omitempty" yaml:"direction"` // droppkg, delay, loss, limitspeed: in | out | both
	Delay     Duration   `json:"delay,omitempty" yaml:"delay"`         // delay
	Jitter    Duration   `json:"jitter,omitempty" yaml:"jitter"`       // delay
	Loss      float64    `json:"loss,omitempty" yaml:"loss"`           // droppkg, loss: percent
	Rate      string     `json:"rate,omitempty" yaml:"rate"`           // limitspeed: "1mbit" (a bare number is Mbit/s)
	Timeout   Duration   `json:"timeout,omitempty" yaml:"timeout"`     // wait-healthy, kill-until-snapshot

	// Probe is called after the step is applied; its outcome is recorded as an event.
	Probe *Probe `json:"probe,omitempty" yaml:"probe"`

	// Source says where the step was written ("scenario.yaml:12"), for errors.
	Source string `json:"-" yaml:"-"`
}

// Probe is an HTTP request made after a step from inside a node's namespace (through its
// agent): the cluster's addresses are only reachable from there.
type Probe struct {
	URL string `json:"url" yaml:"url"`
	// From is the node that makes the request (default: the first client).
	From    string   `json:"from,omitempty" yaml:"from"`
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout"`
}

// ProbeResult is what a probe returned.
type ProbeResult struct {
	Status  int     `json:"status"`
	Body    string  `json:"body,omitempty"`
	Error   string  `json:"error,omitempty"`
	Seconds float64 `json:"seconds"`
}

// OK is a 2xx answer.
func (r ProbeResult) OK() bool { return r.Error == "" && r.Status >= 200 && r.Status < 300 }

// Duration is a time.Duration written as "1.5s" in YAML and JSON; a bare number is seconds.
type Duration time.Duration

// D is d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// ParseDuration reads "250ms", "2m" or a bare number of seconds; negative is an error.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	var d time.Duration
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		d = time.Duration(f * float64(time.Second))
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, fmt.Errorf("bad duration %q: want e.g. 500ms, 20s, 2m, or a number of seconds", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("bad duration %q: must not be negative", s)
	}
	return Duration(d), nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		s = string(b)
	}
	v, err := ParseDuration(s)
	*d = v
	return err
}

// UnmarshalText lets yaml.v3 (and flags) read a Duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	*d = v
	return err
}

// Action describes one step action for validation, `dt faults` and errors.
type Action struct {
	Name     string
	Describe string
	// Targets: "required", "optional" or "none".
	Targets string
	// Fields are the argument fields the action accepts (yaml names), beyond the common
	// ones (id, action, targets, at, after, probe).
	Fields []string
	// Undoable actions accept duration/every/until.
	Undoable bool
}

// Actions lists every step action.
var Actions = []Action{
	{Name: "start", Describe: "start the member again on the targets (after stop or kill), keeping its data", Targets: "required"},
	{Name: "stop", Describe: "stop the targets' members gracefully (SIGTERM); undone by start", Targets: "required", Undoable: true},
	{Name: "kill", Describe: "SIGKILL the targets' members; undone by a restart", Targets: "required", Undoable: true},
	{Name: "restart", Describe: "stop (if alive) and start the targets' members, keeping their data", Targets: "required"},
	{Name: "pause", Describe: "SIGSTOP the targets' members; undone by continue", Targets: "required", Undoable: true},
	{Name: "continue", Describe: "SIGCONT the targets' members", Targets: "required"},
	{Name: "kill-until-snapshot", Describe: "kill the targets, keep them down until the leader has compacted its log past them (or timeout), restart them: they must catch up from a snapshot", Targets: "required", Fields: []string{"timeout"}},
	{Name: "partition", Describe: "cut the network between groups: groups: [[a,b],[c]] or mode: random-halves | majorities-ring | bridge (of the targets, default all servers)", Targets: "optional", Fields: []string{"groups", "mode"}, Undoable: true},
	{Name: "isolate", Describe: "cut the targets from every other node (each target alone)", Targets: "required", Undoable: true},
	{Name: "heal", Describe: "undo every partition, isolate, port and link fault still in place (targets: @id to heal one step)", Targets: "optional"},
	{Name: "dropport", Describe: "drop packets from other nodes to port (proto tcp|udp, default both) on the targets", Targets: "required", Fields: []string{"port", "proto"}, Undoable: true},
	{Name: "recoverport", Describe: "undo dropport of that port on the targets", Targets: "required", Fields: []string{"port", "proto"}},
	{Name: "droppkg", Describe: "lose loss % of the targets' packets (direction in|out|both)", Targets: "required", Fields: []string{"loss", "direction"}, Undoable: true},
	{Name: "loss", Describe: "lose loss % of the packets to or from the targets (direction in|out|both; no targets: every path)", Targets: "optional", Fields: []string{"loss", "direction"}, Undoable: true},
	{Name: "delay", Describe: "add delay (and jitter) to packets to or from the targets (no targets: every path)", Targets: "optional", Fields: []string{"delay", "jitter", "direction"}, Undoable: true},
	{Name: "limitspeed", Describe: "limit the targets' packets to rate (e.g. 1mbit)", Targets: "optional", Fields: []string{"rate", "direction"}, Undoable: true},
	{Name: "backup", Describe: "copy the targets' data dirs into the run directory", Targets: "required"},
	{Name: "cleanup", Describe: "delete the targets' data dirs (stop them first)", Targets: "required"},
	{Name: "shutdown", Describe: "stop every member gracefully", Targets: "none"},
	{Name: "init", Describe: "start every member that is not running and wait for a leader", Targets: "none", Fields: []string{"timeout"}},
	{Name: "sleep", Describe: "wait (duration) before the next step", Targets: "none", Fields: []string{"duration"}},
	{Name: "wait-healthy", Describe: "wait until every running member is healthy and agrees on a leader (timeout, default 30s)", Targets: "none", Fields: []string{"timeout"}},
	{Name: "probe", Describe: "only call the probe", Targets: "none"},
}

// PartitionModes are partition's generated shapes (Jepsen's nemeses).
var PartitionModes = []string{"random-halves", "majorities-ring", "bridge"}

// Selectors are the target words resolved when a step fires; "@ID" is another step's
// resolved targets, and a node name is itself.
var Selectors = []string{"leader", "follower", "followers", "followers(k)", "minority", "majority", "all", "random(k)", "clients", "nodes"}

// LookupAction finds an action; unknown names are an error listing the valid ones.
func LookupAction(name string) (Action, error) {
	for _, a := range Actions {
		if a.Name == name {
			return a, nil
		}
	}
	return Action{}, fmt.Errorf("unknown action %q: valid actions are %s", name, strings.Join(ActionNames(), ", "))
}

// ActionNames lists the actions in the order of Actions.
func ActionNames() []string {
	var out []string
	for _, a := range Actions {
		out = append(out, a.Name)
	}
	return out
}

// Cluster is what validation knows of the topology: node names and which are servers.
type Cluster struct {
	Nodes   []string
	Servers []string
}

// StepError is a problem with one step; Field is its yaml field name when one is to blame.
type StepError struct {
	Index int // 0-based position in the timeline
	Field string
	Err   error
}

func (e *StepError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("step %d: %s: %v", e.Index+1, e.Field, e.Err)
	}
	return fmt.Sprintf("step %d: %v", e.Index+1, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// ValidateTimeline checks every step against the actions and the cluster; errors are
// *StepError values joined, one per problem.
func ValidateTimeline(steps []Step, c Cluster) error {
	var errs []error
	ids := map[string]bool{}
	var lastAt *Duration
	for i, s := range steps {
		for _, err := range validateStep(s, c, ids) {
			errs = append(errs, &StepError{Index: i, Field: err.field, Err: err.err})
		}
		if s.At != nil {
			if lastAt != nil && *s.At < *lastAt {
				errs = append(errs, &StepError{Index: i, Field: "at", Err: fmt.Errorf("at %v is before an earlier step's at %v: steps fire in the order written", *s.At, *lastAt)})
			} else {
				lastAt = s.At
			}
		}
		if s.ID != "" {
			ids[s.ID] = true
		}
	}
	return errors.Join(errs...)
}

type fieldErr struct {
	field string
	err   error
}

func validateStep(s Step, c Cluster, ids map[string]bool) []fieldErr {
	var errs []fieldErr
	bad := func(field, format string, a ...any) {
		errs = append(errs, fieldErr{field, fmt.Errorf(format, a...)})
	}
	a, err := LookupAction(s.Action)
	if err != nil {
		return []fieldErr{{"action", err}}
	}
	if s.ID != "" && ids[s.ID] {
		bad("id", "id %q used twice", s.ID)
	}
	if s.ID != "" && strings.ContainsAny(s.ID, "@ \t,()") {
		bad("id", "id %q: use letters, digits, '-' and '_'", s.ID)
	}
	switch {
	case a.Targets == "none" && len(s.Targets) > 0:
		bad("targets", "%s takes no targets", a.Name)
	case a.Targets == "required" && len(s.Targets) == 0:
		bad("targets", "%s needs targets: node names or %s", a.Name, strings.Join(Selectors, ", "))
	}
	for _, t := range s.Targets {
		if err := checkSelector(t, c, ids); err != nil {
			bad("targets", "%v", err)
		}
	}
	used := s.usedFields()
	for _, f := range used {
		if !slices.Contains(a.Fields, f) && !(a.Undoable && (f == "duration" || f == "every" || f == "until")) {
			valid := append([]string{}, a.Fields...)
			if a.Undoable {
				valid = append(valid, "duration", "every", "until")
			}
			if len(valid) == 0 {
				bad(f, "%s takes no %s (it takes only id, targets, at, after, probe)", a.Name, f)
			} else {
				bad(f, "%s takes no %s; it takes %s", a.Name, f, strings.Join(valid, ", "))
			}
		}
	}
	if s.At != nil && s.After != 0 {
		bad("after", "give at or after, not both")
	}
	if s.Every != 0 {
		if s.For == 0 || s.For >= s.Every {
			bad("every", "every %v needs a duration shorter than it (the fault is on for duration, off for the rest)", s.Every)
		}
		if s.Until == 0 {
			bad("until", "every needs until: the time from the workload's start when the repetitions stop")
		}
	} else if s.Until != 0 {
		bad("until", "until is only for a step that repeats (every)")
	}
	if a.Name == "sleep" && s.For == 0 {
		bad("duration", "sleep needs a duration")
	}
	switch a.Name {
	case "partition":
		if (len(s.Groups) == 0) == (s.Mode == "") {
			bad("groups", "partition needs groups: [[a,b],[c]] or mode: %s (one of them)", strings.Join(PartitionModes, " | "))
		}
		if s.Mode != "" && !slices.Contains(PartitionModes, s.Mode) {
			bad("mode", "unknown mode %q: valid are %s", s.Mode, strings.Join(PartitionModes, ", "))
		}
		if len(s.Groups) > 0 && len(s.Targets) > 0 {
			bad("targets", "partition with groups takes its nodes from the groups, not targets")
		}
		if len(s.Groups) == 1 {
			bad("groups", "partition needs at least two groups")
		}
		for _, g := range s.Groups {
			if len(g) == 0 {
				bad("groups", "a group is empty")
			}
			for _, t := range g {
				if err := checkSelector(t, c, ids); err != nil {
					bad("groups", "%v", err)
				}
			}
		}
	case "dropport", "recoverport":
		if s.Port < 1 || s.Port > 65535 {
			bad("port", "port %d: want 1..65535", s.Port)
		}
		if s.Proto != "" && s.Proto != "tcp" && s.Proto != "udp" {
			bad("proto", "proto %q: valid are tcp, udp (empty: both)", s.Proto)
		}
	case "droppkg", "loss":
		if s.Loss <= 0 || s.Loss > 100 {
			bad("loss", "loss %g: want a percentage in (0, 100]", s.Loss)
		}
	case "delay":
		if s.Delay <= 0 || s.Delay.D() > shaping.MaxDelay {
			bad("delay", "delay %v: want (0, %v]", s.Delay, shaping.MaxDelay)
		}
		if s.Jitter.D() > shaping.MaxDelay {
			bad("jitter", "jitter %v: want at most %v", s.Jitter, shaping.MaxDelay)
		}
	case "limitspeed":
		if s.Rate == "" {
			bad("rate", "limitspeed needs rate (e.g. 1mbit, 500kbit)")
		} else if r, err := shaping.ParseRate(s.Rate, 1e6); err != nil {
			bad("rate", "%v", err)
		} else if r < shaping.MinRate {
			bad("rate", "rate %s: want at least %d bit/s", s.Rate, shaping.MinRate)
		}
	}
	if s.Direction != "" && s.Direction != "in" && s.Direction != "out" && s.Direction != "both" {
		bad("direction", "direction %q: valid are in, out, both", s.Direction)
	}
	if p := s.Probe; p != nil {
		if !strings.HasPrefix(p.URL, "http://") && !strings.HasPrefix(p.URL, "https://") {
			bad("probe", "probe url %q: want an http:// or https:// URL", p.URL)
		}
		if p.From != "" && !slices.Contains(c.Nodes, p.From) {
			bad("probe", "probe from %q: unknown node; nodes are %s", p.From, strings.Join(c.Nodes, ", "))
		}
	} else if a.Name == "probe" {
		bad("probe", "a probe step needs probe: {url: ...}")
	}
	return errs
}

// usedFields lists the argument fields s sets, by yaml name.
func (s Step) usedFields() []string {
	var f []string
	add := func(set bool, name string) {
		if set {
			f = append(f, name)
		}
	}
	add(s.For != 0, "duration")
	add(s.Every != 0, "every")
	add(s.Until != 0, "until")
	add(len(s.Groups) > 0, "groups")
	add(s.Mode != "", "mode")
	add(s.Port != 0, "port")
	add(s.Proto != "", "proto")
	add(s.Direction != "", "direction")
	add(s.Delay != 0, "delay")
	add(s.Jitter != 0, "jitter")
	add(s.Loss != 0, "loss")
	add(s.Rate != "", "rate")
	add(s.Timeout != 0, "timeout")
	return f
}

// checkSelector accepts a node name, a selector or "@ID" of an earlier step.
func checkSelector(t string, c Cluster, ids map[string]bool) error {
	if strings.HasPrefix(t, "@") {
		if !ids[t[1:]] {
			return fmt.Errorf("%s: no earlier step has id %q", t, t[1:])
		}
		return nil
	}
	if slices.Contains(c.Nodes, t) {
		return nil
	}
	switch t {
	case "leader", "follower", "followers", "minority", "majority", "all", "clients", "nodes":
		return nil
	}
	if k, ok := countSelector(t, "random"); ok {
		if k < 1 || k > len(c.Servers) {
			return fmt.Errorf("%s: want 1..%d (the number of servers)", t, len(c.Servers))
		}
		return nil
	}
	if k, ok := countSelector(t, "followers"); ok {
		if k < 1 || k > len(c.Servers)-1 {
			return fmt.Errorf("%s: want 1..%d (the number of followers)", t, len(c.Servers)-1)
		}
		return nil
	}
	return fmt.Errorf("unknown target %q: nodes are %s; selectors are %s, @ID",
		t, strings.Join(c.Nodes, ", "), strings.Join(Selectors, ", "))
}

// countSelector parses "name(k)".
func countSelector(t, name string) (int, bool) {
	if !strings.HasPrefix(t, name+"(") || !strings.HasSuffix(t, ")") {
		return 0, false
	}
	k, err := strconv.Atoi(t[len(name)+1 : len(t)-1])
	if err != nil {
		return -1, true
	}
	return k, true
}
