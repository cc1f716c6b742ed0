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

// Run executes one experiment and always tears down what it created. The history
// written so far survives an error or Ctrl-C, and is analysed either way.
func Run(ctx context.Context, cfg Config, o Options) (out *Outcome, err error) {
	if cfg.Seed == 0 {
		cfg.Seed = rand.Int64N(1<<53) + 1
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c, err := Start(ctx, cfg, o)
	if c != nil {
		out = &Outcome{RunDir: c.RunDir, RunID: c.Live.State.RunID}
		defer func() {
			c.Close()
			// Analyze returns the summary even when only some output file failed.
			sum, aerr := results.Analyze(c.RunDir, results.Options{CheckTimeout: secs(cfg.CheckTimeout)})
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

// Start builds the run directory, the topology, the agents and the system, and waits
// until the system has a leader. On error the returned Cluster (if not nil) must still
// be closed.
func Start(ctx context.Context, cfg Config, o Options) (*Cluster, error) {
	bo, err := cfg.BuildOptions()
	if err != nil {
		return nil, err
	}
	spec, err := topology.Build(cfg.Topology, bo)
	if err != nil {
		return nil, err
	}
	// wan and topology files decide the number of servers and clients themselves.
	cfg.Nodes, cfg.Clients = len(spec.Servers()), len(spec.Clients())
	shaper, err := ResolveShaper(cfg.Shaper)
	if err != nil {
		return nil, err
	}
	sys, err := systems.Lookup(cfg.System)
	if err != nil {
		return nil, err
	}
	runDir, err := newRunDir(cfg)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Cfg: cfg, Sys: sys, RunDir: runDir, Agents: map[string]*agent.Agent{},
		rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x64740000))}
	if c.Events, err = records.CreateJSONL(filepath.Join(runDir, records.EventsFile)); err != nil {
		return nil, err
	}
	if c.Ops, err = records.CreateJSONL(filepath.Join(runDir, records.OpsFile)); err != nil {
		return nil, err
	}
	c.T0 = time.Now()
	runID := topology.NewRunID()
	c.Record(records.Event{T: 1e-9, Type: records.EventRunStart, Detail: "run " + runID})
	if err := writeConfig(runDir, cfg, runID, "", shaper, c.T0); err != nil {
		return nil, err
	}
	// The whole fault timeline is on disk before anything runs: --replay runs it again.
	sched, err := cfg.ExpandSchedule(spec)
	if err != nil {
		return nil, err
	}
	if err := faults.WriteSchedule(filepath.Join(runDir, records.ScheduleFile), sched); err != nil {
		return nil, err
	}
	c.steps = sched.Steps
	progress(o, "building topology %s (%d servers, %d clients)", cfg.Topology, cfg.Nodes, cfg.Clients)
	live, err := topology.Up(ctx, spec, topology.Options{RunID: runID, Datapath: cfg.Datapath, Command: "run", ResultsDir: runDir})
	if err != nil {
		// Up cleans up after itself; there is nothing of the run to tear down.
		c.Record(records.Event{Type: records.EventError, Detail: err.Error()})
		return nil, err
	}
	c.Live = live
	if err := writeConfig(runDir, cfg, runID, live.State.Datapath, shaper, c.T0); err != nil {
		return c, err
	}
	if err := c.launchAgents(ctx, o.Exe, shaper); err != nil {
		return c, err
	}
	if spec.HasImpairments() {
		progress(o, "shaping links (%s backend)", shaper)
		if err := live.ApplyLinks(ctx); err != nil {
			err = fmt.Errorf("link impairments (%s backend): %w", shaper, err)
			c.Record(records.Event{Type: records.EventError, Detail: err.Error()})
			return c, err
		}
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
	bin := cfg.SystemBin
	if bin == "" && strings.HasPrefix(cfg.System, "etcd") {
		bin = systems.EtcdBin
	}
	if bin != "" {
		if out, err := exec.Command(bin, "--version").Output(); err == nil {
			v[cfg.System] = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
		}
	}
	return v
}

// launchAgents starts one agent per node, in parallel (see startAgents).
func (c *Cluster) launchAgents(ctx context.Context, exe, shaper string) error {
	c.exe = exe
	agents, err := startAgents(ctx, c.Live, filepath.Join(c.RunDir, records.LogsDir), exe, shaper)
	for n, a := range agents {
		c.Agents[n] = a
	}
	return err
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
