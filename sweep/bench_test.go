package sweep_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dtlab/dt/experiment"
	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/sweep"
)

// BenchmarkPointOverhead prints the fixed cost of one sweep point beyond the experiment's
// own duration: building the topology and starting etcd until it has a leader (setup),
// stopping and removing everything (teardown), the analysis, the host check and the
// sweep's bookkeeping. As a peer in the same invocation, the same experiment is run once
// with experiment.Run alone; sweep/run is the ratio of their wall times.
//
//	sudo make bench   # or: go test -run '^$' -bench PointOverhead -benchtime 1x ./sweep
func BenchmarkPointOverhead(b *testing.B) {
	needHost(b)
	bin := dtBinary(b)
	const duration = 1.0
	src := fmt.Sprintf("name: bench\nbase: {fault: none, duration: %g, rate: 50, check-timeout: 5}\nrepeats: %d\nseed: 1\n", duration, b.N)
	s, err := sweep.ParseBytes("bench.yaml", []byte(src))
	if err != nil {
		b.Fatal(err)
	}
	root := b.TempDir()
	d, err := sweep.Open(root, s, false)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	b.ResetTimer()
	res, err := d.Execute(context.Background(), sweep.Options{Exe: bin})
	b.StopTimer()
	if err != nil || res.OK != b.N {
		b.Fatalf("sweep: %v, %+v", err, res)
	}

	var wall, setup, teardown, after float64
	for _, r := range s.Runs() {
		st := d.State(r)
		ev := eventTimes(b, filepath.Join(d.Path, st.End.RunDir))
		wall += st.End.Seconds
		setup += ev[records.EventWorkloadStart]
		teardown += ev[records.EventRunEnd] - ev[records.EventWorkloadEnd]
		after += st.End.Seconds - ev[records.EventRunEnd]
	}
	n := float64(b.N)
	b.ReportMetric((wall-n*duration)/n, "overhead-s/point")
	b.ReportMetric(setup/n, "setup-s/point")
	b.ReportMetric(teardown/n, "teardown-s/point")
	b.ReportMetric(after/n, "analysis+check-s/point")

	// The peer: the same experiment without the sweep.
	cfg := s.Config(s.Runs()[0])
	cfg.ResultsRoot = filepath.Join(root, "bare")
	t0 := time.Now()
	if _, err := experiment.Run(context.Background(), cfg, experiment.Options{Exe: bin}); err != nil {
		b.Fatalf("bare run: %v", err)
	}
	bare := time.Since(t0).Seconds()
	b.ReportMetric((wall/n)/bare, "sweep/run")
	b.Logf("per point: %.2f s beyond the %g s workload (setup %.2f s, teardown %.2f s, analysis + host check + bookkeeping %.2f s); a bare experiment.Run takes %.2f s",
		(wall-n*duration)/n, duration, setup/n, teardown/n, after/n, bare)
}

// eventTimes maps an event type to its (first) time in a run's events.jsonl.
func eventTimes(b *testing.B, runDir string) map[string]float64 {
	f, err := os.Open(filepath.Join(runDir, records.EventsFile))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev records.Event
		if json.Unmarshal(sc.Bytes(), &ev) == nil {
			if _, seen := out[ev.Type]; !seen {
				out[ev.Type] = ev.T
			}
		}
	}
	return out
}
