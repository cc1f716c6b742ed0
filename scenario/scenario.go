// Package scenario owns scenario files: one YAML file that holds an experiment (system,
// topology, workload, duration, any other `dt run` flag) and the timeline of fault steps
// to run against it (`dt run -f scenario.yaml`). It reads them strictly, with every error
// at file:line:column and naming the valid choices, and checks them against a topology's
// node names. The steps are faults.Step values and their rules are faults'
// (faults.ValidateTimeline); this package only knows where each was written.
//
// The format (see examples/scenarios/ for commented ones):
//
//	name: pause-and-ports        # optional; default: the file's name without extension
//	system: etcd                 # dt run's SYSTEM
//	topology: simple             # a topology builder, or a topology file relative to this file
//	workload: uniform            # optional; default uniform
//	duration: 30s                # the workload's length T: 500ms, 30s, 1m, or seconds
//	seed: 7                      # optional
//	options:                     # optional: any other dt run flag, by its long name
//	  rate: 200
//	  number-nodes: 5
//	processes:                   # optional: started on nodes, through their agents, before the workload
//	  - node: c1
//	    name: probe
//	    command: [dt, probe, etcd, --listen, "127.0.0.1:7070"]
//	    env: {GODEBUG: "http2debug=1"}
//	steps:                       # the timeline: faults.Step, by its yaml names
//	  - action: pause
//	    targets: leader          # one target, or a list
//	    at: 5s
//	    duration: 3s
//	    probe: {url: "http://127.0.0.1:7070/check", from: c1}
package scenario

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/internal/yamlfile"
	"github.com/dtlab/dt/topology"
	"gopkg.in/yaml.v3"
)

// Scenario is an experiment and its fault timeline, as read from a file.
type Scenario struct {
	File     string // the file it was read from, as given to Load or Parse; errors name it
	Name     string // the file's name without extension unless it sets one
	System   string
	Topology string // a builder name, or a topology file's path usable from the working directory
	Workload string
	Duration faults.Duration
	Seed     *int64 // nil: not set
	// Options are the other `dt run` flags, in file order, for the CLI to Set.
	Options   []Option
	Processes []Process
	// Steps have Source set to "file:line".
	Steps []faults.Step

	// where each step and process was written; nil for a Scenario built in code
	places *places
}

// Option is one `dt run` flag set by a scenario: Name is its long name (no dashes) and
// Value what the file wrote, as pflag's Set takes it.
type Option struct {
	Name, Value string
	Line        int // for the CLI's errors: file:Line
}

// Process is a program an experiment starts on a node, through its agent, before the
// workload (a probe server, a load generator...). Command is argv: no shell.
type Process struct {
	Node, Name string
	Command    []string
	Env        map[string]string
	Line       int
}

// Error is a problem at a place in a scenario file. Errors from Parse, Load and
// Validate are *Error values joined with errors.Join.
type Error = yamlfile.Error

// Load reads a scenario file (see Parse).
func Load(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	return Parse(path, b)
}

// Parse reads b, the contents of the scenario file at path file: errors name it, its
// base name is the default name and a topology file is relative to its directory. It
// checks all that does not depend on the topology — keys, kinds, durations, the system,
// workload and topology names, each step's action and fields — and reports every problem
// at once; Validate checks node names and selectors once the topology is known.
func Parse(file string, b []byte) (*Scenario, error) {
	p := &parser{file: file}
	root := p.document(b)
	if root == nil {
		return nil, p.err()
	}
	s := p.scenario(root)
	if err := p.err(); err != nil {
		return nil, err
	}
	return s, nil
}

// Validate checks s against the cluster it will run on: every target, group member and
// probe's from (node names and selectors, see faults.Selectors) and every process's node.
// c holds the real node names (the CLI builds the topology's spec for it; nothing is
// created). Every problem is reported, each at its place in the file.
func (s *Scenario) Validate(c faults.Cluster) error {
	var errs []*Error
	for _, se := range stepErrors(faults.ValidateTimeline(s.Steps, c)) {
		errs = append(errs, s.stepError(se))
	}
	for i, pr := range s.Processes {
		if slices.Contains(c.Nodes, pr.Node) {
			continue
		}
		e := &Error{File: s.File, Line: pr.Line, Msg: fmt.Sprintf("process %d (%s): node: unknown node %q: nodes are %s",
			i+1, pr.Name, pr.Node, strings.Join(c.Nodes, ", "))}
		if s.places != nil && i < len(s.places.procNodes) {
			e.Line, e.Column = s.places.procNodes[i].Line, s.places.procNodes[i].Column
		}
		errs = append(errs, e)
	}
	return joinSorted(errs)
}

