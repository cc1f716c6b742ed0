package experiment

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dtlab/dt/records"
)

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func readConfig(t *testing.T, dir string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, records.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestWanRun: `dt run etcd wan uniform leader --number-nodes 5 --link-latency 40` runs
// end to end, and an op from a client to the leader of another site takes visibly longer
// than one to the leader of its own site (one more 80 ms round trip).
func TestWanRun(t *testing.T) {
	needCluster(t)
	cfg := testConfig(t, "leader", 15)
	cfg.Topology = "wan"
	cfg.Nodes = 5
	cfg.LinkLatency = 40
	out, err := Run(context.Background(), cfg, Options{Exe: dtBin})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	assertNothingLeft(t, out.RunID)
	conf := readConfig(t, out.RunDir)
	want, _ := ResolveShaper("auto")
	if conf["shaper_backend"] != want || conf["number_clients"] != 5.0 || conf["link_latency"] != 40.0 {
		t.Errorf("config.json: shaper_backend %v (want %s), number_clients %v, link_latency %v", conf["shaper_backend"], want, conf["number_clients"], conf["link_latency"])
	}
	run, err := records.Load(out.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	var local, remote []float64
	for _, op := range run.Ops {
		if !op.OK() {
			continue
		}
		leader := leaderAt(run.Events, op.Submitted)
		u, err := url.Parse(op.Target)
		if leader == "" || err != nil {
			continue
		}
		// 10.0.I.1 is sI, the server of site I; client cI is at site I.
		parts := strings.Split(u.Hostname(), ".")
		if len(parts) != 4 || "s"+parts[2] != leader {
			continue // to a follower: forwarded, a mix of paths
		}
		site := strings.TrimPrefix(strings.SplitN(op.Client, "#", 2)[0], "c")
		lat := (op.Completed - op.Submitted) * 1000
		if site == parts[2] {
			local = append(local, lat)
		} else {
			remote = append(remote, lat)
		}
	}
	ml, mr := median(local), median(remote)
	t.Logf("ops to the leader: own site %d, p50 %.1f ms; another site %d, p50 %.1f ms", len(local), ml, len(remote), mr)
	if len(local) < 10 || len(remote) < 10 {
		t.Fatalf("too few ops to classify: %d local, %d remote", len(local), len(remote))
	}
	if mr-ml < 40 {
		t.Errorf("remote leader p50 %.1f ms vs local %.1f ms: want at least 40 ms more (one 80 ms RTT)", mr, ml)
	}
}

// TestSlowLeaderRun: slow-leader adds its delay to every path of the leader for the
// window, records it first, and removes it at the end.
func TestSlowLeaderRun(t *testing.T) {
	needCluster(t)
	cfg := testConfig(t, "slow-leader", 12)
	cfg.FaultDelay = "60ms"
	out, err := Run(context.Background(), cfg, Options{Exe: dtBin})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	assertNothingLeft(t, out.RunID)
	run, err := records.Load(out.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	start, ok := firstEvent(run.Events, records.EventFaultStart)
	end, ok2 := firstEvent(run.Events, records.EventFaultEnd)
	if !ok || !ok2 {
		t.Fatalf("no fault-start/fault-end in %v", run.Events)
	}
	if len(start.Targets) != 1 || !strings.Contains(start.Detail, "delay 60ms") || start.Targets[0] != leaderAt(run.Events, start.T) {
		t.Errorf("fault-start %+v: want the leader as target and the amount", start)
	}
	var before, during, after []float64
	for _, op := range run.Ops {
		if !op.OK() {
			continue
		}
		lat := (op.Completed - op.Submitted) * 1000
		switch {
		case op.Completed < start.T:
			before = append(before, lat)
		case op.Submitted > start.T+0.5 && op.Completed < end.T:
			during = append(during, lat)
		case op.Submitted > end.T+1:
			after = append(after, lat)
		}
	}
	mb, md, ma := median(before), median(during), median(after)
	t.Logf("p50 latency: before %.1f ms (%d ops), during %.1f ms (%d), after %.1f ms (%d)", mb, len(before), md, len(during), ma, len(after))
	if md-mb < 60 {
		t.Errorf("p50 during slow-leader %.1f ms, before %.1f ms: want at least 60 ms more", md, mb)
	}
	if len(after) > 10 && ma > mb+30 {
		t.Errorf("p50 after the window %.1f ms, before %.1f ms: the delay was not removed", ma, mb)
	}
}
