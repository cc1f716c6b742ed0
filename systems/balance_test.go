package systems

import "testing"

func TestCircuitBreakerRoutesAroundFailedEndpoints(t *testing.T) {
	k := newBalancer(3, true)
	k.failed(1)
	for n := 0; n < 12; n++ {
		if i := k.pick(); i == 1 {
			t.Fatalf("pick %d chose the benched endpoint", n)
		}
	}
	// Bench over: exactly one probe goes to b; the others still avoid it.
	k.health[1].benchedUntil.Store(1)
	probes := 0
	for n := 0; n < 12; n++ {
		if k.pick() == 1 {
			probes++
		}
	}
	if probes != 1 {
		t.Fatalf("%d operations went to the recovering endpoint, want one probe", probes)
	}
	k.failed(1)
	if got := k.health[1].bench.Load(); got != int64(2*FailoverBench) {
		t.Errorf("second failure benches for %v, want %v", got, 2*FailoverBench)
	}
	k.succeeded(1)
	seen := map[int]int{}
	for n := 0; n < 6; n++ {
		seen[k.pick()]++
	}
	if seen[1] != 2 {
		t.Errorf("after a successful probe b should be back in the rotation: %v", seen)
	}
	for i := range k.health {
		k.failed(i)
	}
	seen = map[int]int{}
	for n := 0; n < 6; n++ {
		seen[k.pick()]++
	}
	if len(seen) != 3 {
		t.Errorf("with every endpoint benched the client must still use them all; used %v", seen)
	}
}

func TestBalancerWithoutBreakersIsRoundRobin(t *testing.T) {
	b := newBalancer(3, false)
	b.failed(0)
	for n := range 6 {
		if i := b.pick(); i != n%3 || b.lastPicked() != i {
			t.Fatalf("pick %d = %d (last %d), want %d", n, i, b.lastPicked(), n%3)
		}
	}
}
