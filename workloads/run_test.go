package workloads

import (
	"cmp"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
)

// fakeKV is an in-memory KV whose every operation takes latency (or until its context
// ends, when block is set). It counts what was really sent and how many overlapped.
type fakeKV struct {
	latency time.Duration
	block   bool

	mu      sync.Mutex
	data    map[string]string
	sent    int
	cur     int
	maxConc int
	targets atomic.Uint64
}

func newFakeKV(latency time.Duration) *fakeKV {
	return &fakeKV{latency: latency, data: map[string]string{}}
}

func (f *fakeKV) enter() {
	f.mu.Lock()
	f.sent++
	f.cur++
	f.maxConc = max(f.maxConc, f.cur)
	f.mu.Unlock()
}

func (f *fakeKV) wait(ctx context.Context) error {
	defer func() { f.mu.Lock(); f.cur--; f.mu.Unlock() }()
	if f.block {
		<-ctx.Done()
		return ctx.Err()
	}
	select {
	case <-time.After(f.latency):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeKV) Put(ctx context.Context, key, value string) error {
	_, err := f.PutTarget(ctx, key, value)
	return err
}

func (f *fakeKV) Get(ctx context.Context, key string) (string, bool, error) {
	v, ok, _, err := f.GetTarget(ctx, key)
	return v, ok, err
}

func (f *fakeKV) PutTarget(ctx context.Context, key, value string) (string, error) {
	t := f.target()
	f.enter()
	if err := f.wait(ctx); err != nil {
		return t, err
	}
	f.mu.Lock()
	f.data[key] = value
	f.mu.Unlock()
	return t, nil
}

func (f *fakeKV) GetTarget(ctx context.Context, key string) (string, bool, string, error) {
	t := f.target()
	f.enter()
	if err := f.wait(ctx); err != nil {
		return "", false, t, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.data[key]
	return v, ok, t, nil
}

// CompareAndSet is atomic under the store's lock, after the latency: the history of a
// fakeKV is linearizable by construction.
func (f *fakeKV) CompareAndSet(ctx context.Context, key, old, new string) (CASResult, error) {
	t := f.target()
	f.enter()
	if err := f.wait(ctx); err != nil {
		return CASResult{Target: t}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, ok := f.data[key]
	if (old == "" && !ok) || (ok && cur == old) {
		f.data[key] = new
		return CASResult{Swapped: true, Target: t}, nil
	}
	return CASResult{Current: cur, Known: true, Target: t}, nil
}

// plainKV is a KV without any optional capability.
type plainKV struct{ f *fakeKV }

func (p plainKV) Put(ctx context.Context, k, v string) error              { return p.f.Put(ctx, k, v) }
func (p plainKV) Get(ctx context.Context, k string) (string, bool, error) { return p.f.Get(ctx, k) }
func (p plainKV) Target() string                                          { return "" }
func (p plainKV) Close() error                                            { return nil }

func (f *fakeKV) target() string {
	return []string{"a", "b", "c"}[(f.targets.Add(1)-1)%3]
}
func (f *fakeKV) Target() string { return "" }
func (f *fakeKV) Close() error   { return nil }

// collect runs spec against kv and returns the records, checking that emit is never
// called concurrently.
func collect(t *testing.T, ctx context.Context, spec Spec, kv KV) []records.Op {
	t.Helper()
	var (
		ops  []records.Op
		busy atomic.Bool
	)
	err := Run(ctx, spec, kv, func(op records.Op) {
		if !busy.CompareAndSwap(false, true) {
			t.Error("emit called concurrently")
		}
		ops = append(ops, op)
		busy.Store(false)
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return ops
}

func testSpec() Spec {
	s := DefaultSpec()
	s.Duration = 1
	s.Seed = 7
	return s
}

// With a 200 ms KV at 100 ops/s for 1 s, a closed loop would send 5 operations; open
// loop sends all 100 on schedule, ~20 of them outstanding at any moment.
func TestOpenLoopSendsOnSchedule(t *testing.T) {
	kv := newFakeKV(200 * time.Millisecond)
	spec := testSpec()
	spec.StartUnixNano = time.Now().UnixNano()
	begin := time.Now()
	ops := collect(t, context.Background(), spec, kv)
	took := time.Since(begin)

	if len(ops) != 100 || kv.sent != 100 {
		t.Fatalf("got %d records, %d sent; want 100 and 100", len(ops), kv.sent)
	}
	if kv.maxConc < 10 {
		t.Errorf("at most %d operations overlapped; open loop at 100/s with 200 ms latency overlaps ~20", kv.maxConc)
	}
	// Run must wait for the last op (due at 0.99 s) to finish: ~1.19 s.
	if took < 1150*time.Millisecond {
		t.Errorf("Run returned after %v, before the last operation could complete", took)
	}
	var lag []float64
	for _, op := range ops {
		if !op.OK() {
			t.Fatalf("op failed: %+v", op)
		}
		lag = append(lag, op.Submitted-op.ExpectedStart)
		if d := op.Completed - op.Submitted; d < 0.19 {
			t.Errorf("op took %.3fs, want ~0.2s", d)
		}
	}
	slices.Sort(lag)
	// Lateness is scheduler noise. A closed loop would make op k late by k·200 ms; the
	// bounds are loose so that a busy machine does not fail the test.
	if lag[0] < -0.001 || lag[50] > 0.02 || lag[99] > 0.15 {
		t.Errorf("submitted - expected_start: min %.4fs median %.4fs max %.4fs; want ~0", lag[0], lag[50], lag[99])
	}
	// Expected starts are the uniform schedule, relative to StartUnixNano.
	first := ops[0].ExpectedStart
	for _, op := range ops {
		k := math.Round((op.ExpectedStart - first) * 100)
		if math.Abs(op.ExpectedStart-first-k/100) > 1e-6 {
			t.Fatalf("expected_start %.6f is off the 10 ms grid", op.ExpectedStart)
		}
	}
}

func TestOverloadIsRecordedNotSent(t *testing.T) {
	kv := newFakeKV(200 * time.Millisecond)
	spec := testSpec()
	spec.MaxInflight = 5
	ops := collect(t, context.Background(), spec, kv)

	var ok, overload int
	for _, op := range ops {
		switch {
		case op.OK():
			ok++
		case op.Result == records.ResultOverload:
			overload++
			if op.Target != "" || op.Submitted != op.Completed {
				t.Errorf("overload record looks sent: %+v", op)
			}
		default:
			t.Errorf("unexpected result %q", op.Result)
		}
	}
	if len(ops) != 100 || ok != kv.sent {
		t.Fatalf("%d records, %d ok, %d sent; want 100 records and ok == sent", len(ops), ok, kv.sent)
	}
	// 5 slots of 200 ms over ~1 s serve ~25 ops; the other ~75 are overload.
	if kv.maxConc > 5 || overload < 50 || ok < 15 {
		t.Errorf("max concurrency %d, ok %d, overload %d; want <= 5, ~25, ~75", kv.maxConc, ok, overload)
	}
}

func TestTimeoutAndCancel(t *testing.T) {
	kv := newFakeKV(0)
	kv.block = true
	spec := testSpec()
	spec.Duration = 10
	spec.OpTimeout = 0.1
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	begin := time.Now()
	ops := collect(t, ctx, spec, kv)
	took := time.Since(begin)

	// Cancelled at 0.3 s; the last op (sent just before) still gets its 100 ms.
	if took > 2*time.Second || len(ops) < 20 || len(ops) > 40 {
		t.Fatalf("took %v and emitted %d ops; want a stop soon after 0.3 s with ~30 ops", took, len(ops))
	}
	if kv.sent != len(ops) {
		t.Errorf("%d sent but %d emitted: in-flight ops were dropped", kv.sent, len(ops))
	}
	for _, op := range ops {
		if !strings.Contains(op.Result, context.DeadlineExceeded.Error()) {
			t.Errorf("result %q, want a timeout", op.Result)
		}
		if d := op.Completed - op.Submitted; d < 0.09 || d > 0.5 {
			t.Errorf("timed-out op took %.3fs, want ~0.1s", d)
		}
	}
}

func TestValuesUniqueAndReadBack(t *testing.T) {
	kv := newFakeKV(0)
	spec := testSpec()
	spec.Rate = 1000
	spec.Mix = WriteMix(0.5)
	spec.MaxKey = 3
	spec.PayloadSize = 16
	ops := collect(t, context.Background(), spec, kv)

	written := map[string]bool{}
	keys := map[string]bool{}
	var reads, found int
	for _, op := range ops {
		if !op.OK() {
			t.Fatalf("op failed: %+v", op)
		}
		keys[op.Key] = true
		switch op.Kind {
		case records.KindWrite:
			if written[op.Value] || !strings.HasPrefix(op.Value, "c1-") {
				t.Fatalf("write value %q repeated or not a value id", op.Value)
			}
			written[op.Value] = true
		case records.KindRead:
			reads++
			if op.Value != "" {
				found++
			}
		}
		if !slices.Contains([]string{"a", "b", "c"}, op.Target) {
			t.Errorf("target %q not recorded", op.Target)
		}
	}
	for _, op := range ops {
		if op.Kind == records.KindRead && op.Value != "" && !written[op.Value] {
			t.Errorf("read %q, which was never written", op.Value)
		}
	}
	for k, v := range kv.data {
		if len(v) != 16 || !written[DecodeValue(v)] {
			t.Errorf("stored %q=%q: want a 16-byte padded value id", k, v)
		}
	}
	if len(keys) != 4 || reads < 400 || found < reads/2 {
		t.Errorf("keys %v, %d reads, %d found; want 4 keys and about half of 1000 reads", keys, reads, found)
	}
}

func TestSeedReproducible(t *testing.T) {
	shape := func(seed int64, client string) []records.Op {
		spec := testSpec()
		spec.Seed, spec.Client = seed, client
		spec.Rate, spec.Arrival, spec.Mix, spec.MaxKey = 500, "poisson", DefaultMix, 100
		var out []records.Op
		for _, op := range collect(t, context.Background(), spec, newFakeKV(0)) {
			out = append(out, records.Op{Kind: op.Kind, Key: op.Key, ExpectedStart: op.ExpectedStart})
		}
		// Records arrive in completion order, which is not reproducible.
		slices.SortFunc(out, func(a, b records.Op) int { return cmp.Compare(a.ExpectedStart, b.ExpectedStart) })
		return out
	}
	a, b := shape(1, "c1"), shape(1, "c1")
	if !slices.Equal(a, b) {
		t.Fatal("same seed and client gave different operations or arrivals")
	}
	if slices.Equal(a, shape(2, "c1")) || slices.Equal(a, shape(1, "c2")) {
		t.Fatal("a different seed or client gave the same operations")
	}
}

func TestPoissonGaps(t *testing.T) {
	const rate, n = 1000.0, 200000
	a, err := NewArrival("poisson", rate, rand.New(rand.NewPCG(3, 4)))
	if err != nil {
		t.Fatal(err)
	}
	if first := a.Next(); first != 0 {
		t.Fatalf("first arrival at %v, want 0", first)
	}
	prev := 0.0
	var sum, sumSq float64
	for range n {
		x := a.Next()
		g := x - prev
		if g < 0 {
			t.Fatal("arrivals went backwards")
		}
		prev = x
		sum += g
		sumSq += g * g
	}
	mean := sum / n
	sd := math.Sqrt(sumSq/n - mean*mean)
	// Exponential gaps: mean = sd = 1/rate; the mean's standard error is (1/rate)/sqrt(n).
	if se := 1 / rate / math.Sqrt(n); math.Abs(mean-1/rate) > 5*se {
		t.Errorf("mean gap %.6gs, want %.6gs ± %.2g", mean, 1/rate, 5*se)
	}
	if cv := sd / mean; math.Abs(cv-1) > 0.02 {
		t.Errorf("coefficient of variation %.4f, want 1 for exponential gaps", cv)
	}
}

func TestUniformArrival(t *testing.T) {
	a, _ := NewArrival("uniform", 3, nil)
	for k := range 10 {
		if got := a.Next(); got != float64(k)/3 {
			t.Fatalf("arrival %d at %v, want %v", k, got, float64(k)/3)
		}
	}
}

func TestValidateSpec(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Spec)
		want string // "" = valid
	}{
		{"defaults", func(*Spec) {}, ""},
		{"read only", func(s *Spec) { s.Mix = WriteMix(0) }, ""},
		{"serializable", func(s *Spec) { s.ReadConsistency = ReadSerializable }, ""},
		{"one key", func(s *Spec) { s.MaxKey = 0 }, ""},
		{"zipfian", func(s *Spec) { s.Name = "zipfian" }, ""},
		{"zero rate", func(s *Spec) { s.Rate = 0 }, "rate 0"},
		{"negative rate", func(s *Spec) { s.Rate = -5 }, "rate -5"},
		{"nan rate", func(s *Spec) { s.Rate = math.NaN() }, "rate NaN"},
		{"write ratio", func(s *Spec) { s.Mix = WriteMix(1.5) }, "weight of read -0.5: must be a finite number >= 0"},
		{"no ops", func(s *Spec) { s.Mix = Mix{} }, "every weight is 0"},
		{"read consistency", func(s *Spec) { s.ReadConsistency = "eventual" }, `read_consistency "eventual": valid: linearizable, serializable`},
		{"arrival", func(s *Spec) { s.Arrival = "bursty" }, `arrival "bursty": valid: poisson, uniform`},
		{"generator", func(s *Spec) { s.Name = "ycsb" }, `name "ycsb": unknown generator; valid: uniform, zipfian`},
		{"duration", func(s *Spec) { s.Duration = 0 }, "duration 0"},
		{"max key", func(s *Spec) { s.MaxKey = -1 }, "max_key -1"},
		{"payload", func(s *Spec) { s.PayloadSize = -1 }, "payload_size -1"},
		{"inflight", func(s *Spec) { s.MaxInflight = -1 }, "max_inflight -1"},
		{"timeout", func(s *Spec) { s.OpTimeout = -1 }, "op_timeout -1"},
		{"client", func(s *Spec) { s.Client = "" }, "client: empty"},
		{"theta", func(s *Spec) { s.Name, s.ZipfTheta = "zipfian", 1 }, "zipf_theta 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := DefaultSpec()
			tc.edit(&s)
			err := ValidateSpec(s.WithDefaults())
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			case tc.want != "" && !errors.Is(err, ErrInvalidSpec):
				t.Fatalf("error %v does not wrap ErrInvalidSpec", err)
			}
		})
	}
	// Run reports an invalid spec before sending anything.
	s := DefaultSpec()
	s.Rate = 0
	if err := Run(context.Background(), s, newFakeKV(0), func(records.Op) { t.Error("emitted") }); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("Run with rate 0: %v", err)
	}
}

