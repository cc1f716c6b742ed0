package faults

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
)

func ms(n int) *Duration { return at(time.Duration(n) * time.Millisecond) }

func TestTimelineStepsInOrderWithUndos(t *testing.T) {
	f := newFake(1)
	steps := []Step{
		// About 100 ms between things that must come in order, each relative to the
		// first step (after, not at): on a loaded machine a timer fires milliseconds late
		// and the test itself may start a hundred late, which with 5 ms margins and
		// absolute times reordered the steps.
		{ID: "p", Action: "pause", Targets: []string{"leader"}, At: ms(10), For: Duration(200 * time.Millisecond),
			Probe: &Probe{URL: "http://127.0.0.1:7070/check"}},
		{ID: "port", Action: "dropport", Targets: []string{"follower"}, Port: 2379, Proto: "tcp", After: Duration(100 * time.Millisecond)},
		{Action: "recoverport", Targets: []string{"@port"}, Port: 2379, Proto: "tcp", After: Duration(200 * time.Millisecond)},
		{ID: "k", Action: "kill", Targets: []string{"s5"}},
		{Action: "restart", Targets: []string{"@k"}},
		{ID: "halves", Action: "partition", Mode: "random-halves", After: Duration(100 * time.Millisecond)},
		{Action: "heal"},
	}
	if err := ValidateTimeline(steps, Cluster{Nodes: f.nodes, Servers: f.servers}); err != nil {
		t.Fatal(err)
	}
	if err := RunTimeline(context.Background(), f, steps, 700*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	want := []string{"pause s2", "probe c1 http://127.0.0.1:7070/check", "dropport ", "continue s2", "recoverport ",
		"kill s5", "restart s5", "partition ", "heal "}
	var got []string
	for _, l := range f.log {
		if !strings.HasPrefix(l, "event") {
			got = append(got, l)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("did %q, want %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("action %d: %q, want %q…", i, got[i], want[i])
		}
	}
	if f.cuts != 0 || len(f.paused) != 0 || len(f.killed) != 0 {
		t.Errorf("left: cuts %d paused %v killed %v", f.cuts, f.paused, f.killed)
	}
	// Every window that opened closed, each exactly once.
	open := map[string]int{}
	for _, e := range f.events {
		switch e.Type {
		case records.EventFaultStart:
			open[e.Fault]++
		case records.EventFaultEnd:
			open[e.Fault]--
		}
	}
	for k, v := range open {
		if v != 0 {
			t.Errorf("window %s: %+d unbalanced", k, v)
		}
	}
	var probes []ProbeOutcome
	for _, e := range f.events {
		if e.Type == records.EventProbe {
			var o ProbeOutcome
			if err := json.Unmarshal([]byte(e.Detail), &o); err != nil {
				t.Fatal(err)
			}
			if e.Fault != "p" || e.Node != "c1" {
				t.Errorf("probe event %+v: want the step p, from c1", e)
			}
			probes = append(probes, o)
		}
	}
	if len(probes) != 1 || !probes[0].OK || probes[0].Status != 200 {
		t.Errorf("probes %+v", probes)
	}
}

func TestUndoneKillsStayDownAtTheEndButPausesContinue(t *testing.T) {
	f := newFake(1)
	steps := []Step{
		{ID: "k", Action: "kill", Targets: []string{"s1"}},
		{ID: "p", Action: "pause", Targets: []string{"s3"}},
		{ID: "cut", Action: "isolate", Targets: []string{"s4"}},
	}
	if err := RunTimeline(context.Background(), f, steps, 30*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if !f.killed["s1"] || len(f.paused) != 0 || f.cuts != 0 {
		t.Errorf("killed %v paused %v cuts %d: want s1 down, the pause and the cut undone", f.killed, f.paused, f.cuts)
	}
	last := f.events[len(f.events)-1]
	ends := 0
	for _, e := range f.events {
		if e.Type == records.EventFaultEnd {
			ends++
		}
	}
	if ends != 3 {
		t.Errorf("%d fault-end events, want 3 (the kill's says it stays down); last %+v", ends, last)
	}
}

func TestRepeatingStepTogglesWithTheSameTargets(t *testing.T) {
	f := newFake(1)
	steps := []Step{{ID: "flap", Action: "partition", Groups: [][]string{{"leader"}, {"follower"}},
		At: ms(0), For: Duration(10 * time.Millisecond), Every: Duration(20 * time.Millisecond), Until: Duration(95 * time.Millisecond)}}
	if err := RunTimeline(context.Background(), f, steps, 120*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var cuts []string
	for _, l := range f.log {
		if strings.HasPrefix(l, "partition ") {
			cuts = append(cuts, l)
		}
	}
	if len(cuts) < 4 || f.cuts != 0 {
		t.Fatalf("cuts %q (left %d): want ~5 toggles, all healed", cuts, f.cuts)
	}
	for _, c := range cuts[1:] {
		if c != cuts[0] {
			t.Errorf("toggle cut %q, first was %q: the targets must be resolved once", c, cuts[0])
		}
	}
}

func TestKillUntilSnapshotWaitsForTheLeadersSnapshot(t *testing.T) {
	f := newFake(1) // applied 100; the snapshot index grows by 60 a poll: past 100 at the 2nd
	steps := []Step{{ID: "ks", Action: "kill-until-snapshot", Targets: []string{"follower"}, Timeout: Duration(5 * time.Second)}}
	if err := RunTimeline(context.Background(), f, steps, 0); err != nil {
		t.Fatal(err)
	}
	var kill, restart int
	for i, l := range f.log {
		if strings.HasPrefix(l, "kill ") {
			kill = i
		}
		if strings.HasPrefix(l, "restart ") {
			restart = i
		}
	}
	if restart <= kill || len(f.killed) != 0 {
		t.Fatalf("log %q: want kill, then restart once the snapshot passed", f.log)
	}
	end := f.events[len(f.events)-1]
	if end.Type != records.EventFaultEnd || !strings.Contains(end.Detail, "compacted its log to index 120 > 100") {
		t.Errorf("end %+v", end)
	}
}

func TestFailingStepIsRecordedAndTheTimelineGoesOn(t *testing.T) {
	f := newFake(1)
	f.probeStatus = 503
	steps := []Step{
		{Action: "recoverport", Targets: []string{"s1"}, Port: 80, Probe: &Probe{URL: "http://x/"}},
		{Action: "pause", Targets: []string{"s1"}, For: Duration(time.Millisecond)},
	}
	err := RunTimeline(context.Background(), f, steps, 20*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "no dropport of port 80") {
		t.Fatalf("error %v", err)
	}
	if !slices.Contains(f.log, "pause s1") {
		t.Errorf("the timeline stopped at the failing step: %q", f.log)
	}
	for _, e := range f.events {
		if e.Type == records.EventProbe && !strings.Contains(e.Detail, `"ok":false`) {
			t.Errorf("a 503 probe must be recorded as failed: %s", e.Detail)
		}
	}
}

func TestPartitionShapes(t *testing.T) {
	nodes := []string{"n1", "n2", "n3", "n4", "n5"}
	r := rand.New(rand.NewPCG(1, 2))
	// reach is who hears whom after the cuts (a one-way cut A -> B: B does not hear A).
	reach := func(mode string) map[[2]string]bool {
		cuts, err := PartitionShape(mode, nodes, r)
		if err != nil {
			t.Fatal(err)
		}
		ok := map[[2]string]bool{}
		for _, a := range nodes {
			for _, b := range nodes {
				ok[[2]string{a, b}] = true
			}
		}
		for _, c := range cuts {
			for _, a := range c.A {
				for _, b := range c.B {
					ok[[2]string{a, b}] = false
					if !c.OneWay {
						ok[[2]string{b, a}] = false
					}
				}
			}
		}
		return ok
	}
	hears := func(ok map[[2]string]bool, x string) []string {
		var h []string
		for _, y := range nodes {
			if ok[[2]string{y, x}] {
				h = append(h, y)
			}
		}
		return h
	}
	ring := reach("majorities-ring")
	seen := map[string]bool{}
	for _, x := range nodes {
		h := hears(ring, x)
		if len(h) != 3 {
			t.Errorf("majorities-ring: %s hears %v, want a majority of 3", x, h)
		}
		if seen[strings.Join(h, ",")] {
			t.Errorf("majorities-ring: two nodes hear the same majority %v", h)
		}
		seen[strings.Join(h, ",")] = true
	}
	br := reach("bridge")
	var bridges int
	for _, x := range nodes {
		if len(hears(br, x)) == 5 {
			bridges++
		} else if len(hears(br, x)) != 3 {
			t.Errorf("bridge: %s hears %v, want its half and the bridge", x, hears(br, x))
		}
	}
	if bridges != 1 {
		t.Errorf("bridge: %d nodes hear everyone, want 1", bridges)
	}
	halves := reach("random-halves")
	for _, x := range nodes {
		if n := len(hears(halves, x)); n != 2 && n != 3 {
			t.Errorf("random-halves: %s hears %d nodes", x, n)
		}
	}
}

func TestValidateTimelineNamesFieldsAndChoices(t *testing.T) {
	c := Cluster{Nodes: []string{"s1", "s2", "s3", "c1"}, Servers: []string{"s1", "s2", "s3"}}
	cases := []struct {
		s    Step
		want string
	}{
		{Step{Action: "explode"}, "valid actions are start, stop"},
		{Step{Action: "kill"}, "kill needs targets"},
		{Step{Action: "kill", Targets: []string{"s9"}}, `unknown target "s9": nodes are s1, s2, s3, c1`},
		{Step{Action: "kill", Targets: []string{"random(4)"}}, "random(4): want 1..3"},
		{Step{Action: "kill", Targets: []string{"s1"}, Port: 3}, "kill takes no port"},
		{Step{Action: "dropport", Targets: []string{"s1"}}, "port 0: want 1..65535"},
		{Step{Action: "partition"}, "partition needs groups"},
		{Step{Action: "partition", Mode: "ring"}, `unknown mode "ring"`},
		{Step{Action: "pause", Targets: []string{"s1"}, Every: Duration(time.Second)}, "needs a duration shorter"},
		{Step{Action: "heal", Targets: []string{"@nope"}}, `no earlier step has id "nope"`},
		{Step{Action: "probe"}, "needs probe"},
		{Step{Action: "loss", Loss: 120}, "loss 120"},
		{Step{Action: "limitspeed", Rate: "fast"}, `rate: "fast" is not a rate`},
		{Step{Action: "sleep"}, "sleep needs a duration"},
	}
	if err := ValidateTimeline([]Step{{Action: "probe", Probe: &Probe{URL: "http://x/"}, At: ms(500)},
		{Action: "probe", Probe: &Probe{URL: "http://x/"}, At: ms(100)}}, c); err == nil || !strings.Contains(err.Error(), "step 2: at: at 100ms is before") {
		t.Errorf("an at before an earlier at: %v", err)
	}
	for _, tc := range cases {
		err := ValidateTimeline([]Step{tc.s}, c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.s, err, tc.want)
		}
	}
}

func TestEveryBuiltinFaultIsAValidTimeline(t *testing.T) {
	c := Cluster{Nodes: []string{"s1", "s2", "s3", "c1"}, Servers: []string{"s1", "s2", "s3"}}
	p := Params{Duration: time.Minute, MTBF: time.Second, KillN: 2, KillTarget: "leader"}
	for _, n := range Names() {
		f, _ := Lookup(n)
		if err := ValidateTimeline(f.Steps(p), c); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}

func TestOverlappingFaultsHealIndependently(t *testing.T) {
	f := newFake(1)
	var during int
	steps := []Step{
		{ID: "a", Action: "isolate", Targets: []string{"s1"}, At: ms(0), For: Duration(30 * time.Millisecond)},
		{ID: "b", Action: "partition", Groups: [][]string{{"s2"}, {"s3"}}, At: ms(10), For: Duration(60 * time.Millisecond)},
		{ID: "c", Action: "dropport", Targets: []string{"s4"}, Port: 2379, At: ms(20), For: Duration(30 * time.Millisecond)},
		{Action: "sleep", For: Duration(30 * time.Millisecond)}, // at ~50 ms: a and c healed, b still in place
	}
	sample := time.AfterFunc(55*time.Millisecond-time.Since(f.start), func() {
		f.mu.Lock()
		during = f.cuts
		f.mu.Unlock()
	})
	defer sample.Stop()
	if err := RunTimeline(context.Background(), f, steps, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock() // during was written under it
	defer f.mu.Unlock()
	if during != 1 || f.cuts != 0 {
		t.Errorf("at 55 ms %d faults in place, want only b; left at the end %d", during, f.cuts)
	}
	var ends []string
	for _, e := range f.events {
		if e.Type == records.EventFaultEnd {
			ends = append(ends, e.Fault)
		}
	}
	if strings.Join(ends, ",") != "a,c,b" {
		t.Errorf("windows closed in order %v, want a,c,b", ends)
	}
}
