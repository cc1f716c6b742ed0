package results

import (
	"cmp"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/dtlab/dt/records"
)

// Violation kinds. All but ViolationNoOrder are patterns of a few operations that on
// their own prove a key's history is not linearizable, given that every write and cas
// puts a value no other operation puts (the workload makes them unique) and nothing
// deletes a key: they are looked for on every key, in time linear in the history, so
// they are found even where porcupine ran out of time or a violation spans a cut
// between segments.
const (
	// ViolationStaleRead: an operation saw value v although a write of another value
	// began after v's write had returned and itself returned before the operation began
	// (for an absent key: any write that returned before it began).
	ViolationStaleRead = "stale read"
	// ViolationDoubleCAS: two cas swapped from the same value, which only one write put.
	ViolationDoubleCAS = "two cas swapped from one value"
	// ViolationFoundExpected: a cas reported a failed compare, and that it found the very
	// value it compared with.
	ViolationFoundExpected = "failed compare found the expected value"
	// ViolationFutureRead: an operation saw a value before the write of it was sent.
	ViolationFutureRead = "read of a value before its write was sent"
	// ViolationUnwritten: an operation saw a value no write or cas on the key put.
	ViolationUnwritten = "read of a value never written"
	// ViolationNoOrder: porcupine found no order of a piece of the key's history, and
	// none of the patterns above explains it.
	ViolationNoOrder = "no valid order"
)

// violationKinds is the order kinds are listed in.
var violationKinds = []string{ViolationStaleRead, ViolationDoubleCAS, ViolationFoundExpected,
	ViolationFutureRead, ViolationUnwritten, ViolationNoOrder}

// Violation is one kind of violation found, with its first instance spelled out.
type Violation struct {
	Kind      string `json:"kind"`
	Instances int    `json:"instances"` // how many times it was found, on all keys
	Keys      int    `json:"keys"`      // on how many keys
	// The first instance (in time): its key, when its last operation was sent, its
	// operations as the visualisation describes them, and one line saying what they show.
	Key  string   `json:"key"`
	T    float64  `json:"t"`
	Ops  []string `json:"ops"`
	Text string   `json:"text"`
}

// instance is one occurrence of a pattern.
type instance struct {
	kind string
	key  string
	t    float64       // the call of its last operation
	ops  []*records.Op // the witness, in the order Text names them
	text string
}

// describeRecord writes a record as describeOp does, with who sent it where and when.
func describeRecord(op *records.Op) string {
	in, out := recordIO(op)
	who := op.Client
	if op.Target != "" {
		who += " → " + op.Target
	}
	return fmt.Sprintf("%s [%s, %.3f–%.3f s]", describeOp(in, out), who, op.Submitted, op.Completed)
}

// recordIO is a record's porcupine input and output.
func recordIO(op *records.Op) (*regInput, *regOutput) {
	in := &regInput{op: op, kind: kindOf(op), indeterminate: !op.OK()}
	out := noOutput
	switch in.kind {
	case regRead:
		out = &regOutput{value: op.Value}
	case regCASFound:
		out = &regOutput{value: *op.Current}
	}
	if in.kind != regRead {
		in.expected = op.Expected
	}
	if in.kind.mutates() || op.Kind == records.KindCAS {
		in.value = op.Value
		in.state = &regState{value: op.Value, known: true}
	}
	return in, out
}

// effect is a write or cas that certainly took effect, by when, and why we know: its
// own reply, or (a failed one) the first operation that saw its value.
type effect struct {
	op   *records.Op
	call float64
	by   float64     // it took effect before this
	seen *records.Op // the operation that saw its value, for a failed one
}

// witness is the operations that show e took effect by e.by.
func (e effect) witness() []*records.Op {
	if e.seen != nil {
		return []*records.Op{e.op, e.seen}
	}
	return []*records.Op{e.op}
}

// observedBy is observed, of a record: the value it certainly saw, if any.
func observedBy(op *records.Op) (string, bool) {
	switch kindOf(op) {
	case regRead:
		return op.Value, true
	case regCASFound:
		return *op.Current, true
	case regCASSwap:
		return op.Expected, true
	}
	return "", false
}

