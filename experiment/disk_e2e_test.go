package experiment

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtlab/dt/disk"
	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/results"
	"github.com/dtlab/dt/scenario"
)

// diskRun runs a scenario (its YAML) with --disk fuse and returns the cluster, closed,
// and its records; hook, when set, sees every event as it is written. Nothing of the
// run may be left mounted.
func diskRun(t *testing.T, src string, hook func(c *Cluster, e records.Event)) (*Cluster, *records.Run, *results.Summary) {
	t.Helper()
	needCluster(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("needs /dev/fuse")
	}
	s, err := scenario.Parse("disk.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, s.Name, s.Duration.D().Seconds())
	cfg.Scenario, cfg.Steps, cfg.Disk = "disk.yaml", s.Steps, DiskFUSE
	c, done := startRunHooked(t, cfg, func(cl *Cluster) {
		if hook != nil {
			cl.onEvent = func(e records.Event) { hook(cl, e) }
		}
	})
	runID := c.Live.State.RunID
	if ms, _ := disk.RunMounts(runID, ""); len(ms) != len(c.Members.Members) {
		t.Errorf("mounts of run %s while it runs: %v, want one per member", runID, ms)
	}
	err = <-done
	c.Close()
	if err != nil {
		t.Errorf("run: %v", err)
	}
	assertNothingLeft(t, runID)
	assertNoMounts(t, runID)
	sum, err := results.Analyze(c.RunDir, results.Options{CheckTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	run, err := records.Load(c.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("summary:\n%s", results.FormatSummary(sum))
	return c, run, sum
}

// assertNoMounts checks that nothing of the run is mounted: /proc/mounts names neither
// its source nor its runtime dir.
func assertNoMounts(t *testing.T, runID string) {
	t.Helper()
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, disk.SourceName(runID, "")) || strings.Contains(line, "/"+runID+"/") {
			t.Errorf("stale mount of run %s: %s", runID, line)
		}
	}
}

// events returns the events of the run matching typ and action (either "" for any).
func events(run *records.Run, typ, action string) []records.Event {
	var out []records.Event
	for _, e := range run.Events {
		if (typ == "" || e.Type == typ) && (action == "" || e.Action == action) {
			out = append(out, e)
		}
	}
	return out
}

// okRate is the successful ops per second completed in [from, to).
func okRate(run *records.Run, from, to float64) float64 {
	n := 0
	for _, op := range run.Ops {
		if op.OK() && op.Completed >= from && op.Completed < to {
			n++
		}
	}
	return float64(n) / (to - from)
}

// p50 is the median latency (ms) of the successful writes submitted in [from, to).
func p50(run *records.Run, from, to float64) float64 {
	var l []float64
	for _, op := range run.Ops {
		if op.OK() && op.Submitted >= from && op.Submitted < to {
			l = append(l, 1000*(op.Completed-op.Submitted))
		}
	}
	if len(l) == 0 {
		return 0
	}
	sort.Float64s(l)
	return l[len(l)/2]
}

// TestDiskFsyncErrorTakesTheMemberDown: EIO on fsync under one follower makes its etcd
// exit (it cannot persist raft entries), recorded as the fault's member-exit with the
// log's fatal line, while the two others keep serving.
func TestDiskFsyncErrorTakesTheMemberDown(t *testing.T) {
	_, run, sum := diskRun(t, `
name: disk-eio
system: etcd
topology: simple
duration: 12s
steps:
  - id: eio
    action: disk-error
    targets: follower
    errno: EIO
    ops: fsync
    at: 3s
    duration: 5s
`, nil)
	start := events(run, records.EventFaultStart, "disk-error")
	if len(start) != 1 || len(start[0].Targets) != 1 {
		t.Fatalf("fault-start: %+v", start)
	}
	node := start[0].Targets[0]
	ver := events(run, records.EventFaultAction, records.ActionVerified)
	if len(ver) != 1 || !strings.Contains(ver[0].Detail, "fsync EIO 2/2") {
		t.Errorf("verified: %+v", ver)
	}
	exits := events(run, records.EventFaultAction, records.ActionMemberExit)
	if len(exits) != 1 || exits[0].Targets[0] != node || !strings.Contains(exits[0].Detail, "input/output error") {
		t.Fatalf("member-exit events: %+v", exits)
	}
	t.Logf("%s", exits[0].Detail)
	if exits[0].T-start[0].T > 3 {
		t.Errorf("%s exited %.1f s after the rule: want at its next fsync", node, exits[0].T-start[0].T)
	}
	ws := events(run, records.EventWorkloadStart, "")[0].T
	before, after := okRate(run, ws+0.5, start[0].T), okRate(run, exits[0].T+1, exits[0].T+4)
	if after < 0.8*before {
		t.Errorf("the cluster did not keep serving: %.0f ok ops/s before, %.0f after %s went down", before, after, node)
	}
	var w *results.FaultWindow
	for i := range sum.Faults {
		if sum.Faults[i].Name == "eio" {
			w = &sum.Faults[i]
		}
	}
	if w == nil || !slices.ContainsFunc(w.Actions, func(a results.FaultAction) bool { return a.Action == records.ActionMemberExit }) {
		t.Errorf("the summary's fault window does not say the member exited: %+v", w)
	}
	if !strings.Contains(results.FormatSummary(sum), "member-exit "+node) {
		t.Errorf("the printed summary does not say %s exited", node)
	}
}

// TestDiskSlowLeaderShowsInLatency: 40 ms on every fsync under the leader shows in the
// clients' write latency (each write waits for the leader's WAL fsync).
func TestDiskSlowLeaderShowsInLatency(t *testing.T) {
	_, run, _ := diskRun(t, `
name: disk-slow
system: etcd
topology: simple
duration: 12s
steps:
  - id: slow
    action: disk-slow
    targets: leader
    delay: 40ms
    ops: fsync
    at: 4s
    duration: 6s
`, nil)
	start := events(run, records.EventFaultStart, "disk-slow")
	end := events(run, records.EventFaultEnd, "")
	if len(start) != 1 || len(end) != 1 {
		t.Fatalf("window: %+v %+v", start, end)
	}
	ver := events(run, records.EventFaultAction, records.ActionVerified)
	if len(ver) != 1 || !strings.Contains(ver[0].Detail, "fsync +") {
		t.Fatalf("verified: %+v", ver)
	}
	t.Logf("verified: %s", ver[0].Detail)
	ws := events(run, records.EventWorkloadStart, "")[0].T
	base, slow := p50(run, ws+1, start[0].T), p50(run, start[0].T+0.5, end[0].T)
	t.Logf("write p50: %.1f ms before, %.1f ms with the leader's fsync 40 ms slower", base, slow)
	if slow < base+30 {
		t.Errorf("write p50 %.1f ms under a 40 ms slower leader fsync, %.1f ms before: the slow disk does not show", slow, base)
	}
	if leaderAt(run.Events, end[0].T) != start[0].Targets[0] {
		t.Logf("the leader changed during the slow disk")
	}
}

// durabilityBin builds disk/internal/durability once.
var durabilityBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "dtdurability")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "durability")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/dtlab/dt/disk/internal/durability").CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w: %s", err, out)
	}
	return bin, nil
})

