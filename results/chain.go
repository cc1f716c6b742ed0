package results

import (
	"encoding/binary"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"
)

// The chain checker decides one key's whole history when every value is put by one
// operation and no failed compare is of unknown value (the usual case: dt's workloads make
// values unique, and etcd says what a failed compare found). It searches orders of the
// key's versions — a value, from the moment its writer took effect to the moment the next
// one did — rather than orders of operations as porcupine does: reads and failed compares
// are not choices, only bounds on where their version's span can be, so tens of reads in
// flight at once no longer multiply the search. (Porcupine took over 5 s for 100
// operations of a real run with ~30 in flight; this takes microseconds.)
//
// A linearization is a chain of versions v0 (the absent initial value), v1, v2, ... whose
// writers take effect at b1 ≤ b2 ≤ ... and in which each operation that saw a version
// lies in its span, and is feasible exactly when, for every version v followed by n:
//
//	writer(v).call ≤ b(v) ≤ writer(v).ret    (its own interval)
//	b(v) ≤ o.ret and o.call ≤ b(n)           (every o that saw v lies in its span)
//	n is v's successor if n's writer is a cas that swapped from v
//
// (equal times may be ordered either way, as porcupine does). For a given order the
// earliest boundaries are best — every later bound is a lower bound — so the search
// chooses only the order: depth first, the version with the earliest deadline first,
// remembering for each (current version, set of versions used) the earliest boundary it
// was reached with, and giving up a branch as soon as some unused version's deadline has
// passed. Failed writes and cas nobody saw are left out (with no compare of unknown
// value, leaving them out changes nothing); ones whose value was seen took effect by then.

// chainVersion is one value put on the key.
type chainVersion struct {
	op       int   // index of its writer in the history; -1 for the initial value
	call     int64 // its writer's call
	deadline int64 // when its writer took effect at the latest: its return, and before any operation that saw it returned
	obsCall  int64 // the latest call of an operation that saw it (its successor takes effect after)
	pred     int   // the version its writer's cas swapped from; -1: any
	succ     int   // the version whose cas swapped from it; -1: any
}

// chainResult is what the chain checker found: the verdict, and for an illegal history
// the operation (index in the history) at which the deepest order it tried got stuck.
type chainResult struct {
	res   porcupine.CheckResult
	stuck int
}

// chainApplies reports whether the chain checker can decide hist: every written value
// unique, no failed compare of unknown value.
func chainApplies(hist []porcupine.Operation) bool {
	for _, o := range hist {
		in := o.Input.(*regInput)
		if in.kind == regCASNotEq || (in.kind.mutates() && !in.unique) {
			return false
		}
	}
	return true
}

