package results

import (
	"cmp"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/dtlab/dt/records"
)

// Linearizability results.
const (
	LinOK        = "ok"
	LinViolation = "violation"
	LinUnknown   = "unknown"
	LinSkipped   = "skipped" // the check was disabled (CheckTimeout < 0)
)

// Linearizability is the outcome of checking the key/value history against a register
// per key (read, write and compare-and-set).
type Linearizability struct {
	Result      string `json:"result"` // LinOK, LinViolation, LinUnknown or LinSkipped
	Keys        int    `json:"keys"`
	KeysChecked int    `json:"keys_checked"` // keys whose every segment was decided
	Ops         int    `json:"ops"`          // read, write and cas records in the history
	OpsChecked  int    `json:"ops_checked"`  // operations in decided segments (after the reductions below)
	// IndeterminateWrites counts failed writes that may or may not have taken effect;
	// IndeterminateCAS the same of failed compare-and-sets.
	IndeterminateWrites int `json:"indeterminate_writes"`
	IndeterminateCAS    int `json:"indeterminate_cas"`
	// UnobservedIndeterminate counts indeterminate writes and cas whose value no operation
	// ever mentioned; they are dropped, which changes nothing (one can always linearize
	// them last).
	UnobservedIndeterminate int `json:"unobserved_indeterminate_writes"`
	// Segments is how many independent pieces the history was cut into (MaxOpsPerSegment).
	Segments int `json:"segments"`
	// ReadsAtCuts counts reads that spanned a cut between two segments and so were not checked.
	ReadsAtCuts   int      `json:"reads_at_cuts"`
	DurationS     float64  `json:"duration_s"`
	Detail        string   `json:"detail"`
	ViolatingKeys []string `json:"violating_keys,omitempty"`
	// Violations lists each kind of violation found, with its first instance spelled out
	// (see Violation); the search stops at porcupine's first illegal segment, the
	// patterns are looked for on every key.
	Violations    []Violation `json:"violations,omitempty"`
	Visualization string      `json:"visualization,omitempty"` // file name, relative to the run dir
}

// Check defaults.
const (
	DefaultCheckTimeout     = 30 * time.Second
	DefaultMaxOpsPerSegment = 20000
	DefaultCheckMemory      = 1 << 30
)