// findPatterns looks for every instance of the patterns on one key's checkable records.
func findPatterns(ops []records.Op, key string, idx []int32) []instance {
	writers := map[string][]*records.Op{} // writes and cas (any outcome) by the value they put
	firstSeen := map[string]*records.Op{} // the operation that saw a value and returned first
	for _, i := range idx {
		op := &ops[i]
		if op.Kind == records.KindWrite || op.Kind == records.KindCAS {
			writers[op.Value] = append(writers[op.Value], op)
		}
		if v, ok := observedBy(op); ok {
			if f := firstSeen[v]; f == nil || op.Completed < f.Completed {
				firstSeen[v] = op
			}
		}
	}
	unique := func(v string) (*records.Op, bool) {
		if w := writers[v]; len(w) == 1 && v != "" {
			return w[0], true
		}
		return nil, false
	}
	// effectOf says whether and by when a write or cas took effect.
	effectOf := func(op *records.Op) (effect, bool) {
		k := kindOf(op)
		switch {
		case op.OK() && (k == regWrite || k == regCASSwap):
			return effect{op: op, call: op.Submitted, by: op.Completed}, true
		case !op.OK() && k.mutates():
			// a unique value someone saw: it took effect before the first of them returned
			if _, ok := unique(op.Value); ok {
				if f := firstSeen[op.Value]; f != nil {
					return effect{op: op, call: op.Submitted, by: max(op.Submitted, f.Completed), seen: f}, true
				}
			}
		}
		return effect{}, false
	}
	var certain []effect
	for _, i := range idx {
		if e, ok := effectOf(&ops[i]); ok {
			certain = append(certain, e)
		}
	}
	// For "did a certain effect happen entirely between t1 and t2": by call, with the
	// earliest effect among those called at or after each.
	slices.SortFunc(certain, func(a, b effect) int { return cmp.Compare(a.call, b.call) })
	sufMin := make([]int, len(certain)+1) // index into certain, -1 = none
	sufMin[len(certain)] = -1
	for i := len(certain) - 1; i >= 0; i-- {
		sufMin[i] = i
		if j := sufMin[i+1]; j >= 0 && certain[j].by < certain[i].by {
			sufMin[i] = j
		}
	}
	between := func(after, before float64) (effect, bool) {
		i := sort.Search(len(certain), func(i int) bool { return certain[i].call > after })
		if j := sufMin[i]; j >= 0 && certain[j].by < before {
			return certain[j], true
		}
		return effect{}, false
	}

	var found []instance
	add := func(kind string, t float64, text string, witness ...*records.Op) {
		var w []*records.Op
		for _, op := range witness { // once each, in order
			if !slices.Contains(w, op) {
				w = append(w, op)
			}
		}
		found = append(found, instance{kind: kind, key: key, t: t, ops: w, text: text})
	}
	swappedFrom := map[string][]*records.Op{}
	for _, i := range idx {
		op := &ops[i]
		k := kindOf(op)
		if k == regCASFound && *op.Current == op.Expected {
			add(ViolationFoundExpected, op.Submitted, fmt.Sprintf("%s reported a failed compare although it found the value it compared with", describeRecord(op)), op)
		}
		if k == regCASSwap {
			swappedFrom[op.Expected] = append(swappedFrom[op.Expected], op)
		}
		v, ok := observedBy(op)
		if !ok {
			continue
		}
		if v == "" {
			if m, ok := between(math.Inf(-1), op.Submitted); ok {
				add(ViolationStaleRead, op.Submitted, fmt.Sprintf("%s saw the key absent although %s had put a value before it began", describeRecord(op), describeEffect(m)),
					append(m.witness(), op)...)
			}
			continue
		}
		if len(writers[v]) == 0 {
			add(ViolationUnwritten, op.Submitted, fmt.Sprintf("%s saw %s, which no write or cas on key %q put", describeRecord(op), v, key), op)
			continue
		}
		w, ok := unique(v)
		if !ok {
			continue
		}
		if op.Completed < w.Submitted {
			add(ViolationFutureRead, w.Submitted, fmt.Sprintf("%s saw %s before %s was sent", describeRecord(op), v, describeRecord(w)), op, w)
			continue
		}
		we, ok := effectOf(w)
		if !ok {
			continue // a failed write nobody else saw: it may have taken effect at any time
		}
		if m, ok := between(we.by, op.Submitted); ok {
			add(ViolationStaleRead, op.Submitted, fmt.Sprintf("%s saw %s, overwritten before it began: %s put it, then %s put another value", describeRecord(op), v, describeEffect(we), describeEffect(m)),
				append(append(we.witness(), m.witness()...), op)...)
		}
	}
	for v, cs := range swappedFrom {
		if len(cs) < 2 {
			continue
		}
		w, ok := unique(v)
		if !ok && v != "" {
			continue
		}
		slices.SortFunc(cs, func(a, b *records.Op) int { return cmp.Compare(a.Submitted, b.Submitted) })
		for _, c := range cs[1:] {
			witness := []*records.Op{cs[0], c}
			what := "the key was absent, and nothing deletes"
			if w != nil {
				witness = append([]*records.Op{w}, witness...)
				what = "only " + describeRecord(w) + " put it"
			}
			add(ViolationDoubleCAS, c.Submitted, fmt.Sprintf("%s and %s both swapped from %s: %s", describeRecord(cs[0]), describeRecord(c), valueName(v), what), witness...)
		}
	}
	return found
}

