package faults

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
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
	Rate      string     `json:"rate,omitempty" yaml:"rate"`           // limitspeed, link: "1mbit" (a bare number is Mbit/s)
	Timeout   Duration   `json:"timeout,omitempty" yaml:"timeout"`     // wait-healthy, kill-until-snapshot, power-loss, corrupt

	// The disk actions' arguments (disk-error, disk-slow, disk-full, power-loss, corrupt).
	Errno       string  `json:"errno,omitempty" yaml:"errno"`             // disk-error: EIO, ENOSPC, EROFS...
	Ops         Words   `json:"ops,omitempty" yaml:"ops"`                 // disk-error, disk-slow: open, read, write, fsync, rename...
	Path        string  `json:"path,omitempty" yaml:"path"`               // disk-error, disk-slow, disk-full: a glob in the data dir
	Probability float64 `json:"probability,omitempty" yaml:"probability"` // disk-error, disk-slow: 0 < p <= 1 (default 1)
	Bytes       string  `json:"bytes,omitempty" yaml:"bytes"`             // disk-full: space left ("0", "64KiB"); corrupt: how much
	File        string  `json:"file,omitempty" yaml:"file"`               // corrupt: a file the system names (wal, snap, db) or a glob
	Pick        string  `json:"pick,omitempty" yaml:"pick"`               // corrupt: newest | oldest | random of the matching files

	// Probe is called after the step is applied; its outcome is recorded as an event.
	Probe *Probe `json:"probe,omitempty" yaml:"probe"`

	// OneWay: a partition of two groups drops only what goes from the first to the second.
	OneWay bool `json:"one_way,omitempty" yaml:"one-way"`

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

// Words is a list of words that may also be written as one comma-separated word
// ("fsync,write"), as at the prompt: `do disk-error s1 errno=EIO ops=fsync,write`.
type Words []string

// UnmarshalYAML reads a list, or a scalar split at its commas.
func (w *Words) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*w = nil
		for _, x := range strings.Split(n.Value, ",") {
			if x = strings.TrimSpace(x); x != "" {
				*w = append(*w, x)
			}
		}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*w = list
	return nil
}

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

// Selectors are the target words resolved when a step fires; "@ID" is another step's
// resolved targets, and a node name is itself.
var Selectors = []string{"leader", "follower", "followers", "followers(k)", "minority", "majority", "all", "random(k)", "clients", "nodes"}

// Cluster is what validation knows of the topology: node names and which are servers.
type Cluster struct {
	Nodes   []string
	Servers []string
	// Caps are the capabilities the run offers (Offers of its Env); nil: every one.
	Caps []Capability
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
			errs = append(errs, &StepError{Index: i, Field: err.Field, Err: err.Err})
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

func validateStep(s Step, c Cluster, ids map[string]bool) []FieldError {
	var errs []FieldError
	bad := func(field, format string, a ...any) { errs = append(errs, fieldErrorf(field, format, a...)) }
	a, err := LookupAction(s.Action)
	if err != nil {
		return []FieldError{{"action", err}}
	}
	form := a.Form()
	if s.ID != "" && ids[s.ID] {
		bad("id", "id %q used twice", s.ID)
	}
	if s.ID != "" && strings.ContainsAny(s.ID, "@ \t,()") {
		bad("id", "id %q: use letters, digits, '-' and '_'", s.ID)
	}
	if miss := c.missing(form.Needs); len(miss) > 0 {
		bad("action", "%v", needError(s.Action, miss))
	}
	switch {
	case form.Targets == TargetsNone && len(s.Targets) > 0:
		bad("targets", "%s takes no targets", a.Name())
	case form.Targets == TargetsRequired && len(s.Targets) == 0:
		bad("targets", "%s needs targets: node names or %s", a.Name(), strings.Join(Selectors, ", "))
	}
	for _, t := range s.Targets {
		if err := checkSelector(t, c, ids); err != nil {
			bad("targets", "%v", err)
		}
	}
	for _, g := range s.Groups {
		for _, t := range g {
			if err := checkSelector(t, c, ids); err != nil {
				bad("groups", "%v", err)
			}
		}
	}
	undoable := IsUndoable(a)
	for _, f := range s.usedFields() {
		if !slices.Contains(form.Fields, f) && !(undoable && (f == "duration" || f == "every" || f == "until")) {
			valid := slices.Clone(form.Fields)
			if undoable {
				valid = append(valid, "duration", "every", "until")
			}
			if len(valid) == 0 {
				bad(f, "%s takes no %s (it takes only id, targets, at, after, probe)", a.Name(), f)
			} else {
				bad(f, "%s takes no %s; it takes %s", a.Name(), f, strings.Join(valid, ", "))
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
	if ch, ok := a.(Checker); ok {
		errs = append(errs, ch.Check(s, c)...)
	}
	if p := s.Probe; p != nil {
		if !strings.HasPrefix(p.URL, "http://") && !strings.HasPrefix(p.URL, "https://") {
			bad("probe", "probe url %q: want an http:// or https:// URL", p.URL)
		}
		if p.From != "" && !slices.Contains(c.Nodes, p.From) {
			bad("probe", "probe from %q: unknown node; nodes are %s", p.From, strings.Join(c.Nodes, ", "))
		}
		if miss := c.missing([]Capability{CapProbe}); len(miss) > 0 {
			bad("probe", "%v", needError("a probe", miss))
		}
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
	add(s.Errno != "", "errno")
	add(len(s.Ops) > 0, "ops")
	add(s.Path != "", "path")
	add(s.Probability != 0, "probability")
	add(s.Bytes != "", "bytes")
	add(s.File != "", "file")
	add(s.Pick != "", "pick")
	add(s.OneWay, "one-way")
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
	leaderBased := t == "leader" || t == "follower" || t == "followers" || strings.HasPrefix(t, "followers(")
	if miss := c.missing([]Capability{CapClusterView}); leaderBased && len(miss) > 0 {
		return needError("target "+t, miss)
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
