package experiment

// The faults.Env of a run and of the debug prompt: netEnv acts on a live topology through
// OVS and the nodes' agents (what `dt up TOPOLOGY` has), faultEnv adds the system's
// processes, data dirs and its own view of the cluster (what a run and `dt up SYSTEM`
// have). Every fault engine of dt runs over one of them.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dtlab/dt/agent"
	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/shaping"
	"github.com/dtlab/dt/systems"
	"github.com/dtlab/dt/topology"
)

// seedStream is the PCG stream of a run's target choices (the seed is the run's).
const seedStream = 0x64740000

// netEnv is a faults.Env over a live topology and its agents: faults.Network,
// faults.Links and faults.Prober.
type netEnv struct {
	live   *topology.Live
	agents map[string]*agent.Agent
	links  faults.Links // where link steps go (nil: live)
	start  time.Time
	rng    *rand.Rand
	record func(records.Event) // nil: events are not kept (a topology without a run dir)

	mu     sync.Mutex
	owners int
}

var (
	_ faults.Network = (*netEnv)(nil)
	_ faults.Links   = (*netEnv)(nil)
	_ faults.Prober  = (*netEnv)(nil)
)

// NetworkEngine is the fault engine of a topology without a system (`dt up TOPOLOGY`):
// partitions, link and port faults, and probes through agents (none when agents is
// nil). links, when not nil, is where link steps go. Its clock starts now.
func NetworkEngine(live *topology.Live, agents map[string]*agent.Agent, links faults.Links, seed int64) *faults.Engine {
	return faults.NewEngine(&netEnv{live: live, agents: agents, links: links, start: time.Now(),
		rng: rand.New(rand.NewPCG(uint64(seed), seedStream))})
}

func (e *netEnv) Servers() []string {
	var out []string
	for _, n := range e.live.Spec.Servers() {
		out = append(out, n.Name)
	}
	return out
}

func (e *netEnv) Nodes() []string { return e.live.Spec.NodeNames() }

// Capabilities: probes need the agents.
func (e *netEnv) Capabilities() []faults.Capability {
	if e.agents == nil {
		return slices.DeleteFunc(slices.Clone(faults.AllCapabilities), func(c faults.Capability) bool { return c == faults.CapProbe })
	}
	return faults.AllCapabilities
}
func (e *netEnv) Since() time.Duration { return time.Since(e.start) }
func (e *netEnv) Rand() *rand.Rand     { return e.rng }

func (e *netEnv) Record(ev records.Event) {
	if e.record != nil {
		e.record(ev)
	}
}

// nextOwner numbers owner: every fault instance owns its own rules or layer, so that
// overlapping instances of one step heal on their own.
func (e *netEnv) nextOwner(owner string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.owners++
	return fmt.Sprintf("%s#%d", owner, e.owners)
}

// Partition installs cuts as one partition with its own cookie and returns its heal.
func (e *netEnv) Partition(ctx context.Context, cuts []topology.Cut, owner string) (faults.Undo, error) {
	cookie, err := e.live.PartitionCuts(ctx, cuts, e.nextOwner(owner))
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error { return e.live.Heal(ctx, cookie) }, nil
}

// Impair adds imp to the packets to (dir "in"), from ("out") or to and from ("both")
// targets (all paths when targets is empty), through the agents, under a layer of its
// own, and returns its removal.
func (e *netEnv) Impair(ctx context.Context, targets []string, imp shaping.Impairment, dir, owner string) (faults.Undo, error) {
	undo, err := e.live.ImpairDirection(ctx, targets, imp, dir, e.nextOwner(owner))
	if err != nil {
		return nil, err
	}
	return faults.Undo(undo), nil
}

func (e *netEnv) DropPort(ctx context.Context, node, proto string, port int, owner string) (faults.Undo, error) {
	cookie, err := e.live.DropPort(ctx, node, proto, port, e.nextOwner(owner))
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error { return e.live.Heal(ctx, cookie) }, nil
}

