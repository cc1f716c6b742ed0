package results

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
)

// BenchmarkAnalyze1M analyses a synthetic run of one million operations (1000 s at
// 1000 ops/s on 100 keys, a leader kill with a 3 s outage) and reports operations
// analysed per second, the peak heap sampled during Analyze and the peak RSS of the
// process since the run was written.
func BenchmarkAnalyze1M(b *testing.B) {
	dir := b.TempDir()
	s := synth{
		seed: 1, start: 2, duration: 1000, rate: 1000, keys: 100, clients: 8, readRatio: 0.5, latencyMS: 2,
		faultStart: 400, faultEnd: 600, outageFrom: 400, outageTo: 403, timeoutS: 1, appliedRatio: 0.5,
	}
	writeRunFast(b, dir, s)
	st, _ := os.Stat(filepath.Join(dir, records.OpsFile))
	b.Logf("ops.jsonl: %d MiB", st.Size()>>20)
	resetPeakRSS()

	var peak atomic.Uint64
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
				if h := heapBytes(); h > peak.Load() {
					peak.Store(h)
				}
			}
		}
	}()
	if testing.Verbose() {
		slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
		defer slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	}
	b.ResetTimer()
	var sum *Summary
	for b.Loop() {
		var err error
		sum, err = Analyze(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	close(done)
	if sum.Ops.Total != 1_000_000 || sum.Linearizability.Result != LinOK {
		b.Fatalf("ops %d, linearizability %+v", sum.Ops.Total, sum.Linearizability)
	}
	b.ReportMetric(float64(sum.Ops.Total)*float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
	if rss := peakRSS(); rss > 0 {
		b.ReportMetric(float64(rss)/(1<<20), "peak-RSS-MiB")
	}
	b.Logf("linearizability: %s in %.1f s (%d segments); files: %v", sum.Linearizability.Result, sum.Linearizability.DurationS, sum.Linearizability.Segments, sum.Files)
}

// writeRunFast writes a synthetic run with buffered output (a million single writes
// through records.JSONLWriter would dominate the set-up).
func writeRunFast(b *testing.B, dir string, s synth) {
	b.Helper()
	writeRun(b, dir, s.config(), nil, s.events())
	f, err := os.Create(filepath.Join(dir, records.OpsFile))
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	enc := json.NewEncoder(w)
	for _, o := range s.ops() {
		if err := enc.Encode(o); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
}

// resetPeakRSS resets the kernel's high-water mark of this process's RSS (Linux).
func resetPeakRSS() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS is VmHWM from /proc/self/status, in bytes; 0 when unknown.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkCheck10Min checks what dt run's defaults record in 10 minutes at 500 ops/s:
// 300 000 operations, read=40,write=40,cas=20 on two keys (max-key 1), three clients, a
// leader kill with a 3 s outage at 5 min. "healthy" has 5 ms latencies (~2.5 operations
// in flight), "loaded" 50 ms (~25 in flight, what a busy 2-core machine shows). It reports
// the check's own time and peak heap (the ops already loaded), and, once, porcupine alone
// (--porcupine) within the default 30 s budget for comparison:
//
//	go test ./results -run '^$' -bench Check10Min -benchtime 1x -v
func BenchmarkCheck10Min(b *testing.B) {
	for _, c := range []struct {
		name    string
		latency float64
	}{{"healthy", 5}, {"loaded", 50}} {
		b.Run(c.name, func(b *testing.B) {
			s := synth{
				seed: 1, start: 2, duration: 600, rate: 500, keys: 2, clients: 3, readRatio: 0.4, casRatio: 0.2,
				latencyMS: c.latency, faultStart: 300, faultEnd: 310, outageFrom: 300, outageTo: 303, timeoutS: 1, appliedRatio: 0.5,
			}
			ops := s.ops()
			for _, porcupineOnly := range []bool{false, true} {
				runtime.GC()
				base := heapBytes()
				var peak atomic.Uint64
				done := make(chan struct{})
				go func() {
					for {
						select {
						case <-done:
							return
						case <-time.After(5 * time.Millisecond):
							if h := heapBytes(); h > peak.Load() {
								peak.Store(h)
							}
						}
					}
				}()
				start := time.Now()
				lin := CheckLinearizability(ops, Options{Porcupine: porcupineOnly}, "")
				took := time.Since(start)
				close(done)
				grew := float64(int64(peak.Load())-int64(base)) / (1 << 20)
				if porcupineOnly {
					b.Logf("porcupine alone: %s in %.1f s, heap +%.0f MiB: %.200s", lin.Result, took.Seconds(), grew, lin.Detail)
					continue
				}
				if lin.Result != LinOK {
					b.Fatalf("%+v", lin)
				}
				b.ReportMetric(took.Seconds(), "check-s")
				b.ReportMetric(grew, "check-heap-MiB")
				b.Logf("%d ops: %s in %.2f s, heap +%.0f MiB", len(ops), lin.Result, took.Seconds(), grew)
			}
		})
	}
}
