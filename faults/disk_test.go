package faults

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/disk"
)

// diskFake is fakeEnv with a disk layer: rules answer the probes as a real layer would.
type diskFake struct {
	*fakeEnv
	rules []disk.Rule
}

func (f *diskFake) DiskRule(_ context.Context, node, owner string, r disk.Rule, probes int) (DiskProbes, Undo, error) {
	f.add(fmt.Sprintf("rule %s %s", node, r))
	f.mu.Lock()
	f.rules = append(f.rules, r)
	f.mu.Unlock()
	var p DiskProbes
	for _, op := range r.OpsOrDefault()[:min(4, len(r.OpsOrDefault()))] {
		for range probes {
			p.Baseline = append(p.Baseline, disk.ProbeResult{Op: op, Errno: "ok", Seconds: 0.0001})
			after := disk.ProbeResult{Op: op, Errno: "ok", Seconds: 0.0001}
			switch r.Kind {
			case disk.KindError:
				after.Errno = r.Errno
			case disk.KindSlow:
				after.Seconds += r.Delay.Seconds()
			case disk.KindFull:
				if r.Bytes == 0 {
					after.Errno = "ENOSPC"
				}
			}
			p.After = append(p.After, after)
		}
	}
	return p, func(context.Context) error {
		f.add("clear " + node + " " + r.ID)
		return nil
	}, nil
}
func (f *diskFake) PowerLoss(_ context.Context, node, _ string) (string, error) {
	f.add("powerloss " + node)
	return "discarded 1 B", nil
}
func (f *diskFake) Corrupt(_ context.Context, node string, c disk.Corruption) (string, error) {
	f.add(fmt.Sprintf("corrupt %s %s %s", node, c.Glob, c.Mode))
	return "flipped", nil
}
func (f *diskFake) DiskFiles() map[string]string { return map[string]string{"wal": "member/wal/*.wal"} }
func (f *diskFake) Outcome(_ context.Context, node string, _ time.Duration) (string, bool) {
	f.add("outcome " + node)
	return node + " is healthy", true
}

func TestDiskStepsValidate(t *testing.T) {
	c := Cluster{Nodes: []string{"s1", "s2", "s3"}, Servers: []string{"s1", "s2", "s3"}}
	for _, tc := range []struct {
		step  Step
		field string
		msg   string
	}{
		{Step{Action: "disk-error", Targets: []string{"s1"}}, "errno", "needs errno"},
		{Step{Action: "disk-error", Targets: []string{"s1"}, Errno: "EWHAT"}, "errno", "unknown errno"},
		{Step{Action: "disk-error", Targets: []string{"s1"}, Errno: "EIO", Ops: Words{"fsync,sync"}}, "ops", "unknown operation \"sync\""},
		{Step{Action: "disk-error", Targets: []string{"s1"}, Errno: "EIO", Probability: 1.5}, "probability", "probability"},
		{Step{Action: "disk-error", Targets: []string{"s1"}, Errno: "EIO", Delay: Duration(time.Second)}, "delay", "takes no delay"},
		{Step{Action: "disk-slow", Targets: []string{"s1"}}, "delay", "needs delay"},
		{Step{Action: "disk-full", Targets: []string{"s1"}, Bytes: "lots"}, "bytes", "bad size"},
		{Step{Action: "corrupt", Targets: []string{"s1"}}, "file", "needs file"},
		{Step{Action: "corrupt", Targets: []string{"s1"}, File: "wal", Mode: "melt"}, "mode", "valid are flip"},
		{Step{Action: "power-loss"}, "targets", "needs targets"},
	} {
		err := ValidateTimeline([]Step{tc.step}, c)
		if err == nil || !strings.Contains(err.Error(), tc.field+": ") || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%+v: %v, want %s: %s", tc.step, err, tc.field, tc.msg)
		}
	}
	ok := []Step{
		{Action: "disk-error", Targets: []string{"s1"}, Errno: "eio", Ops: Words{"fsync"}, Path: "member/wal/*.wal", Probability: 0.5},
		{Action: "disk-slow", Targets: []string{"leader"}, Delay: Duration(50 * time.Millisecond), Jitter: Duration(5 * time.Millisecond)},
		{Action: "disk-full", Targets: []string{"s2"}, Bytes: "64KiB", For: Duration(time.Second)},
		{Action: "power-loss", Targets: []string{"all"}, For: Duration(time.Second)},
		{Action: "corrupt", Targets: []string{"s3"}, File: "wal", Mode: "truncate", Bytes: "100"},
	}
	if err := ValidateTimeline(ok, c); err != nil {
		t.Errorf("valid disk steps refused: %v", err)
	}
	// Without the disk layer the plan refuses them, naming what is missing.
	c.Caps = []Capability{CapNetwork, CapProcesses, CapClusterView}
	err := ValidateTimeline(ok[:1], c)
	if err == nil || !strings.Contains(err.Error(), "needs disk (the disk layer: dt run --disk fuse)") {
		t.Errorf("disk step without the disk layer: %v", err)
	}
}

