package experiment

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/results"
	"github.com/dtlab/dt/scenario"
	"github.com/dtlab/dt/topology"
)

// A scenario in the style of DT's config-driven steps. Each step's probe event is
// recorded once the step is in place, and the hook below checks, at that moment and
// from inside the emulated network, that the step did what it says.
const dtStyleScenario = `
name: steps-e2e
system: etcd
topology: simple
duration: 34s
processes:
  - node: c1
    name: probe
    command: [dt, probe, etcd, --listen, "127.0.0.1:7070"]
steps:
  - id: paused
    action: pause
    targets: leader
    at: 2s
    duration: 4s
    probe: &check {url: "http://127.0.0.1:7070/check", timeout: 4s}
  - id: cut
    action: dropport
    targets: follower
    port: 2379
    proto: tcp
    at: 8s
    probe: *check
  - id: uncut
    action: recoverport
    targets: "@cut"
    port: 2379
    proto: tcp
    at: 12s
    probe: *check
  - id: restarted
    action: restart
    targets: leader
    at: 15s
    probe: *check
  - id: halves
    action: partition
    mode: random-halves
    at: 21s
    probe: *check
  - id: healed
    action: heal
    after: 4s
    probe: *check
`

func TestScenarioStepsTakeEffect(t *testing.T) {
	needCluster(t)
	s, err := scenario.Parse("steps-e2e.yaml", []byte(dtStyleScenario))
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, s.Name, s.Duration.D().Seconds())
	cfg.Scenario, cfg.Steps = "steps-e2e.yaml", s.Steps
	for _, p := range s.Processes {
		cfg.Processes = append(cfg.Processes, Process{Node: p.Node, Name: p.Name, Command: p.Command})
	}
	var c *Cluster
	var runID string
	var spec topology.Spec
	ctx := context.Background()

	var mu sync.Mutex
	targets := map[string][]string{} // step -> the nodes its fault-start named
	checked := map[string]bool{}
	var pausedPid int
	pidOf := func(node string) (int, string) {
		st, err := c.Agents[node].Client().Status(ctx, procName)
		if err != nil {
			t.Errorf("status of %s: %v", node, err)
			return 0, ""
		}
		return st.Pid, st.State
	}
	onEvent := func(e records.Event) {
		mu.Lock()
		defer mu.Unlock()
		if e.Type == records.EventFaultStart || e.Type == records.EventFaultAction {
			if len(e.Targets) > 0 {
				targets[e.Fault] = e.Targets
			}
			if e.Type == records.EventFaultStart && e.Fault == "halves" {
				targets["halves-detail"] = []string{e.Detail}
			}
		}
		if e.Type != records.EventProbe {
			return
		}
		checked[e.Fault] = true
		switch e.Fault {
		case "paused":
			leader := targets["paused"][0]
			pid, _ := pidOf(leader)
			pausedPid = pid
			if st := procState(pid); st != "T" {
				t.Errorf("paused leader %s (pid %d) is in state %q, want T (stopped)", leader, pid, st)
			}
		case "cut":
			f := targets["cut"][0]
			for _, from := range spec.NodeNames() {
				if from == f {
					if !reachSelf(runID, spec, f, "2379") {
						t.Errorf("dropport: %s cannot reach its own port 2379; only outside traffic must be dropped", f)
					}
					continue
				}
				if reach(runID, spec, from, f, "2379") {
					t.Errorf("dropport: %s still reaches %s:2379", from, f)
				}
			}
			other := "c1"
			if !reach(runID, spec, other, f, "2380") {
				t.Errorf("dropport 2379 on %s also cut its port 2380", f)
			}
		case "uncut":
			if f := targets["cut"][0]; !reach(runID, spec, "c1", f, "2379") {
				t.Errorf("recoverport: c1 still cannot reach %s:2379", f)
			}
		case "restarted":
			n := targets["restarted"][0]
			pid, state := pidOf(n)
			if state != "running" || pid == 0 || (n == targets["paused"][0] && pid == pausedPid) {
				t.Errorf("restart %s: pid %d state %s (paused pid was %d)", n, pid, state, pausedPid)
			}
		case "halves", "healed":
			a, b := parseCut(t, targets["halves-detail"][0])
			for _, x := range a {
				for _, y := range b {
					for _, pair := range [][2]string{{x, y}, {y, x}} {
						got := reach(runID, spec, pair[0], pair[1], "2380")
						if e.Fault == "halves" && got {
							t.Errorf("random-halves %v | %v: TCP from %s reaches %s:2380", a, b, pair[0], pair[1])
						}
						if e.Fault == "healed" && !got {
							t.Errorf("after heal: %s cannot reach %s:2380", pair[0], pair[1])
						}
					}
				}
			}
			if e.Fault == "halves" {
				for _, half := range [][]string{a, b} {
					for _, x := range half {
						for _, y := range half {
							if x != y && !reach(runID, spec, x, y, "2380") {
								t.Errorf("random-halves: %s cannot reach %s in its own half", x, y)
							}
						}
					}
				}
			}
		}
	}
	c, done := startRunHooked(t, cfg, func(cl *Cluster) {
		c, runID, spec = cl, cl.Live.State.RunID, cl.Live.Spec
		cl.onEvent = onEvent
	})
	err = <-done
	c.Close()
	if err != nil {
		t.Errorf("run: %v", err)
	}
	for _, step := range []string{"paused", "cut", "uncut", "restarted", "halves", "healed"} {
		if !checked[step] {
			t.Errorf("no probe event after step %s", step)
		}
	}
	sum, err := results.Analyze(c.RunDir, results.Options{CheckTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Probes == nil || sum.Probes.Total != 6 {
		t.Errorf("summary probes %+v, want 6 called", sum.Probes)
	}
	run, _ := records.Load(c.RunDir)
	ok := 0
	for _, e := range run.Events {
		if e.Type == records.EventProbe {
			var o faults.ProbeOutcome
			if err := json.Unmarshal([]byte(e.Detail), &o); err != nil {
				t.Errorf("probe event detail %q: %v", e.Detail, err)
			}
			if o.OK {
				ok++
			}
		}
	}
	if ok == 0 {
		t.Errorf("no probe succeeded: the probe server on c1 never reached etcd")
	}
	if _, err := os.Stat(c.RunDir + "/" + records.ScheduleFile); err != nil {
		t.Errorf("schedule.json: %v", err)
	}
	assertNothingLeft(t, runID)
}

// procState is the state letter in /proc/PID/stat (R, S, T, ...).
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "gone"
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return "?"
	}
	return s[i+2 : i+3]
}

