package sweep

import (
	"context"
	"testing"
)

// BenchmarkBookkeeping is the sweep's own cost per run with a fake runner and no host:
// manifest records, sweep.csv rewritten after every run, and the final report (CSV,
// plots, index.html) of a 16-run sweep, per run.
func BenchmarkBookkeeping(b *testing.B) {
	s, err := ParseBytes("b.yaml", []byte(`
base: {fault: partial-partition, duration: 2}
axes:
  rate: [100, 1000]
  number-nodes: [3, 5]
repeats: 4
plots:
  - {x: rate, y: [p99, throughput], by: number-nodes}
`))
	if err != nil {
		b.Fatal(err)
	}
	runs := len(s.Runs())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		d, err := Open(b.TempDir(), s, false)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := d.Execute(context.Background(), Options{Runner: &fakeRunner{}, Host: noHost{}}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		d.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*runs)/1000, "ms/run")
}
