package experiment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dtlab/dt/agent"
	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/results"
	"github.com/dtlab/dt/systems"
	"github.com/dtlab/dt/topology"
)

// procName is the name every agent gives the system's process.
const procName = "system"

// Options are how a run is shown and driven, not what it measures.
type Options struct {
	Progress io.Writer // live progress line and the final summary; nil = quiet
	TTY      bool      // Progress is a terminal: redraw one line in place
	Exe      string    // dt binary for the agents; "" = this executable
}

// Outcome is what a finished (or interrupted) run left behind.
type Outcome struct {
	RunDir  string
	RunID   string
	Summary *results.Summary
}

// Cluster is a running system inside a live topology, with an agent per node. The
// debug shell and Run share it.
type Cluster struct {
	Cfg     Config
	Live    *topology.Live
	Agents  map[string]*agent.Agent
	Sys     systems.System
	Members systems.Cluster
	RunDir  string // results directory
	Events  *records.JSONLWriter
	Ops     *records.JSONLWriter
	T0      time.Time // the run's time zero: every record's t is measured from it
	Monitor *Monitor
	rng     *rand.Rand
	steps   []faults.Step       // the fault timeline (schedule.json)
	exe     string              // the dt binary the agents run ("" = this executable)
	onEvent func(records.Event) // tests: sees each event once it is written, in the recording goroutine
	mu      sync.Mutex
	closed  bool
}

// Record appends an event stamped with the run time.
func (c *Cluster) Record(e records.Event) {
	if e.T == 0 {
		e.T = time.Since(c.T0).Seconds()
	}
	if err := c.Events.Append(e); err != nil {
		slog.Error("append event", "err", err)
	}
	if c.onEvent != nil {
		c.onEvent(e)
	}
}

// Run plans cfg (Config.Plan) and runs the plan (RunPlan).
func Run(ctx context.Context, cfg Config, o Options) (*Outcome, error) {
	p, err := cfg.Plan()
	if err != nil {
		return nil, err
	}
	return RunPlan(ctx, p, o)
}

// RunPlan executes one experiment and always tears down what it created. The history
// written so far survives an error or Ctrl-C, and is analysed either way.
func RunPlan(ctx context.Context, p *Plan, o Options) (out *Outcome, err error) {
	c, err := Start(ctx, p, o)
	if c != nil {
		out = &Outcome{RunDir: c.RunDir, RunID: c.Live.State.RunID}
		defer func() {
			c.Close()
			// Analyze returns the summary even when only some output file failed.
			sum, aerr := results.Analyze(c.RunDir, results.Options{CheckTimeout: secs(p.Config.CheckTimeout)})
			out.Summary = sum
			if aerr != nil {
				err = errors.Join(err, fmt.Errorf("analyse %s: %w", c.RunDir, aerr))
			}
		}()
	}
	if err != nil {
		return out, err
	}
	return out, c.runSchedule(ctx, o)
}

