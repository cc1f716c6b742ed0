package experiment

// End-to-end runs of ZooKeeper, the second built-in system: the same engine, faults and
// analysis as etcd's runs, on real JVMs in real namespaces.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/systems"
	"github.com/dtlab/dt/topology"
)

// needZooKeeper is needCluster for ZooKeeper: root, OVS and Debian's zookeeper.
func needZooKeeper(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates namespaces, OVS and ZooKeeper processes (CI runs as root)")
	}
	if _, err := exec.LookPath("ovs-vswitchd"); err != nil {
		t.Skip("needs ovs-vswitchd: apt-get install openvswitch-switch")
	}
	sys, err := systems.Lookup("zookeeper")
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.(systems.Checker).Check(systems.Cluster{}); err != nil {
		t.Skip(err)
	}
	rt, err := os.MkdirTemp("/tmp", "dtrt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("DT_RUNTIME_DIR", rt)
	t.Cleanup(func() { os.RemoveAll(rt) })
}

func zkConfig(t *testing.T, fault string, duration float64) Config {
	cfg := testConfig(t, fault, duration)
	cfg.System = "zookeeper"
	// Half reads; ten keys keep the operations on one key few enough at once for the
	// linearizability check to finish (a latency spike on a busy host multiplies them).
	cfg.WriteRatio, cfg.MaxKey = 0.5, 9
	return cfg
}

// The client port of a system whose endpoints are host:port (random dropport uses it).
func TestClientPortOfEachSystem(t *testing.T) {
	spec, err := topology.Build("simple", topology.BuildOptions{Servers: 3, Clients: 1})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"etcd": systems.EtcdClientPort, "zookeeper": systems.ZooKeeperClientPort} {
		sys, err := systems.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := clientPort(&Plan{Spec: spec, System: sys}); got != want {
			t.Errorf("%s: client port %d, want %d", name, got, want)
		}
	}
}