// describeEffect is describeRecord, and for a failed write or cas who saw its value.
func describeEffect(e effect) string {
	if e.seen == nil {
		return describeRecord(e.op)
	}
	return fmt.Sprintf("%s (which %s saw)", describeRecord(e.op), describeRecord(e.seen))
}

// findAllPatterns runs findPatterns on every key, on GOMAXPROCS workers, until deadline.
func findAllPatterns(ops []records.Op, ix *historyIndex, deadline time.Time) []instance {
	per := make([][]instance, len(ix.keys))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(ix.keys)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ix.keys) || time.Now().After(deadline) {
					return
				}
				per[i] = findPatterns(ops, ix.keys[i], ix.byKey[ix.keys[i]])
			}
		}()
	}
	wg.Wait()
	var all []instance
	for _, p := range per {
		all = append(all, p...)
	}
	return all
}

// witnessHistory is a witness as a porcupine history from the absent initial value.
func witnessHistory(w []*records.Op) []porcupine.Operation {
	var hist []porcupine.Operation
	for i, op := range w {
		in, out := recordIO(op)
		ret := nanos(op.Completed)
		if in.indeterminate {
			ret = never
		}
		hist = append(hist, porcupine.Operation{ClientId: i, Call: nanos(op.Submitted), Return: max(ret, nanos(op.Submitted)), Input: in, Output: out, Metadata: op})
	}
	slices.SortStableFunc(hist, func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
	return hist
}

// confirmed reports whether porcupine, on its own, finds no order of an instance's
// witness: a pattern is reported only when it is.
func confirmed(in instance) bool {
	return porcupine.CheckOperationsTimeout(registerModel(false, nil), witnessHistory(in.ops), time.Second) == porcupine.Illegal
}

// summarizePatterns groups instances by kind, the first (in time) of each spelled out.
// The first instance of each kind must be confirmed by porcupine on its own witness, or
// the kind is not reported (a pattern that porcupine does not confirm is a bug here, not
// in the system).
func summarizePatterns(all []instance) ([]Violation, *instance) {
	slices.SortStableFunc(all, func(a, b instance) int { return cmp.Compare(a.t, b.t) })
	byKind := map[string]*Violation{}
	keys := map[string]map[string]bool{}
	var lead *instance
	for i := range all {
		in := &all[i]
		v := byKind[in.kind]
		if v == nil {
			if !confirmed(*in) {
				byKind[in.kind] = &Violation{Kind: ""} // not reported
				continue
			}
			v = &Violation{Kind: in.kind, Key: in.key, T: round3(in.t), Text: in.text}
			for _, op := range in.ops {
				v.Ops = append(v.Ops, describeRecord(op))
			}
			byKind[in.kind] = v
			keys[in.kind] = map[string]bool{}
			if lead == nil {
				lead = in
			}
		}
		if v.Kind == "" {
			continue
		}
		v.Instances++
		keys[in.kind][in.key] = true
	}
	var out []Violation
	for _, k := range violationKinds {
		if v := byKind[k]; v != nil && v.Kind != "" {
			v.Keys = len(keys[k])
			out = append(out, *v)
		}
	}
	return out, lead
}

// stuckAt describes where porcupine got stuck in an illegal segment: the first operation
// (by call) outside its longest partial linearization, and the last one in it.
func stuckAt(s *segment, deadline time.Time) (stuck int, text string) {
	res, info := porcupine.CheckOperationsVerbose(registerModel(s.wildcard, nil), s.ops, max(time.Until(deadline), 100*time.Millisecond))
	if res != porcupine.Illegal {
		return 0, ""
	}
	parts := info.PartialLinearizations()
	if len(parts) == 0 {
		return 0, ""
	}
	var longest []int
	for _, p := range parts[0] {
		if len(p) > len(longest) {
			longest = p
		}
	}
	in := make([]bool, len(s.ops))
	for _, id := range longest {
		in[id] = true
	}
	for i := range s.ops {
		if !in[i] {
			stuck = i
			break
		}
	}
	desc := func(o porcupine.Operation) string {
		return describeRecord(o.Input.(*regInput).op)
	}
	text = fmt.Sprintf("no order fits %s", desc(s.ops[stuck]))
	if len(longest) > 0 {
		text += fmt.Sprintf(" after the longest order found, which ends with %s", desc(s.ops[longest[len(longest)-1]]))
	}
	return stuck, text
}

// describeViolations is the summary of the patterns found: "stale read ×35 on 2 keys,
// two cas swapped from one value ×1 on 1 key".
func describeViolations(vs []Violation) string {
	var parts []string
	for _, v := range vs {
		parts = append(parts, fmt.Sprintf("%s ×%d on %d key(s)", v.Kind, v.Instances, v.Keys))
	}
	return strings.Join(parts, ", ")
}
