package faults

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Action is one kind of timeline step (kill, partition, delay, ...): a value in the
// registry, which is the only list of actions — `dt faults`, step validation, scenario
// files, random schedules and the debug prompt all read it. An action is either Instant
// (it does its work when the step fires) or Undoable (it leaves an Effect in place that
// the engine undoes after the step's duration, at a heal, or at the end of the run).
// Adding one is one file with one Register call.
type Action interface {
	Name() string
	// Describe is one line for `dt faults` and errors.
	Describe() string
	// Form says which fields of a step the action takes and what it needs.
	Form() Form
}

// Form is what a step of an action may say, and what it needs to run.
type Form struct {
	Targets Arity
	// RawTargets: the targets are handed over as written (heal's "@id"), not resolved.
	RawTargets bool
	// Fields are the argument fields the action accepts (yaml names), beyond the common
	// ones (id, action, targets, at, after, probe) and, for an Undoable action, duration,
	// every and until.
	Fields []string
	// Needs are the capabilities of the Env the action acts through.
	Needs []Capability
}

// Arity says whether a step names targets.
type Arity string

// Arities.
const (
	TargetsNone     Arity = "none"
	TargetsOptional Arity = "optional"
	TargetsRequired Arity = "required"
)

// Checker is an Action that checks its own fields of a step (which fields it may set is
// checked from its Form).
type Checker interface {
	Check(s Step, c Cluster) []FieldError
}

// Instant is an action that does its work when the step fires. It records what it does
// (Call.Record); when it ends another step's effect (a restart ends a kill), it says so
// with Call.Ended.
type Instant interface {
	Action
	Run(ctx context.Context, call *Call) error
}

// Undoable is an action whose effect stays until it is undone. Prepare resolves what the
// step will do without doing it; the engine records the step, applies the Change (again
// on every repetition of a repeating step) and owns its undo.
type Undoable interface {
	Action
	Prepare(ctx context.Context, call *Call) (Change, error)
}

// Kind groups effects by what ends them besides their own undo.
type Kind string

// Kinds of effect.
const (
	KindDown    Kind = "down"    // a member is down: ended by start, restart, init
	KindPaused  Kind = "paused"  // a member is stopped by SIGSTOP: ended by continue, restart
	KindNetwork Kind = "network" // partitions, link and port faults: ended by heal
	KindDisk    Kind = "disk"    // a disk layer's rule (error, slow, full): ended by its own undo
)

// Change is what an undoable step does.
type Change struct {
	// Nodes are the nodes involved (the step's event targets); Text describes it.
	Nodes []string
	Text  string
	Kind  Kind
	// UndoVerb names the undo in events: restart, continue, heal...
	UndoVerb string
	// Tag lets a later step find the effect (recoverport: "port 2379 tcp").
	Tag string
	// Each applies the change on one node and returns its undo: every node of Nodes is
	// undone on its own (a later restart of one ends its part). Otherwise Apply applies it
	// once.
	Each  func(ctx context.Context, node string) (Undo, error)
	Apply func(ctx context.Context) (Undo, error)
}

var actions = map[string]Action{}
var actionOrder []string

// Register adds an action; a duplicate name or an action that is neither Instant nor
// Undoable is a programming error.
func Register(a Action) {
	name := a.Name()
	if _, dup := actions[name]; dup {
		panic("faults: duplicate action " + name)
	}
	_, instant := a.(Instant)
	_, undoable := a.(Undoable)
	if instant == undoable {
		panic("faults: action " + name + " must be either Instant or Undoable")
	}
	actions[name] = a
	actionOrder = append(actionOrder, name)
}

// Unregister removes an action (for tests that register their own).
func Unregister(name string) {
	delete(actions, name)
	actionOrder = slices.DeleteFunc(actionOrder, func(n string) bool { return n == name })
}

// LookupAction finds an action; unknown names are an error listing the valid ones.
func LookupAction(name string) (Action, error) {
	a, ok := actions[name]
	if !ok {
		return nil, fmt.Errorf("unknown action %q: valid actions are %s", name, strings.Join(ActionNames(), ", "))
	}
	return a, nil
}

// ActionNames lists the actions by what they act on (processes, network, links, data,
// then the rest), in the order they were registered within each: a stable order
// whatever the order of the files that register them.
func ActionNames() []string {
	rank := func(n string) int {
		if needs := actions[n].Form().Needs; len(needs) > 0 {
			if i := slices.Index(actionGroups, needs[0]); i >= 0 {
				return i
			}
		}
		return len(actionGroups)
	}
	out := slices.Clone(actionOrder)
	slices.SortStableFunc(out, func(a, b string) int { return rank(a) - rank(b) })
	return out
}

// actionGroups orders the actions in listings, by the first capability they need.
var actionGroups = []Capability{CapProcesses, CapNetwork, CapLinks, CapData, CapDisk}

// IsUndoable says the action leaves an effect that duration/every/until can time.
func IsUndoable(a Action) bool {
	_, ok := a.(Undoable)
	return ok
}

// AcceptedFields lists the argument fields a step of a may set (its Form's, and
// duration, every, until when it is undoable).
func AcceptedFields(a Action) []string {
	fields := slices.Clone(a.Form().Fields)
	if IsUndoable(a) {
		fields = append(fields, "duration", "every", "until")
	}
	return fields
}

// ActionHelp lists every action: its name, targets, fields, needs and description.
func ActionHelp() string {
	var b strings.Builder
	for _, n := range ActionNames() {
		a := actions[n]
		f := a.Form()
		fields := AcceptedFields(a)
		extra := ""
		if len(fields) > 0 {
			extra = " [" + strings.Join(fields, ", ") + "]"
		}
		if len(f.Needs) > 0 {
			var needs []string
			for _, c := range f.Needs {
				needs = append(needs, string(c))
			}
			extra += " (needs " + strings.Join(needs, ", ") + ")"
		}
		fmt.Fprintf(&b, "  %-20s %s%s\n", n, a.Describe(), extra)
	}
	return b.String()
}

// FieldError is a problem with one field of a step (Field "" when no field is to blame).
type FieldError struct {
	Field string
	Err   error
}

// fieldErrorf makes a FieldError.
func fieldErrorf(field, format string, a ...any) FieldError {
	return FieldError{Field: field, Err: fmt.Errorf(format, a...)}
}
