package workloads_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/systems"
	"github.com/dtlab/dt/systems/systemstest"
	"github.com/dtlab/dt/workloads"
)

// step is one fixed-rate run of the sweep.
type step struct {
	target, achieved float64 // ops/s offered, ops/s that succeeded
	lagP99           float64 // seconds, submitted − expected_start
	cores            float64 // client CPU (user+sys) / wall time
	cpuPerOp         float64 // client CPU µs per op sent
	sent, failed     int
	overload         int
}

func (s step) ratio() float64 { return s.achieved / s.target }

// sustained: nearly every op succeeded and none was dropped for overload.
func (s step) sustained() bool {
	return s.ratio() >= 0.98 && s.overload == 0 && s.failed == 0
}

// onTime: sustained, and ops also left on schedule (p99 lag under 10 ms). On a small
// machine the system under test can starve the runner of CPU before it stops keeping up.
func (s step) onTime() bool { return s.sustained() && s.lagP99 < 0.010 }

func (s step) String() string {
	return fmt.Sprintf("target %7.0f/s achieved %7.0f/s (%.3f) lag p99 %6.2fms client cpu %.2f cores %5.1fµs/op failed %d overload %d",
		s.target, s.achieved, s.ratio(), s.lagP99*1e3, s.cores, s.cpuPerOp, s.failed, s.overload)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure offers rate ops/s for dur seconds (reckon's default workload otherwise: writes
// only, as the figures in the README were measured).
func measure(b *testing.B, kv workloads.KV, rate, dur float64) step {
	spec := workloads.DefaultSpec()
	spec.Rate, spec.Duration, spec.Seed, spec.Mix = rate, dur, 1, workloads.WriteMix(1)
	var (
		mu  sync.Mutex
		ops = make([]records.Op, 0, int(rate*dur)+1)
	)
	cpu0, wall0 := cpuTime(), time.Now()
	if err := workloads.Run(context.Background(), spec, kv, func(op records.Op) { mu.Lock(); ops = append(ops, op); mu.Unlock() }); err != nil {
		b.Fatal(err)
	}
	cpu, wall := cpuTime()-cpu0, time.Since(wall0)

	s := step{target: rate}
	lags := make([]float64, 0, len(ops))
	var ok int
	for _, op := range ops {
		switch {
		case op.OK():
			ok++
		case op.Result == records.ResultOverload:
			s.overload++
			continue
		default:
			s.failed++
		}
		s.sent++
		lags = append(lags, op.Submitted-op.ExpectedStart)
	}
	slices.Sort(lags)
	if len(lags) > 0 {
		s.lagP99 = lags[len(lags)*99/100]
	}
	s.achieved = float64(ok) / dur
	s.cores = cpu.Seconds() / wall.Seconds()
	if s.sent > 0 {
		s.cpuPerOp = float64(cpu.Microseconds()) / float64(s.sent)
	}
	return s
}

// sweep doubles the rate from start until a step is not sustained, then bisects twice,
// and reports the highest sustained step and the highest on-time one.
func sweep(b *testing.B, kv workloads.KV, start, limit float64) {
	const dur = 2.0
	var best, bad, onTime step
	run := func(rate float64) bool {
		s := measure(b, kv, rate, dur)
		b.Logf("%s", s)
		if s.onTime() && s.target > onTime.target {
			onTime = s
		}
		if !s.sustained() {
			bad = s
			return false
		}
		best = s
		return true
	}
	for rate := start; rate <= limit && run(rate); rate *= 2 {
	}
	for range 2 {
		if bad.target == 0 || best.target == 0 {
			break
		}
		run((best.target + bad.target) / 2)
	}
	if best.target == 0 {
		b.Logf("not even %.0f ops/s was sustained", start)
		return
	}
	b.Logf("highest sustained: %s", best)
	b.Logf("highest on time:   %s", onTime)
	b.ReportMetric(best.target, "max_ops/s")
	b.ReportMetric(best.ratio(), "achieved/target")
	b.ReportMetric(best.cores, "client_cores")
	b.ReportMetric(best.cpuPerOp, "client_cpu_µs/op")
	b.ReportMetric(best.lagP99*1e3, "lag_p99_ms")
	b.ReportMetric(onTime.target, "on_time_max_ops/s")
}

// instantKV answers at once from memory: the runner's own ceiling.
type instantKV struct {
	mu sync.Mutex
	m  map[string]string
}

func (k *instantKV) Put(_ context.Context, key, value string) error {
	k.mu.Lock()
	k.m[key] = value
	k.mu.Unlock()
	return nil
}

func (k *instantKV) Get(_ context.Context, key string) (string, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[key]
	return v, ok, nil
}
func (k *instantKV) Target() string { return "memory" }
func (k *instantKV) Close() error   { return nil }

// BenchmarkOpenLoopMemory is the runner alone, against an in-memory KV: the peer that
// BenchmarkOpenLoopEtcd's figures should be read against.
func BenchmarkOpenLoopMemory(b *testing.B) {
	for range b.N {
		sweep(b, &instantKV{m: map[string]string{}}, 4000, 1<<20)
	}
}

// BenchmarkOpenLoopEtcd is the highest rate one client sustains against a real 3-member
// etcd on loopback (reckon's default workload: writes of 10 bytes to keys 0 and 1),
// with the client's CPU. The members share the machine's cores with the client.
func BenchmarkOpenLoopEtcd(b *testing.B) {
	etcd, err := systems.Lookup("etcd")
	if err != nil {
		b.Fatal(err)
	}
	lc := systemstest.Start(b, etcd, 3, nil)
	b.Cleanup(systems.CloseStatusConns)
	lc.MustWaitLeader(30 * time.Second)
	kv, err := etcd.NewKV(lc.Endpoints(), time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer kv.Close()
	for range b.N {
		sweep(b, kv, 250, 1<<17)
	}
}
