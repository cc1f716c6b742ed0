package experiment

// What the debug shell (package shell) needs on top of Start (its fault engine is in
// faultenv.go): the workload started, stopped and re-rated on demand, a member
// stopped gracefully, and a few read-only views. Nothing here changes how Run works.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dtlab/dt/agent"
	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/workloads"
)

// Stop stops a server's member gracefully: SIGTERM, then SIGKILL after grace.
func (c *Cluster) Stop(ctx context.Context, node string, grace time.Duration) error {
	a, err := c.agentOf(node)
	if err != nil {
		return err
	}
	_, err = a.Client().Stop(ctx, procName, grace)
	return err
}

// ProcessState is the state of the system's process on a server (agent.StateRunning,
// StatePaused, StateKilled, ...).
func (c *Cluster) ProcessState(ctx context.Context, node string) (agent.ProcStatus, error) {
	a, err := c.agentOf(node)
	if err != nil {
		return agent.ProcStatus{}, err
	}
	return a.Client().Status(ctx, procName)
}

// MemberName maps a system member id (as in MemberStatus.LeaderID) to its node name; ""
// when the id has not been seen yet.
func (m *Monitor) MemberName(id string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.idToName[id]
}

// WaitLeader waits up to timeout until a leader is known and returns it.
func (m *Monitor) WaitLeader(ctx context.Context, timeout time.Duration) (string, error) {
	return m.waitLeader(ctx, timeout)
}

// onDemand is how long an on-demand load runs when nobody stops it.
const onDemand = 365 * 24 * 3600.0

// Load drives the workload on every client on demand: started, stopped and re-rated from
// the debug shell. Operations go to ops.jsonl as in a run, stamped from the run's time
// zero, and each start and stop is a workload-start / workload-end event. Every start
// after the first gives the clients new names (c1#2, ...): value ids stay unique in the
// run and the linearizability check sees a new client, which it is.
//
// Limitation: the agent's workload API ends a client only by closing its stream, so the
// records of operations still in flight when the load is stopped or re-rated are lost
// (the operations themselves may have taken effect). A run never stops its load early;
// a graceful stop in the agent (stop issuing, stream what is outstanding) would fix it.
type Load struct {
	c *Cluster

	mu      sync.Mutex
	rate    float64 // total ops/s of the next or current start
	gen     int
	running bool
	stopped bool // Stop was called: the end is not the clients' own
	cancel  context.CancelFunc
	done    chan struct{}
	clients map[string]string // node → client name of the running load
	errs    []error
	stats   *liveStats
	onError func(error)
}

// NewLoad returns a stopped load at the configured rate. onError, if not nil, hears of a
// client that fails while the load runs.
func NewLoad(c *Cluster, onError func(error)) *Load {
	return &Load{c: c, rate: c.Cfg.Rate, stats: newLiveStats(), onError: onError}
}

// ErrLoadRunning is returned by Start when the load already runs.
var ErrLoadRunning = errors.New("the load is already running")

