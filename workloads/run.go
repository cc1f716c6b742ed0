package workloads

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dtlab/dt/records"
)

// Run drives one client's workload open-loop against kv and emits one record per
// operation.
//
// The schedule starts when Run is called: operation k is due at the k-th offset of the
// arrival process, and every operation whose offset is below spec.Duration is issued.
// Each is sent at its due time in its own goroutine whether or not earlier ones have
// finished, so a slow system cannot slow the offered load down (no coordinated
// omission); when Run falls behind (a busy CPU, timer granularity) it sends what is
// overdue at once and the lag shows as Submitted − ExpectedStart. An operation that is
// due while spec.MaxInflight are outstanding is not sent and is emitted with Result
// records.ResultOverload and Submitted = Completed = the moment it was dropped.
//
// Every operation gets spec.OpTimeout; cancelling ctx stops issuing new operations but
// does not cut the outstanding ones short. Run returns once every issued operation has
// completed or timed out and has been emitted, so it returns within Duration +
// OpTimeout (kv must honour its context). Record times are seconds from
// spec.StartUnixNano (from Run's start when it is 0).
//
// Operations of kind cas compare with the value this client last saw on the key (read,
// written, swapped in or found by a failed compare; absent before it saw any), so that
// they have a fair chance to swap, and put a new unique value.
//
// emit is called from one goroutine at a time. The returned error is non-nil only when
// spec is invalid or asks for what kv does not offer (CheckKV: cas in the mix, a read
// consistency); a cancelled ctx is a normal early stop. Run sets kv's read consistency
// to spec's when kv has one (ReadConsistencyKV).
func Run(ctx context.Context, spec Spec, kv KV, emit func(records.Op)) error {
	spec = spec.WithDefaults()
	if err := ValidateSpec(spec); err != nil {
		return err
	}
	if err := CheckKV(spec, kv); err != nil {
		return err
	}
	if rc, ok := kv.(ReadConsistencyKV); ok {
		if err := rc.SetReadConsistency(spec.ReadConsistency); err != nil {
			return fmt.Errorf("workload %s: %w", spec.Client, err)
		}
	}
	newGen, err := Lookup(spec.Name)
	if err != nil {
		return err
	}
	gen, err := newGen(spec, specRand(spec, 1))
	if err != nil {
		return fmt.Errorf("workload %s: %w", spec.Name, err)
	}
	arr, err := NewArrival(spec.Arrival, spec.Rate, specRand(spec, 2))
	if err != nil {
		return err
	}

	r := &runner{spec: spec, kv: kv, emit: emit, timeout: seconds(spec.OpTimeout), seen: map[string]string{}}
	r.tkv, _ = kv.(TargetedKV)
	r.ckv, _ = kv.(CASKV)
	r.start = time.Now()
	if spec.StartUnixNano != 0 {
		r.zero = float64(r.start.UnixNano()-spec.StartUnixNano) / 1e9
	}
	r.loop(ctx, gen, arr)
	r.wg.Wait()
	return nil
}

// specRand returns an independent, reproducible stream for one purpose (1: operations,
// 2: arrivals). The client name is mixed in so that clients given the same seed do not
// send identical keys at identical instants.
func specRand(s Spec, stream uint64) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(s.Client))
	return rand.New(rand.NewPCG(uint64(s.Seed), h.Sum64()^stream))
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

type runner struct {
	spec    Spec
	kv      KV
	tkv     TargetedKV // kv, when it reports targets per operation
	ckv     CASKV      // kv, when it can compare-and-set
	timeout time.Duration
	start   time.Time // schedule start; its monotonic reading times everything
	zero    float64   // seconds from spec.StartUnixNano to start

	emitMu sync.Mutex
	emit   func(records.Op)

	inflight atomic.Int64
	wg       sync.WaitGroup

	seenMu sync.Mutex
	seen   map[string]string // key → value id this client last saw there ("" = absent)
}