// CheckLinearizability checks ops against one register per key (porcupine, partitioned by
// key). Writes put unique values; reads return the value id read, "" meaning absent (the
// initial state); a cas that swapped read its expected value and put its new one, a cas
// whose compare failed read its current value (or, when the system does not say which,
// read anything but its expected value). Failed reads and overloaded (never sent)
// operations are dropped; other failed writes and cas may or may not have happened. It spends at most about opts.CheckTimeout
// and opts.CheckMemory bytes of heap and says "unknown" when either runs out. When
// vizPath is not empty and a violation is found, porcupine's visualisation of a small
// violating piece of the history is written there.
//
// The history is reduced before checking, without changing the verdict: an indeterminate
// write whose value no read returned is dropped; one whose value was read must have taken
// effect before the first such read returned, which becomes its return time. Keys with
// more than opts.MaxOpsPerSegment operations are cut into segments at times where few
// operations are in flight; each later segment starts from an unknown register value,
// writes in flight at the cut are carried over as indeterminate and reads in flight at the
// cut are not checked. That is sound (no false violations) but can miss a violation that
// spans a cut; Detail says how much was cut.
func CheckLinearizability(ops []records.Op, opts Options, vizPath string) Linearizability {
	opts = opts.withDefaults()
	start := time.Now()
	ix := indexHistory(ops)
	lin := Linearizability{Keys: len(ix.keys), Ops: ix.ops, IndeterminateWrites: ix.indeterminate, IndeterminateCAS: ix.indeterminateCAS}
	if opts.CheckTimeout < 0 {
		lin.Result = LinSkipped
		lin.Detail = "check disabled"
		return lin
	}
	deadline := start.Add(opts.CheckTimeout)
	// The patterns first: they are cheap (about 1 µs an operation), and decide the verdict
	// whatever the search does.
	found := findAllPatterns(ops, ix, deadline)
	vs, lead := summarizePatterns(found)
	violatingKeys := map[string]bool{}
	for _, in := range found {
		if slices.ContainsFunc(vs, func(v Violation) bool { return v.Kind == in.kind }) {
			violatingKeys[in.key] = true
		}
	}
	// A key the patterns already proved violating needs no search (which can take long to
	// exhaust every order of a history that has none).
	outs := checkKeys(ops, ix, opts, deadline, violatingKeys)

	undecided, memAborts, unbuilt := 0, 0, 0
	var violating *segment
	stuck := -1
	for _, o := range outs {
		if !o.built {
			unbuilt++
			continue
		}
		lin.Segments += o.segments
		lin.ReadsAtCuts += o.readsAtCuts
		lin.UnobservedIndeterminate += o.unobserved
		lin.OpsChecked += o.opsChecked
		undecided += o.segments - o.decided
		memAborts += o.memAborts
		if o.decided == o.segments {
			lin.KeysChecked++
		}
		if o.illegal != nil && (violating == nil || o.illegal.key < violating.key) {
			violating, stuck = o.illegal, o.stuck
		}
	}
	// The shrink and visualisation get their own small budget so a violation found at the
	// last moment is still shown.
	vizBudget := min(max(time.Until(deadline), 5*time.Second), opts.CheckTimeout, 20*time.Second)
	vizDeadline := time.Now().Add(vizBudget)
	var small *segment // the smallest illegal piece of violating
	var smallDesc string
	if violating != nil && !violatingKeys[violating.key] {
		// The search found what no pattern explains: say where it got stuck, in the
		// smallest piece porcupine finds illegal on its own (the chain checker only knows
		// which version it could not place).
		small, smallDesc = shrinkViolation(violating, stuck, vizDeadline)
		at, text := stuckAt(small, vizDeadline)
		v := Violation{Kind: ViolationNoOrder, Instances: 1, Keys: 1, Key: violating.key, T: round3(violating.from),
			Text: fmt.Sprintf("no order of its operations between t=%.3fs and t=%.3fs fits a register", violating.from, violating.to)}
		if text != "" {
			op := small.ops[at].Input.(*regInput).op
			v.T = round3(op.Submitted)
			v.Text = fmt.Sprintf("between t=%.3fs and t=%.3fs %s", small.from, small.to, text)
			v.Ops = []string{describeRecord(op)}
		}
		vs = append(vs, v)
		violatingKeys[violating.key] = true
	}
	lin.Violations = vs
	for k := range violatingKeys {
		lin.ViolatingKeys = append(lin.ViolatingKeys, k)
	}
	sort.Strings(lin.ViolatingKeys)

	var d []string
	switch {
	case len(vs) > 0:
		lin.Result = LinViolation
		first := vs[0]
		for _, v := range vs[1:] {
			if v.T < first.T {
				first = v
			}
		}
		d = append(d, fmt.Sprintf("not linearizable: %s on key %q: %s", first.Kind, first.Key, first.Text))
		if len(vs) > 1 || first.Instances > 1 {
			d = append(d, "found "+describeViolations(vs))
		}
		if vizPath != "" {
			desc := smallDesc
			if lead != nil && first.Kind != ViolationNoOrder {
				small = &segment{key: lead.key, ops: witnessHistory(lead.ops)}
				desc = fmt.Sprintf("the %d operations of that %s", len(lead.ops), lead.kind)
			}
			if err := visualize(small, vizPath, vizDeadline); err != nil {
				d = append(d, fmt.Sprintf("visualisation failed: %v", err))
			} else {
				lin.Visualization = filepath.Base(vizPath)
				d = append(d, fmt.Sprintf("%s shows %s", lin.Visualization, desc))
			}
		}
		if violating != nil && unbuilt+undecided > 0 {
			d = append(d, fmt.Sprintf("porcupine stopped at the first violation (%d key(s) not searched)", len(ix.keys)-lin.KeysChecked))
		}
	case undecided+unbuilt > 0:
		lin.Result = LinUnknown
		var why []string
		if memAborts > 0 {
			why = append(why, fmt.Sprintf("%d segment(s) stopped when the search outgrew the %d MiB memory bound", memAborts, opts.CheckMemory>>20))
		}
		if n := undecided - memAborts; n > 0 {
			why = append(why, fmt.Sprintf("%d segment(s) not finished within the %s budget", n, opts.CheckTimeout))
		}
		if unbuilt > 0 {
			why = append(why, fmt.Sprintf("%d key(s) not reached within the %s budget", unbuilt, opts.CheckTimeout))
		}
		d = append(d, fmt.Sprintf("undecided: %s; no violation in the %d of %d keys fully checked, and none of the known patterns (stale read, two cas from one value, ...) on any key", strings.Join(why, ", "), lin.KeysChecked, len(ix.keys)))
	default:
		lin.Result = LinOK
		d = append(d, fmt.Sprintf("linearizable: %d operations on %d keys", lin.OpsChecked, lin.Keys))
	}
	if n := lin.IndeterminateWrites + lin.IndeterminateCAS; n > 0 {
		d = append(d, fmt.Sprintf("%d failed writes and %d failed cas treated as may-or-may-not-have-happened (%d never observed, dropped)", lin.IndeterminateWrites, lin.IndeterminateCAS, lin.UnobservedIndeterminate))
	}
	if ix.failedReads > 0 || ix.overload > 0 {
		d = append(d, fmt.Sprintf("%d failed reads and %d never-sent (overload) operations not checked", ix.failedReads, ix.overload))
	}
	if ix.otherKinds > 0 {
		d = append(d, fmt.Sprintf("%d operations of kinds other than read/write/cas ignored", ix.otherKinds))
	}
	if lin.Segments > len(ix.keys)-unbuilt {
		d = append(d, fmt.Sprintf("keys over %d ops were cut into segments (%d in all) to bound memory; %d reads in flight at a cut were not checked and a violation spanning a cut can be missed", opts.MaxOpsPerSegment, lin.Segments, lin.ReadsAtCuts))
	}
	lin.Detail = strings.Join(d, "; ")
	lin.DurationS = round3(time.Since(start).Seconds())
	return lin
}

