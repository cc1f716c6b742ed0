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
// per key.
type Linearizability struct {
	Result      string `json:"result"` // LinOK, LinViolation, LinUnknown or LinSkipped
	Keys        int    `json:"keys"`
	KeysChecked int    `json:"keys_checked"` // keys whose every segment was decided
	Ops         int    `json:"ops"`          // read and write records in the history
	OpsChecked  int    `json:"ops_checked"`  // operations in decided segments (after the reductions below)
	// IndeterminateWrites counts failed writes that may or may not have taken effect.
	IndeterminateWrites int `json:"indeterminate_writes"`
	// UnobservedIndeterminate counts indeterminate writes no read ever returned; they are
	// dropped, which changes nothing (one can always linearize them last).
	UnobservedIndeterminate int `json:"unobserved_indeterminate_writes"`
	// Segments is how many independent pieces the history was cut into (MaxOpsPerSegment).
	Segments int `json:"segments"`
	// ReadsAtCuts counts reads that spanned a cut between two segments and so were not checked.
	ReadsAtCuts   int      `json:"reads_at_cuts"`
	DurationS     float64  `json:"duration_s"`
	Detail        string   `json:"detail"`
	ViolatingKeys []string `json:"violating_keys,omitempty"`
	Visualization string   `json:"visualization,omitempty"` // file name, relative to the run dir
}

// Check defaults.
const (
	DefaultCheckTimeout     = 30 * time.Second
	DefaultMaxOpsPerSegment = 20000
	DefaultCheckMemory      = 1 << 30
)