func TestWithDefaults(t *testing.T) {
	s := Spec{Client: "c1", Rate: 1, Duration: 1}.WithDefaults()
	if s.Name != "uniform" || s.Arrival != "uniform" || s.MaxInflight != DefaultMaxInflight || s.OpTimeout != DefaultOpTimeout {
		t.Fatalf("defaults not filled: %+v", s)
	}
	if s.Mix != (Mix{}) || s.MaxKey != 0 || s.PayloadSize != 0 || s.ReadConsistency != ReadLinearizable {
		t.Fatalf("meaningful zeros overwritten: %+v", s)
	}
}

func TestLookupUnknown(t *testing.T) {
	if _, err := Lookup("nope"); err == nil || !strings.Contains(err.Error(), "uniform, zipfian") {
		t.Fatalf("Lookup(nope) = %v; want an error listing the generators", err)
	}
	if _, err := NewArrival("nope", 1, nil); err == nil || !strings.Contains(err.Error(), "poisson, uniform") {
		t.Fatalf("NewArrival(nope) = %v; want an error listing the arrivals", err)
	}
}

func TestKeyNameAndValue(t *testing.T) {
	for _, tc := range []struct {
		i, max int
		want   string
	}{{0, 1, "0"}, {1, 1, "1"}, {3, 10, "03"}, {10, 10, "10"}, {7, 0, "7"}} {
		if got := KeyName(tc.i, tc.max); got != tc.want {
			t.Errorf("KeyName(%d, %d) = %q, want %q", tc.i, tc.max, got, tc.want)
		}
	}
	id := ValueID("client.1", 42)
	if v := EncodeValue(id, 20); len(v) != 20 || DecodeValue(v) != id {
		t.Errorf("EncodeValue(%q, 20) = %q, decodes to %q", id, v, DecodeValue(v))
	}
	if v := EncodeValue(id, 3); v != id {
		t.Errorf("EncodeValue with a short payload = %q, want the whole id", v)
	}
}