// Porcupine timestamps are integers; nanoseconds keep the recorded precision.
func nanos(s float64) int64 { return int64(math.Round(s * 1e9)) }

// never is the return time of a write that may still take effect at any later time.
const never = math.MaxInt64

// regKind is what a register operation does to, and learns of, the register.
type regKind uint8

const (
	regRead      regKind = iota // returns the value (output)
	regWrite                    // puts value (indeterminate: maybe)
	regCASSwap                  // found expected and put value
	regCASFound                 // found output, which is not expected; a read
	regCASNotEq                 // found something other than expected; nothing else known
	regCASMaybe                 // a cas that may or may not have happened, outcome unknown
	regKindCount                // number of kinds
)

// mutates reports whether an operation of kind k may change the register.
func (k regKind) mutates() bool { return k == regWrite || k == regCASSwap || k == regCASMaybe }

// regInput is the input of one register operation; regOutput the output. Operations
// carry pointers into per-key slabs, so building a history allocates a few large slices
// rather than millions of small boxes.
type regInput struct {
	kind          regKind
	indeterminate bool        // a failed write or cas: it may or may not have happened
	unique        bool        // no other write or cas on the key puts the same value
	value         string      // written value (write, cas)
	expected      string      // the value a cas compared with
	state         *regState   // the state a write or cas leaves, shared so Step allocates nothing
	op            *records.Op // the record, for descriptions
}

type regOutput struct {
	value string // read value ("" = absent)
}

var noOutput = &regOutput{}

// regState is a register value; !known is the unknown value a later segment starts from.
type regState struct {
	value string
	known bool
}

// historyIndex groups the checkable records by key without building anything big: each
// key's porcupine history is built only when a worker checks it, so memory follows the
// largest key rather than the whole history.
type historyIndex struct {
	keys             []string           // largest first, for load balance
	byKey            map[string][]int32 // indices into the records
	ops              int                // read, write and cas records
	indeterminate    int                // failed writes
	indeterminateCAS int
	failedReads      int
	overload         int
	otherKinds       int
}

func indexHistory(ops []records.Op) *historyIndex {
	ix := &historyIndex{byKey: map[string][]int32{}}
	for i := range ops {
		op := &ops[i]
		switch op.Kind {
		case records.KindWrite, records.KindRead, records.KindCAS:
		default:
			ix.otherKinds++
			continue
		}
		ix.ops++
		switch {
		case op.Result == records.ResultOverload:
			ix.overload++
			continue
		case op.Kind == records.KindRead && !op.OK():
			ix.failedReads++
			continue
		case op.Kind == records.KindWrite && !op.OK():
			ix.indeterminate++
		case op.Kind == records.KindCAS && !op.OK():
			ix.indeterminateCAS++
		}
		ix.byKey[op.Key] = append(ix.byKey[op.Key], int32(i))
	}
	for k := range ix.byKey {
		ix.keys = append(ix.keys, k)
	}
	sort.Slice(ix.keys, func(i, j int) bool {
		a, b := len(ix.byKey[ix.keys[i]]), len(ix.byKey[ix.keys[j]])
		if a != b {
			return a > b
		}
		return ix.keys[i] < ix.keys[j]
	})
	return ix
}