// CheckLinearizability checks ops against one register per key (porcupine, partitioned by
// key). Writes put unique values; reads return the value id read, "" meaning absent (the
// initial state). Failed reads and overloaded (never sent) operations are dropped; other
// failed writes may or may not have happened. It spends at most about opts.CheckTimeout
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
	lin := Linearizability{Keys: len(ix.keys), Ops: ix.ops, IndeterminateWrites: ix.indeterminate}
	if opts.CheckTimeout < 0 {
		lin.Result = LinSkipped
		lin.Detail = "check disabled"
		return lin
	}
	deadline := start.Add(opts.CheckTimeout)
	outs := checkKeys(ops, ix, opts, deadline)

	undecided, memAborts, unbuilt := 0, 0, 0
	var violating *segment
	var hint string
	for i, o := range outs {
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
		if o.illegal != nil {
			lin.ViolatingKeys = append(lin.ViolatingKeys, ix.keys[i])
			if violating == nil || o.illegal.key < violating.key {
				violating, hint = o.illegal, o.hint
			}
		}
	}
	sort.Strings(lin.ViolatingKeys)

	var d []string
	switch {
	case violating != nil:
		lin.Result = LinViolation
		s := violating
		d = append(d, fmt.Sprintf("not linearizable: key %q has no valid order of its operations between t=%.3fs and t=%.3fs", s.key, s.from, s.to))
		if hint != "" {
			d = append(d, hint)
		}
		if vizPath != "" {
			// The shrink and visualisation get their own small budget so a violation found
			// at the last moment is still shown.
			vizBudget := min(max(time.Until(deadline), 5*time.Second), opts.CheckTimeout, 20*time.Second)
			small, desc := shrinkViolation(s, time.Now().Add(vizBudget))
			if err := visualize(small, vizPath, time.Now().Add(vizBudget)); err != nil {
				d = append(d, fmt.Sprintf("visualisation failed: %v", err))
			} else {
				lin.Visualization = filepath.Base(vizPath)
				d = append(d, fmt.Sprintf("%s shows %s", lin.Visualization, desc))
			}
		}
		if unbuilt+undecided > 0 {
			d = append(d, fmt.Sprintf("checking stopped at the first violation (%d keys not checked)", len(ix.keys)-lin.KeysChecked))
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
		d = append(d, fmt.Sprintf("undecided: %s; no violation in the %d of %d keys fully checked", strings.Join(why, ", "), lin.KeysChecked, len(ix.keys)))
	default:
		lin.Result = LinOK
		d = append(d, fmt.Sprintf("linearizable: %d operations on %d keys", lin.OpsChecked, lin.Keys))
	}
	if lin.IndeterminateWrites > 0 {
		d = append(d, fmt.Sprintf("%d failed writes treated as may-or-may-not-have-happened (%d never observed, dropped)", lin.IndeterminateWrites, lin.UnobservedIndeterminate))
	}
	if ix.failedReads > 0 || ix.overload > 0 {
		d = append(d, fmt.Sprintf("%d failed reads and %d never-sent (overload) operations not checked", ix.failedReads, ix.overload))
	}
	if ix.otherKinds > 0 {
		d = append(d, fmt.Sprintf("%d operations of kinds other than read/write ignored", ix.otherKinds))
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

// regInput is the input of one register operation; regOutput the output. Operations
// carry pointers into per-key slabs, so building a history allocates a few large slices
// rather than millions of small boxes.
type regInput struct {
	write         bool
	indeterminate bool        // a failed write: it may or may not have happened
	unique        bool        // no other write on the key puts the same value
	value         string      // written value
	state         *regState   // the state a write leaves, shared so Step allocates nothing
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
	keys          []string           // largest first, for load balance
	byKey         map[string][]int32 // indices into the records
	ops           int                // read and write records
	indeterminate int
	failedReads   int
	overload      int
	otherKinds    int
}

func indexHistory(ops []records.Op) *historyIndex {
	ix := &historyIndex{byKey: map[string][]int32{}}
	for i := range ops {
		op := &ops[i]
		switch op.Kind {
		case records.KindWrite, records.KindRead:
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

// buildKey turns one key's records into porcupine operations sorted by call time, with
// the indeterminate-write reductions applied (see CheckLinearizability). It returns how
// many indeterminate writes were dropped as unobserved and a note when a read returned a
// value no write put.
func buildKey(ops []records.Op, idx []int32) (hist []porcupine.Operation, unobserved int, hint string) {
	clients := map[string]int{}
	clientID := func(c string) int {
		id, ok := clients[c]
		if !ok {
			id = len(clients)
			clients[c] = id
		}
		return id
	}
	type valueInfo struct {
		writes   int   // writes of this value
		firstRet int64 // earliest return of a successful read of it
		read     bool
	}
	values := map[string]*valueInfo{}
	info := func(v string) *valueInfo {
		vi := values[v]
		if vi == nil {
			vi = &valueInfo{firstRet: never}
			values[v] = vi
		}
		return vi
	}
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
		in.op = op
		if op.Kind == records.KindRead {
			vi := info(op.Value)
			vi.read = true
			vi.firstRet = min(vi.firstRet, ret)
			outputs[n].value = op.Value
			hist = append(hist, porcupine.Operation{
				ClientId: clientID(op.Client), Call: call, Return: ret, Input: in, Output: &outputs[n],
			})
			continue
		}
		info(op.Value).writes++
		in.write, in.value = true, op.Value
		states[n] = regState{value: op.Value, known: true}
		in.state = &states[n]
		if !op.OK() {
			in.indeterminate = true
			ret = never
		}
		hist = append(hist, porcupine.Operation{
			ClientId: clientID(op.Client), Call: call, Return: ret, Input: in, Output: noOutput,
		})
	}
	kept := hist[:0]
	for _, o := range hist {
		in := o.Input.(*regInput)
		if in.write {
			in.unique = values[in.value].writes == 1
		}
		if in.indeterminate && in.unique { // reads of its value identify this write
			vi := values[in.value]
			if !vi.read {
				unobserved++
				continue
			}
			o.Return = max(o.Call, vi.firstRet)
		}
		kept = append(kept, o)
	}
	var unwritten []string
	for v, vi := range values {
		if vi.read && vi.writes == 0 && v != "" {
			unwritten = append(unwritten, v)
		}
	}
	if len(unwritten) > 0 {
		sort.Strings(unwritten)
		hint = fmt.Sprintf("a read of key %q returned %q, a value no recorded write put on that key", ops[idx[0]].Key, unwritten[0])
	}
	return kept, unobserved, hint
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

// window is the history of a sound segment of ops (sorted by call) from index lo to hi
// (exclusive): writes called before ops[lo] and possibly still taking effect after its
// call are carried over as indeterminate (and reduced, reduceCarried); reads in flight at
// ops[hi]'s call are dropped, since they could see a write of the next segment. It
// returns the history and how many reads it dropped.
func window(ops []porcupine.Operation, lo, hi int) ([]porcupine.Operation, int) {
	var seg []porcupine.Operation
	if lo > 0 {
		cStart := ops[lo].Call
		for _, o := range ops[:lo] {
			if in := o.Input.(*regInput); in.write && o.Return >= cStart {
				c := *in
				c.indeterminate = true
				o.Input = &c
				o.Return = never
				seg = append(seg, o)
			}
		}
	}
	dropped := 0
	for _, o := range ops[lo:hi] {
		if !o.Input.(*regInput).write && hi < len(ops) && o.Return >= ops[hi].Call {
			dropped++
			continue
		}
		seg = append(seg, o)
	}
	return reduceCarried(seg), dropped
}

// reduceCarried applies the indeterminate-write reductions to writes carried into a
// segment: a uniquely valued one (over the whole key) that no read in the segment returned
// is dropped, an observed one returns by the first read of its value.
func reduceCarried(seg []porcupine.Operation) []porcupine.Operation {
	firstRead := map[string]int64{}
	for _, o := range seg {
		if in := o.Input.(*regInput); !in.write {
			v := o.Output.(*regOutput).value
			if r, ok := firstRead[v]; !ok || o.Return < r {
				firstRead[v] = o.Return
			}
		}
	}
	kept := seg[:0]
	for _, o := range seg {
		if in := o.Input.(*regInput); in.indeterminate && o.Return == never && in.unique {
			r, ok := firstRead[in.value]
			if !ok {
				continue
			}
			o.Return = max(o.Call, r)
		}
		kept = append(kept, o)
	}
	return kept
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

// registerModel is a single register (porcupine checks each segment alone). abort, when
// set, makes every step fail so that porcupine unwinds quickly; the caller then ignores the
// verdict. That is how the memory bound stops a search porcupine's own timeout would let
// run on.
func registerModel(wildcard bool, abort *atomic.Bool) porcupine.Model {
	seed := maphash.MakeSeed()
	return porcupine.Model{
		Init: func() any { return &regState{known: !wildcard} },
		Step: func(state, input, output any) (bool, any) {
			if abort != nil && abort.Load() {
				return false, state
			}
			st, in := state.(*regState), input.(*regInput)
			if in.write {
				return true, in.state
			}
			out := output.(*regOutput).value
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
			in := input.(*regInput)
			if in.write {
				s := fmt.Sprintf("put(%s, %s)", in.op.Key, in.value)
				if in.indeterminate {
					s += " ?" // may or may not have happened
				}
				return s
			}
			v := output.(*regOutput).value
			if v == "" {
				v = "absent"
			}
			return fmt.Sprintf("get(%s) → %s", in.op.Key, v)
		},
		DescribeState: func(state any) string {
			st := state.(*regState)
			switch {
			case !st.known:
				return "unknown"
			case st.value == "":
				return "absent"
			}
			return st.value
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
	hint        string
}

// checkKeys checks every key on GOMAXPROCS workers, segment after segment, until all are
// decided, one is illegal, or the deadline passes. A segment whose search grows the heap by
// more than opts.CheckMemory bytes is abandoned as undecided.
func checkKeys(ops []records.Op, ix *historyIndex, opts Options, deadline time.Time) []keyOutcome {
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
				hist, unobserved, hint := buildKey(ops, ix.byKey[key])
				segs, dropped := cutSegments(key, hist, opts.MaxOpsPerSegment)
				hist = nil
				o.built, o.segments, o.readsAtCuts, o.unobserved, o.hint = true, len(segs), dropped, unobserved, hint
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

// shrinkViolation looks for a small window of an illegal segment that is illegal on its
// own, so the visualisation shows the problem rather than thousands of operations. It
// returns the piece to visualise and a description of it.
func shrinkViolation(s *segment, deadline time.Time) (*segment, string) {
	whole := fmt.Sprintf("key %q, t=%.3f–%.3fs (%d operations)", s.key, s.from, s.to, len(s.ops))
	if len(s.ops) <= 200 {
		return s, whole
	}
	// Where porcupine got stuck: the first operation (by call) outside its longest partial
	// linearization.
	res, info := porcupine.CheckOperationsVerbose(registerModel(s.wildcard, nil), s.ops, time.Until(deadline))
	if res != porcupine.Illegal {
		return s, whole
	}
	stuck := 0
	if parts := info.PartialLinearizations(); len(parts) > 0 {
		in := make([]bool, len(s.ops))
		longest := []int(nil)
		for _, p := range parts[0] {
			if len(p) > len(longest) {
				longest = p
			}
		}
		for _, id := range longest {
			in[id] = true
		}
		for i := range s.ops {
			if !in[i] {
				stuck = i
				break
			}
		}
	}
	for _, half := range []int{50, 200, 1000} {
		if time.Now().After(deadline) {
			break
		}
		lo, hi := max(stuck-half, 0), min(stuck+half, len(s.ops))
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
