package shaping

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// BenchmarkUserspace prints what the userspace backend costs, each figure beside the same
// link without shaping in the same run:
//
//   - added-latency error: RTT measured minus RTT configured (10 ms each way), p50/p99;
//   - throughput ceiling through a delayed link (10 ms on the sending side): small UDP
//     datagrams per second and TCP Mbit/s.
//
// Run: go test -run '^$' -bench Userspace -benchtime 1x ./shaping
func BenchmarkUserspace(b *testing.B) {
	for range b.N {
		tn := newTestNet(b)
		ua, ub := userspacePair(b, tn, testOwner(b))
		echo := udpEcho(b, tn.nsB, tn.ipB)
		const oneWay = 10 * time.Millisecond

		base, _ := probeRTT(b, tn.nsA, echo, 500, 2*time.Millisecond)
		plainPPS := udpCeiling(b, tn, 64, 2*time.Second)
		plainTCP := tcpBulk(b, tn.nsA, tn.nsB, tn.ipB, 3*time.Second, "")

		apply(b, ua, tn.ifA, Impairment{Delay: oneWay})
		apply(b, ub, tn.ifB, Impairment{Delay: oneWay})
		shaped, lost := probeRTT(b, tn.nsA, echo, 500, 2*time.Millisecond)
		var errs []time.Duration
		for _, r := range shaped {
			errs = append(errs, r-2*oneWay)
		}
		clearIface(b, ub, tn.ifB) // the ceiling is the sending side's
		delayedPPS := udpCeiling(b, tn, 64, 2*time.Second)
		delayedTCP := tcpBulk(b, tn.nsA, tn.nsB, tn.ipB, 3*time.Second, "")
		st, _ := ua.Stats(tn.ifA)

		b.Logf("RTT without shaping:            p50 %8v  p99 %8v", quantile(base, 0.5), quantile(base, 0.99))
		b.Logf("added-latency error (RTT - 20ms): p50 %8v  p99 %8v  (%d probes, %d lost)",
			quantile(errs, 0.5), quantile(errs, 0.99), len(errs), lost)
		b.Logf("UDP 64 B datagrams/s: plain %9.0f  delayed %9.0f  (%.1f %%)", plainPPS, delayedPPS, 100*delayedPPS/plainPPS)
		b.Logf("TCP Mbit/s:           plain %9.0f  delayed %9.0f  (%.1f %%)", plainTCP/1e6, delayedTCP/1e6, 100*delayedTCP/plainTCP)
		b.Logf("delayer: %+v", st)
		b.ReportMetric(float64(quantile(errs, 0.5).Microseconds()), "err-p50-us")
		b.ReportMetric(float64(quantile(errs, 0.99).Microseconds()), "err-p99-us")
		b.ReportMetric(delayedPPS, "delayed-pps")
		b.ReportMetric(plainPPS, "plain-pps")
		b.ReportMetric(delayedTCP/1e6, "delayed-Mbit/s")
		b.ReportMetric(plainTCP/1e6, "plain-Mbit/s")
	}
}

// udpCeiling sends size-byte datagrams from A to B as fast as one socket can for d and
// returns how many per second arrived.
func udpCeiling(tb testing.TB, tn *testNet, size int, d time.Duration) float64 {
	tb.Helper()
	var got atomic.Int64
	pc := listenUDP(tb, tn.nsB, tn.ipB)
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, err := pc.Read(buf); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	c := dialUDP(tb, tn.nsA, pc.LocalAddr().(*net.UDPAddr).AddrPort())
	msg := make([]byte, size)
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		for range 64 {
			_, _ = c.Write(msg) // a full queue refuses some; arrivals are what counts
		}
	}
	time.Sleep(100 * time.Millisecond) // datagrams still delayed when sending stopped count too
	return float64(got.Load()) / d.Seconds()
}

func listenUDP(tb testing.TB, ns netns.NsHandle, ip netip.Addr) *net.UDPConn {
	tb.Helper()
	var pc *net.UDPConn
	if err := in(ns, func() (err error) {
		pc, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	_ = pc.SetReadBuffer(16 << 20)
	tb.Cleanup(func() { pc.Close() })
	return pc
}