// places keeps the nodes each step and process was read from, for Validate's errors.
type places struct {
	steps     []stepPlace
	procNodes []*yaml.Node // each process's node: value
}

// stepPlace is where one step and each of its fields was written.
type stepPlace struct {
	node   *yaml.Node            // the step's mapping
	keys   map[string]*yaml.Node // field name -> its key
	values map[string]*yaml.Node // field name -> its value
	// bad fields could not be read: faults' verdicts on them would be about a zero value.
	bad map[string]bool
}

// stepError places a faults.StepError at the value it blames when its message names one
// (`unknown target "s9"` -> that element of a targets list), else at the field's key,
// else (a missing field) at the step.
func (s *Scenario) stepError(se *faults.StepError) *Error {
	if se.Index < 0 || se.Index >= len(s.Steps) {
		return &Error{File: s.File, Msg: se.Err.Error()}
	}
	label := fmt.Sprintf("step %d", se.Index+1)
	if s.Steps[se.Index].Action != "" {
		label += " (" + s.Steps[se.Index].Action + ")"
	}
	msg := label + ": " + se.Err.Error()
	if se.Field != "" {
		msg = label + ": " + se.Field + ": " + se.Err.Error()
	}
	e := &Error{File: s.File, Msg: msg}
	if s.places != nil && se.Index < len(s.places.steps) {
		at := s.places.steps[se.Index].place(se.Field, se.Err.Error())
		e.Line, e.Column = at.Line, at.Column
	} else {
		e.Line = sourceLine(s.Steps[se.Index].Source)
	}
	return e
}

func (sp stepPlace) place(field, msg string) *yaml.Node {
	v, ok := sp.values[field]
	if !ok {
		return sp.node
	}
	if n := mentioned(v, msg); n != nil {
		return n
	}
	return sp.keys[field]
}

// mentioned finds the scalar value under n that msg is about: quoted in it, or opening
// it as "value: ...". faults' errors name a bad target that way; this is only a finer
// position, and the field's key is used when nothing matches.
func mentioned(n *yaml.Node, msg string) *yaml.Node {
	n = deref(n)
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value != "" && (strings.Contains(msg, strconv.Quote(n.Value)) || strings.HasPrefix(msg, n.Value+":")) {
			return n
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if m := mentioned(c, msg); m != nil {
				return m
			}
		}
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			if m := mentioned(n.Content[i], msg); m != nil {
				return m
			}
		}
	}
	return nil
}

// sourceLine reads the line of a Source "file:line"; 0 if it has none.
func sourceLine(src string) int {
	i := strings.LastIndexByte(src, ':')
	if i < 0 {
		return 0
	}
	n, _ := strconv.Atoi(src[i+1:])
	return n
}

// stepErrors unpacks ValidateTimeline's joined errors.
func stepErrors(err error) []*faults.StepError {
	if err == nil {
		return nil
	}
	list := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	}
	var out []*faults.StepError
	for _, e := range list {
		var se *faults.StepError
		if !errors.As(e, &se) {
			se = &faults.StepError{Index: -1, Err: e}
		}
		out = append(out, se)
	}
	return out
}

// joinSorted joins errs in file order.
func joinSorted(errs []*Error) error {
	slices.SortStableFunc(errs, func(a, b *Error) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}

// defaultName is the file's base name without its extension.
func defaultName(file string) string {
	base := filepath.Base(file)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// resolveTopology makes a topology file's path relative to the scenario file usable from
// the working directory, and still a file to topology.IsFile ("./topo", not "topo").
func resolveTopology(file, topo string) string {
	if filepath.IsAbs(topo) {
		return topo
	}
	r := filepath.Join(filepath.Dir(file), topo)
	if !topology.IsFile(r) {
		r = "./" + r
	}
	return r
}
