package experiment

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/systems"
)

// PollInterval is how often every member's own view is read.
const PollInterval = 100 * time.Millisecond

// Monitor polls every member's view of leader, term and raft index through its agent
// (inside its namespace, so a partition does not blind it) and records each leader
// change and each member's term rise as an event.
type Monitor struct {
	c      *Cluster
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	leader   string
	term     uint64
	statuses map[string]systems.MemberStatus
	terms    map[string]uint64
	idToName map[string]string
}

func newMonitor(c *Cluster) *Monitor {
	return &Monitor{c: c, done: make(chan struct{}), statuses: map[string]systems.MemberStatus{},
		terms: map[string]uint64{}, idToName: map[string]string{}}
}

func (m *Monitor) run() {
	ctx, cancel := context.WithCancel(context.Background())
	m.mu.Lock()
	m.cancel = cancel
	m.mu.Unlock()
	defer close(m.done)
	t := time.NewTicker(PollInterval)
	defer t.Stop()
	for {
		m.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Monitor) stop() {
	m.mu.Lock()
	cancel := m.cancel
	m.mu.Unlock()
	if cancel != nil {
		cancel()
		<-m.done
	}
}

// poll reads all members in parallel and updates leader and terms.
func (m *Monitor) poll(ctx context.Context) {
	members := m.c.Members.Members
	out := make([]systems.MemberStatus, len(members))
	var wg sync.WaitGroup
	for i, mem := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			a := m.c.Agents[mem.Name]
			if a == nil {
				return
			}
			st, err := a.Client().SystemStatus(pctx, m.c.Cfg.System, m.c.Sys.LocalEndpoint(m.c.Members, i))
			if err != nil {
				slog.Debug("member status", "member", mem.Name, "err", err)
				st = systems.MemberStatus{Member: mem.Name, Error: err.Error()}
			}
			st.Member = mem.Name
			out[i] = st
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var events []records.Event
	for _, st := range out {
		m.statuses[st.Member] = st
		if st.ID != "" {
			m.idToName[st.ID] = st.Member
		}
		if st.Term > m.terms[st.Member] {
			if m.terms[st.Member] > 0 {
				events = append(events, records.Event{Type: records.EventTerm, Node: st.Member, Term: st.Term})
			}
			m.terms[st.Member] = st.Term
		}
	}
	// The leader is the one named by the reports with the highest term: a member cut off
	// from the majority may still name a stale leader at an older term.
	var leader string
	var term uint64
	for _, st := range out {
		if st.Error != "" || st.LeaderID == "" || st.LeaderID == "0" {
			continue
		}
		name, ok := m.idToName[st.LeaderID]
		if !ok {
			continue
		}
		if st.Term > term || (st.Term == term && leader == "") {
			leader, term = name, st.Term
		}
	}
	if leader != "" {
		if ls, ok := m.statuses[leader]; !ok || ls.Error != "" {
			leader = "" // the named leader does not answer: it is gone
		}
	}
	if leader != m.leader || (leader != "" && term != m.term) {
		if leader != m.leader {
			events = append(events, records.Event{Type: records.EventLeader, Leader: leader, Term: term})
		}
		m.leader, m.term = leader, term
	}
	for _, e := range events {
		m.c.Record(e)
	}
}

// Leader is the current leader ("" when none is known).
func (m *Monitor) Leader() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leader
}

// Term is the current leader's term.
func (m *Monitor) Term() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.term
}

// Statuses returns the latest view of every member.
func (m *Monitor) Statuses() []systems.MemberStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []systems.MemberStatus
	for _, mem := range m.c.Members.Members {
		out = append(out, m.statuses[mem.Name])
	}
	return out
}

// waitLeader waits until a leader is known.
func (m *Monitor) waitLeader(ctx context.Context, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if l := m.Leader(); l != "" {
			return l, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no leader within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitReady waits until every member answers and a leader is known.
func (m *Monitor) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ready := m.Leader() != ""
		var bad string
		for _, st := range m.Statuses() {
			if !st.Healthy {
				ready = false
				bad = fmt.Sprintf("%s: %s", st.Member, st.Error)
			}
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy with a leader within %s (last: %s; see logs/ in the run dir)", m.c.Cfg.System, timeout, bad)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