// A 3-member ZooKeeper elects a leader; the `leader` fault kills it, the monitor records
// it gone and another elected at a higher epoch in events.jsonl, reads and writes go on,
// and the history is linearizable.
func TestZooKeeperLeaderKill(t *testing.T) {
	needZooKeeper(t)
	cfg := zkConfig(t, "leader", 15)
	out, err := Run(context.Background(), cfg, Options{Exe: dtBin})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	assertNothingLeft(t, out.RunID)
	run, err := records.Load(out.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	ready, ok := firstEvent(run.Events, records.EventClusterReady)
	first, _ := firstEvent(run.Events, records.EventLeader)
	if !ok || ready.Leader == "" {
		t.Fatalf("no cluster-ready with a leader: %+v", run.Events)
	}
	fs, ok := firstEvent(run.Events, records.EventFaultStart)
	if !ok || len(fs.Targets) != 1 {
		t.Fatalf("no fault-start with one target in events: %+v", run.Events)
	}
	killed := fs.Targets[0]
	if l := leaderAt(run.Events, fs.T); l != killed {
		t.Errorf("killed %s but the recorded leader at t=%.2f was %q", killed, fs.T, l)
	}
	var gone, newAt float64
	newLeader, newTerm := "", uint64(0)
	for _, e := range run.Events {
		if e.T <= fs.T || e.Type != records.EventLeader {
			continue
		}
		if e.Leader == "" && gone == 0 {
			gone = e.T
		}
		if e.Leader != "" {
			newLeader, newTerm, newAt = e.Leader, e.Term, e.T
			break
		}
	}
	if gone == 0 || newLeader == "" || newLeader == killed || newTerm <= ready.Term {
		t.Fatalf("after killing %s (epoch %d): gone at %.2f, new leader %q epoch %d", killed, ready.Term, gone, newLeader, newTerm)
	}
	s := out.Summary
	if s == nil || s.Linearizability.Result != "ok" {
		t.Fatalf("linearizability: %+v", s)
	}
	var reads, writes int
	for _, op := range run.Ops {
		if op.OK() && op.Kind == records.KindRead {
			reads++
		} else if op.OK() {
			writes++
		}
	}
	if reads < 1000 || writes < 1000 {
		t.Errorf("ok reads %d, writes %d: want both ≥ 500", reads, writes)
	}
	t.Logf("first leader %s %.2f s after the run started (cluster ready at %.2f s); killed at %.2f s, gone at %.2f s, %s elected at epoch %d %.2f s after the kill; unavailable %.2f s; %d ok reads, %d ok writes",
		first.Leader, first.T, ready.T, fs.T, gone, newLeader, newTerm, newAt-fs.T, s.UnavailabilityS, reads, writes)
}

// partial-partition cuts exactly the chosen leader–follower pair (both ways, the quorum
// and election ports included) and nothing else; the cut heals at the end of the window.
// ZooKeeper keeps its leader, which still has a quorum with the other follower.
func TestZooKeeperPartialPartition(t *testing.T) {
	needZooKeeper(t)
	cfg := zkConfig(t, "partial-partition", 15)
	c, done := startRun(t, cfg)
	runID, spec := c.Live.State.RunID, c.Live.Spec
	fs := waitEvent(t, c, 30*time.Second, func(e records.Event) bool { return e.Type == records.EventFaultStart })
	if len(fs.Targets) != 2 {
		t.Fatalf("fault-start targets %v, want leader and follower", fs.Targets)
	}
	l, f := fs.Targets[0], fs.Targets[1]
	time.Sleep(300 * time.Millisecond)
	for _, a := range spec.NodeNames() {
		for _, b := range spec.Servers() {
			if a == b.Name {
				continue
			}
			cut := (a == l && b.Name == f) || (a == f && b.Name == l)
			for _, port := range []string{"2181", "2888", "3888"} {
				if port == "2888" && b.Name != l {
					continue // only the leader listens on the quorum port
				}
				if got := reach(runID, spec, a, b.Name, port); got == cut {
					t.Errorf("during partial-partition %s|%s: %s -> %s:%s reachable=%v", l, f, a, b.Name, port, got)
				}
			}
		}
	}
	if err := <-done; err != nil {
		t.Errorf("schedule: %v", err)
	}
	if !reach(runID, spec, f, l, "2888") {
		t.Errorf("after the window %s still cannot reach %s", f, l)
	}
	c.Close()
	assertNothingLeft(t, runID)
	run, _ := records.Load(c.RunDir)
	fe, ok := firstEvent(run.Events, records.EventFaultEnd)
	if !ok {
		t.Fatal("no fault-end: the cut was not healed")
	}
	changes := 0
	for _, e := range run.Events {
		if e.Type == records.EventLeader && e.T > fs.T && e.T <= fe.T {
			changes++
		}
	}
	t.Logf("leader %s, cut follower %s: %d leader changes during the window", l, f, changes)
}

// A healthy run at 200 ops/s, half reads (sync + get) and half writes, checks
// linearizable and keeps up with its schedule.
func TestZooKeeperHealthyLinearizable(t *testing.T) {
	needZooKeeper(t)
	cfg := zkConfig(t, "none", 10)
	out, err := Run(context.Background(), cfg, Options{Exe: dtBin})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	s := out.Summary
	if s == nil || s.Linearizability.Result != "ok" {
		t.Fatalf("linearizability: %+v", s)
	}
	run, err := records.Load(out.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	var ok, failed int
	for _, op := range run.Ops {
		if op.OK() {
			ok++
		} else {
			failed++
		}
	}
	if failed > len(run.Ops)/100 || ok < 1950 {
		t.Errorf("%d ok, %d failed of %d", ok, failed, len(run.Ops))
	}
	w := s.Windows.Overall
	if w == nil || w.LatencyMS == nil {
		t.Fatalf("no overall window: %+v", s.Windows)
	}
	t.Logf("%d ops, %.0f ok ops/s, p50 %.2f ms, p99 %.2f ms; linearizability %s over %d keys in %.2f s",
		len(run.Ops), w.ThroughputOpsS, w.LatencyMS.P50, w.LatencyMS.P99, s.Linearizability.Result, s.Linearizability.Keys, s.Linearizability.DurationS)
}

// kill-until-snapshot: the follower stays down until the leader's newest snapshot is more
// than its in-memory commit log past it, and on its way back it gets the snapshot (its
// log says so) rather than a diff.
func TestZooKeeperKillUntilSnapshot(t *testing.T) {
	needZooKeeper(t)
	cfg := zkConfig(t, "kill-until-snapshot", 30)
	cfg.Rate, cfg.WriteRatio, cfg.SnapshotCount = 500, 1, 200
	cfg.Scenario = "inline"
	cfg.Steps = []faults.Step{{ID: "ks", Action: "kill-until-snapshot", Targets: []string{"follower"},
		At: durationPtr(3 * time.Second), Timeout: faults.Duration(25 * time.Second)}}
	c, done := startRun(t, cfg)
	err := <-done
	c.Close()
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	run, err := records.Load(c.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	var victim, detail string
	for _, e := range run.Events {
		if e.Fault != "ks" {
			continue
		}
		switch e.Type {
		case records.EventFaultStart:
			victim = e.Targets[0]
		case records.EventFaultEnd:
			detail = e.Detail
		}
	}
	if victim == "" || !strings.Contains(detail, "compacted its log") {
		t.Fatalf("kill-until-snapshot of %q ended with %q: want the leader's snapshot past it", victim, detail)
	}
	log, err := os.ReadFile(filepath.Join(c.RunDir, records.LogsDir, victim+".log"))
	if err != nil {
		t.Fatal(err)
	}
	restarts := strings.Split(string(log), "=== dt agent")
	if last := restarts[len(restarts)-1]; !strings.Contains(last, "Getting a snapshot from leader") {
		t.Errorf("%s did not catch up from a snapshot after its restart (no \"Getting a snapshot from leader\" in its log)", victim)
	}
	t.Logf("%s: %s", victim, detail)
}
