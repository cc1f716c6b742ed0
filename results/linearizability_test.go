package results

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/dtlab/dt/records"
)

func put(client, key, val string, call, ret float64) records.Op {
	return records.Op{Client: client, Kind: records.KindWrite, Key: key, Value: val, ExpectedStart: call, Submitted: call, Completed: ret, Result: records.ResultOK}
}

func get(client, key, val string, call, ret float64) records.Op {
	return records.Op{Client: client, Kind: records.KindRead, Key: key, Value: val, ExpectedStart: call, Submitted: call, Completed: ret, Result: records.ResultOK}
}

func failed(o records.Op, result string) records.Op { o.Result = result; return o }

func check(t *testing.T, ops []records.Op, opts Options) (Linearizability, string) {
	t.Helper()
	viz := filepath.Join(t.TempDir(), records.VisualizationFile)
	if opts.CheckTimeout == 0 {
		opts.CheckTimeout = 10 * time.Second
	}
	lin := CheckLinearizability(ops, opts, viz)
	return lin, viz
}

func TestLinearizabilityCrafted(t *testing.T) {
	timeout := "context deadline exceeded"
	cases := []struct {
		name string
		ops  []records.Op
		want string
	}{
		{"empty", nil, LinOK},
		{"sequential", []records.Op{
			get("c1", "k", "", 0, 1),
			put("c1", "k", "A", 2, 3),
			get("c2", "k", "A", 4, 5),
			put("c2", "k", "B", 6, 7),
			get("c1", "k", "B", 8, 9),
		}, LinOK},
		{"stale read", []records.Op{
			put("c1", "k", "A", 0, 1),
			put("c2", "k", "B", 2, 3),
			get("c3", "k", "A", 4, 5), // B was acknowledged before this read began
		}, LinViolation},
		{"read absent after a write", []records.Op{
			put("c1", "k", "A", 0, 1),
			get("c2", "k", "", 2, 3),
		}, LinViolation},
		{"concurrent writes, either order", []records.Op{
			put("c1", "k", "A", 0, 2),
			put("c2", "k", "B", 1, 3),
			get("c3", "k", "A", 4, 5),
			get("c3", "k", "A", 6, 7),
		}, LinOK},
		{"concurrent writes, value flips back", []records.Op{
			put("c1", "k", "A", 0, 2),
			put("c2", "k", "B", 1, 3),
			get("c3", "k", "B", 3.5, 4),
			get("c3", "k", "A", 6, 7),
		}, LinViolation},
		{"failed write that happened", []records.Op{
			put("c1", "k", "A", 0, 1),
			failed(put("c2", "k", "B", 2, 3), timeout),
			get("c3", "k", "B", 10, 11), // B took effect long after its client gave up
			get("c3", "k", "B", 12, 13),
		}, LinOK},
		{"failed write that did not happen", []records.Op{
			put("c1", "k", "A", 0, 1),
			failed(put("c2", "k", "B", 2, 3), timeout),
			get("c3", "k", "A", 10, 11),
		}, LinOK},
		{"failed write observed, then the older value", []records.Op{
			put("c1", "k", "A", 0, 1),
			failed(put("c2", "k", "B", 2, 3), timeout),
			get("c3", "k", "B", 10, 11),
			get("c3", "k", "A", 12, 13),
		}, LinViolation},
		{"failed write read before it was sent", []records.Op{
			get("c3", "k", "B", 0, 1),
			failed(put("c2", "k", "B", 2, 3), timeout),
		}, LinViolation},
		{"overloaded write never happened", []records.Op{
			failed(put("c2", "k", "B", 2, 2), records.ResultOverload),
			get("c3", "k", "B", 10, 11),
		}, LinViolation},
		{"failed reads and overloads are ignored", []records.Op{
			put("c1", "k", "A", 0, 1),
			failed(get("c2", "k", "garbage", 2, 3), timeout),
			failed(get("c2", "k", "", 4, 4), records.ResultOverload),
			get("c3", "k", "A", 5, 6),
		}, LinOK},
		{"read of a value nobody wrote", []records.Op{
			get("c3", "k", "Z", 0, 1),
		}, LinViolation},
		{"keys are independent registers", []records.Op{
			put("c1", "a", "A", 0, 1),
			put("c1", "b", "B", 2, 3),
			get("c2", "a", "A", 4, 5),
			get("c2", "b", "B", 4, 5),
		}, LinOK},
		{"many indeterminate writes, last one observed", func() []records.Op {
			var ops []records.Op
			for i := range 30 {
				ops = append(ops, failed(put(fmt.Sprintf("c%d", i), "k", fmt.Sprint("v", i), float64(i), float64(i)+0.5), timeout))
			}
			return append(ops, get("r", "k", "v29", 100, 101), get("r", "k", "v29", 102, 103))
		}(), LinOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lin, viz := check(t, c.ops, Options{})
			if lin.Result != c.want {
				t.Fatalf("result %s, want %s: %+v", lin.Result, c.want, lin)
			}
			_, err := os.Stat(viz)
			if c.want == LinViolation {
				if err != nil || lin.Visualization != records.VisualizationFile {
					t.Errorf("no visualisation written: %v (%+v)", err, lin)
				}
				if len(lin.ViolatingKeys) == 0 || lin.Detail == "" {
					t.Errorf("violation without keys or detail: %+v", lin)
				}
			} else if err == nil {
				t.Errorf("visualisation written for %s", lin.Result)
			}
		})
	}
}

