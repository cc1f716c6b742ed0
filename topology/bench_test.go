package topology

// Benchmarks of the emulated network (root and Open vSwitch needed; they skip otherwise):
//
//	go test -run '^$' -bench . -benchtime 1x ./topology/
//
// BenchmarkUpDown times Up+Down of the simple star for N = 3, 10, 50 servers and compares
// with Mininet (`mn --topo single,N --switch ovsbr,datapath=user --controller none --test
// none`) run in the same invocation when mn is on PATH, or with reference figures measured
// earlier on this kind of machine otherwise (labelled as such).
//
// mn runs in a sandbox of its own — new network, mount and pid namespaces, private /run and
// /tmp, an OVS of its own started there — because on any exception the mn script runs its
// cleanup (what `mn -c` does): it deletes every bridge of the OVS it sees, kills every
// mnexec and controller on the machine and removes /tmp/*.log. In the sandbox that can only
// reach the sandbox. No host OVS is needed.
//
// BenchmarkCutLatency measures how long after the call to Partition (Heal) the dataplane
// really drops (forwards again): a UDP stream from s1 to s2, one datagram every 0.2 ms, is
// watched by a receiver in s2's namespace; both ends live in this process, so send and
// arrival times come from one monotonic clock.

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dtlab/dt/ovs"
)

// mininetReference is Mininet's median up+down time measured on this kind of machine
// (2-core Debian VM, userspace OVS) when `mn` was installed; printed only when Mininet
// cannot be run in the same invocation.
var mininetReference = map[int]time.Duration{
	3:  970 * time.Millisecond,
	10: 1610 * time.Millisecond,
	50: 4800 * time.Millisecond,
}

// upDownSizes are the numbers of servers BenchmarkUpDown realises (no clients, so that
// the node count equals Mininet's host count for single,N).
var upDownSizes = []int{3, 10, 50}

func benchNeedRoot(b *testing.B) {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("needs root: creates network namespaces and an OVS instance (CI runs as root)")
	}
	if _, err := exec.LookPath("ovs-vswitchd"); err != nil {
		b.Skip("needs Open vSwitch: apt-get install openvswitch-switch")
	}
}

// benchRuntimeDir points RuntimeRoot at a fresh directory so the benchmark never sees
// (or is seen by) real runs.
func benchRuntimeDir(b *testing.B) {
	b.Helper()
	d, err := os.MkdirTemp("/tmp", "dtbench")
	if err != nil {
		b.Fatal(err)
	}
	b.Setenv("DT_RUNTIME_DIR", d)
	b.Cleanup(func() { os.RemoveAll(d) })
}

type upDownSamples struct {
	datapath        string
	up, down, total []time.Duration
	mn              []time.Duration
	mnErr           error
}

func BenchmarkUpDown(b *testing.B) {
	benchNeedRoot(b)
	benchRuntimeDir(b)
	haveMN, mnWhy := mininetUsable()
	results := map[int]*upDownSamples{}
	for _, n := range upDownSizes {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			spec, err := Build("simple", BuildOptions{Servers: n, Clients: 0})
			if err != nil {
				b.Fatal(err)
			}
			s := &upDownSamples{}
			results[n] = s // the last (largest b.N) run of this sub-benchmark wins
			ctx := context.Background()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				live, err := Up(ctx, spec, Options{Datapath: os.Getenv("DT_TEST_DATAPATH"), Command: "bench"})
				if err != nil {
					b.Fatalf("up N=%d: %v", n, err)
				}
				t1 := time.Now()
				s.datapath = live.State.Datapath
				if err := live.Down(ctx); err != nil {
					b.Fatalf("down N=%d: %v", n, err)
				}
				t2 := time.Now()
				s.up = append(s.up, t1.Sub(t0))
				s.down = append(s.down, t2.Sub(t1))
				s.total = append(s.total, t2.Sub(t0))
			}
			if haveMN {
				b.StopTimer()
				s.mn, s.mnErr = timeMininet(n, b.N)
				b.StartTimer()
			}
			b.ReportMetric(ms(median(s.total)), "ms/op")
			b.ReportMetric(ms(median(s.up)), "up-ms")
			b.ReportMetric(ms(median(s.down)), "down-ms")
			if len(s.mn) > 0 {
				b.ReportMetric(ms(median(s.mn)), "mininet-ms")
				b.ReportMetric(float64(median(s.total))/float64(median(s.mn)), "dt/mininet")
			}
		})
	}
	printUpDownTable(results, haveMN, mnWhy)
}