func TestGeneratorMixAndKeys(t *testing.T) {
	count := func(name string, ratio float64) (writes int, keys map[string]int) {
		s := DefaultSpec()
		s.Name, s.Mix, s.MaxKey = name, WriteMix(ratio), 9
		s = s.WithDefaults()
		newGen, _ := Lookup(name)
		g, err := newGen(s, rand.New(rand.NewPCG(1, 2)))
		if err != nil {
			t.Fatal(err)
		}
		keys = map[string]int{}
		for range 100000 {
			r := g.Next()
			if r.Kind == records.KindWrite {
				writes++
			}
			keys[r.Key]++
		}
		return writes, keys
	}
	w, keys := count("uniform", 0.3)
	if math.Abs(float64(w)/100000-0.3) > 0.01 || len(keys) != 10 {
		t.Errorf("uniform: %d writes of 100000 at ratio 0.3, keys %v", w, keys)
	}
	for k, n := range keys {
		if math.Abs(float64(n)/100000-0.1) > 0.01 {
			t.Errorf("uniform key %s drawn %d times of 100000, want ~10000", k, n)
		}
	}
	_, keys = count("zipfian", 1)
	// theta 0.99 over 10 keys: P(0) = 1/zeta(10) ≈ 0.34, P(1) ≈ 0.17.
	if p := float64(keys["0"]) / 100000; math.Abs(p-0.343) > 0.02 || keys["0"] < keys["1"] || keys["1"] < keys["9"] {
		t.Errorf("zipfian counts %v, want key 0 at ~34%% and decreasing", keys)
	}
}

