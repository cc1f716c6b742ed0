package systems_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/systems"
	"github.com/dtlab/dt/systems/systemstest"
	"github.com/dtlab/dt/workloads"
)

// A real 3-member ZooKeeper: status of every member (the followers name the leader), the
// client's round robin and reads after writes, a workload through workloads.Run with a
// leader kill while it runs, and a rejoin on the same data dir.
func TestZooKeeperCluster(t *testing.T) {
	zk := lookup(t, "zookeeper")
	begin := time.Now()
	lc := systemstest.Start(t, zk, 3, nil)
	t.Cleanup(systems.CloseStatusConns)
	leader, st := lc.MustWaitLeader(60 * time.Second)
	t.Logf("leader s%d (myid %s) epoch %d after %v", leader+1, st.LeaderID, st.Term, time.Since(begin).Round(time.Millisecond))
	ctx := context.Background()
	for i := range 3 {
		for _, l := range strings.Split(lc.Log(i), "\n") {
			if strings.Contains(l, "ELECTION TOOK") {
				t.Logf("s%d: %s", i+1, l)
			}
		}
		s, err := lc.Status(ctx, i)
		if err != nil || s.ID != string(rune('1'+i)) || s.LeaderID != st.LeaderID || !s.Healthy || s.Term != st.Term {
			t.Errorf("member %d: %+v %v", i, s, err)
		}
		if want := "follower"; i != leader && s.Role != want {
			t.Errorf("member %d role %q", i, s.Role)
		}
	}

	kv, err := zk.NewKV(lc.Endpoints(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	tkv := kv.(workloads.TargetedKV)
	if _, found, err := kv.Get(ctx, "absent"); err != nil || found {
		t.Fatalf("Get(absent) = found %v, %v", found, err)
	}
	seen := map[string]int{}
	for i := range 6 {
		v := "v" + string(rune('0'+i))
		target, err := tkv.PutTarget(ctx, "k", v)
		if err != nil {
			t.Fatalf("put via %s: %v", target, err)
		}
		seen[target]++
		got, found, target, err := tkv.GetTarget(ctx, "k")
		if err != nil || !found || got != v {
			t.Fatalf("get via %s after put: %q %v %v (sync + get must see the write)", target, got, found, err)
		}
		seen[target]++
	}
	for _, ep := range lc.Endpoints() {
		if seen[ep] != 4 {
			t.Errorf("round robin sent %d of 12 ops to %s, want 4 (%v)", seen[ep], ep, seen)
		}
	}

	// Load at 100 ops/s for 5 s; the leader is killed at 1 s.
	spec := workloads.DefaultSpec()
	spec.Duration, spec.Mix, spec.MaxKey, spec.Seed = 5, workloads.WriteMix(0.5), 3, 1
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
	killed := time.Now()
	killedAt := float64(killed.UnixNano()-spec.StartUnixNano) / 1e9
	deadEP := lc.Endpoints()[leader]
	newLeader, nst := lc.MustWaitLeader(30 * time.Second)
	if newLeader == leader || nst.Term <= st.Term {
		t.Fatalf("after killing s%d (epoch %d): leader s%d epoch %d; want another leader, higher epoch", leader+1, st.Term, newLeader+1, nst.Term)
	}
	t.Logf("new leader s%d epoch %d, %v after the kill", newLeader+1, nst.Term, time.Since(killed).Round(time.Millisecond))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(ops) != 500 {
		t.Fatalf("%d records for 500 scheduled ops", len(ops))
	}
	written := map[string]bool{}
	var okAfter, failedDead, okBefore int
	lastFail := 0.0
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
		if !op.OK() {
			lastFail = max(lastFail, op.Completed)
		}
	}
	for _, op := range ops {
		if op.Kind == records.KindRead && op.OK() && op.Value != "" && !written[op.Value] {
			t.Errorf("read %q, which no write sent", op.Value)
		}
	}
	t.Logf("ok before kill %d, ok 2 s after %d, failed at the dead member %d, last failure %.2f s after the kill",
		okBefore, okAfter, failedDead, lastFail-killedAt)
	if okBefore < 90 || okAfter < 150 {
		t.Errorf("ok before kill %d, ok 2 s after %d", okBefore, okAfter)
	}

	lc.Restart(leader)
	lc.MustWaitLeader(60 * time.Second)
	rst, err := lc.Status(ctx, leader)
	if err != nil || rst.Term < nst.Term || rst.Role != "follower" {
		t.Fatalf("rejoined member: %+v %v", rst, err)
	}
	back := time.Now()
	for {
		target, err := tkv.PutTarget(ctx, "k", "after")
		if err == nil && target == deadEP {
			break
		}
		if time.Since(back) > 15*time.Second {
			t.Fatalf("no successful put to the restarted member %s within 15 s: %v", deadEP, err)
		}
	}
	t.Logf("client used the restarted member again %v after it was healthy", time.Since(back).Round(time.Millisecond))
	if log := lc.Log(leader); !strings.Contains(log, "QuorumPeer") {
		t.Errorf("member log has no ZooKeeper lines:\n%s", lastLines(log, 5))
	}
}