// kindOf classifies a checkable record (not overloaded, not a failed read).
func kindOf(op *records.Op) regKind {
	switch {
	case op.Kind == records.KindRead:
		return regRead
	case op.Kind == records.KindWrite:
		return regWrite
	case !op.OK():
		return regCASMaybe
	case op.Swapped:
		return regCASSwap
	case op.Current != nil:
		return regCASFound
	}
	return regCASNotEq
}

// observed is the value an operation certainly saw in the register, if any: a read's, the
// value a failed compare found, the value a swapped cas replaced.
func observed(in *regInput, out *regOutput) (string, bool) {
	switch in.kind {
	case regRead, regCASFound:
		return out.value, true
	case regCASSwap:
		return in.expected, true
	}
	return "", false
}

// mentions reports every value an operation names other than the one it puts: what
// it saw, and what a cas compared with whatever became of it.
func mentions(in *regInput, out *regOutput, f func(string)) {
	if v, ok := observed(in, out); ok {
		f(v)
	}
	if in.kind == regCASNotEq || in.kind == regCASMaybe || in.kind == regCASFound {
		f(in.expected)
	}
}

// reduce applies the indeterminate-write reductions to hist (one key's operations, or a
// segment's): an indeterminate write or cas of a value no other operation in hist
// mentions is dropped, when nothing in hist learns only what the register did not hold
// (regCASNotEq: such a write may be why a compare failed); one whose value an operation
// saw took effect before the first of them returned, which becomes its return. unique
// must already be set. It returns the operations kept and how many were dropped.
func reduce(hist []porcupine.Operation) ([]porcupine.Operation, int) {
	firstSeen := map[string]int64{}
	mentioned := map[string]bool{}
	canDrop := true
	seen := func(v string, by int64) bool {
		if r, ok := firstSeen[v]; !ok || by < r {
			firstSeen[v] = by
			return true
		}
		return false
	}
	for _, o := range hist {
		in, out := o.Input.(*regInput), o.Output.(*regOutput)
		if v, ok := observed(in, out); ok {
			seen(v, o.Return)
		}
		mentions(in, out, func(v string) { mentioned[v] = true })
		if in.kind == regCASNotEq {
			canDrop = false
		}
	}
	// A failed cas whose value was seen swapped: it saw its expected value too, by then.
	for changed := true; changed; {
		changed = false
		for _, o := range hist {
			in := o.Input.(*regInput)
			if in.kind == regCASMaybe && in.unique {
				if r, ok := firstSeen[in.value]; ok && seen(in.expected, max(o.Call, r)) {
					changed = true
				}
			}
		}
	}
	kept := hist[:0]
	dropped := 0
	for _, o := range hist {
		in := o.Input.(*regInput)
		if in.indeterminate && in.unique && o.Return == never {
			if r, ok := firstSeen[in.value]; ok {
				o.Return = max(o.Call, r)
			} else if canDrop && !mentioned[in.value] {
				dropped++
				continue
			}
		}
		kept = append(kept, o)
	}
	return kept, dropped
}

