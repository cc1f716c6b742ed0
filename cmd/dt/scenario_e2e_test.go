package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dtlab/dt/records"
)

// TestScenarioFileErrorsBeforeAnythingIsCreated: a scenario with an unknown action, a
// bad duration or an unknown node is refused with its file, line and the valid choices,
// and nothing — no namespace, no run directory — is created.
func TestScenarioFileErrorsBeforeAnythingIsCreated(t *testing.T) {
	e := newE2E(t)
	head := "system: etcd\ntopology: simple\nduration: 20s\nsteps:\n"
	cases := []struct {
		name, steps string
		want        []string
	}{
		{"unknown-action", "  - action: pause\n    targets: leader\n  - action: explode\n    targets: s1\n",
			[]string{"unknown-action.yaml:7:", `unknown action "explode"`, "valid actions are start, stop, kill"}},
		{"bad-duration", "  - action: pause\n    targets: leader\n    at: soon\n",
			[]string{"bad-duration.yaml:7:", `"soon"`, "500ms"}},
		{"unknown-node", "  - action: kill\n    targets: [s1, s9]\n",
			[]string{"unknown-node.yaml:6:", `unknown target "s9"`, "nodes are s1, s2, s3, c1", "leader"}},
	}
	netnsBefore, _ := os.ReadDir("/var/run/netns")
	for _, tc := range cases {
		dir := t.TempDir()
		file := filepath.Join(dir, tc.name+".yaml")
		if err := os.WriteFile(file, []byte(head+tc.steps), 0o644); err != nil {
			t.Fatal(err)
		}
		res := filepath.Join(dir, "results")
		out, err := e.dt("run", "-f", file, "--results", res)
		if err == nil {
			t.Errorf("%s: dt run -f accepted it:\n%s", tc.name, out)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: error must contain %q:\n%s", tc.name, w, out)
			}
		}
		if _, err := os.Stat(res); err == nil {
			t.Errorf("%s: a results directory was created for a refused scenario", tc.name)
		}
	}
	netnsAfter, _ := os.ReadDir("/var/run/netns")
	if len(netnsAfter) != len(netnsBefore) {
		t.Errorf("namespaces before %d, after %d: a refused scenario created some", len(netnsBefore), len(netnsAfter))
	}
	if ents, _ := os.ReadDir(e.rt); len(ents) != 0 {
		t.Errorf("runtime dir holds %d entries after refused scenarios", len(ents))
	}
}

// TestRandomScheduleReplays: a seeded random schedule is written to schedule.json before
// the run; --replay runs exactly it again: the same steps, and the same fault events
// (actions, targets) at the same times within tolerance.
func TestRandomScheduleReplays(t *testing.T) {
	e := newE2E(t)
	needEtcd(t)
	res1, res2 := t.TempDir(), t.TempDir()
	out := e.mustDT("run", "etcd", "simple", "uniform", "--schedule", "random", "--seed", "11", "--mtbf", "3",
		"--faults", "kill,partition,pause,delay", "--duration", "20", "--rate", "100", "--results", res1)
	sched := filepath.Join(res1, "latest", records.ScheduleFile)
	out2 := e.mustDT("run", "etcd", "simple", "uniform", "--replay", sched, "--rate", "100", "--results", res2)

	s1, s2 := readSteps(t, sched), readSteps(t, filepath.Join(res2, "latest", records.ScheduleFile))
	if s1 == "" || s1 != s2 {
		t.Fatalf("the replay's schedule differs from the original:\n%s\n---\n%s", s1, s2)
	}
	a, b := faultStarts(t, filepath.Join(res1, "latest")), faultStarts(t, filepath.Join(res2, "latest"))
	if len(a) == 0 {
		t.Fatalf("the random schedule fired no fault:\n%s", out)
	}
	if len(a) != len(b) {
		t.Fatalf("original fired %d faults, replay %d:\n%v\n%v\n%s", len(a), len(b), a, b, out2)
	}
	for i := range a {
		if a[i].Fault != b[i].Fault || a[i].Action != b[i].Action || !slices.Equal(a[i].Targets, b[i].Targets) {
			t.Errorf("fault %d: original %s %s %v, replay %s %s %v", i, a[i].Fault, a[i].Action, a[i].Targets, b[i].Fault, b[i].Action, b[i].Targets)
		}
		if d := math.Abs(a[i].T - b[i].T); d > 0.5 {
			t.Errorf("fault %d (%s): at %.2f s, replayed at %.2f s", i, a[i].Fault, a[i].T, b[i].T)
		}
	}
}

// readSteps is schedule.json's steps, as JSON.
func readSteps(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Steps json.RawMessage `json:"steps"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return string(s.Steps)
}

// faultStarts lists the fault-start events of a run, T measured from workload-start.
func faultStarts(t *testing.T, dir string) []records.Event {
	t.Helper()
	run, err := records.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var t0 float64
	var out []records.Event
	for _, ev := range run.Events {
		switch ev.Type {
		case records.EventWorkloadStart:
			t0 = ev.T
		case records.EventFaultStart:
			ev.T -= t0
			out = append(out, ev)
		}
	}
	return out
}
