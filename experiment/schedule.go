package experiment

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/records"
)

// runSchedule drives the workload on every client and the fault schedule in parallel,
// then waits for both.
func (c *Cluster) runSchedule(ctx context.Context, o Options) error {
	stats := newLiveStats()
	workStart := time.Now()
	env := c.newFaultEnv(workStart)
	c.Record(records.Event{Type: records.EventWorkloadStart})

	// The workload runs on its own context: on Ctrl-C the agents are asked to stop their
	// schedules first, so the operations in flight are still recorded.
	wctx, cancelWork := context.WithCancel(context.Background())
	defer cancelWork()
	clients := map[string]string{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	eps := c.Sys.ClientEndpoints(c.Members)
	for j, n := range c.Live.Spec.Clients() {
		endpoints := eps
		if c.Cfg.ClientEndpoints == "one" {
			endpoints = []string{eps[j%len(eps)]}
		}
		spec := c.Cfg.clientSpec(n.Name, c.T0.UnixNano(), endpoints)
		clients[n.Name] = spec.Client
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.Agents[n.Name].Client().RunWorkload(wctx, spec, func(op records.Op) error {
				stats.add(op)
				return c.Ops.Append(op)
			})
			if err != nil && wctx.Err() == nil {
				fail(fmt.Errorf("workload on %s: %w", n.Name, err))
			}
		}()
	}
	faultDone := make(chan struct{})
	go func() {
		defer close(faultDone)
		// A failing step is recorded as an error event by the timeline itself.
		if err := faults.NewEngine(env).Run(ctx, c.steps, secs(c.Cfg.Duration)); err != nil {
			fail(fmt.Errorf("fault %s: %w", c.Cfg.Fault, err))
		}
	}()
	workDone := make(chan struct{})
	go func() { wg.Wait(); close(workDone) }()
	go func() {
		select {
		case <-ctx.Done():
			stopClients(c, clients, workDone)
			cancelWork()
		case <-workDone:
		}
	}()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for running := true; running; {
		select {
		case <-workDone:
			running = false
		case <-tick.C:
			c.showProgress(o, stats, env, workStart)
		}
	}
	<-faultDone
	c.Record(records.Event{Type: records.EventWorkloadEnd})
	if o.TTY && o.Progress != nil {
		fmt.Fprint(o.Progress, "\r\033[K")
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return errors.Join(errs...)
}

func (c *Cluster) showProgress(o Options, s *liveStats, env *faultEnv, start time.Time) {
	if o.Progress == nil {
		return
	}
	rate, p99 := s.lastSecond()
	line := fmt.Sprintf("[%5.1f/%gs] %6.0f ok ops/s  p99 %7.1f ms  leader %-3s  fault: %s",
		time.Since(start).Seconds(), c.Cfg.Duration, rate, p99, c.Monitor.Leader(), env.current())
	if o.TTY {
		fmt.Fprint(o.Progress, "\r\033[K"+line)
	} else if int(time.Since(start).Seconds())%10 == 0 {
		fmt.Fprintln(o.Progress, line)
	}
}

// liveStats keeps the last few seconds of completions for the progress line.
type liveStats struct {
	mu   sync.Mutex
	lats []float64 // ms, ok ops completed in the current window
	at   []time.Time
}

func newLiveStats() *liveStats { return &liveStats{} }

func (s *liveStats) add(op records.Op) {
	if !op.OK() {
		return
	}
	s.mu.Lock()
	s.lats = append(s.lats, (op.Completed-op.Submitted)*1000)
	s.at = append(s.at, time.Now())
	s.mu.Unlock()
}

// lastSecond returns ok ops/s and p99 latency over the last second and forgets older ones.
func (s *liveStats) lastSecond() (float64, float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cut := time.Now().Add(-time.Second)
	i := 0
	for i < len(s.at) && s.at[i].Before(cut) {
		i++
	}
	s.at, s.lats = s.at[i:], s.lats[i:]
	if len(s.lats) == 0 {
		return 0, 0
	}
	l := slices.Clone(s.lats)
	slices.Sort(l)
	return float64(len(l)), l[(len(l)*99)/100]
}

func (c *Cluster) agentOf(node string) (*agentHandle, error) {
	if _, err := c.memberIndex(node); err != nil {
		return nil, err
	}
	return &agentHandle{c.Agents[node]}, nil
}

// Kill SIGKILLs the system process on a server.
func (c *Cluster) Kill(ctx context.Context, node string) error {
	a, err := c.agentOf(node)
	if err != nil {
		return err
	}
	_, err = a.Client().Kill(ctx, procName)
	return err
}

// Restart starts a server's member again, rejoining with its data dir.
func (c *Cluster) Restart(ctx context.Context, node string) error {
	i, err := c.memberIndex(node)
	if err != nil {
		return err
	}
	a := c.Agents[node].Client()
	if st, err := a.Status(ctx, procName); err == nil && st.Alive() {
		if _, err := a.Stop(ctx, procName, 5*time.Second); err != nil {
			return err
		}
	}
	return c.startMember(ctx, i, true)
}

// Pause SIGSTOPs a server's member.
func (c *Cluster) Pause(ctx context.Context, node string) error {
	a, err := c.agentOf(node)
	if err != nil {
		return err
	}
	_, err = a.Client().Pause(ctx, procName)
	return err
}

// Continue SIGCONTs a server's member.
func (c *Cluster) Continue(ctx context.Context, node string) error {
	a, err := c.agentOf(node)
	if err != nil {
		return err
	}
	_, err = a.Client().Continue(ctx, procName)
	return err
}