// Start builds what p says: the run directory with its records (config.json,
// schedule.json, events.jsonl), the network (buildNetwork: topology, agents, links) and
// the system, and waits until the system has a leader. It resolves nothing: everything
// that can be wrong with the input was refused by Config.Plan, and what can be wrong with
// the host (not root, no OVS) is refused before the run directory exists. On error the
// returned Cluster (if not nil) must still be closed.
func Start(ctx context.Context, p *Plan, o Options) (*Cluster, error) {
	if p.System == nil {
		return nil, errors.New("experiment: Start needs the plan of a run (Config.Plan), not of a network")
	}
	if err := topology.CheckHost(); err != nil {
		return nil, err
	}
	if err := checkDiskHost(p.Config); err != nil {
		return nil, err
	}
	cfg := p.Config
	// A release to build (etcd --system-opt version) is made before anything else: the
	// first time it takes a minute or more, and a failed build leaves nothing to clean.
	if pr, ok := p.System.(systems.Preparer); ok && cfg.SystemVersion != "" {
		sc := systems.Cluster{Bin: cfg.SystemBin, Version: cfg.SystemVersion}
		if err := pr.Prepare(ctx, &sc, o.Progress); err != nil {
			return nil, err
		}
		cfg.SystemBin = sc.Bin
	}
	runDir, err := newRunDir(cfg)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Cfg: cfg, Sys: p.System, RunDir: runDir, Agents: map[string]*agent.Agent{}, exe: o.Exe,
		steps: p.Schedule.Steps, rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x64740000))}
	if c.Events, err = records.CreateJSONL(filepath.Join(runDir, records.EventsFile)); err != nil {
		return nil, err
	}
	if c.Ops, err = records.CreateJSONL(filepath.Join(runDir, records.OpsFile)); err != nil {
		c.Events.Close()
		return nil, err
	}
	c.T0 = time.Now()
	runID := topology.NewRunID()
	c.Record(records.Event{T: 1e-9, Type: records.EventRunStart, Detail: "run " + runID})
	// The whole fault timeline is on disk before anything runs: --replay runs it again.
	err = errors.Join(writeConfig(runDir, cfg, runID, "", p.Shaper, c.T0),
		faults.WriteSchedule(filepath.Join(runDir, records.ScheduleFile), p.Schedule))
	var n *Network
	if err == nil {
		n, err = buildNetwork(ctx, p, o, topology.Options{RunID: runID, Command: "run", ResultsDir: runDir})
	}
	if n == nil {
		// Up cleans up after itself; there is nothing of the run to tear down.
		c.Record(records.Event{Type: records.EventError, Detail: err.Error()})
		c.Events.Close()
		c.Ops.Close()
		return nil, err
	}
	c.Live = n.Live
	for name, a := range n.Agents {
		c.Agents[name] = a
	}
	err = errors.Join(err, writeConfig(runDir, cfg, runID, c.Live.State.Datapath, p.Shaper, c.T0))
	if err != nil {
		c.Record(records.Event{Type: records.EventError, Detail: err.Error()})
		return c, err
	}
	if err := c.startSystem(ctx); err != nil {
		return c, err
	}
	c.Monitor = newMonitor(c)
	go c.Monitor.run()
	progress(o, "waiting for %s to elect a leader", cfg.System)
	if err := c.Monitor.waitReady(ctx, 60*time.Second); err != nil {
		return c, err
	}
	c.Record(records.Event{Type: records.EventClusterReady, Leader: c.Monitor.Leader(), Term: c.Monitor.Term()})
	if err := c.startProcesses(ctx); err != nil {
		return c, err
	}
	return c, nil
}

func progress(o Options, format string, a ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, format+"\n", a...)
	}
}

// newRunDir makes results/<name>/<UTC time>/ and points the latest links at it.
func newRunDir(cfg Config) (string, error) {
	root := cfg.ResultsRoot
	if root == "" {
		root = "results"
	}
	parent := filepath.Join(root, cfg.Name())
	stamp := time.Now().UTC().Format("20060102T150405.000Z")
	dir := filepath.Join(parent, stamp)
	if err := os.MkdirAll(filepath.Join(dir, records.LogsDir), 0o755); err != nil {
		return "", fmt.Errorf("create run dir: %w", err)
	}
	for _, l := range []struct{ link, target string }{
		{filepath.Join(parent, "latest"), stamp},
		{filepath.Join(root, "latest"), filepath.Join(cfg.Name(), stamp)},
	} {
		tmp := l.link + ".tmp"
		os.Remove(tmp)
		if err := os.Symlink(l.target, tmp); err == nil {
			os.Rename(tmp, l.link)
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return abs, nil
}

// writeConfig records every parameter with the versions of everything involved, and the
// link shaping backend that runs (shaper_backend; the shaper field is what was asked).
func writeConfig(dir string, cfg Config, runID, datapath, shaper string, t0 time.Time) error {
	m := map[string]any{}
	b, _ := json.Marshal(cfg)
	_ = json.Unmarshal(b, &m)
	m["run_id"] = runID
	m["datapath"] = datapath
	m["shaper_backend"] = shaper
	m["start_unix_nano"] = t0.UnixNano()
	m["start"] = t0.UTC().Format(time.RFC3339Nano)
	m["versions"] = versions(cfg)
	if h, err := os.Hostname(); err == nil {
		m["host"] = h
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, records.ConfigFile), append(b, '\n'), 0o644)
}

var versionsOnce = sync.OnceValue(func() map[string]string {
	first := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).Output()
		if err != nil {
			return "unknown"
		}
		return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	return map[string]string{
		"dt":     DtVersion(),
		"kernel": first("uname", "-r"),
		"ovs":    first("ovs-vswitchd", "--version"),
		"go":     goVersion(),
	}
})

