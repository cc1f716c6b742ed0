package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/results"
)

// TestStaleReadsFlagged: a real violation from a real configuration. The scenario of
// examples/scenarios/stale-reads.yaml pins a client to s1 and cuts s1 off from the other
// members for 6 s while that client keeps reading serializably and the others write at
// the majority: s1 serves its frozen state, and the checker must flag the run as not
// linearizable, with stale reads of c1's through s1 inside the cut, every time (one key,
// ~40 reads/s from c1 and ~80 writes/s at the majority over 6 s: hundreds of them; the
// stale-read pattern needs three operations and no search, so it does not depend on how
// hard the rest of the history is). The same run with linearizable reads is linearizable
// (s1's reads fail instead), and dt report re-checks the saved history offline to the
// same verdict.
func TestStaleReadsFlagged(t *testing.T) {
	e := newE2E(t)
	needEtcd(t)
	file := filepath.Join("..", "..", "examples", "scenarios", "stale-reads.yaml")

	res := t.TempDir()
	out := e.mustDT("run", "-f", file, "--results", res)
	dir := filepath.Join(res, "latest")
	sum := readSummary(t, dir)
	l := sum.Linearizability
	if l.Result != results.LinViolation {
		t.Fatalf("serializable reads from a cut-off member: linearizability %s, want violation\n%s", l.Result, out)
	}
	if !slices.ContainsFunc(l.Violations, func(v results.Violation) bool { return v.Kind == results.ViolationStaleRead }) {
		t.Fatalf("no stale read among %+v", l.Violations)
	}
	// Serializable reads from a healthy follower can be a few ms stale too, so the first
	// stale read may come before the cut. That s1 served stale values *during* the cut is
	// shown on the history without the other clients' reads (the patterns only need the
	// operations they name, and values stay unique): c1's first stale read through s1 is
	// inside the cut, and it is one of many.
	cut := faultWindow(t, dir, "cut-s1")
	run, err := records.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var sub []records.Op
	for _, op := range run.Ops {
		if op.Kind != records.KindRead || (op.Client == "c1" && op.Submitted > cut[0] && op.Submitted < cut[1]) {
			sub = append(sub, op)
		}
	}
	c1 := results.CheckLinearizability(sub, results.Options{CheckTimeout: 10 * time.Second}, "")
	i := slices.IndexFunc(c1.Violations, func(v results.Violation) bool { return v.Kind == results.ViolationStaleRead })
	if i < 0 {
		t.Fatalf("c1's reads during the cut: no stale read: %s", c1.Detail)
	}
	stale := c1.Violations[i]
	if stale.Key != "0" || stale.T < cut[0] || stale.T > cut[1] || stale.Instances < 20 {
		t.Errorf("c1's stale reads: %d, the first at t=%.3f on key %q; the cut was %.2f–%.2f s", stale.Instances, stale.T, stale.Key, cut[0], cut[1])
	}
	if last := stale.Ops[len(stale.Ops)-1]; !strings.Contains(last, "[c1 → http://10.0.1.1:2379") {
		t.Errorf("the stale operation is not c1's through s1: %s", last)
	}
	if !strings.Contains(out, "linearizability: VIOLATION") || !strings.Contains(out, `stale read, first on key "0"`) {
		t.Errorf("the console summary does not show the violation:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, records.VisualizationFile)); err != nil {
		t.Errorf("no visualisation: %v", err)
	}
	cfg := readJSON(t, filepath.Join(dir, records.ConfigFile))
	if cfg["read_consistency"] != "serializable" || cfg["ops"] != "read=40,write=40,cas=20" {
		t.Errorf("config.json: read_consistency %v, ops %v", cfg["read_consistency"], cfg["ops"])
	}

	// dt report re-checks the saved history offline, cas included.
	rep := e.mustDT("report", dir)
	if again := readSummary(t, dir).Linearizability; again.Result != results.LinViolation || len(again.Violations) != len(l.Violations) ||
		!strings.Contains(rep, `stale read, first on key "0"`) {
		t.Errorf("dt report: %s %+v\n%s", again.Result, again.Violations, rep)
	}

	// The same configuration with linearizable reads checks ok.
	res2 := t.TempDir()
	out2 := e.mustDT("run", "-f", file, "--read-consistency", "linearizable", "--results", res2)
	sum2 := readSummary(t, filepath.Join(res2, "latest"))
	if sum2.Linearizability.Result != results.LinOK {
		t.Fatalf("linearizable reads, same cut: %s\n%s", sum2.Linearizability.Detail, out2)
	}
	if sum2.Ops.CAS < 500 || sum2.Ops.CASSwapped < 30 {
		t.Errorf("cas ops %d, swapped %d", sum2.Ops.CAS, sum2.Ops.CASSwapped)
	}
}

func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func readSummary(t *testing.T, dir string) results.Summary {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, records.SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	var s results.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// faultWindow is when the step named id was in place: its fault-start to its fault-end.
func faultWindow(t *testing.T, dir, id string) [2]float64 {
	t.Helper()
	run, err := records.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	w := [2]float64{-1, -1}
	for _, ev := range run.Events {
		switch {
		case ev.Fault == id && ev.Type == records.EventFaultStart && w[0] < 0:
			w[0] = ev.T
		case ev.Fault == id && ev.Type == records.EventFaultEnd:
			w[1] = ev.T
		}
	}
	if w[0] < 0 || w[1] < 0 {
		t.Fatalf("no window of step %s in the events", id)
	}
	return w
}