// mininetSandbox runs inside `unshare --net --mount --pid --fork --mount-proc`: it starts a
// throwaway OVS (as mn's ovsbr switch needs one), then times mn for each N given, printing
// "N nanoseconds" lines. Everything it started dies with the pid namespace.
const mininetSandbox = `set -e
schema=$1; shift
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /run/openvswitch
cd /run/openvswitch
export OVS_RUNDIR=/run/openvswitch OVS_LOGDIR=/run/openvswitch OVS_DBDIR=/run/openvswitch
ip link set lo up
ovsdb-tool create conf.db "$schema"
ovsdb-server conf.db --remote=punix:/run/openvswitch/db.sock --pidfile --detach --no-chdir --log-file
ovs-vsctl --no-wait init
ovs-vswitchd --pidfile --detach --no-chdir --log-file 2>/dev/null
for n in "$@"; do
	start=$(date +%s%N)
	if ! mn --topo single,$n --switch ovsbr,datapath=user --controller none --test none >/tmp/mn.out 2>&1; then
		tail -5 /tmp/mn.out >&2
		exit 1
	fi
	echo "$n $(( $(date +%s%N) - start ))"
done
`

// mininetUsable reports whether Mininet can be timed here, and if not, why.
func mininetUsable() (bool, string) {
	if _, err := exec.LookPath("mn"); err != nil {
		return false, "mn not on PATH"
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return false, "mn on PATH but unshare (util-linux) is missing for its sandbox"
	}
	return true, ""
}

// timeMininet times count runs of mn for n hosts on one switch, in one sandbox.
func timeMininet(n, count int) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args := []string{"--net", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private",
		"sh", "-c", mininetSandbox, "sh", ovs.SchemaPath}
	for i := 0; i < count; i++ {
		args = append(args, fmt.Sprint(n))
	}
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, "unshare", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ds []time.Duration
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var got int
		var ns int64
		if _, perr := fmt.Sscanf(line, "%d %d", &got, &ns); perr == nil && got == n {
			ds = append(ds, time.Duration(ns))
		}
	}
	if err != nil || len(ds) != count {
		return ds, fmt.Errorf("mn single,%d in its sandbox: %v: %s", n, err, lastLines(stderr.String(), 5))
	}
	return ds, nil
}

func printUpDownTable(results map[int]*upDownSamples, haveMN bool, mnWhy string) {
	if len(results) == 0 {
		return
	}
	var b strings.Builder
	datapath := ""
	for _, s := range results {
		datapath = s.datapath
	}
	fmt.Fprintf(&b, "\ntopology up+down, simple star, N servers, datapath %s (median of each size's samples)\n", datapath)
	if haveMN {
		fmt.Fprintf(&b, "%-5s %8s %9s %9s %9s %12s %9s\n", "N", "samples", "up ms", "down ms", "total ms", "mininet ms", "dt/mn")
	} else {
		fmt.Fprintf(&b, "%-5s %8s %9s %9s %9s %14s %9s\n", "N", "samples", "up ms", "down ms", "total ms", "mininet ref ms", "dt/ref")
	}
	for _, n := range upDownSizes {
		s, ok := results[n]
		if !ok || len(s.total) == 0 {
			continue
		}
		tot := median(s.total)
		switch {
		case haveMN && len(s.mn) > 0:
			fmt.Fprintf(&b, "%-5d %8d %9.1f %9.1f %9.1f %12.1f %9.3f\n", n, len(s.total), ms(median(s.up)), ms(median(s.down)),
				ms(tot), ms(median(s.mn)), float64(tot)/float64(median(s.mn)))
		case haveMN:
			why := "mininet not run (dt failed first)"
			if s.mnErr != nil {
				why = "mininet failed: " + s.mnErr.Error()
			}
			fmt.Fprintf(&b, "%-5d %8d %9.1f %9.1f %9.1f %12s %9s   %s\n", n, len(s.total), ms(median(s.up)),
				ms(median(s.down)), ms(tot), "-", "-", why)
		default:
			ref := mininetReference[n]
			fmt.Fprintf(&b, "%-5d %8d %9.1f %9.1f %9.1f %14.0f %9.3f\n", n, len(s.total), ms(median(s.up)), ms(median(s.down)),
				ms(tot), ms(ref), float64(tot)/float64(ref))
		}
	}
	if haveMN {
		b.WriteString("mininet: mn --topo single,N --switch ovsbr,datapath=user --controller none --test none, measured in this run (in a sandbox with its own OVS)\n")
	} else {
		fmt.Fprintf(&b, "mininet ref: NOT MEASURED IN THIS RUN (%s); medians measured earlier on this kind of machine\n", mnWhy)
	}
	b.WriteString("target: dt/mininet <= 0.100\n")
	fmt.Print(b.String())
}