// reachSelf reports whether node reaches its own address's port from inside.
func reachSelf(runID string, spec topology.Spec, node, port string) bool {
	return reach(runID, spec, node, node, port)
}

// parseCut reads "s1 <-> s2,s3".
func parseCut(t *testing.T, s string) ([]string, []string) {
	parts := strings.Split(s, " <-> ")
	if len(parts) != 2 {
		t.Fatalf("cut %q: want A <-> B", s)
	}
	return strings.Split(parts[0], ","), strings.Split(parts[1], ",")
}

// TestKillUntilSnapshot: etcd's functional tester's "kill a follower until the leader
// snapshots": the member stays down until the leader's log is compacted past it, and
// when it is back it really catches up from a snapshot (etcd's own log says so).
func TestKillUntilSnapshot(t *testing.T) {
	needCluster(t)
	cfg := testConfig(t, "kill-until-snapshot", 30)
	cfg.Rate, cfg.SnapshotCount = 500, 100
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
	var down float64
	for _, e := range run.Events {
		if e.Fault != "ks" {
			continue
		}
		switch e.Type {
		case records.EventFaultStart:
			victim, down = e.Targets[0], e.T
		case records.EventFaultEnd:
			detail, down = e.Detail, e.T-down
		}
	}
	if victim == "" || !strings.Contains(detail, "compacted its log") {
		t.Fatalf("kill-until-snapshot of %q ended with %q: want the leader's compaction past it", victim, detail)
	}
	log, err := os.ReadFile(filepath.Join(c.RunDir, records.LogsDir, victim+".log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "applied incoming Raft snapshot") {
		t.Errorf("%s was down %.1f s but did not catch up from a snapshot (no \"applied incoming Raft snapshot\" in its log)", victim, down)
	}
	t.Logf("%s down %.1f s: %s", victim, down, detail)
}

func durationPtr(d time.Duration) *faults.Duration {
	v := faults.Duration(d)
	return &v
}

// TestDiskLoss: DT's stop, backup, cleanup, start — a member loses its disk and rejoins
// empty; the backup holds its old data and the cluster is healthy again.
func TestDiskLoss(t *testing.T) {
	needCluster(t)
	s, err := scenario.Parse("disk-loss.yaml", []byte(`
system: etcd
topology: simple
duration: 16s
steps:
  - {id: victim, action: stop, targets: follower, at: 2s}
  - {action: backup, targets: "@victim"}
  - {action: cleanup, targets: "@victim"}
  - {action: start, targets: "@victim", after: 1s}
  - {action: wait-healthy, timeout: 20s}
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, s.Name, s.Duration.D().Seconds())
	cfg.Scenario, cfg.Steps = "disk-loss.yaml", s.Steps
	c, done := startRun(t, cfg)
	err = <-done
	c.Close()
	if err != nil {
		t.Fatalf("run (a step failed, or wait-healthy timed out): %v", err)
	}
	run, err := records.Load(c.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	var victim, backup string
	healthy := false
	for _, e := range run.Events {
		switch {
		case e.Type == records.EventFaultStart && e.Fault == "victim":
			victim = e.Targets[0]
		case e.Action == "backup":
			backup = e.Detail
		case e.Action == "healthy":
			healthy = true
		}
	}
	if victim == "" || backup == "" || !healthy {
		t.Fatalf("victim %q, backup %q, healthy %v", victim, backup, healthy)
	}
	if _, err := os.Stat(c.RunDir + "/" + backup + "/member/wal"); err != nil {
		t.Errorf("the backup of %s has no member/wal: %v", victim, err)
	}
	log, _ := os.ReadFile(filepath.Join(c.RunDir, records.LogsDir, victim+".log"))
	if !strings.Contains(string(log), "applied incoming Raft snapshot") && !strings.Contains(string(log), "restored snapshot") {
		t.Logf("note: %s's log shows no snapshot; it caught up from the log", victim)
	}
}