func TestLinearizabilityStaleReadReportsKey(t *testing.T) {
	ops := []records.Op{
		put("c1", "a", "A", 0, 1), get("c2", "a", "A", 2, 3),
		put("c1", "b", "B1", 0, 1), put("c1", "b", "B2", 2, 3), get("c2", "b", "B1", 4, 5),
	}
	lin, viz := check(t, ops, Options{})
	if lin.Result != LinViolation || strings.Join(lin.ViolatingKeys, ",") != "b" || !strings.Contains(lin.Detail, `key "b"`) {
		t.Fatalf("%+v", lin)
	}
	b, err := os.ReadFile(viz)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "put(b, B2)") || !strings.Contains(string(b), "get(b) → B1") {
		t.Errorf("visualisation does not describe the operations")
	}
}

// randomHistory is a small random single-key history, often not linearizable.
func randomHistory(rng *rand.Rand, n int) []records.Op {
	var ops []records.Op
	var written []string
	for i := range n {
		call := rng.Float64() * 10
		ret := call + rng.Float64()*3
		c := fmt.Sprint("c", i)
		if rng.IntN(2) == 0 {
			v := fmt.Sprint("v", i)
			written = append(written, v)
			o := put(c, "k", v, call, ret)
			switch rng.IntN(6) {
			case 0:
				o.Result = "timeout"
			case 1:
				o.Result = records.ResultOverload
			}
			ops = append(ops, o)
			continue
		}
		v := ""
		if len(written) > 0 && rng.IntN(4) > 0 {
			v = written[rng.IntN(len(written))]
		}
		o := get(c, "k", v, call, ret)
		if rng.IntN(8) == 0 {
			o.Result = "timeout"
		}
		ops = append(ops, o)
	}
	return ops
}

// plainVerdict checks ops with porcupine directly, without any of CheckLinearizability's
// reductions: every failed write is an operation that never returns.
func plainVerdict(ops []records.Op) string {
	var hist []porcupine.Operation
	for i := range ops {
		o := &ops[i]
		if o.Result == records.ResultOverload || (o.Kind == records.KindRead && !o.OK()) {
			continue
		}
		ret := nanos(o.Completed)
		in := &regInput{write: o.Kind == records.KindWrite, value: o.Value, op: o, state: &regState{value: o.Value, known: true}}
		if o.Kind == records.KindWrite && !o.OK() {
			ret = never
		}
		hist = append(hist, porcupine.Operation{ClientId: i, Call: nanos(o.Submitted), Return: ret, Input: in, Output: &regOutput{value: o.Value}})
	}
	if porcupine.CheckOperations(registerModel(false, nil), hist) {
		return LinOK
	}
	return LinViolation
}

// The reductions (dropping unobserved failed writes, bounding observed ones) must not change
// any verdict, and cutting into segments must never invent a violation.
func TestLinearizabilityReductionsKeepVerdicts(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	counts := map[string]int{}
	for i := range 3000 {
		ops := randomHistory(rng, 3+rng.IntN(10))
		want := plainVerdict(ops)
		counts[want]++
		got := CheckLinearizability(ops, Options{CheckTimeout: 5 * time.Second}, "")
		if got.Result != want {
			t.Fatalf("history %d: got %s, porcupine alone says %s\n%s", i, got.Result, want, dumpOps(ops))
		}
		cut := CheckLinearizability(ops, Options{CheckTimeout: 5 * time.Second, MaxOpsPerSegment: 2 + rng.IntN(3)}, "")
		if want == LinOK && cut.Result != LinOK {
			t.Fatalf("history %d: segmented check says %s for a linearizable history\n%s\n%s", i, cut.Result, cut.Detail, dumpOps(ops))
		}
	}
	if counts[LinOK] < 300 || counts[LinViolation] < 300 {
		t.Fatalf("generator is lopsided: %v", counts)
	}
}

func dumpOps(ops []records.Op) string {
	var b strings.Builder
	for _, o := range ops {
		fmt.Fprintf(&b, "%s %s %q [%.3f, %.3f] %s\n", o.Client, o.Kind, o.Value, o.Submitted, o.Completed, o.Result)
	}
	return b.String()
}