// BenchmarkCutLatency reports, over several cuts of s1<->s2, the time from the call to
// Partition until the last datagram s1->s2 arrives (cut) and from the call to Heal until
// the first one arrives again (heal), as p50 and max.
func BenchmarkCutLatency(b *testing.B) {
	benchNeedRoot(b)
	benchRuntimeDir(b)
	spec, err := Build("simple", BuildOptions{Servers: 3, Clients: 1})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	live, err := Up(ctx, spec, Options{Datapath: os.Getenv("DT_TEST_DATAPATH"), Command: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer live.Down(context.Background())

	st, err := startStream(live, "s1", "s2", 200*time.Microsecond)
	if err != nil {
		b.Fatal(err)
	}
	defer st.close()
	// Warm up: ARP resolved and the datapath flow installed before the first cut.
	if _, ok := st.firstArrivalAfter(st.now(), 2*time.Second); !ok {
		b.Fatal("no datagram s1 -> s2 arrives before any partition")
	}

	const cyclesPerOp = 10
	const settle = 100 * time.Millisecond // how long a cut is watched for stray datagrams
	var cutLat, healLat, cutCall, healCall []time.Duration
	cut := Cut{A: []string{"s1"}, B: []string{"s2"}}
	b.ResetTimer()
	for i := 0; i < b.N*cyclesPerOp; i++ {
		time.Sleep(30 * time.Millisecond) // steady flow before the cut
		before := st.received()
		tCall := st.now()
		cookie, err := live.Partition(ctx, cut, "bench")
		if err != nil {
			b.Fatal(err)
		}
		tRet := st.now()
		time.Sleep(settle)
		last, n := st.lastArrival()
		if n == before {
			b.Fatalf("cut %d: no datagram arrived between the last check and the cut; the stream stalled", i)
		}
		if last > tRet+settle-10*time.Millisecond {
			b.Fatalf("cut %d: datagrams still arrive %v after Partition returned", i, last-tRet)
		}
		cutLat = append(cutLat, max(0, last-tCall))
		cutCall = append(cutCall, tRet-tCall)

		tCall = st.now()
		if err := live.Heal(ctx, cookie); err != nil {
			b.Fatal(err)
		}
		tRet = st.now()
		first, ok := st.firstArrivalAfter(tCall, 2*time.Second)
		if !ok {
			b.Fatalf("heal %d: no datagram arrives within 2s of Heal", i)
		}
		healLat = append(healLat, first-tCall)
		healCall = append(healCall, tRet-tCall)
	}
	b.StopTimer()
	st.close()
	sent, interval := st.rate()
	b.ReportMetric(ms(percentile(cutLat, 50)), "cut-p50-ms")
	b.ReportMetric(ms(slices.Max(cutLat)), "cut-max-ms")
	b.ReportMetric(ms(percentile(healLat, 50)), "heal-p50-ms")
	b.ReportMetric(ms(slices.Max(healLat)), "heal-max-ms")
	fmt.Printf("\npartition s1<->s2 on simple 3+1, datapath %s: %d cuts, UDP s1->s2 every %.3f ms (mean achieved; %d sent)\n",
		live.State.Datapath, len(cutLat), ms(interval), sent)
	fmt.Printf("%-34s %8s %8s %8s\n", "", "p50 ms", "p90 ms", "max ms")
	row := func(name string, d []time.Duration) {
		fmt.Printf("%-34s %8.2f %8.2f %8.2f\n", name, ms(percentile(d, 50)), ms(percentile(d, 90)), ms(slices.Max(d)))
	}
	row("cut: call -> last datagram in", cutLat)
	row("heal: call -> first datagram in", healLat)
	row("Partition call returns after", cutCall)
	row("Heal call returns after", healCall)
}

// stream is a paced UDP flow from one node to another, both ends in this process.
type stream struct {
	base time.Time
	tx   *net.UDPConn
	rx   *net.UDPConn
	wg   sync.WaitGroup
	stop chan struct{}
	once sync.Once

	mu       sync.Mutex
	arrivals []time.Duration // receive times since base, in order
	sent     int
	sendSpan time.Duration
}

// startStream opens a receiver in dst's namespace and a sender in src's and sends one
// datagram (sequence number and send time) every interval. The sockets are created
// inside the namespaces and used from ordinary goroutines afterwards.
func startStream(live *Live, src, dst string, interval time.Duration) (*stream, error) {
	s, err := live.Spec.Node(src)
	if err != nil {
		return nil, err
	}
	d, err := live.Spec.Node(dst)
	if err != nil {
		return nil, err
	}
	st := &stream{base: time.Now(), stop: make(chan struct{})}
	if err := InNetns(NetnsName(live.State.RunID, dst), func() (err error) {
		st.rx, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(d.IP), Port: 7100})
		return err
	}); err != nil {
		return nil, err
	}
	if err := InNetns(NetnsName(live.State.RunID, src), func() (err error) {
		st.tx, err = net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(s.IP)}, &net.UDPAddr{IP: net.ParseIP(d.IP), Port: 7100})
		return err
	}); err != nil {
		st.rx.Close()
		return nil, err
	}
	st.wg.Add(2)
	go st.receive()
	go st.send(interval)
	return st, nil
}

