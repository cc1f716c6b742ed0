package topology

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// checkReach probes every ordered pair of nodes over TCP against want (pairs "a>b" listed
// in cut are to fail, all others to succeed). A pair that should pass is retried for up
// to 3 s (see eventually); one that should fail is probed once: a real drop always fails.
func checkReach(t *testing.T, live *Live, when string, cut map[string]bool) {
	t.Helper()
	for _, a := range live.Spec.NodeNames() {
		for _, b := range live.Spec.NodeNames() {
			if a == b {
				continue
			}
			d, _ := live.Spec.Node(b)
			probe := func() error { return tcpRoundTrip(live, a, d.IP, 7000) }
			if k := a + ">" + b; cut[k] {
				if probe() == nil {
					t.Errorf("%s: TCP %s reachable, want cut", when, k)
				}
			} else if err := eventually(probe); err != nil {
				t.Errorf("%s: TCP %s: %v, want reachable", when, k, err)
			}
		}
	}
}

// TestPartitionCuts: a partition that is not two groups — the majorities ring on five
// servers, where each sees itself and its two neighbours, so every node sees a majority
// and no two majorities agree — is one call, one cookie, one heal.
func TestPartitionCuts(t *testing.T) {
	live := upServing(t, 5, 0)
	ctx := context.Background()
	var cuts []Cut
	cut := map[string]bool{}
	for i := 1; i <= 5; i++ {
		a, b := fmt.Sprintf("s%d", i), fmt.Sprintf("s%d", (i+1)%5+1) // i and i+2 are not neighbours
		cuts = append(cuts, Cut{A: []string{a}, B: []string{b}})
		cut[a+">"+b], cut[b+">"+a] = true, true
	}
	checkReach(t, live, "before", nil)

	start := time.Now()
	cookie, err := live.PartitionCuts(ctx, cuts, "")
	if err != nil {
		t.Fatal(err)
	}
	once := time.Since(start)
	if _, mine := runRules(t, live, cookie); mine != 10 {
		t.Errorf("ring: %d rules under its cookie, want 10 (5 pairs, both ways)", mine)
	}
	checkReach(t, live, "ring", cut)
	if err := live.Heal(ctx, cookie); err != nil {
		t.Fatal(err)
	}
	checkReach(t, live, "ring healed", nil)

	// The same ring as five Partition calls sharing one owner: one cookie too, but five
	// installs, and the ring is half made in between.
	start = time.Now()
	for _, c := range cuts {
		if cookie, err = live.Partition(ctx, c, "ring"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("ring of 5 cuts: PartitionCuts %v, 5 Partition calls %v", once, time.Since(start))
	if err := live.Heal(ctx, cookie); err != nil {
		t.Fatal(err)
	}
	if run, _ := runRules(t, live, 0); run != 0 {
		t.Errorf("after healing the ring's one cookie: %d rules of the run left", run)
	}

	if _, err := live.PartitionCuts(ctx, nil, ""); err == nil {
		t.Errorf("no cuts: want an error")
	}
	if _, err := live.PartitionCuts(ctx, []Cut{cuts[0], {A: []string{"s1"}, B: []string{"s9"}}}, ""); err == nil {
		t.Errorf("a cut naming an unknown node: want an error")
	}
	if run, _ := runRules(t, live, 0); run != 0 {
		t.Errorf("a refused PartitionCuts left %d rules", run)
	}
}