// chainCheck decides hist (one key's whole history, sorted by call, from the absent
// value; chainApplies must hold). It gives up with Unknown at deadline, when abort is set,
// or when its memo outgrows maxMemo entries twice over.
func chainCheck(hist []porcupine.Operation, deadline time.Time, abort *atomic.Bool) chainResult {
	illegalAt := func(i int) chainResult { return chainResult{res: porcupine.Illegal, stuck: i} }
	// The versions, the initial one first.
	vs := []chainVersion{{op: -1, call: math.MinInt64, deadline: math.MaxInt64, obsCall: math.MinInt64, pred: -1, succ: -1}}
	versionOf := map[string]int{"": 0}
	for i, o := range hist {
		in := o.Input.(*regInput)
		if !in.kind.mutates() || (in.indeterminate && o.Return == never) {
			continue // not a write, or a failed one nobody saw: it can be left out
		}
		versionOf[in.value] = len(vs)
		vs = append(vs, chainVersion{op: i, call: o.Call, deadline: o.Return, obsCall: math.MinInt64, pred: -1, succ: -1})
	}
	for i, o := range hist {
		in, out := o.Input.(*regInput), o.Output.(*regOutput)
		if in.kind.mutates() && (in.kind == regCASSwap || in.kind == regCASMaybe) {
			v, ok := versionOf[in.value]
			if !ok || vs[v].op != i {
				continue // a failed cas left out
			}
			p, ok := versionOf[in.expected]
			if !ok {
				return illegalAt(i) // swapped from a value nobody put
			}
			if vs[p].succ >= 0 {
				return illegalAt(i) // two cas swapped from one value
			}
			vs[v].pred, vs[p].succ = p, v
			continue
		}
		seen, ok := observed(in, out)
		if !ok {
			continue
		}
		if in.kind == regCASFound && seen == in.expected {
			return illegalAt(i) // a failed compare that found what it compared with
		}
		v, ok := versionOf[seen]
		if !ok {
			return illegalAt(i) // saw a value nobody put
		}
		vs[v].deadline = min(vs[v].deadline, o.Return)
		vs[v].obsCall = max(vs[v].obsCall, o.Call)
	}
	for v := 1; v < len(vs); v++ {
		if vs[v].call > vs[v].deadline {
			return illegalAt(vs[v].op) // seen before its writer was sent
		}
	}

	n := len(vs)
	// byCall: versions 1.. by writer call (candidates come from its frontier); byDeadline:
	// by deadline (the earliest unused one bounds how far the chain may go).
	byCall := make([]int, 0, n-1)
	for v := 1; v < n; v++ {
		byCall = append(byCall, v)
	}
	slices.SortStableFunc(byCall, func(a, b int) int { return cmpInt64(vs[a].call, vs[b].call) })
	byDeadline := slices.Clone(byCall)
	slices.SortStableFunc(byDeadline, func(a, b int) int { return cmpInt64(vs[a].deadline, vs[b].deadline) })
	rank := make([]int, n) // position in byCall, for the memo key
	for k, v := range byCall {
		rank[v] = k
	}

	used := make([]bool, n)
	used[0] = true
	type frame struct {
		cur       int
		b         int64
		cands     []int // versions to try next, earliest deadline first
		next      int   // index into cands
		callFront int   // byCall[:callFront] are all used
		deadFront int   // byDeadline[:deadFront] are all used
		maxRank   int   // the largest rank (position in byCall) of a used version
		usedCount int
	}
	memo := map[string]int64{}
	const maxMemo = 1 << 21
	var keyBuf []byte
	// memoKey is (current version, the used versions): all of byCall[:callFront], and
	// those used beyond it, up to maxRank.
	memoKey := func(cur, callFront, maxRank int) string {
		keyBuf = binary.AppendUvarint(keyBuf[:0], uint64(cur))
		keyBuf = binary.AppendUvarint(keyBuf, uint64(callFront))
		for k := callFront; k <= maxRank; k++ {
			if used[byCall[k]] {
				keyBuf = binary.AppendUvarint(keyBuf, uint64(k-callFront))
			}
		}
		return string(keyBuf)
	}

	// candidates lists the versions that may follow cur (taking effect at b at the
	// earliest), earliest deadline first.
	candidates := func(f *frame) []int {
		if s := vs[f.cur].succ; s >= 0 {
			if used[s] {
				return nil
			}
			return []int{s}
		}
		// the earliest deadline among unused versions: none may start after it
		limit := int64(math.MaxInt64)
		for k := f.deadFront; k < len(byDeadline); k++ {
			if !used[byDeadline[k]] {
				// the candidate with this deadline may itself go first: allow up to the
				// second earliest for the others; checked exactly in step
				limit = vs[byDeadline[k]].deadline
				for k2 := k + 1; k2 < len(byDeadline); k2++ {
					if !used[byDeadline[k2]] {
						limit = vs[byDeadline[k2]].deadline
						break
					}
				}
				break
			}
		}
		var out []int
		for k := f.callFront; k < len(byCall); k++ {
			v := byCall[k]
			if vs[v].call > limit {
				break
			}
			if used[v] || vs[v].pred >= 0 { // a swap comes only right after what it swapped from
				continue
			}
			out = append(out, v)
		}
		slices.SortStableFunc(out, func(a, b int) int { return cmpInt64(vs[a].deadline, vs[b].deadline) })
		return out
	}
	advance := func(front int, order []int) int {
		for front < len(order) && used[order[front]] {
			front++
		}
		return front
	}

	stack := []frame{{cur: 0, b: math.MinInt64, usedCount: 1, maxRank: -1}}
	stack[0].cands = candidates(&stack[0])
	deepest, deepestAt := 0, -1
	steps := 0
	for len(stack) > 0 {
		if steps++; steps&1023 == 0 {
			if time.Now().After(deadline) || (abort != nil && abort.Load()) {
				return chainResult{res: porcupine.Unknown}
			}
			if len(memo) > maxMemo {
				clear(memo) // correct without it, only slower
			}
		}
		f := &stack[len(stack)-1]
		if f.usedCount == n {
			return chainResult{res: porcupine.Ok}
		}
		if f.next >= len(f.cands) {
			// backtrack: undo this frame's version
			if len(stack) == 1 {
				break
			}
			used[f.cur] = false
			stack = stack[:len(stack)-1]
			continue
		}
		v := f.cands[f.next]
		f.next++
		// v takes effect at the earliest at b: after cur did, after v was sent, after
		// everything that saw cur was sent.
		b := max(f.b, vs[v].call, vs[f.cur].obsCall)
		if b > vs[v].deadline {
			if f.usedCount > deepest {
				deepest, deepestAt = f.usedCount, vs[v].op
			}
			continue
		}
		used[v] = true
		callFront := advance(f.callFront, byCall)
		deadFront := advance(f.deadFront, byDeadline)
		// every unused version must still be able to take effect after b
		if deadFront < len(byDeadline) && vs[byDeadline[deadFront]].deadline < b {
			if f.usedCount > deepest {
				deepest, deepestAt = f.usedCount, vs[byDeadline[deadFront]].op
			}
			used[v] = false
			continue
		}
		maxRank := max(f.maxRank, rank[v])
		key := memoKey(v, callFront, maxRank)
		if best, ok := memo[key]; ok && best <= b {
			used[v] = false
			continue
		}
		memo[key] = b
		nf := frame{cur: v, b: b, callFront: callFront, deadFront: deadFront, maxRank: maxRank, usedCount: f.usedCount + 1}
		stack = append(stack, nf)
		top := &stack[len(stack)-1]
		top.cands = candidates(top)
	}
	if deepestAt < 0 {
		deepestAt = 0
	}
	return chainResult{res: porcupine.Illegal, stuck: deepestAt}
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
