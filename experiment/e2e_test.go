package experiment

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/results"
	"github.com/dtlab/dt/topology"
)

// dtBin is the dt binary the agents run: $DT_BIN (set by make test) or one built here.
var dtBin string

func TestMain(m *testing.M) {
	dtBin = os.Getenv("DT_BIN")
	if dtBin == "" && os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "dtbin")
		if err == nil {
			dtBin = filepath.Join(dir, "dt")
			out, err := exec.Command("go", "build", "-o", dtBin, "github.com/dtlab/dt/cmd/dt").CombinedOutput()
			if err != nil {
				os.Stderr.Write(out)
				os.Exit(1)
			}
			defer os.RemoveAll(dir)
		}
	}
	code := m.Run()
	os.Exit(code)
}

// needCluster skips when the prerequisites of a real run are missing, saying which.
func needCluster(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates namespaces, OVS and etcd processes (CI runs as root)")
	}
	for _, bin := range []string{"ovs-vswitchd", "etcd"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s: apt-get install openvswitch-switch etcd-server", bin)
		}
	}
	// A short, unique runtime dir: socket paths are limited to 107 bytes, and tests of
	// other checkouts may run at the same time.
	rt, err := os.MkdirTemp("/tmp", "dtrt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("DT_RUNTIME_DIR", rt)
	t.Cleanup(func() { os.RemoveAll(rt) })
}

func testConfig(t *testing.T, fault string, duration float64) Config {
	cfg := Defaults()
	cfg.Fault = fault
	cfg.Duration = duration
	cfg.Rate = 200
	cfg.Seed = 7
	cfg.CheckTimeout = 20
	cfg.ResultsRoot = t.TempDir()
	return cfg
}

