package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/results"
)

// BenchmarkDiskLayer is etcd's put throughput and latency with plain data dirs and
// through the disk layer (--disk fuse), measured the way a user sees them: `dt run etcd
// simple uniform none` through the CLI, its summary.json read back. Each pair runs in
// the same invocation, interleaved: at 300 puts/s (latency: p50 and p99) and at 4000
// puts/s offered (throughput: what etcd completes), plus the wall time of the whole
// command. The figures are ratios fuse/plain.
//
//	sudo make bench   # or: go test -run '^$' -bench DiskLayer -benchtime 1x ./cmd/dt
func BenchmarkDiskLayer(b *testing.B) {
	if skipReason != "" {
		b.Skip(skipReason)
	}
	if _, err := exec.LookPath("etcd"); err != nil {
		b.Skip("needs etcd")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		b.Skip("needs /dev/fuse")
	}
	type result struct {
		sum  *results.Summary
		wall time.Duration
	}
	run := func(disk string, rate float64, duration float64) result {
		rt, err := os.MkdirTemp("/tmp", "dtrt-")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(rt)
		res := b.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, dtBin, "run", "etcd", "simple", "uniform", "none", "--disk", disk,
			"--duration", ftoa(duration), "--rate", ftoa(rate), "--results", res, "--check-timeout", "-1", "--seed", "1")
		cmd.Env = append(os.Environ(), "DT_RUNTIME_DIR="+rt)
		t0 := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("dt run --disk %s: %v\n%s", disk, err, out)
		}
		wall := time.Since(t0)
		raw, err := os.ReadFile(filepath.Join(res, "latest", records.SummaryFile))
		if err != nil {
			b.Fatal(err)
		}
		var s results.Summary
		if err := json.Unmarshal(raw, &s); err != nil {
			b.Fatal(err)
		}
		return result{&s, wall}
	}
	for range b.N {
		var lat, tp [2]result
		for i, d := range []string{"plain", "fuse"} {
			lat[i] = run(d, 300, 10)
		}
		for i, d := range []string{"plain", "fuse"} {
			tp[i] = run(d, 4000, 10)
		}
		l0, l1 := lat[0].sum.Windows.Overall.LatencyMS, lat[1].sum.Windows.Overall.LatencyMS
		t0, t1 := tp[0].sum.Windows.Overall.ThroughputOpsS, tp[1].sum.Windows.Overall.ThroughputOpsS
		b.ReportMetric(l0.P50, "plain-p50-ms")
		b.ReportMetric(l1.P50, "fuse-p50-ms")
		b.ReportMetric(l1.P50/l0.P50, "p50-fuse/plain")
		b.ReportMetric(l1.P99/l0.P99, "p99-fuse/plain")
		b.ReportMetric(t0, "plain-puts/s")
		b.ReportMetric(t1, "fuse-puts/s")
		b.ReportMetric(t1/t0, "puts/s-fuse/plain")
		b.ReportMetric(lat[1].wall.Seconds()/lat[0].wall.Seconds(), "wall-fuse/plain")
		b.Logf("at 300 puts/s: p50 %.2f → %.2f ms, p99 %.2f → %.2f ms (plain → fuse); at 4000 offered: %.0f → %.0f puts/s (p50 %.1f → %.1f ms); dt run wall time %.2f → %.2f s",
			l0.P50, l1.P50, l0.P99, l1.P99, t0, t1, tp[0].sum.Windows.Overall.LatencyMS.P50, tp[1].sum.Windows.Overall.LatencyMS.P50,
			lat[0].wall.Seconds(), lat[1].wall.Seconds())
	}
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