// Start starts the load at rate total ops/s (0: the current rate). It runs until Stop or
// until ctx ends.
func (l *Load) Start(ctx context.Context, rate float64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running {
		return fmt.Errorf("%w at %g ops/s (`load rate N` changes it)", ErrLoadRunning, l.rate)
	}
	if rate == 0 {
		rate = l.rate
	}
	c := l.c
	clients := c.Live.Spec.Clients()
	if len(clients) == 0 {
		return errors.New("no client nodes: start with --number-clients 1 or more")
	}
	cfg := c.Cfg
	cfg.Rate = rate
	cfg.Duration = onDemand
	eps := c.Sys.ClientEndpoints(c.Members)
	gen := l.gen + 1
	var specs []workloads.Spec
	var names []string
	for j, n := range clients {
		endpoints := eps
		if cfg.ClientEndpoints == "one" {
			endpoints = []string{eps[j%len(eps)]}
		}
		name := n.Name
		if gen > 1 {
			name = fmt.Sprintf("%s#%d", n.Name, gen)
		}
		spec := cfg.clientSpec(name, c.T0.UnixNano(), endpoints)
		if err := workloads.ValidateSpec(spec); err != nil {
			return err
		}
		specs = append(specs, spec)
		names = append(names, n.Name)
	}
	l.gen, l.rate, l.running, l.stopped, l.errs = gen, rate, true, false, nil
	l.clients = map[string]string{}
	for i, spec := range specs {
		l.clients[names[i]] = spec.Client
	}
	wctx, cancel := context.WithCancel(ctx)
	l.cancel = cancel
	done := make(chan struct{})
	l.done = done
	c.Record(records.Event{Type: records.EventWorkloadStart, Detail: fmt.Sprintf("%s at %g ops/s", cfg.Workload, rate)})
	var wg sync.WaitGroup
	for i, spec := range specs {
		node := names[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.Agents[node].Client().RunWorkload(wctx, spec, func(op records.Op) error {
				l.stats.add(op)
				return c.Ops.Append(op)
			})
			if err != nil && wctx.Err() == nil {
				err = fmt.Errorf("workload on %s: %w", node, err)
				c.Record(records.Event{Type: records.EventError, Node: node, Detail: err.Error()})
				l.mu.Lock()
				l.errs = append(l.errs, err)
				l.mu.Unlock()
				if l.onError != nil {
					l.onError(err)
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		l.mu.Lock()
		l.running = false
		stopped := l.stopped
		l.mu.Unlock()
		ev := records.Event{Type: records.EventWorkloadEnd}
		if stopped {
			ev.Detail = "stopped"
		}
		c.Record(ev)
		close(done)
	}()
	return nil
}

// Stop ends the clients and waits until their streams have ended: the agents stop
// issuing operations and still record those in flight (bounded by the op timeout), so
// no write goes unaccounted for. Stopping a stopped load is a no-op.
func (l *Load) Stop() error {
	l.mu.Lock()
	cancel, done, clients := l.cancel, l.done, l.clients
	if l.running {
		l.stopped = true
	}
	l.mu.Unlock()
	if cancel == nil {
		return nil
	}
	stopClients(l.c, clients, done)
	cancel()
	<-done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done == done {
		l.cancel, l.done = nil, nil
	}
	return errors.Join(l.errs...)
}

// stopClients asks every agent to stop its client's schedule and waits for the streams
// to end, at most the op timeout and a little more; the caller then cancels whatever is
// left.
func stopClients(c *Cluster, clients map[string]string, done <-chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), secs(c.Cfg.OpTimeout)+2*time.Second)
	defer cancel()
	for node, name := range clients {
		if err := c.Agents[node].Client().StopWorkload(ctx, name); err != nil {
			slog.Debug("stop workload", "node", node, "client", name, "err", err)
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// SetRate changes the total rate: a running load is stopped and started again at it (the
// clients get new names), a stopped one starts at it next time.
func (l *Load) SetRate(ctx context.Context, rate float64) error {
	if !(rate > 0) {
		return fmt.Errorf("rate %v: must be > 0 ops/s", rate)
	}
	l.mu.Lock()
	running := l.running
	if !running {
		l.rate = rate
	}
	l.mu.Unlock()
	if !running {
		return nil
	}
	if err := l.Stop(); err != nil {
		return err
	}
	return l.Start(ctx, rate)
}

// LoadStatus is what the load is doing.
type LoadStatus struct {
	Running bool
	Rate    float64 // total ops/s asked for (of the next start when stopped)
	Clients int     // client nodes driving it
	OKRate  float64 // successful ops/s over the last second
	P99ms   float64 // p99 latency of those, ms
	Started int     // starts so far
}

// Status reports whether the load runs, at what rate, and how it fares.
func (l *Load) Status() LoadStatus {
	l.mu.Lock()
	st := LoadStatus{Running: l.running, Rate: l.rate, Clients: len(l.c.Live.Spec.Clients()), Started: l.gen}
	l.mu.Unlock()
	st.OKRate, st.P99ms = l.stats.lastSecond()
	return st
}