// assertNothingLeft checks no namespace, interface, process or runtime dir of the run remains.
func assertNothingLeft(t *testing.T, runID string) {
	t.Helper()
	ents, _ := os.ReadDir("/var/run/netns")
	for _, e := range ents {
		if strings.Contains(e.Name(), runID) {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
	if out, _ := exec.Command("ip", "-o", "link").Output(); strings.Contains(string(out), runID) {
		t.Errorf("interfaces of run %s left behind:\n%s", runID, out)
	}
	if p := topology.RunProcesses(runID); len(p) > 0 {
		t.Errorf("processes of run %s left behind: %v", runID, p)
	}
	if _, err := os.Stat(filepath.Join(topology.RuntimeRoot(), runID)); err == nil {
		t.Errorf("runtime dir of run %s left behind", runID)
	}
}

func firstEvent(evs []records.Event, typ string) (records.Event, bool) {
	for _, e := range evs {
		if e.Type == typ {
			return e, true
		}
	}
	return records.Event{}, false
}

// leaderAt returns the leader the monitor recorded last before t.
func leaderAt(evs []records.Event, t float64) string {
	l := ""
	for _, e := range evs {
		if e.T > t {
			break
		}
		if e.Type == records.EventLeader || e.Type == records.EventClusterReady {
			l = e.Leader
		}
	}
	return l
}

func TestLeaderKill(t *testing.T) {
	needCluster(t)
	cfg := testConfig(t, "leader", 15)
	out, err := Run(context.Background(), cfg, Options{Exe: dtBin})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	assertNothingLeft(t, out.RunID)
	run, err := records.Load(out.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	fs, ok := firstEvent(run.Events, records.EventFaultStart)
	if !ok || len(fs.Targets) != 1 {
		t.Fatalf("no fault-start with one target in events: %+v", run.Events)
	}
	killed := fs.Targets[0]
	if l := leaderAt(run.Events, fs.T); l != killed {
		t.Errorf("killed %s but the recorded leader at t=%.2f was %q", killed, fs.T, l)
	}
	newLeader, newAt := "", 0.0
	for _, e := range run.Events {
		if e.T > fs.T && e.Type == records.EventLeader && e.Leader != "" {
			newLeader, newAt = e.Leader, e.T
			break
		}
	}
	if newLeader == "" || newLeader == killed {
		t.Fatalf("no new leader after killing %s (got %q)", killed, newLeader)
	}
	var before, after int
	for _, op := range run.Ops {
		if !op.OK() {
			continue
		}
		if op.Completed < fs.T {
			before++
		}
		if op.Submitted > newAt {
			after++
		}
	}
	if before < 100 || after < 100 {
		t.Errorf("ok ops before the kill %d, after the new leader %d: want both ≥ 100", before, after)
	}
	if out.Summary == nil || out.Summary.Linearizability.Result != "ok" {
		t.Errorf("linearizability: %+v", out.Summary)
	}
	if out.Summary.LeaderChanges < 1 {
		t.Errorf("summary counts %d leader changes", out.Summary.LeaderChanges)
	}
	// What the plots show: the 100 ms series dips at the kill, and the plot files are there.
	ser := results.SeriesOf(run, 100*time.Millisecond)
	var pre, dip float64 = 0, 1e9
	nb := 0
	for _, b := range ser.Buckets {
		tp := ser.Throughput(b)
		switch {
		case b.Start >= fs.T-4 && b.Start < fs.T-1:
			pre += tp
			nb++
		case b.Start >= fs.T && b.Start < newAt+0.5:
			dip = min(dip, tp)
		}
	}
	if nb == 0 || dip > 0.5*pre/float64(nb) {
		t.Errorf("no throughput dip at the kill: %.0f ops/s before, lowest %.0f after", pre/float64(max(nb, 1)), dip)
	}
	for _, f := range []string{records.PlotThroughput + ".png", records.PlotLatency + ".png", records.PlotLatencyCDF + ".png", records.ReportFile} {
		if st, err := os.Stat(filepath.Join(out.RunDir, f)); err != nil || st.Size() < 10_000 {
			t.Errorf("%s missing or trivial: %v", f, err)
		}
	}
}

// reach reports whether a TCP connection from node src reaches dst's port.
func reach(runID string, spec topology.Spec, src, dst, port string) bool {
	d, _ := spec.Node(dst)
	var c net.Conn
	err := topology.InNetns(topology.NetnsName(runID, src), func() (err error) {
		c, err = net.DialTimeout("tcp", d.IP+":"+port, 300*time.Millisecond)
		return err
	})
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// startRun runs the schedule in the background and returns the live cluster.
func startRun(t *testing.T, cfg Config) (*Cluster, chan error) {
	t.Helper()
	return startRunHooked(t, cfg, nil)
}

// startRunHooked is startRun with hook(c) called before the schedule starts (to set
// c.onEvent, say).
func startRunHooked(t *testing.T, cfg Config, hook func(c *Cluster)) (*Cluster, chan error) {
	t.Helper()
	p, err := cfg.Plan()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Start(context.Background(), p, Options{Exe: dtBin})
	if err != nil {
		if c != nil {
			c.Close()
		}
		t.Fatalf("start: %v", err)
	}
	if hook != nil {
		hook(c)
	}
	done := make(chan error, 1)
	go func() { done <- c.runSchedule(context.Background(), Options{}) }()
	return c, done
}

// waitEvent polls events.jsonl until an event matching fn appears after index from.
func waitEvent(t *testing.T, c *Cluster, timeout time.Duration, fn func(records.Event) bool) records.Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		run, err := records.Load(c.RunDir)
		if err == nil {
			for _, e := range run.Events {
				if fn(e) {
					return e
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("event not seen within %s", timeout)
	return records.Event{}
}

func TestPartialPartition(t *testing.T) {
	needCluster(t)
	cfg := testConfig(t, "partial-partition", 15)
	c, done := startRun(t, cfg)
	runID, spec := c.Live.State.RunID, c.Live.Spec
	fs := waitEvent(t, c, 30*time.Second, func(e records.Event) bool { return e.Type == records.EventFaultStart })
	if len(fs.Targets) != 2 {
		t.Fatalf("fault-start targets %v, want leader and follower", fs.Targets)
	}
	l, f := fs.Targets[0], fs.Targets[1]
	time.Sleep(300 * time.Millisecond) // the rules go in right after the event is written
	for _, a := range spec.NodeNames() {
		for _, b := range spec.Servers() {
			if a == b.Name {
				continue
			}
			cut := (a == l && b.Name == f) || (a == f && b.Name == l)
			if got := reach(runID, spec, a, b.Name, "2380"); got == cut {
				t.Errorf("during partial-partition %s|%s: %s -> %s:2380 reachable=%v", l, f, a, b.Name, got)
			}
		}
	}
	if err := <-done; err != nil {
		t.Errorf("schedule: %v", err)
	}
	if !reach(runID, spec, l, f, "2380") {
		t.Errorf("after the window %s still cannot reach %s", l, f)
	}
	c.Close()
	assertNothingLeft(t, runID)
	run, _ := records.Load(c.RunDir)
	fe, ok := firstEvent(run.Events, records.EventFaultEnd)
	if !ok {
		t.Fatal("no fault-end: the cut was not healed")
	}
	var rises int
	for _, e := range run.Events {
		if e.Type == records.EventTerm && e.Node == f && e.T > fs.T && e.T <= fe.T+0.5 {
			rises++
		}
	}
	if rises < 1 {
		t.Errorf("the cut follower %s's term never rose during the window", f)
	}
}

func TestIntermittentFullToggles(t *testing.T) {
	needCluster(t)
	cfg := testConfig(t, "intermittent-full", 12)
	c, done := startRun(t, cfg)
	runID, spec := c.Live.State.RunID, c.Live.Spec
	var mu sync.Mutex
	checked := map[float64]bool{}
	var partitions, heals int
	deadline := time.Now().Add(40 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("schedule: %v", err)
			}
			deadline = time.Now()
			continue
		default:
		}
		run, _ := records.Load(c.RunDir)
		for _, e := range run.Events {
			if e.Type != records.EventFaultAction || checked[e.T] {
				continue
			}
			mu.Lock()
			checked[e.T] = true
			mu.Unlock()
			victim := e.Targets[0]
			other := "s1"
			if victim == "s1" {
				other = "s2"
			}
			time.Sleep(150 * time.Millisecond)
			got := reach(runID, spec, victim, other, "2380")
			switch e.Action {
			case "partition", "isolate": // intermittent-full isolates the follower
				partitions++
				if got {
					t.Errorf("t=%.2f partition of %s: it still reaches %s", e.T, victim, other)
				}
			case "heal":
				heals++
				if !got && e.T < cfg.Duration {
					t.Errorf("t=%.2f heal of %s: it still cannot reach %s", e.T, victim, other)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.Close()
	assertNothingLeft(t, runID)
	if partitions < 2 || heals < 1 {
		t.Errorf("saw %d partitions and %d heals; want the cut to toggle", partitions, heals)
	}
	run, _ := records.Load(c.RunDir)
	last := run.Events[len(run.Events)-1]
	var lastFault records.Event
	for _, e := range run.Events {
		if e.Fault == "intermittent-full" {
			lastFault = e
		}
	}
	if lastFault.Type != records.EventFaultEnd {
		t.Errorf("last fault event is %+v, want fault-end (healed at the end); last event %+v", lastFault, last)
	}
}

func TestKillMajorityStopsWrites(t *testing.T) {
	needCluster(t)
	cfg := testConfig(t, "kill-n", 10)
	cfg.KillN = 2
	cfg.KillTarget = "any"
	out, err := Run(context.Background(), cfg, Options{Exe: dtBin})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	assertNothingLeft(t, out.RunID)
	run, _ := records.Load(out.RunDir)
	fs, ok := firstEvent(run.Events, records.EventFaultStart)
	if !ok || len(fs.Targets) != 2 {
		t.Fatalf("fault-start %+v: want 2 targets", fs)
	}
	var okBefore, okAfter int
	for _, op := range run.Ops {
		if op.Kind != records.KindWrite || !op.OK() {
			continue
		}
		if op.Submitted < fs.T {
			okBefore++
		} else if op.Submitted > fs.T+0.05 {
			okAfter++
		}
	}
	if okBefore < 100 {
		t.Errorf("only %d writes succeeded before the kill", okBefore)
	}
	if okAfter > 0 {
		t.Errorf("%d writes submitted after killing %v (a majority) succeeded", okAfter, fs.Targets)
	}
}