// buildKey turns one key's records into porcupine operations sorted by call time, with
// the indeterminate-write reductions applied (see CheckLinearizability). It returns how
// many indeterminate writes and cas were dropped as unobserved.
func buildKey(ops []records.Op, idx []int32) (hist []porcupine.Operation, unobserved int) {
	clients := map[string]int{}
	clientID := func(c string) int {
		id, ok := clients[c]
		if !ok {
			id = len(clients)
			clients[c] = id
		}
		return id
	}
	writes := map[string]int{} // writes and cas of each value
	// Records are in completion order; sort the indices (cheap) rather than the operations.
	order := slices.Clone(idx)
	slices.SortStableFunc(order, func(a, b int32) int { return cmp.Compare(ops[a].Submitted, ops[b].Submitted) })
	inputs := make([]regInput, len(order))
	outputs := make([]regOutput, len(order))
	states := make([]regState, len(order))
	hist = make([]porcupine.Operation, 0, len(order))
	for n, i := range order {
		op := &ops[i]
		call, ret := nanos(op.Submitted), nanos(op.Completed)
		if ret < call { // a corrupt record; never let a return precede its call
			ret = call
		}
		in := &inputs[n]
		in.op, in.kind = op, kindOf(op)
		out := noOutput
		switch in.kind {
		case regRead:
			outputs[n].value = op.Value
			out = &outputs[n]
		case regCASFound:
			outputs[n].value = *op.Current
			out = &outputs[n]
		}
		if in.kind != regRead {
			in.expected = op.Expected
		}
		if in.kind.mutates() || op.Kind == records.KindCAS {
			writes[op.Value]++
			in.value = op.Value
			states[n] = regState{value: op.Value, known: true}
			in.state = &states[n]
		}
		if !op.OK() { // a failed write or cas (failed reads are not indexed)
			in.indeterminate = true
			ret = never
		}
		hist = append(hist, porcupine.Operation{
			ClientId: clientID(op.Client), Call: call, Return: ret, Input: in, Output: out,
		})
	}
	for _, o := range hist {
		if in := o.Input.(*regInput); in.state != nil {
			in.unique = writes[in.value] == 1 && in.value != "" // "" is also the initial value
		}
	}
	hist, unobserved = reduce(hist)
	return tighten(hist), unobserved
}

// segment is an independently checkable piece of one key's history.
type segment struct {
	key      string
	index    int
	ops      []porcupine.Operation
	wildcard bool // starts from an unknown register value
	from, to float64
}

// cutSegments splits one key's operations (sorted by call) into segments of at most about
// max operations, cutting where the fewest operations are in flight. It returns the
// segments and how many reads spanning a cut were dropped.
func cutSegments(key string, ops []porcupine.Operation, maxOps int) ([]*segment, int) {
	if len(ops) <= maxOps {
		return []*segment{newSegment(key, 0, ops, false)}, 0
	}
	rets := make([]int64, len(ops))
	for i, o := range ops {
		rets[i] = o.Return
	}
	slices.Sort(rets)
	// inFlight(j): operations called before ops[j] and not returned by then.
	inFlight := func(j int) int {
		c := ops[j].Call
		before := sort.Search(j, func(i int) bool { return ops[i].Call >= c })
		done := sort.Search(len(rets), func(i int) bool { return rets[i] >= c })
		return before - done
	}
	var cuts []int // indices of the first operation of each later segment
	for lo := 0; len(ops)-lo > maxOps; {
		best, bestN := -1, math.MaxInt
		for j := lo + maxOps; j >= lo+maxOps/2; j-- {
			if ops[j].Call == ops[j-1].Call {
				continue // a cut must separate calls in time
			}
			if n := inFlight(j); n < bestN {
				best, bestN = j, n
				if n == 0 {
					break
				}
			}
		}
		if best < 0 { // calls bunched at one instant: cut after them
			best = lo + maxOps
			for best < len(ops) && ops[best].Call == ops[best-1].Call {
				best++
			}
			if best == len(ops) {
				break
			}
		}
		cuts = append(cuts, best)
		lo = best
	}
	cuts = append(cuts, len(ops))

	var segs []*segment
	dropped := 0
	lo := 0
	for si, hi := range cuts {
		seg, d := window(ops, lo, hi)
		dropped += d
		segs = append(segs, newSegment(key, si, seg, lo > 0))
		lo = hi
	}
	return segs, dropped
}

// maybe is o turned into an operation that may or may not have happened, at any time after
// its call, with an outcome nobody knows: what a write or cas in flight at a cut is to
// the segment on either side of it.
func maybe(o porcupine.Operation) porcupine.Operation {
	c := *o.Input.(*regInput)
	c.indeterminate = true
	if c.kind != regWrite {
		c.kind = regCASMaybe
	}
	o.Input, o.Output, o.Return = &c, noOutput, never
	return o
}