// ShapeLink sets the link between a and b, through e.links when set.
func (e *netEnv) ShapeLink(ctx context.Context, a, b string, imp shaping.Impairment) error {
	if e.links != nil {
		return e.links.ShapeLink(ctx, a, b, imp)
	}
	return e.live.ShapeLink(ctx, a, b, imp)
}

// Probe makes the request from inside node's namespace, through its agent.
func (e *netEnv) Probe(ctx context.Context, node string, p faults.Probe) (faults.ProbeResult, error) {
	a, ok := e.agents[node]
	if !ok {
		return faults.ProbeResult{}, fmt.Errorf("probe from %q: unknown node", node)
	}
	r, err := a.Client().Probe(ctx, agent.ProbeRequest{URL: p.URL, Timeout: p.Timeout.D()})
	if err != nil {
		return faults.ProbeResult{}, err
	}
	return faults.ProbeResult{Status: r.Status, Body: r.Body, Error: r.Error, Seconds: r.Seconds}, nil
}

// faultEnv is how faults act on a cluster: the network, and the system's processes,
// data dirs and view.
type faultEnv struct {
	*netEnv
	c     *Cluster
	mu    sync.Mutex
	open  []string          // the fault windows open now, in order, for the progress line
	doing map[string]string // what each open window did last
}

var (
	_ faults.Processes   = (*faultEnv)(nil)
	_ faults.Data        = (*faultEnv)(nil)
	_ faults.ClusterView = (*faultEnv)(nil)
)

// newFaultEnv is the cluster's env with its clock's zero at start.
func (c *Cluster) newFaultEnv(start time.Time) *faultEnv {
	return &faultEnv{c: c, netEnv: &netEnv{live: c.Live, agents: c.Agents, start: start, rng: c.rng, record: c.Record, owners: 0}}
}

// FaultEngine is the fault engine of the debug prompt on this cluster; links, when not
// nil, is where link steps go. Its clock starts now.
func (c *Cluster) FaultEngine(links faults.Links) *faults.Engine {
	env := c.newFaultEnv(time.Now())
	env.links = links
	return faults.NewEngine(env)
}

func (e *faultEnv) current() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.open) == 0 {
		return "-"
	}
	var parts []string
	for _, w := range e.open {
		parts = append(parts, e.doing[w])
	}
	return strings.Join(parts, "; ")
}

func (e *faultEnv) Servers() []string {
	var out []string
	for _, m := range e.c.Members.Members {
		out = append(out, m.Name)
	}
	return out
}

func (e *faultEnv) Leader(ctx context.Context) (string, error) {
	return e.c.Monitor.waitLeader(ctx, 15*time.Second)
}

func (e *faultEnv) Kill(ctx context.Context, node string) error     { return e.c.Kill(ctx, node) }
func (e *faultEnv) Restart(ctx context.Context, node string) error  { return e.c.Restart(ctx, node) }
func (e *faultEnv) Pause(ctx context.Context, node string) error    { return e.c.Pause(ctx, node) }
func (e *faultEnv) Continue(ctx context.Context, node string) error { return e.c.Continue(ctx, node) }

func (e *faultEnv) Record(ev records.Event) {
	e.mu.Lock()
	if e.doing == nil {
		e.doing = map[string]string{}
	}
	what := strings.TrimSpace(fmt.Sprintf("%s %s %s", ev.Fault, ev.Action, strings.Join(ev.Targets, ",")))
	switch ev.Type {
	case records.EventFaultStart:
		e.open = append(e.open, ev.Fault)
		e.doing[ev.Fault] = what
	case records.EventFaultAction:
		if _, open := e.doing[ev.Fault]; open { // an instant step has no window to show
			e.doing[ev.Fault] = what
		}
	case records.EventFaultEnd:
		if k := slices.Index(e.open, ev.Fault); k >= 0 {
			e.open = slices.Delete(e.open, k, k+1)
		}
		if !slices.Contains(e.open, ev.Fault) {
			delete(e.doing, ev.Fault)
		}
	}
	e.mu.Unlock()
	e.c.Record(ev)
}