func TestVerifyRule(t *testing.T) {
	r := disk.Rule{Kind: disk.KindError, Errno: "EIO", Ops: []string{"fsync"}}
	good := DiskProbes{After: []disk.ProbeResult{{Op: "fsync", Errno: "EIO", Seconds: 0.0001}, {Op: "fsync", Errno: "EIO"}}}
	if d, err := verifyRule(r, good); err != nil || !strings.Contains(d, "fsync EIO 2/2") {
		t.Errorf("verified: %q, %v", d, err)
	}
	bad := DiskProbes{After: []disk.ProbeResult{{Op: "fsync", Errno: "ok"}}}
	if _, err := verifyRule(r, bad); err == nil {
		t.Error("an fsync that succeeded verified an EIO rule")
	}
	r.Probability = 0.1
	if _, err := verifyRule(r, bad); err != nil {
		t.Errorf("p=0.1 with no failure in the probes: %v", err)
	}
	slow := disk.Rule{Kind: disk.KindSlow, Delay: 50 * time.Millisecond, Ops: []string{"write"}}
	p := DiskProbes{Baseline: []disk.ProbeResult{{Op: "write", Errno: "ok", Seconds: 0.001}},
		After: []disk.ProbeResult{{Op: "write", Errno: "ok", Seconds: 0.0515}}}
	if d, err := verifyRule(slow, p); err != nil || !strings.Contains(d, "write +50.5 ms") {
		t.Errorf("slow: %q, %v", d, err)
	}
	p.After[0].Seconds = 0.002
	if _, err := verifyRule(slow, p); err == nil {
		t.Error("1 ms added verified a 50 ms rule")
	}
}

func TestDiskActionsOnTheEngine(t *testing.T) {
	f := &diskFake{fakeEnv: newFake(1)}
	at := func(d time.Duration) *Duration { x := Duration(d); return &x }
	steps := []Step{
		{ID: "eio", Action: "disk-error", Targets: []string{"s1"}, Errno: "EIO", Ops: Words{"fsync"}, At: at(0), For: Duration(50 * time.Millisecond)},
		{ID: "cut", Action: "power-loss", Targets: []string{"s2", "s3"}, At: at(100 * time.Millisecond)},
		{ID: "rot", Action: "corrupt", Targets: []string{"s4"}, File: "wal", At: at(150 * time.Millisecond)},
	}
	if err := RunTimeline(context.Background(), f, steps, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, l := range f.log {
		if !strings.HasPrefix(l, "event ") {
			ops = append(ops, l)
		}
	}
	want := []string{"rule s1 EIO on fsync", "clear s1 eio#", "kill s2", "kill s3", "powerloss s2", "powerloss s3", "restart s2", "restart s3",
		"outcome s", "outcome s", "kill s4", "corrupt s4 member/wal/*.wal flip", "restart s4", "outcome s4"}
	if len(ops) != len(want) {
		t.Fatalf("did %q, want %q", ops, want)
	}
	for i := range want {
		if !strings.HasPrefix(ops[i], want[i]) {
			t.Errorf("step %d: %q, want %q...", i, ops[i], want[i])
		}
	}
	var actions []string
	for _, e := range f.events {
		actions = append(actions, e.Type+":"+e.Fault+":"+e.Action)
	}
	for _, w := range []string{"fault-start:eio:disk-error", "fault-action:eio:verified", "fault-end:eio:clear",
		"fault-start:cut:power-loss", "fault-action:cut:discard", "fault-action:cut:outcome", "fault-end:cut:",
		"fault-start:rot:corrupt", "fault-action:rot:corrupt", "fault-action:rot:outcome", "fault-end:rot:"} {
		if !slices.Contains(actions, w) {
			t.Errorf("no event %s in %v", w, actions)
		}
	}
}

func TestRandomDiskKindsNeedTheDiskLayer(t *testing.T) {
	o := RandomOptions{Seed: 3, Duration: 60 * time.Second, MTBF: time.Second, Servers: []string{"s1", "s2", "s3"},
		Caps: []Capability{CapNetwork, CapProcesses, CapClusterView, CapLinks, CapData, CapProbe}}
	steps, err := RandomSchedule(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if s.Action == "disk-slow" || s.Action == "power-loss" {
			t.Fatalf("drew %s without the disk layer", s.Action)
		}
	}
	o.Faults = []string{"power-loss"}
	if _, err := RandomSchedule(o); err == nil || !strings.Contains(err.Error(), "needs disk") {
		t.Errorf("--faults power-loss without the disk layer: %v", err)
	}
	o.Faults, o.Caps = nil, append(o.Caps, CapDisk)
	steps, err = RandomSchedule(o)
	if err != nil {
		t.Fatal(err)
	}
	drawn := map[string]bool{}
	for _, s := range steps {
		drawn[s.Action] = true
	}
	if !drawn["disk-slow"] || !drawn["power-loss"] {
		t.Errorf("with the disk layer, drew %v", drawn)
	}
}