// window is the history of a sound segment of ops (sorted by call) from index lo to hi
// (exclusive): writes and cas called before ops[lo] and possibly still taking effect after
// its call are carried over as indeterminate (and reduced); reads, and cas that only
// learnt something, in flight at ops[hi]'s call are dropped, since they could see a write
// of the next segment, and a cas that swapped then is kept as one that may or may not
// have (its compare could have seen that write too). It returns the history and how many
// operations it dropped.
func window(ops []porcupine.Operation, lo, hi int) ([]porcupine.Operation, int) {
	var seg []porcupine.Operation
	if lo > 0 {
		cStart := ops[lo].Call
		for _, o := range ops[:lo] {
			if o.Input.(*regInput).kind.mutates() && o.Return >= cStart {
				seg = append(seg, maybe(o))
			}
		}
	}
	dropped := 0
	for _, o := range ops[lo:hi] {
		if hi < len(ops) && o.Return >= ops[hi].Call {
			switch k := o.Input.(*regInput).kind; {
			case k == regCASSwap:
				o = maybe(o)
			case !k.mutates():
				dropped++
				continue
			}
		}
		seg = append(seg, o)
	}
	seg, _ = reduce(seg)
	return seg, dropped
}

func newSegment(key string, index int, ops []porcupine.Operation, wildcard bool) *segment {
	s := &segment{key: key, index: index, ops: ops, wildcard: wildcard}
	if len(ops) > 0 {
		s.from = float64(ops[0].Call) / 1e9
		for _, o := range ops {
			s.from = min(s.from, float64(o.Call)/1e9)
			if o.Return != never {
				s.to = max(s.to, float64(o.Return)/1e9)
			}
		}
	}
	return s
}

// segAborted marks a segment whose search was stopped by the memory bound.
const segAborted porcupine.CheckResult = "aborted"

// unknownState is the register's value at the start of a later segment.
var unknownState = &regState{}

// registerModel is a single register (porcupine checks each segment alone). abort, when
// set, makes every step fail so that porcupine unwinds quickly; the caller then ignores the
// verdict. That is how the memory bound stops a search porcupine's own timeout would let
// run on.
//
// From the unknown value a read or a failed compare learns the value; a cas that swapped
// leaves its new value, and what nothing pins down stays unknown: a failed compare that
// found "not expected", and a cas that may or may not have happened (from a known value it
// takes effect when the compare holds, which is what it would have done; not happening at
// all is linearizing it last).
func registerModel(wildcard bool, abort *atomic.Bool) porcupine.Model {
	seed := maphash.MakeSeed()
	return porcupine.Model{
		Init: func() any {
			if wildcard {
				return unknownState
			}
			return &regState{known: true}
		},
		Step: func(state, input, output any) (bool, any) {
			if abort != nil && abort.Load() {
				return false, state
			}
			st, in := state.(*regState), input.(*regInput)
			switch in.kind {
			case regWrite:
				return true, in.state
			case regCASSwap:
				return !st.known || st.value == in.expected, in.state
			case regCASMaybe:
				if st.known && st.value == in.expected {
					return true, in.state
				}
				return true, st
			case regCASNotEq:
				return !st.known || st.value != in.expected, st
			}
			out := output.(*regOutput).value
			if in.kind == regCASFound && out == in.expected {
				return false, st // it found the value it compared with, and did not swap
			}
			if !st.known {
				return true, &regState{value: out, known: true}
			}
			return out == st.value, st
		},
		Equal: func(a, b any) bool { return *a.(*regState) == *b.(*regState) },
		Hash: func(state any) uint64 {
			st := state.(*regState)
			if !st.known {
				return 0
			}
			return maphash.String(seed, st.value) | 1
		},
		DescribeOperation: func(input, output any) string {
			return describeOp(input.(*regInput), output.(*regOutput))
		},
		DescribeState: func(state any) string {
			st := state.(*regState)
			if !st.known {
				return "unknown"
			}
			return valueName(st.value)
		},
		DescribeOperationMetadata: func(info any) string {
			op, ok := info.(*records.Op)
			if !ok || op == nil {
				return ""
			}
			return fmt.Sprintf("client %s → %s, sent %.6fs, done %.6fs, result %s", op.Client, op.Target, op.Submitted, op.Completed, op.Result)
		},
	}
}

// valueName shows a value id, "absent" for the initial state.
func valueName(v string) string {
	if v == "" {
		return "absent"
	}
	return v
}