// lastSeen is the value id a cas on key compares with.
func (r *runner) lastSeen(key string) string {
	r.seenMu.Lock()
	defer r.seenMu.Unlock()
	return r.seen[key]
}

// saw notes what a successful operation showed of key.
func (r *runner) saw(key, value string) {
	r.seenMu.Lock()
	r.seen[key] = value
	r.seenMu.Unlock()
}

// rel converts t to seconds from the run's time zero.
func (r *runner) rel(t time.Time) float64 { return r.zero + t.Sub(r.start).Seconds() }

func (r *runner) emitOp(op records.Op) {
	r.emitMu.Lock()
	defer r.emitMu.Unlock()
	r.emit(op)
}

// loop issues operations on schedule until Duration or ctx ends.
func (r *runner) loop(ctx context.Context, gen Generator, arr Arrival) {
	// In-flight operations must outlive a cancelled ctx: they end by their own timeout.
	opCtx := context.WithoutCancel(ctx)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for seq := 0; ; seq++ {
		off := arr.Next()
		if off >= r.spec.Duration {
			return
		}
		req := gen.Next()
		if wait := time.Until(r.start.Add(seconds(off))); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return
		}

		op := records.Op{Client: r.spec.Client, Kind: req.Kind, Key: req.Key, ExpectedStart: r.zero + off}
		var value string
		if req.Kind == records.KindWrite || req.Kind == records.KindCAS {
			op.Value = ValueID(r.spec.Client, seq)
			value = EncodeValue(op.Value, r.spec.PayloadSize)
		}
		if req.Kind == records.KindCAS {
			op.Expected = r.lastSeen(op.Key)
		}
		if r.inflight.Load() >= int64(r.spec.MaxInflight) {
			now := r.rel(time.Now())
			op.Submitted, op.Completed, op.Result = now, now, records.ResultOverload
			r.emitOp(op)
			continue
		}
		r.inflight.Add(1)
		r.wg.Add(1)
		go r.do(opCtx, op, value)
	}
}

// do sends one operation, then records it.
func (r *runner) do(ctx context.Context, op records.Op, value string) {
	defer r.wg.Done()
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	var (
		read   string
		found  bool
		target string
		cas    CASResult
		err    error
	)
	submitted := time.Now()
	switch {
	case op.Kind == records.KindCAS:
		old := "" // absent
		if op.Expected != "" {
			old = EncodeValue(op.Expected, r.spec.PayloadSize)
		}
		cas, err = r.ckv.CompareAndSet(ctx, op.Key, old, value)
		target = cas.Target
		if target == "" {
			target = r.kv.Target()
		}
	case op.Kind == records.KindWrite && r.tkv != nil:
		target, err = r.tkv.PutTarget(ctx, op.Key, value)
	case op.Kind == records.KindWrite:
		err = r.kv.Put(ctx, op.Key, value)
		target = r.kv.Target()
	case r.tkv != nil:
		read, found, target, err = r.tkv.GetTarget(ctx, op.Key)
	default:
		read, found, err = r.kv.Get(ctx, op.Key)
		target = r.kv.Target()
	}
	completed := time.Now()
	cancel()
	r.inflight.Add(-1)

	op.Submitted, op.Completed, op.Target = r.rel(submitted), r.rel(completed), target
	op.Result = records.ResultOK
	switch {
	case err != nil:
		op.Result = err.Error()
	case op.Kind == records.KindRead:
		if found {
			op.Value = DecodeValue(read)
		}
		r.saw(op.Key, op.Value)
	case op.Kind == records.KindWrite:
		r.saw(op.Key, op.Value)
	case cas.Swapped:
		op.Swapped = true
		r.saw(op.Key, op.Value)
	case cas.Known:
		cur := DecodeValue(cas.Current)
		op.Current = &cur
		r.saw(op.Key, cur)
	}
	r.emitOp(op)
}
