package experiment

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dtlab/dt/shaping"
)

// BenchmarkLinkShaping measures link shaping through dt's real topology (namespaces, the
// private OVS, an agent per node) on the backend --shaper auto picks: the added-latency
// error (RTT minus the configured 2x20 ms, p50 and p99, also net of the unshaped RTT), and
// the throughput ceiling of a TCP flow with and without a 10 ms delay each way, as a
// ratio in the same invocation. Run it with make bench, or:
//
//	go test -run '^$' -bench LinkShaping -benchtime 1x ./experiment
func BenchmarkLinkShaping(b *testing.B) {
	for range b.N {
		benchLinkShaping(b)
	}
}

func benchLinkShaping(b *testing.B) {
	tb := testing.TB(b)
	needNetwork(tb)
	n := upNetwork(tb, 2, func(c *Config) { c.Shaper = shaping.NameAuto })
	echo := udpEcho(tb, n, "s2")
	probeRTT(tb, n, "s1", echo, 10, 10*time.Millisecond)
	base, _ := probeRTT(tb, n, "s1", echo, 500, 4*time.Millisecond)
	plain := tcpBulk(tb, n, "s1", "s2", 3*time.Second)

	ctx := context.Background()
	const oneWay = 20 * time.Millisecond
	if err := n.ShapeLink(ctx, "s1", "s2", shaping.Impairment{Delay: oneWay}); err != nil {
		b.Fatal(err)
	}
	probeRTT(tb, n, "s1", echo, 10, 10*time.Millisecond)
	rtts, lost := probeRTT(tb, n, "s1", echo, 500, 4*time.Millisecond)
	errs := make([]time.Duration, len(rtts))
	for i, r := range rtts {
		errs[i] = r - 2*oneWay
	}
	if err := n.ShapeLink(ctx, "s1", "s2", shaping.Impairment{Delay: 10 * time.Millisecond}); err != nil {
		b.Fatal(err)
	}
	delayed := tcpBulk(tb, n, "s1", "s2", 3*time.Second)

	fmt.Printf("link shaping through dt's topology (%s backend, %s datapath):\n", n.Shaper, n.Live.State.Datapath)
	fmt.Printf("  RTT without shaping:                 p50 %-9v p99 %v\n", quantile(base, 0.5).Round(time.Microsecond), quantile(base, 0.99).Round(time.Microsecond))
	fmt.Printf("  added-latency error (RTT - 2x20ms):  p50 %-9v p99 %v   (%d of 500 lost)\n", quantile(errs, 0.5).Round(time.Microsecond), quantile(errs, 0.99).Round(time.Microsecond), lost)
	fmt.Printf("  the same net of the unshaped p50:    p50 %-9v p99 %v\n", (quantile(errs, 0.5) - quantile(base, 0.5)).Round(time.Microsecond), (quantile(errs, 0.99) - quantile(base, 0.5)).Round(time.Microsecond))
	fmt.Printf("  TCP Mbit/s:  plain %.0f   10 ms each way %.0f   (%.1f %%)\n", plain/1e6, delayed/1e6, 100*delayed/plain)
	b.ReportMetric(float64(quantile(errs, 0.5).Microseconds()), "err-p50-us")
	b.ReportMetric(float64(quantile(errs, 0.99).Microseconds()), "err-p99-us")
	b.ReportMetric(delayed/1e6, "delayed-Mbit/s")
	b.ReportMetric(plain/1e6, "plain-Mbit/s")
}