func TestGeneratorCASMix(t *testing.T) {
	s := DefaultSpec()
	s.Mix, s.MaxKey = Mix{Read: 40, Write: 40, CAS: 20}, 3
	g, err := newUniform(s.WithDefaults(), rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for range 100000 {
		n[g.Next().Kind]++
	}
	for kind, want := range map[string]float64{records.KindRead: 0.4, records.KindWrite: 0.4, records.KindCAS: 0.2} {
		if got := float64(n[kind]) / 100000; math.Abs(got-want) > 0.01 {
			t.Errorf("%s: %.3f of the ops, want %.2f (%v)", kind, got, want, n)
		}
	}
	// A write-ratio mix draws what the write ratio drew before cas existed: a write when
	// the draw is below the ratio.
	s.Mix = WriteMix(0.3)
	g1, _ := newUniform(s.WithDefaults(), rand.New(rand.NewPCG(5, 6)))
	ref := rand.New(rand.NewPCG(5, 6))
	for i := range 1000 {
		write := ref.Float64() < 0.3
		ref.IntN(4) // the key draw
		if got := g1.Next().Kind == records.KindWrite; got != write {
			t.Fatalf("op %d: write %v, the old write-ratio draw says %v", i, got, write)
		}
	}
}

func TestParseMix(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Mix
		err  string
	}{
		{"read=40,write=40,cas=20", Mix{Read: 40, Write: 40, CAS: 20}, ""},
		{" read = 1 , cas=0.5", Mix{Read: 1, CAS: 0.5}, ""},
		{"write=1", Mix{Write: 1}, ""},
		{"read=1,write=0", Mix{Read: 1}, ""},
		{"", Mix{}, "empty op mix"},
		{"reed=40,write=60", Mix{}, `"reed=40": unknown op kind "reed"; valid: read, write, cas`},
		{"read", Mix{}, `"read": want KIND=WEIGHT`},
		{"read=", Mix{}, `"read=": want KIND=WEIGHT`},
		{"read=1,read=2", Mix{}, "read given twice"},
		{"read=-1,write=1", Mix{}, `weight "-1": want a finite number >= 0`},
		{"read=x", Mix{}, `weight "x"`},
		{"read=NaN", Mix{}, `weight "NaN"`},
		{"read=Inf", Mix{}, `weight "Inf"`},
		{"read=0,cas=0", Mix{}, "every weight is 0"},
		{"read=1,,write=1", Mix{}, `"": want KIND=WEIGHT`},
	} {
		got, err := ParseMix(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseMix(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseMix(%q): error %v, want one containing %q", tc.in, err, tc.err)
		}
		if err == nil {
			if back, err := ParseMix(got.String()); err != nil || back != got {
				t.Errorf("%q: String %q does not parse back: %+v %v", tc.in, got.String(), back, err)
			}
		}
	}
	if s := DefaultMix.String(); s != "read=40,write=40,cas=20" {
		t.Errorf("DefaultMix.String() = %q", s)
	}
}

// A run with cas against a store that is linearizable by construction: every cas compares
// with a value the client saw, swaps or reports what it found, and values stay unique.
func TestCASRun(t *testing.T) {
	kv := newFakeKV(time.Millisecond)
	spec := testSpec()
	spec.Rate, spec.MaxKey, spec.Mix, spec.PayloadSize = 2000, 1, DefaultMix, 16
	ops := collect(t, context.Background(), spec, kv)
	var swapped, found int
	values := map[string]bool{}
	for _, op := range ops {
		if !op.OK() {
			t.Fatalf("op failed: %+v", op)
		}
		if op.Kind != records.KindCAS {
			continue
		}
		if values[op.Value] || op.Value == "" {
			t.Fatalf("cas value %q repeated or empty", op.Value)
		}
		values[op.Value] = true
		switch {
		case op.Swapped && op.Current != nil:
			t.Fatalf("swapped cas with a current value: %+v", op)
		case op.Swapped:
			swapped++
		case op.Current == nil:
			t.Fatalf("failed compare without the value found: %+v", op)
		case *op.Current == op.Expected:
			t.Fatalf("compare failed although the key held the expected value: %+v", op)
		default:
			found++
		}
	}
	if swapped < 50 || found < 10 {
		t.Errorf("%d swapped, %d failed compares of %d ops; want both", swapped, found, len(ops))
	}
}

func TestCheckKV(t *testing.T) {
	spec := testSpec()
	spec.System = "plain"
	plain := plainKV{newFakeKV(0)}
	err := Run(context.Background(), spec, plain, func(records.Op) { t.Error("emitted") })
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "plain client cannot compare-and-set") {
		t.Fatalf("cas on a KV without it: %v", err)
	}
	spec.Mix = WriteMix(0.5)
	spec.ReadConsistency = ReadSerializable
	if err := CheckKV(spec, plain); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "reads linearizable only") {
		t.Fatalf("serializable on a KV without it: %v", err)
	}
	spec.ReadConsistency = ""
	if err := CheckKV(spec, plain); err != nil {
		t.Fatal(err)
	}
	if f := FeaturesOf(newFakeKV(0)); !f.CAS {
		t.Errorf("FeaturesOf(fakeKV) = %+v", f)
	}
}