func versions(cfg Config) map[string]string {
	v := map[string]string{}
	for k, x := range versionsOnce() {
		v[k] = x
	}
	if sys, err := systems.Lookup(cfg.System); err == nil {
		if vr, ok := sys.(systems.Versioner); ok {
			if x := vr.Version(cfg.SystemBin); x != "" {
				v[cfg.System] = x
			}
		}
	}
	return v
}

// memberIndex maps a server name to its index in the member list.
func (c *Cluster) memberIndex(node string) (int, error) {
	for i, m := range c.Members.Members {
		if m.Name == node {
			return i, nil
		}
	}
	var names []string
	for _, m := range c.Members.Members {
		names = append(names, m.Name)
	}
	return 0, fmt.Errorf("%q is not a server: valid are %s", node, strings.Join(names, ", "))
}

// startSystem starts every member through its agent.
func (c *Cluster) startSystem(ctx context.Context) error {
	st := c.Live.State
	c.Members = systems.Cluster{RunDir: st.Dir, FailureTimeout: c.Cfg.FailureTimeout, PreVote: c.Cfg.PreVote,
		Bin: c.Cfg.SystemBin, Token: "dt-" + st.RunID, SnapshotCount: c.Cfg.SnapshotCount}
	for _, n := range c.Live.Spec.Servers() {
		c.Members.Members = append(c.Members.Members, systems.Member{Name: n.Name, IP: n.IP})
	}
	if err := os.MkdirAll(filepath.Join(st.Dir, "data"), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(st.Dir, "logs"), 0o755); err != nil {
		return err
	}
	if st.Extra == nil {
		st.Extra = map[string]string{}
	}
	st.Extra["system"] = c.Cfg.System
	st.Extra["client_env"] = strings.Join(c.Sys.ClientEnv(c.Members), "\n")
	st.Extra["results_dir"] = c.RunDir
	if err := st.Save(); err != nil {
		return err
	}
	if err := c.mountDisks(ctx); err != nil {
		return err
	}
	for i := range c.Members.Members {
		if err := c.startMember(ctx, i, false); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) startMember(ctx context.Context, i int, rejoin bool) error {
	m := c.Members.Members[i]
	cmd := c.Sys.MemberCommand(c.Members, i, rejoin)
	cmd.Log = filepath.Join(c.RunDir, records.LogsDir, m.Name+".log")
	if err := systems.WriteFiles(cmd); err != nil {
		return fmt.Errorf("start %s on %s: %w", c.Cfg.System, m.Name, err)
	}
	_, err := c.Agents[m.Name].Client().Start(ctx, agent.ProcSpec{Name: procName, Argv: cmd.Argv, Env: cmd.Env, Dir: cmd.Dir, Log: cmd.Log})
	if err != nil {
		return fmt.Errorf("start %s on %s: %w", c.Cfg.System, m.Name, err)
	}
	return nil
}

// Close heals everything, stops the system and the agents, and removes the topology.
// It is safe to call more than once and on a partly started cluster.
func (c *Cluster) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	defer func() {
		c.Events.Close()
		c.Ops.Close()
	}()
	if c.Live == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if c.Monitor != nil {
		c.Monitor.stop()
	}
	if err := c.Live.HealAll(ctx); err != nil {
		slog.Warn("heal at teardown", "err", err)
	}
	var wg sync.WaitGroup
	for _, a := range c.Agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// SIGKILL, not SIGTERM: a terminated etcd leader first tries to hand its
			// leadership to a follower that is being stopped at the same moment, and
			// waits out the whole grace period. The run is over; nothing is lost.
			_, _ = a.Client().Kill(ctx, procName)
			_ = a.Close(ctx)
		}()
	}
	wg.Wait()
	c.Record(records.Event{Type: records.EventRunEnd})
	if err := c.Live.Down(ctx); err != nil {
		slog.Error("teardown", "run", c.Live.State.RunID, "err", err)
		c.Record(records.Event{Type: records.EventError, Detail: "teardown: " + err.Error()})
	}
}

// agentHandle is an agent looked up by node name.
type agentHandle struct{ *agent.Agent }