// Stop stops a member gracefully (SIGTERM, SIGKILL after the agent's default grace).
func (e *faultEnv) Stop(ctx context.Context, node string) error {
	return e.c.Stop(ctx, node, agent.DefaultGrace)
}

// Start starts a server's member again with its data, unless it runs.
func (e *faultEnv) Start(ctx context.Context, node string) error {
	i, err := e.c.memberIndex(node)
	if err != nil {
		return err
	}
	if st, err := e.c.Agents[node].Client().Status(ctx, procName); err == nil && st.Alive() {
		return nil
	}
	return e.c.startMember(ctx, i, true)
}

// dataDir is a server's data directory.
func (c *Cluster) dataDir(node string) (string, error) {
	i, err := c.memberIndex(node)
	if err != nil {
		return "", err
	}
	d := c.Sys.MemberCommand(c.Members, i, true).DataDir
	if d == "" {
		return "", fmt.Errorf("%s keeps no data dir", c.Cfg.System)
	}
	return d, nil
}

// Backup copies a member's data dir to <run dir>/backups/<label>/<node>, as it is on
// disk at that moment (stop the member first for a consistent copy).
func (e *faultEnv) Backup(ctx context.Context, node, label string) (string, error) {
	src, err := e.c.dataDir(node)
	if err != nil {
		return "", err
	}
	dst := filepath.Join(e.c.RunDir, "backups", label, node)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	if out, err := exec.CommandContext(ctx, "cp", "-a", src, dst).CombinedOutput(); err != nil {
		return "", fmt.Errorf("cp -a %s %s: %v: %s", src, dst, err, strings.TrimSpace(string(out)))
	}
	rel, _ := filepath.Rel(e.c.RunDir, dst)
	return rel, nil
}

// Cleanup deletes a member's data dir through its agent.
func (e *faultEnv) Cleanup(ctx context.Context, node string) error {
	d, err := e.c.dataDir(node)
	if err != nil {
		return err
	}
	return e.c.Agents[node].Client().CleanDir(ctx, d)
}

// WaitHealthy waits until every member whose process runs is healthy and all of them
// name the same leader.
func (e *faultEnv) WaitHealthy(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		bad := e.unhealthy(ctx)
		if bad == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not healthy within %v: %s", timeout, bad)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// unhealthy says what keeps the running members from being healthy; "" if nothing.
func (e *faultEnv) unhealthy(ctx context.Context) string {
	leaders := map[string]bool{}
	running := 0
	for _, st := range e.c.Monitor.Statuses() {
		ps, err := e.c.Agents[st.Member].Client().Status(ctx, procName)
		if err != nil || !ps.Alive() {
			continue
		}
		running++
		if ps.State == agent.StatePaused {
			return st.Member + " is paused"
		}
		if !st.Healthy {
			return fmt.Sprintf("%s: %s", st.Member, st.Error)
		}
		leaders[st.LeaderID] = true
	}
	switch {
	case running == 0:
		return "no member runs"
	case len(leaders) != 1:
		return fmt.Sprintf("members disagree on the leader (%d views)", len(leaders))
	}
	return ""
}

func (e *faultEnv) AppliedIndex(ctx context.Context, node string) (uint64, error) {
	for _, st := range e.c.Monitor.Statuses() {
		if st.Member == node {
			if st.Index == 0 {
				return 0, fmt.Errorf("%s has reported no index yet", node)
			}
			return st.Index, nil
		}
	}
	return 0, fmt.Errorf("%q is not a member", node)
}

// CompactedIndex is the newest snapshot's index minus the entries the system keeps after
// it for slow followers (etcd: 5000).
func (e *faultEnv) CompactedIndex(ctx context.Context, node string) (uint64, error) {
	sn, ok := e.c.Sys.(systems.Snapshotter)
	if !ok {
		return 0, fmt.Errorf("%s: cannot read snapshots", e.c.Cfg.System)
	}
	d, err := e.c.dataDir(node)
	if err != nil {
		return 0, err
	}
	i, err := sn.SnapshotIndex(d)
	if err != nil || i <= sn.CatchUpEntries() {
		return 0, err
	}
	return i - sn.CatchUpEntries(), nil
}