// describeOp writes an operation as the visualisation and the summary show it:
// put(k, v), get(k) → v, cas(k, e→v) ✓ (swapped), ✗ found c, ✗ (found something else), ?
// (may or may not have happened).
func describeOp(in *regInput, out *regOutput) string {
	key := in.op.Key
	switch in.kind {
	case regRead:
		return fmt.Sprintf("get(%s) → %s", key, valueName(out.value))
	case regWrite:
		s := fmt.Sprintf("put(%s, %s)", key, in.value)
		if in.indeterminate {
			s += " ?" // may or may not have happened
		}
		return s
	}
	s := fmt.Sprintf("cas(%s, %s→%s)", key, valueName(in.expected), in.value)
	switch in.kind {
	case regCASSwap:
		return s + " ✓"
	case regCASFound:
		return s + " ✗ found " + valueName(out.value)
	case regCASNotEq:
		return s + " ✗"
	}
	return s + " ?"
}

// keyOutcome is what checking one key found.
type keyOutcome struct {
	built       bool // false: never reached (deadline or an earlier violation)
	segments    int
	decided     int
	memAborts   int
	readsAtCuts int
	unobserved  int
	opsChecked  int
	illegal     *segment
	stuck       int // in illegal.ops, where the chain checker got stuck; -1: not known
}

