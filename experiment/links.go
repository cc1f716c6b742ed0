package experiment

// Link impairments: the topology's links are shaped through the agents (each owns the
// shaping backend of its namespace) right after they start, before the system does; the
// faults that degrade links and `link` in the shell and `dt link` add their own layers.
// An impairment that cannot be applied fails the run: dt never runs without it.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/dtlab/dt/agent"
	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/shaping"
	"github.com/dtlab/dt/topology"
)

// ResolveShaper turns --shaper into the backend that runs: auto (or "") is netem when the
// kernel has it (shaping.Detect), else userspace; netem on a kernel without it is an error.
func ResolveShaper(name string) (string, error) {
	if name == "" {
		name = shaping.NameAuto
	}
	b, err := shaping.Select(name, "dt-resolve")
	if err != nil {
		return "", fmt.Errorf("--shaper: %w", err)
	}
	return b.Name(), nil
}

// startAgents launches one agent per node of live, in parallel, logging to logDir, and
// records their sockets and the shaping backend (the run id owns its objects) in the
// state file before any impairment exists. It returns every agent that started, also on
// error, for the caller to close.
func startAgents(ctx context.Context, live *topology.Live, logDir, exe, shaper string) (map[string]*agent.Agent, error) {
	st := live.State
	agents := map[string]*agent.Agent{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	for _, n := range live.Spec.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := agent.Launch(ctx, agent.LaunchOptions{
				Netns:  topology.NetnsName(st.RunID, n.Name),
				Socket: filepath.Join(st.Dir, "agent-"+n.Name+".sock"),
				RunDir: st.Dir,
				Log:    filepath.Join(logDir, "agent-"+n.Name+".log"),
				RunID:  st.RunID,
				Node:   n.Name,
				Exe:    exe,
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("agent on %s: %w", n.Name, err))
				return
			}
			agents[n.Name] = a
		}()
	}
	wg.Wait()
	if st.Agents == nil {
		st.Agents = map[string]string{}
	}
	for n, a := range agents {
		st.Agents[n] = a.Client().Socket()
	}
	st.Shaper = shaper
	if err := st.Save(); err != nil {
		errs = append(errs, err)
	}
	live.Shapers = map[string]topology.NodeShaper{}
	for n, a := range agents {
		live.Shapers[n] = a.Client().Shaper(shaper)
	}
	return agents, errors.Join(errs...)
}

// ShapersFromState points a live topology started by another dt process (dt up) at its
// agents, for `dt link`.
func ShapersFromState(live *topology.Live) error {
	st := live.State
	if len(st.Agents) == 0 || st.Shaper == "" {
		return fmt.Errorf("run %s has no agents to shape its links (started by an older dt?): %w", st.RunID, topology.ErrNoShapers)
	}
	live.Shapers = map[string]topology.NodeShaper{}
	for n, sock := range st.Agents {
		live.Shapers[n] = agent.Dial(sock).Shaper(st.Shaper)
	}
	return nil
}

// ShapeLink sets what the path between nodes a and b does, both ways, overriding the
// topology's links for the pair; a zero imp gives the pair the topology's links back.
// The debug shell's `link` finds it here.
func (c *Cluster) ShapeLink(ctx context.Context, a, b string, imp shaping.Impairment) error {
	return c.Live.ShapeLink(ctx, a, b, imp)
}

// Network is a topology with an agent in every node and its links shaped, without a
// system: `dt up TOPOLOGY`. The agents are what `link` and `dt link` act through.
type Network struct {
	Live   *topology.Live
	Agents map[string]*agent.Agent
	Shaper string // the shaping backend
}

// UpNetwork builds what p (Config.NetworkPlan) says: the topology, an agent in every
// node, the links' impairments (buildNetwork). On error everything is torn down.
func UpNetwork(ctx context.Context, p *Plan, o Options) (n *Network, err error) {
	n, err = buildNetwork(ctx, p, o, topology.Options{Command: "up"})
	if err != nil && n != nil {
		err = errors.Join(err, n.Close(context.WithoutCancel(ctx)))
	}
	return n, err
}

// buildNetwork realises p's topology (to gives the run id, command and results directory),
// starts an agent in every node and applies the links' impairments: the build that Start
// and UpNetwork share. It returns what it built also on error, for the caller to tear
// down; nil when topology.Up failed (Up removes what it made itself).
func buildNetwork(ctx context.Context, p *Plan, o Options, to topology.Options) (*Network, error) {
	progress(o, "building topology %s (%d servers, %d clients)", p.Config.Topology, p.Config.Nodes, p.Config.Clients)
	to.Datapath = p.Config.Datapath
	live, err := topology.Up(ctx, p.Spec, to)
	if err != nil {
		return nil, err
	}
	n := &Network{Live: live, Shaper: p.Shaper}
	logDir := filepath.Join(live.State.Dir, "logs")
	if to.ResultsDir != "" {
		logDir = filepath.Join(to.ResultsDir, records.LogsDir)
	}
	n.Agents, err = startAgents(ctx, live, logDir, o.Exe, p.Shaper)
	if err != nil {
		return n, err
	}
	if p.Spec.HasImpairments() {
		progress(o, "shaping links (%s backend)", p.Shaper)
		if err := live.ApplyLinks(ctx); err != nil {
			return n, fmt.Errorf("link impairments (%s backend): %w", p.Shaper, err)
		}
	}
	return n, nil
}

// ShapeLink is Live.ShapeLink: the shell's `link` finds it here.
func (n *Network) ShapeLink(ctx context.Context, a, b string, imp shaping.Impairment) error {
	return n.Live.ShapeLink(ctx, a, b, imp)
}

// Close stops the agents (each removes its impairments) and tears the topology down.
func (n *Network) Close(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
	}
	var wg sync.WaitGroup
	for _, a := range n.Agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = a.Close(ctx)
		}()
	}
	wg.Wait()
	return n.Live.Down(ctx)
}
