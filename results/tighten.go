package results

import (
	"cmp"
	"math"
	"slices"
	"sort"

	"github.com/anishathalye/porcupine"
)

// tighten narrows the intervals porcupine sees (Call, Return) to what every
// linearization of one key's history satisfies anyway, so that a search among many
// concurrent operations does not have to discover it by backtracking. Porcupine explores
// every set of operations it could have linearized so far; with tens of writes and reads
// in flight at once (a loaded machine, a slow member) that is exponential, and a
// 100-operation piece of a real run took it over 5 s.
//
// Every value is put by one operation (the workload makes them unique), so a
// linearization is a chain of versions, each the span from its writer's point to the
// next writer's, holding every operation that saw it (a read of it, a failed compare
// that found it, the cas that replaced it: that one is the boundary between its two
// versions). If some operation of version u returned before some operation of version v
// was called, u's span comes before v's; then every operation of v takes effect after
// every call of u's operations, and every operation of u before every return of v's. A
// writer also takes effect before any operation that saw its value returns, and those
// after it is called. These bounds are applied until nothing changes (a few rounds).
//
// Only versions certainly in the chain count: the initial (absent) one, and values put
// by one operation that took effect (successful, or failed but seen). Operations of
// other values, and failed compares that learnt only "not expected", keep their
// intervals. Bounds that contradict each other (an interval emptied) prove a violation;
// the history is then returned as it was, for the search and the patterns to report.
func tighten(hist []porcupine.Operation) []porcupine.Operation {
	const initial = 0 // version index of the absent value
	versionOf := map[string]int{"": initial}
	writer := []int{-1} // op index of each version's writer; -1 for the initial value
	for i, o := range hist {
		in := o.Input.(*regInput)
		if !in.kind.mutates() || !in.unique || o.Return == never {
			continue // not put, not certainly put, or not by this op alone
		}
		versionOf[in.value] = len(writer)
		writer = append(writer, i)
	}
	if len(writer) == 1 {
		return hist
	}
	// members[v]: the operations of version v; memberOf[i]: the versions of op i.
	members := make([][]int, len(writer))
	memberOf := make([][2]int, len(hist))
	for i := range memberOf {
		memberOf[i] = [2]int{-1, -1}
	}
	join := func(i, v int) {
		members[v] = append(members[v], i)
		if memberOf[i][0] < 0 {
			memberOf[i][0] = v
		} else {
			memberOf[i][1] = v
		}
	}
	for v, w := range writer {
		if w >= 0 {
			join(w, v)
		}
	}
	for i, o := range hist {
		in, out := o.Input.(*regInput), o.Output.(*regOutput)
		seen, ok := observed(in, out)
		if !ok && in.kind == regCASMaybe && o.Return != never && in.unique {
			seen, ok = in.expected, true // it took effect (its value was seen): a swap
		}
		if !ok {
			continue
		}
		if v, ok := versionOf[seen]; ok && (memberOf[i][0] != v) {
			join(i, v)
		}
	}

	orig := slices.Clone(hist)
	n := len(writer)
	minRet, maxCall := make([]int64, n), make([]int64, n)
	for range 4 {
		changed := false
		for v := range n {
			minRet[v], maxCall[v] = math.MaxInt64, math.MinInt64
			for _, i := range members[v] {
				minRet[v] = min(minRet[v], hist[i].Return)
				maxCall[v] = max(maxCall[v], hist[i].Call)
			}
		}
		// after[v]: the latest call of a version that precedes v (u ≠ v with
		// minRet(u) < maxCall(v)); before[u]: the earliest return of a version that
		// follows u (v ≠ u with minRet(u) < maxCall(v)).
		after := latestCallBefore(minRet, maxCall)
		before := earliestReturnAfter(minRet, maxCall)
		set := func(i int, call, ret int64) {
			o := &hist[i]
			if call > o.Call {
				o.Call, changed = call, true
			}
			if ret < o.Return {
				o.Return, changed = ret, true
			}
		}
		for v := range n {
			w := writer[v]
			for _, i := range members[v] {
				call, ret := after[v], before[v]
				if w >= 0 && i != w {
					call = max(call, hist[w].Call) // it saw what w put
				}
				set(i, call, ret)
			}
			if w >= 0 {
				for _, i := range members[v] {
					if i != w {
						set(w, math.MinInt64, hist[i].Return) // w took effect before i saw it
					}
				}
			}
		}
		if !changed {
			break
		}
	}
	for _, o := range hist {
		if o.Call > o.Return {
			return orig // contradictory bounds: not linearizable, let the search say where
		}
	}
	// porcupine wants calls in order for its list; ties are fine
	slices.SortStableFunc(hist, func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
	return hist
}

// latestCallBefore is, for each version v, the largest maxCall[u] over u ≠ v with
// minRet[u] < maxCall[v] (math.MinInt64 when there is none).
func latestCallBefore(minRet, maxCall []int64) []int64 {
	n := len(minRet)
	byRet := make([]int, n)
	for i := range byRet {
		byRet[i] = i
	}
	sort.Slice(byRet, func(a, b int) bool { return minRet[byRet[a]] < minRet[byRet[b]] })
	// prefix maxima, the two best with their versions, so that v itself can be left out
	type best struct {
		v1, v2 int
		c1, c2 int64
	}
	pre := make([]best, n+1)
	pre[0] = best{-1, -1, math.MinInt64, math.MinInt64}
	for k, u := range byRet {
		b := pre[k]
		switch c := maxCall[u]; {
		case c > b.c1:
			b = best{u, b.v1, c, b.c1}
		case c > b.c2:
			b.v2, b.c2 = u, c
		}
		pre[k+1] = b
	}
	out := make([]int64, n)
	for v := range n {
		k := sort.Search(n, func(k int) bool { return minRet[byRet[k]] >= maxCall[v] })
		b := pre[k]
		if b.v1 == v {
			out[v] = b.c2
		} else {
			out[v] = b.c1
		}
	}
	return out
}

// earliestReturnAfter is, for each version u, the smallest minRet[v] over v ≠ u with
// minRet[u] < maxCall[v] (math.MaxInt64 when there is none).
func earliestReturnAfter(minRet, maxCall []int64) []int64 {
	n := len(minRet)
	byCall := make([]int, n)
	for i := range byCall {
		byCall[i] = i
	}
	sort.Slice(byCall, func(a, b int) bool { return maxCall[byCall[a]] < maxCall[byCall[b]] })
	type best struct {
		v1, v2 int
		r1, r2 int64
	}
	suf := make([]best, n+1)
	suf[n] = best{-1, -1, math.MaxInt64, math.MaxInt64}
	for k := n - 1; k >= 0; k-- {
		v := byCall[k]
		b := suf[k+1]
		switch r := minRet[v]; {
		case r < b.r1:
			b = best{v, b.v1, r, b.r1}
		case r < b.r2:
			b.v2, b.r2 = v, r
		}
		suf[k] = b
	}
	out := make([]int64, n)
	for u := range n {
		k := sort.Search(n, func(k int) bool { return maxCall[byCall[k]] > minRet[u] })
		b := suf[k]
		if b.v1 == u {
			out[u] = b.r2
		} else {
			out[u] = b.r1
		}
	}
	return out
}
