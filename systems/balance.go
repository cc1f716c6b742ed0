package systems

import (
	"sync/atomic"
	"time"
)

// FailoverBench is how long a client first avoids an endpoint after an operation
// through it failed; each further failure doubles it, up to FailoverBenchMax. A real
// client (clientv3's balancer, a load balancer) routes around a dead or cut-off member;
// without this a killed member would fail 1/N of all operations until the end of the
// run, hiding the cluster's own recovery behind the client's choice.
const (
	FailoverBench    = time.Second
	FailoverBenchMax = 8 * time.Second
)

// balancer is the endpoint choice every built-in client shares: round robin over the
// endpoints, with a circuit breaker per endpoint. A failed operation benches its
// endpoint; once the bench is over a single probe operation goes there while the others
// keep avoiding it, and its success brings the endpoint back. When every endpoint is
// benched, plain round robin. A balancer without breakers (newBalancer(n, false)) is
// plain round robin.
type balancer struct {
	n      int
	next   atomic.Uint64
	last   atomic.Int64 // index of the endpoint picked last
	health []endpointHealth
}

type endpointHealth struct {
	benchedUntil atomic.Int64 // unix ns; 0 = healthy
	bench        atomic.Int64 // current bench length, ns
	probing      atomic.Bool  // a probe operation is in flight
}

// newBalancer balances over n endpoints, with circuit breakers when breakers is set.
func newBalancer(n int, breakers bool) *balancer {
	b := &balancer{n: n}
	if breakers {
		b.health = make([]endpointHealth, n)
	}
	return b
}

// pick returns the endpoint for the next operation.
func (b *balancer) pick() int {
	n := uint64(b.n)
	now := time.Now().UnixNano()
	start := b.next.Add(1) - 1
	i := int(start % n)
	for j := uint64(0); j < n; j++ {
		c := int((start + j) % n)
		if b.health == nil {
			break
		}
		h := &b.health[c]
		until := h.benchedUntil.Load()
		if until == 0 || (until <= now && h.probing.CompareAndSwap(false, true)) {
			i = c
			break
		}
	}
	b.last.Store(int64(i))
	return i
}

// lastPicked is the endpoint picked by the most recent operation.
func (b *balancer) lastPicked() int { return int(b.last.Load()) }

// failed benches endpoint i after a failed operation, for twice as long as last time.
func (b *balancer) failed(i int) {
	if b.health == nil {
		return
	}
	h := &b.health[i]
	d := min(max(2*time.Duration(h.bench.Load()), FailoverBench), FailoverBenchMax)
	h.bench.Store(int64(d))
	h.benchedUntil.Store(time.Now().Add(d).UnixNano())
	h.probing.Store(false)
}

// succeeded brings endpoint i back after an operation through it worked.
func (b *balancer) succeeded(i int) {
	if b.health == nil {
		return
	}
	h := &b.health[i]
	if h.benchedUntil.Load() != 0 {
		h.benchedUntil.Store(0)
		h.bench.Store(0)
		h.probing.Store(false)
	}
}