// checkKeys checks every key but those in skip (already known to be violating) on
// GOMAXPROCS workers — with the chain checker where it applies, else with porcupine segment
// after segment — until all are decided, one is illegal, or the deadline passes. A search
// that grows the heap by more than opts.CheckMemory bytes is abandoned as undecided.
func checkKeys(ops []records.Op, ix *historyIndex, opts Options, deadline time.Time, skip map[string]bool) []keyOutcome {
	outs := make([]keyOutcome, len(ix.keys))
	var (
		next    atomic.Int64
		stop    atomic.Bool // a violation was found: the verdict is known
		mu      sync.Mutex
		running = map[*atomic.Bool]bool{}
		wg      sync.WaitGroup
	)
	abortAll := func() {
		mu.Lock()
		for a := range running {
			a.Store(true)
		}
		mu.Unlock()
	}
	done := make(chan struct{})
	go func() { // memory watchdog
		base := heapBytes()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				// The baseline is the lowest heap seen: a collection of garbage made before
				// the check must not hide the growth of a search.
				cur := heapBytes()
				base = min(base, cur)
				if cur-base > uint64(opts.CheckMemory) {
					abortAll()
				}
			}
		}
	}()
	check := func(s *segment) porcupine.CheckResult {
		abort := new(atomic.Bool)
		mu.Lock()
		running[abort] = true
		mu.Unlock()
		res := porcupine.CheckOperationsTimeout(registerModel(s.wildcard, abort), s.ops, time.Until(deadline))
		mu.Lock()
		delete(running, abort)
		mu.Unlock()
		switch {
		case abort.Load() && stop.Load():
			return porcupine.Unknown // stopped because another segment was illegal
		case abort.Load():
			runtime.GC() // return the abandoned search's memory before the next segment
			return segAborted
		}
		return res
	}
	for range min(runtime.GOMAXPROCS(0), len(ix.keys)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ix.keys) {
					return
				}
				if stop.Load() || time.Until(deadline) <= 0 {
					continue
				}
				key := ix.keys[i]
				o := &outs[i]
				o.stuck = -1
				if skip[key] {
					o.built, o.segments, o.decided, o.opsChecked = true, 1, 1, len(ix.byKey[key])
					continue
				}
				hist, unobserved := buildKey(ops, ix.byKey[key])
				if !opts.Porcupine && chainApplies(hist) {
					// the whole key at once, with the chain checker
					o.built, o.segments, o.unobserved = true, 1, unobserved
					abort := new(atomic.Bool)
					mu.Lock()
					running[abort] = true
					mu.Unlock()
					r := chainCheck(hist, deadline, abort)
					mu.Lock()
					delete(running, abort)
					mu.Unlock()
					switch {
					case abort.Load() && !stop.Load():
						o.memAborts++
					case r.res == porcupine.Ok:
						o.decided++
						o.opsChecked += len(hist)
					case r.res == porcupine.Illegal:
						o.decided++
						o.opsChecked += len(hist)
						o.illegal, o.stuck = newSegment(key, 0, hist, false), r.stuck
						stop.Store(true)
						abortAll()
					}
					continue
				}
				segs, dropped := cutSegments(key, hist, opts.MaxOpsPerSegment)
				hist = nil
				o.built, o.segments, o.readsAtCuts, o.unobserved = true, len(segs), dropped, unobserved
				for si, s := range segs {
					if stop.Load() || time.Until(deadline) <= 0 {
						break
					}
					switch check(s) {
					case porcupine.Ok:
						o.decided++
						o.opsChecked += len(s.ops)
					case porcupine.Illegal:
						o.decided++
						o.opsChecked += len(s.ops)
						o.illegal = s
						stop.Store(true)
						abortAll()
					case segAborted:
						o.memAborts++
					}
					segs[si] = nil // let a checked segment's memory go
					if o.illegal != nil {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	return outs
}

var heapSample = []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
var heapMu sync.Mutex

// heapBytes is the heap occupied by objects, live or not yet swept; cheap enough to poll.
func heapBytes() uint64 {
	heapMu.Lock()
	defer heapMu.Unlock()
	metrics.Read(heapSample)
	if heapSample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return heapSample[0].Value.Uint64()
}

// shrinkViolation looks for the smallest window of an illegal segment that is illegal on
// its own, so the visualisation shows the problem rather than thousands of operations:
// windows of growing size around stuck, the first operation (by call) outside porcupine's
// longest partial linearization (stuckAt; -1 = not known yet). It returns the piece to
// visualise and a description of it.
func shrinkViolation(s *segment, stuck int, deadline time.Time) (*segment, string) {
	whole := fmt.Sprintf("key %q, t=%.3f–%.3fs (%d operations)", s.key, s.from, s.to, len(s.ops))
	if len(s.ops) <= 8 {
		return s, whole
	}
	if stuck < 0 {
		stuck, _ = stuckAt(s, deadline)
	}
	for _, half := range []int{2, 4, 8, 16, 32, 64, 128, 256, 1024} {
		if time.Now().After(deadline) {
			break
		}
		// Mostly before the stuck operation: what it contradicts happened earlier.
		lo, hi := max(stuck-2*half, 0), min(stuck+half+1, len(s.ops))
		if lo == 0 && hi == len(s.ops) {
			break
		}
		// Re-cut [lo, hi) soundly: it is an ordinary segment of this segment's operations.
		segs, _ := cutWindow(s, lo, hi)
		if segs == nil {
			continue
		}
		if porcupine.CheckOperationsTimeout(registerModel(segs.wildcard, nil), segs.ops, time.Until(deadline)) == porcupine.Illegal {
			return segs, fmt.Sprintf("key %q, t=%.3f–%.3fs (%d of the %d operations of its segment)", s.key, segs.from, segs.to, len(segs.ops), len(s.ops))
		}
	}
	if len(s.ops) > 2000 {
		// too big to show (or for porcupine to search): the operations around the place
		segs, _ := cutWindow(s, max(stuck-64, 0), min(stuck+16, len(s.ops)))
		if segs != nil {
			return segs, fmt.Sprintf("key %q, t=%.3f–%.3fs, the %d operations before where the search got stuck (no smaller piece was shown illegal on its own within the budget)", s.key, segs.from, segs.to, len(segs.ops))
		}
	}
	return s, whole
}

// cutWindow builds a sound segment from the operations of s with index in [lo, hi) (by
// call): writes in flight at its start are carried over as indeterminate, reads in flight at
// its end are dropped.
func cutWindow(s *segment, lo, hi int) (*segment, error) {
	if lo > 0 && s.ops[lo-1].Call == s.ops[lo].Call {
		return nil, errors.New("window start splits equal call times")
	}
	seg, _ := window(s.ops, lo, hi)
	return newSegment(s.key, s.index, seg, s.wildcard || lo > 0), nil
}

// visualize writes porcupine's visualisation of s to path.
func visualize(s *segment, path string, deadline time.Time) error {
	model := registerModel(s.wildcard, nil)
	ops := make([]porcupine.Operation, len(s.ops))
	copy(ops, s.ops)
	for i := range ops {
		ops[i].Metadata = ops[i].Input.(*regInput).op
	}
	_, info := porcupine.CheckOperationsVerbose(model, ops, max(time.Until(deadline), time.Second))
	tmp := path + ".tmp"
	if err := porcupine.VisualizePath(model, info, tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