func (st *stream) now() time.Duration { return time.Since(st.base) }

func (st *stream) receive() {
	defer st.wg.Done()
	buf := make([]byte, 64)
	for {
		n, err := st.rx.Read(buf)
		t := st.now()
		if err != nil {
			return
		}
		if n < 16 {
			continue
		}
		st.mu.Lock()
		st.arrivals = append(st.arrivals, t)
		st.mu.Unlock()
	}
}

// send paces with nanosleep on a locked thread: Go's timers sleep ~1 ms at the least on
// this kind of machine, too coarse for a 0.2 ms period.
func (st *stream) send(interval time.Duration) {
	defer st.wg.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	buf := make([]byte, 16)
	start := st.now()
	next := start
	var seq uint64
	for {
		select {
		case <-st.stop:
			st.mu.Lock()
			st.sent, st.sendSpan = int(seq), st.now()-start
			st.mu.Unlock()
			st.tx.Close()
			st.rx.Close() // ends receive
			return
		default:
		}
		now := st.now()
		if wait := next - now; wait > 0 {
			ts := syscall.NsecToTimespec(int64(wait))
			_ = syscall.Nanosleep(&ts, nil)
		} else if -wait > 5*interval {
			next = now // fell behind (descheduled): do not burst to catch up
		}
		next += interval
		seq++
		binary.BigEndian.PutUint64(buf[0:], seq)
		binary.BigEndian.PutUint64(buf[8:], uint64(st.now()))
		_, _ = st.tx.Write(buf) // dropped datagrams are the point
	}
}

func (st *stream) close() {
	st.once.Do(func() {
		close(st.stop)
		st.wg.Wait() // the sender sees stop within one interval; the receiver after rx.Close
	})
}

func (st *stream) received() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.arrivals)
}

// lastArrival returns the newest receive time and the number received so far.
func (st *stream) lastArrival() (time.Duration, int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.arrivals) == 0 {
		return 0, 0
	}
	return st.arrivals[len(st.arrivals)-1], len(st.arrivals)
}

// firstArrivalAfter waits up to timeout for a datagram received after t.
func (st *stream) firstArrivalAfter(t, timeout time.Duration) (time.Duration, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		st.mu.Lock()
		i, _ := slices.BinarySearch(st.arrivals, t+1)
		var first time.Duration
		ok := i < len(st.arrivals)
		if ok {
			first = st.arrivals[i]
		}
		st.mu.Unlock()
		if ok {
			return first, true
		}
		time.Sleep(time.Millisecond)
	}
	return 0, false
}

// rate returns the number of datagrams sent and the mean interval achieved (valid after close).
func (st *stream) rate() (int, time.Duration) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.sent == 0 {
		return 0, 0
	}
	return st.sent, st.sendSpan / time.Duration(st.sent)
}

func median(d []time.Duration) time.Duration { return percentile(d, 50) }

// percentile by nearest rank.
func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (p*len(s) + 99) / 100
	if i < 1 {
		i = 1
	}
	return s[i-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