// Linearizable-by-construction histories with outages and failed writes that sometimes took
// effect stay ok however finely they are cut.
func TestLinearizabilitySyntheticSegmented(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		s := leaderRun()
		s.seed, s.keys, s.duration = seed, 2, 20
		ops := s.ops()
		for _, seg := range []int{0, 50, 400} {
			lin, _ := check(t, ops, Options{MaxOpsPerSegment: seg})
			if lin.Result != LinOK {
				t.Fatalf("seed %d max %d: %+v", seed, seg, lin)
			}
			if seg == 50 && lin.Segments < 40 {
				t.Errorf("seed %d: only %d segments", seed, lin.Segments)
			}
		}
	}
}

// A stale read in the middle of a long history is found although the key is cut into
// segments, and the visualisation shows a small window around it.
func TestLinearizabilityViolationInLongHistory(t *testing.T) {
	s := leaderRun()
	s.keys = 1
	ops := s.ops()
	// Make one read in the after window return the value of a write long overwritten.
	var old string
	for i := range ops {
		if ops[i].Kind == records.KindWrite && ops[i].OK() && ops[i].Submitted > 5 && old == "" {
			old = ops[i].Value
		}
		if ops[i].Kind == records.KindRead && ops[i].OK() && ops[i].Submitted > 25 {
			ops[i].Value = old
			break
		}
	}
	lin, viz := check(t, ops, Options{MaxOpsPerSegment: 1000})
	if lin.Result != LinViolation || lin.Segments < 4 {
		t.Fatalf("%+v", lin)
	}
	if !strings.Contains(lin.Detail, "of the") { // shrunk: "(n of the m operations of its segment)"
		t.Errorf("visualisation not shrunk: %s", lin.Detail)
	}
	if st, err := os.Stat(viz); err != nil || st.Size() > 2<<20 {
		t.Errorf("visualisation: %v, %v", st, err)
	}
}

// hardHistory is one key whose check is exponential for porcupine: n concurrent writes
// and reads that see v0, then v1, then v0 again (impossible, but porcupine has to try
// every subset of the writes to find out).
func hardHistory(n int) []records.Op {
	var ops []records.Op
	for i := range n {
		ops = append(ops, put(fmt.Sprint("w", i), "hard", fmt.Sprint("v", i), 0, 1000))
	}
	return append(ops,
		get("r", "hard", "v0", 10, 11),
		get("r", "hard", "v1", 12, 13),
		get("r", "hard", "v0", 14, 15),
		get("r", "hard", "v2", 16, 17))
}

func TestLinearizabilityHugeHistoryUnknownWithinBudget(t *testing.T) {
	s := leaderRun()
	s.duration, s.rate, s.keys = 100, 3000, 16 // 300k operations
	ops := append(s.ops(), hardHistory(60)...)
	budget := 2 * time.Second
	start := time.Now()
	lin, _ := check(t, ops, Options{CheckTimeout: budget})
	took := time.Since(start)
	t.Logf("%d ops: %s in %v: %s", len(ops), lin.Result, took, lin.Detail)
	if lin.Result != LinUnknown {
		t.Fatalf("result %s, want unknown: %+v", lin.Result, lin)
	}
	if took > budget+3*time.Second {
		t.Errorf("took %v for a %v budget", took, budget)
	}
	if lin.KeysChecked == 0 || lin.KeysChecked > 16 { // progress on the easy keys, never the hard one
		t.Errorf("keys checked %d of 17", lin.KeysChecked)
	}
}

func TestLinearizabilityMemoryBound(t *testing.T) {
	ops := hardHistory(60)
	const limit = 64 << 20
	runtime.GC()
	base := heapBytes()
	var peak atomic.Uint64
	done := make(chan struct{})
	go func() { // sample the heap while the check runs
		for {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
				if h := heapBytes(); h > peak.Load() {
					peak.Store(h)
				}
			}
		}
	}()
	start := time.Now()
	lin, _ := check(t, ops, Options{CheckTimeout: time.Minute, CheckMemory: limit})
	took := time.Since(start)
	close(done)
	grew := int64(peak.Load()) - int64(base)
	t.Logf("%s in %v, heap grew by at most %d MiB: %s", lin.Result, took, grew>>20, lin.Detail)
	if lin.Result != LinUnknown || !strings.Contains(lin.Detail, "memory bound") {
		t.Fatalf("%+v", lin)
	}
	if took > 20*time.Second {
		t.Errorf("memory bound took %v to stop the search", took)
	}
	// objects:bytes counts garbage not yet swept too, hence the slack
	if grew > 3*limit {
		t.Errorf("heap grew by %d MiB with a %d MiB bound", grew>>20, limit>>20)
	}
}