// TestDiskPowerLossLosesUnsyncedData: a small program writes files with and without
// fsync through a member's mount; a power loss of that member discards exactly what was
// not synced; then a power loss of every member at once; etcd comes back from both and
// the history stays linearizable.
func TestDiskPowerLossLosesUnsyncedData(t *testing.T) {
	bin, err := durabilityBin()
	if err != nil {
		t.Fatalf("build the durability program: %v", err)
	}
	var mu sync.Mutex
	var wrote, checked string
	_, run, sum := diskRun(t, `
name: disk-power-loss
system: etcd
topology: simple
duration: 16s
steps:
  - id: cut
    action: power-loss
    targets: s2
    at: 3s
    duration: 1s
  - id: blackout
    action: power-loss
    targets: all
    at: 9s
    duration: 1s
`, func(c *Cluster, e records.Event) {
		dir, err := c.dataDir("s2")
		if err != nil {
			t.Error(err)
			return
		}
		prog := func(mode string) string {
			out, err := exec.Command(bin, mode, dir).CombinedOutput()
			if err != nil {
				t.Errorf("durability %s %s: %v\n%s", mode, dir, err, out)
			}
			return string(out)
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case e.Fault == "cut" && e.Type == records.EventFaultStart:
			wrote = prog("write") + "written"
		case e.Fault == "cut" && e.Type == records.EventFaultAction && e.Action == records.ActionOutcome:
			checked = prog("check")
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if wrote == "" || checked == "" {
		t.Fatalf("the program did not run around the power loss (wrote %q, checked %q)", wrote, checked)
	}
	var got map[string]*string
	if err := json.Unmarshal([]byte(checked), &got); err != nil {
		t.Fatalf("check output %q: %v", checked, err)
	}
	want := map[string]string{"a.synced": "written and fsynced\n", "c.appended": "written and fsynced\n"}
	for name, w := range want {
		if got[name] == nil || *got[name] != w {
			t.Errorf("%s after the power loss: %v, want %q", name, got[name], w)
		}
	}
	if got["b.unsynced"] != nil {
		t.Errorf("b.unsynced survived the power loss: %q", *got["b.unsynced"])
	}
	discards := events(run, records.EventFaultAction, records.ActionDiscard)
	if len(discards) != 4 {
		t.Fatalf("discard events: %+v", discards)
	}
	for _, d := range discards {
		if !strings.Contains(d.Detail, "canary: the 34 synced bytes kept") {
			t.Errorf("discard on %v: %s", d.Targets, d.Detail)
		}
	}
	if !strings.Contains(discards[0].Detail, "b.unsynced") || !strings.Contains(discards[0].Detail, "c.appended") {
		t.Errorf("the first power loss did not name the program's files: %s", discards[0].Detail)
	}
	outcomes := events(run, records.EventFaultAction, records.ActionOutcome)
	if len(outcomes) != 4 {
		t.Fatalf("outcomes: %+v", outcomes)
	}
	for _, o := range outcomes {
		if !strings.Contains(o.Detail, "is back") {
			t.Errorf("%v did not recover from the power loss: %s", o.Targets, o.Detail)
		}
	}
	// Serving again once every member is back (the clients' circuit breakers, which
	// benched every member during the blackout, take a few seconds to try them all).
	blackoutEnd := events(run, records.EventFaultEnd, "")
	last := blackoutEnd[len(blackoutEnd)-1].T
	ws := events(run, records.EventWorkloadStart, "")[0].T
	if before, after := okRate(run, ws+0.5, ws+2.5), okRate(run, last+1, last+4); after < 0.4*before {
		t.Errorf("after every member lost power: %.0f ok ops/s (%.0f before), want the cluster serving again", after, before)
	}
	if sum.Linearizability.Result != "ok" {
		t.Errorf("linearizability after power losses: %+v", sum.Linearizability)
	}
}

// TestDiskCorruptWALDetected: a bit flipped in a follower's newest WAL segment while it
// is down; etcd refuses to start on it (a CRC mismatch), which the outcome records, the
// summary prints, and the cluster keeps serving without it.
func TestDiskCorruptWALDetected(t *testing.T) {
	_, run, sum := diskRun(t, `
name: disk-corrupt
system: etcd
topology: simple
duration: 10s
steps:
  - id: rot
    action: corrupt
    targets: follower
    file: wal
    mode: flip
    bytes: 4
    at: 3s
    timeout: 5s
`, nil)
	cor := events(run, records.EventFaultAction, records.ActionCorrupt)
	if len(cor) != 1 || !strings.Contains(cor[0].Detail, "member/wal/") || !strings.Contains(cor[0].Detail, "flipped one bit in 4 byte(s)") {
		t.Fatalf("corrupt events: %+v", cor)
	}
	out := events(run, records.EventFaultAction, records.ActionOutcome)
	if len(out) != 1 || !strings.Contains(out[0].Detail, "did not come back") {
		t.Fatalf("outcome: %+v", out)
	}
	t.Logf("outcome: %s", out[0].Detail)
	// The flipped bits land at random offsets: in a record's payload etcd reports a CRC
	// mismatch, in its framing the protobuf decoder of the WAL record fails first.
	if d := out[0].Detail; !strings.Contains(d, "crc mismatch") && !strings.Contains(d, "wal") && !strings.Contains(d, "proto: Record") {
		t.Errorf("etcd's reason is not a WAL decoding error: %s", d)
	}
	text := results.FormatSummary(sum)
	if !strings.Contains(text, "outcome "+cor[0].Targets[0]) || !strings.Contains(text, "did not come back") {
		t.Errorf("the summary does not say what happened:\n%s", text)
	}
	ws := events(run, records.EventWorkloadStart, "")[0].T
	if before, after := okRate(run, ws+0.5, cor[0].T), okRate(run, out[0].T+0.5, out[0].T+3); after < 0.8*before {
		t.Errorf("%.0f ok ops/s before, %.0f after the corrupted member failed", before, after)
	}
}

// TestDiskLayerGoneAfterAgentKill: an agent killed with SIGKILL leaves its mount with no
// server; the run's teardown detaches it.
func TestDiskLayerGoneAfterAgentKill(t *testing.T) {
	var once sync.Once
	var killed bool
	var stale []disk.Mount
	diskRun(t, `
name: disk-agent-kill
system: etcd
topology: simple
duration: 6s
steps:
  - action: sleep
    duration: 1s
    at: 2s
`, func(c *Cluster, e records.Event) {
		if e.Type != records.EventFaultAction || e.Action != "sleep" {
			return
		}
		once.Do(func() {
			a := c.Agents["s1"]
			p, err := os.FindProcess(a.Pid())
			if err == nil && p.Kill() == nil {
				killed = true
			}
			<-a.Done()
			ms, _ := disk.RunMounts(c.Live.State.RunID, "")
			for _, m := range ms {
				if strings.HasSuffix(m.Point, "/data/s1") {
					stale = append(stale, m)
				}
			}
		})
	})
	if !killed {
		t.Fatal("the agent was not killed")
	}
	if len(stale) != 1 {
		t.Errorf("s1's mount after its agent was killed: %v, want it left for the teardown", stale)
	}
}
