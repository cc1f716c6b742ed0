package systems_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/systems"
	"github.com/dtlab/dt/systems/systemstest"
	"github.com/dtlab/dt/workloads"
)

func lookup(t *testing.T, name string) systems.System {
	t.Helper()
	s, err := systems.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// A real 3-member etcd: the v3.6 client against the 3.4 server, per-op targets, the
// effective pre-vote setting, a workload through workloads.Run, a leader kill while it
// runs, and a rejoin.
func TestEtcdCluster(t *testing.T) {
	etcd := lookup(t, "etcd")
	lc := systemstest.Start(t, etcd, 3, nil)
	t.Cleanup(systems.CloseStatusConns)
	leader, st := lc.MustWaitLeader(30 * time.Second)
	t.Logf("leader s%d id %s term %d", leader+1, st.LeaderID, st.Term)

	for i := range 3 {
		if argv := strings.Join(lc.Argv(i), " "); !strings.Contains(argv, "--pre-vote=false") {
			t.Errorf("member %d argv lacks --pre-vote=false: %s", i, argv)
		}
		if log := lc.Log(i); !strings.Contains(log, `"pre-vote":false`) {
			t.Errorf("member %d did not log its pre-vote setting as false:\n%s", i, lastLines(log, 5))
		}
	}

	kv, err := etcd.NewKV(lc.Endpoints(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	tkv := kv.(workloads.TargetedKV)
	ctx := context.Background()
	if _, found, err := kv.Get(ctx, "absent"); err != nil || found {
		t.Fatalf("Get(absent) = found %v, %v", found, err)
	}
	seen := map[string]int{}
	for i := range 6 {
		target, err := tkv.PutTarget(ctx, "k", "v"+string(rune('0'+i)))
		if err != nil {
			t.Fatalf("put via %s: %v", target, err)
		}
		seen[target]++
		v, found, target, err := tkv.GetTarget(ctx, "k")
		if err != nil || !found || v != "v"+string(rune('0'+i)) {
			t.Fatalf("get via %s after put: %q %v %v (linearizable read must see the write)", target, v, found, err)
		}
		if kv.Target() != target {
			t.Errorf("Target() = %s, last op went to %s", kv.Target(), target)
		}
		seen[target]++
	}
	for _, ep := range lc.Endpoints() {
		if seen[ep] != 4 {
			t.Errorf("round robin sent %d of 12 ops to %s, want 4 (%v)", seen[ep], ep, seen)
		}
	}

	// Load at 100 ops/s for 4 s; the leader is killed at 1 s.
	spec := workloads.DefaultSpec()
	spec.Duration, spec.Mix, spec.MaxKey, spec.Seed = 4, workloads.WriteMix(0.5), 3, 1
	spec.StartUnixNano = time.Now().UnixNano()
	var (
		mu  sync.Mutex
		ops []records.Op
	)
	done := make(chan error, 1)
	go func() {
		done <- workloads.Run(ctx, spec, kv, func(op records.Op) { mu.Lock(); ops = append(ops, op); mu.Unlock() })
	}()
	time.Sleep(time.Second)
	lc.Kill(leader)
	killedAt := float64(time.Now().UnixNano()-spec.StartUnixNano) / 1e9
	deadEP := lc.Endpoints()[leader]

	newLeader, nst := lc.MustWaitLeader(30 * time.Second)
	if newLeader == leader || nst.Term <= st.Term {
		t.Fatalf("after killing s%d (term %d): leader s%d term %d; want another leader, higher term", leader+1, st.Term, newLeader+1, nst.Term)
	}
	t.Logf("new leader s%d term %d", newLeader+1, nst.Term)
	for i := range 3 {
		if i != leader && strings.Contains(lc.Log(i), "became pre-candidate") {
			t.Errorf("s%d campaigned as a pre-candidate with pre-vote off", i+1)
		}
	}
	if _, err := lc.Status(ctx, leader); err == nil {
		t.Error("Status of the killed member succeeded")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	if len(ops) != 400 {
		t.Fatalf("%d records for 400 scheduled ops", len(ops))
	}
	written := map[string]bool{} // every value sent: a write that timed out may still have happened
	var okAfter, failedDead, okBefore int
	for _, op := range ops {
		if op.Kind == records.KindWrite {
			written[op.Value] = true
		}
		switch {
		case op.OK() && op.Completed < killedAt:
			okBefore++
		case op.OK() && op.Submitted > killedAt+2:
			okAfter++
		case !op.OK() && op.Target == deadEP:
			failedDead++
		}
		if op.Result == records.ResultOverload {
			t.Errorf("overload at 100 ops/s: %+v", op)
		}
	}
	for _, op := range ops {
		if op.Kind == records.KindRead && op.OK() && op.Value != "" && !written[op.Value] {
			t.Errorf("read %q, which no write sent", op.Value)
		}
	}
	t.Logf("ok before kill %d, ok 2 s after %d, failed at the dead member %d", okBefore, okAfter, failedDead)
	// Before the kill everything succeeds; afterwards the two survivors serve their
	// share and ops sent to the dead member time out.
	if okBefore < 90 || okAfter < 50 || failedDead < 20 {
		t.Errorf("ok before kill %d, ok 2 s after %d, failed at the dead member %d", okBefore, okAfter, failedDead)
	}

	lc.Restart(leader)
	lc.MustWaitLeader(30 * time.Second)
	rst, err := lc.Status(ctx, leader)
	if err != nil || rst.Term < nst.Term {
		t.Fatalf("rejoined member: %+v %v", rst, err)
	}
	if argv := strings.Join(lc.Argv(leader), " "); !strings.Contains(argv, "--initial-cluster-state=existing") {
		t.Errorf("restart argv: %s", argv)
	}
	// The client reconnects to the restarted member promptly (bounded gRPC backoff).
	back := time.Now()
	for {
		target, err := tkv.PutTarget(ctx, "k", "after")
		if err == nil && target == deadEP {
			break
		}
		if time.Since(back) > 10*time.Second {
			t.Fatalf("no successful put to the restarted member %s within 10 s: %v", deadEP, err)
		}
	}
	t.Logf("client used the restarted member again %v after it was healthy", time.Since(back).Round(time.Millisecond))
}

// BenchmarkEtcdStatus is the cost of one Status poll of a healthy member.
func BenchmarkEtcdStatus(b *testing.B) {
	etcd, err := systems.Lookup("etcd")
	if err != nil {
		b.Fatal(err)
	}
	lc := systemstest.Start(b, etcd, 3, nil)
	b.Cleanup(systems.CloseStatusConns)
	lc.MustWaitLeader(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b.ResetTimer()
	for range b.N {
		if st, err := lc.Status(ctx, 0); err != nil || !st.Healthy || st.ID == "" || st.Index == 0 {
			b.Fatalf("%+v %v", st, err)
		}
	}
}

// etcd-pre-vote really runs Raft pre-vote: the flag is on the command line, etcd logs it
// as its effective setting, and after the leader dies the survivors campaign as
// pre-candidates first.
func TestEtcdPreVote(t *testing.T) {
	lc := systemstest.Start(t, lookup(t, "etcd-pre-vote"), 3, nil)
	t.Cleanup(systems.CloseStatusConns)
	leader, st := lc.MustWaitLeader(30 * time.Second)
	for i := range 3 {
		if argv := strings.Join(lc.Argv(i), " "); !strings.Contains(argv, "--pre-vote=true") {
			t.Errorf("member %d argv lacks --pre-vote=true: %s", i, argv)
		}
		if log := lc.Log(i); !strings.Contains(log, `"pre-vote":true`) {
			t.Errorf("member %d did not log pre-vote true:\n%s", i, lastLines(log, 5))
		}
	}
	lc.Kill(leader)
	_, nst := lc.MustWaitLeader(30 * time.Second)
	if nst.Term <= st.Term {
		t.Fatalf("term %d after the leader kill, was %d", nst.Term, st.Term)
	}
	pre := false
	for i := range 3 {
		if i != leader && strings.Contains(lc.Log(i), "became pre-candidate") {
			pre = true
		}
	}
	if !pre {
		t.Error("no survivor logged \"became pre-candidate\": pre-vote is not in effect")
	}
}

func TestEtcdSnapshotIndexReadsTheNewestSnapFile(t *testing.T) {
	dir := t.TempDir()
	sys, err := systems.Lookup("etcd")
	if err != nil {
		t.Fatal(err)
	}
	e := sys.(systems.Snapshotter)
	if i, err := e.SnapshotIndex(dir); err != nil || i != 0 {
		t.Fatalf("no snap dir: %d, %v", i, err)
	}
	snap := filepath.Join(dir, "member", "snap")
	if err := os.MkdirAll(snap, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"0000000000000002-0000000000000065.snap", "0000000000000002-00000000000000c9.snap", "db", "0000000000000003-00000000000000ff.snap.broken"} {
		if err := os.WriteFile(filepath.Join(snap, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if i, err := e.SnapshotIndex(dir); err != nil || i != 0xc9 {
		t.Errorf("SnapshotIndex = %d, %v; want 201", i, err)
	}
}

// Compare-and-set and serializable reads against a real 3-member etcd: a cas from absent
// swaps once, a cas from a stale value reports the value it found, the declared features
// are the client's; with two members killed the survivor still answers serializable
// reads (from its own state) while linearizable ones fail.
func TestEtcdCASAndReadConsistency(t *testing.T) {
	etcd := lookup(t, "etcd")
	lc := systemstest.Start(t, etcd, 3, nil)
	t.Cleanup(systems.CloseStatusConns)
	leader, _ := lc.MustWaitLeader(30 * time.Second)

	kv, err := etcd.NewKV(lc.Endpoints(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	f := systems.Features(etcd)
	if got := workloads.FeaturesOf(kv); !f.CAS || !slices.Equal(got.ReadConsistencies, f.ReadConsistencies) || got.CAS != f.CAS {
		t.Fatalf("declared %+v, the client offers %+v", f, got)
	}
	ckv := kv.(workloads.CASKV)
	ctx := context.Background()
	for _, step := range []struct {
		old, new string
		want     workloads.CASResult
	}{
		{"", "a", workloads.CASResult{Swapped: true}},
		{"", "b", workloads.CASResult{Known: true, Current: "a"}}, // no longer absent
		{"a", "c", workloads.CASResult{Swapped: true}},
		{"a", "d", workloads.CASResult{Known: true, Current: "c"}},
	} {
		got, err := ckv.CompareAndSet(ctx, "cas", step.old, step.new)
		if err != nil {
			t.Fatal(err)
		}
		if got.Target == "" {
			t.Errorf("cas(%q→%q) names no target", step.old, step.new)
		}
		got.Target = ""
		if got != step.want {
			t.Errorf("cas(%q→%q) = %+v, want %+v", step.old, step.new, got, step.want)
		}
	}
	if v, _, err := kv.Get(ctx, "cas"); err != nil || v != "c" {
		t.Fatalf("after the cas: %q %v", v, err)
	}
	if err := kv.(workloads.ReadConsistencyKV).SetReadConsistency("eventual"); err == nil {
		t.Error("an unknown read consistency was accepted")
	}

	// Pin a client to a follower, kill the other two: no quorum is left.
	survivor := (leader + 1) % 3
	one, err := etcd.NewKV(lc.Endpoints()[survivor:survivor+1], 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	for i := range 3 {
		if i != survivor {
			lc.Kill(i)
		}
	}
	rc := one.(workloads.ReadConsistencyKV)
	if _, _, err := one.Get(ctx, "cas"); err == nil {
		t.Error("a linearizable read without a quorum succeeded")
	}
	if err := rc.SetReadConsistency(workloads.ReadSerializable); err != nil {
		t.Fatal(err)
	}
	if v, found, err := one.Get(ctx, "cas"); err != nil || !found || v != "c" {
		t.Errorf("serializable read on the survivor: %q %v %v", v, found, err)
	}
}
