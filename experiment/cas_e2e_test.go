package experiment

import (
	"context"
	"testing"

	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/results"
)

// A healthy 3-member etcd under a partial partition (the leader cut from one follower,
// T/3 to 2T/3), with reads, writes and cas from two clients over every member: the
// history checks linearizable, and it really holds cas of every outcome — swaps, failed
// compares that say what they found, cas that timed out — so the check had something to
// decide.
func TestCASLinearizableUnderPartialPartition(t *testing.T) {
	needCluster(t)
	cfg := testConfig(t, "partial-partition", 15)
	// Ten keys: with two (the default) a loaded machine's latencies make nearly every cas
	// compare with a value overwritten meanwhile (one run: 73 swaps of 900).
	cfg.Ops, cfg.Clients, cfg.Rate, cfg.MaxKey = "read=40,write=40,cas=20", 2, 300, 9
	out, err := Run(context.Background(), cfg, Options{Exe: dtBin})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	assertNothingLeft(t, out.RunID)
	run, err := records.Load(out.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	var reads, swapped, found, failedCAS int
	for _, op := range run.Ops {
		switch {
		case op.Kind == records.KindRead && op.OK():
			reads++
		case op.Kind == records.KindCAS && op.Swapped:
			swapped++
		case op.Kind == records.KindCAS && op.OK() && op.Current != nil:
			found++
		case op.Kind == records.KindCAS && !op.OK() && op.Result != records.ResultOverload:
			failedCAS++
		}
	}
	t.Logf("%d ops: %d reads, %d cas swapped, %d failed compares, %d failed cas", len(run.Ops), reads, swapped, found, failedCAS)
	if reads < 1000 || swapped < 100 || found < 20 {
		t.Errorf("too little to check: %d reads, %d swapped, %d failed compares", reads, swapped, found)
	}
	s := out.Summary
	if s == nil || s.Linearizability.Result != results.LinOK {
		t.Fatalf("linearizability: %+v", s.Linearizability)
	}
	if s.Ops.CAS == 0 || s.Linearizability.OpsChecked < len(run.Ops)/2 {
		t.Errorf("summary: cas %d, ops checked %d of %d", s.Ops.CAS, s.Linearizability.OpsChecked, len(run.Ops))
	}
	if run.Config["ops"] != "read=40,write=40,cas=20" || run.Config["read_consistency"] != "linearizable" {
		t.Errorf("config.json: ops %v, read_consistency %v", run.Config["ops"], run.Config["read_consistency"])
	}
}
