package experiment

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dtlab/dt/agent"
	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/shaping"
	"github.com/dtlab/dt/systems"
	"github.com/dtlab/dt/topology"
)

// Process is an extra process a scenario starts on a node through its agent before the
// workload (a probe server, say). It gets DT_ENDPOINTS, the system's client URLs.
type Process struct {
	Node    string            `json:"node"`
	Name    string            `json:"name"`
	Command []string          `json:"command"`
	Env     map[string]string `json:"env,omitempty"`
}

// EnvEndpoints is the variable that carries the system's client URLs (comma-separated)
// to a scenario's processes.
const EnvEndpoints = "DT_ENDPOINTS"

// Schedule kinds: where the fault timeline comes from.
const (
	ScheduleFault    = "fault"    // the positional fault's own steps
	ScheduleRandom   = "random"   // drawn from the seed (--schedule random)
	ScheduleScenario = "scenario" // a scenario file's steps (-f)
	ScheduleReplay   = "replay"   // a schedule.json written by an earlier run (--replay)
	ScheduleSession  = "session"  // a debug session: no steps run
)

// FaultSession is the fault label of a debug session (dt up, dt run -d): no schedule runs,
// the prompt fires faults.
const FaultSession = "debug"

// usesTimeline says the run's faults come from somewhere else than the positional fault.
func (c Config) usesTimeline() bool {
	return c.Schedule != "" || c.Replay != "" || c.Scenario != ""
}

// ClusterNames is what step validation knows of a topology: its nodes and servers.
func ClusterNames(spec topology.Spec) faults.Cluster {
	fc := faults.Cluster{Nodes: spec.NodeNames()}
	for _, n := range spec.Servers() {
		fc.Servers = append(fc.Servers, n.Name)
	}
	return fc
}

// ExpandSchedule is the run's whole fault timeline, as schedule.json records it: the
// positional fault's steps, a scenario's, a replayed schedule's, or a random one drawn
// from the seed. Steps are validated against spec's nodes.
func (c Config) ExpandSchedule(spec topology.Spec) (faults.ScheduleFile, error) {
	fc := ClusterNames(spec)
	sf := faults.ScheduleFile{Version: faults.ScheduleVersion, Name: c.Fault, Seed: c.Seed, Duration: faults.Duration(secs(c.Duration))}
	switch {
	case c.Replay != "":
		old, err := faults.ReadSchedule(c.Replay)
		if err != nil {
			return sf, err
		}
		if err := faults.ValidateTimeline(old.Steps, fc); err != nil {
			return sf, fmt.Errorf("%s: %w", c.Replay, err)
		}
		old.Seed, old.Duration = c.Seed, sf.Duration
		return old, nil
	case c.Schedule == ScheduleRandom:
		mtbf := secs(c.MTBF)
		steps, err := faults.RandomSchedule(faults.RandomOptions{Seed: c.Seed, Duration: secs(c.Duration), MTBF: mtbf,
			Faults: c.RandomFaults, Servers: fc.Servers, Nodes: fc.Nodes, ClientPort: c.clientPort(spec)})
		if err != nil {
			return sf, err
		}
		sf.Kind, sf.MTBF, sf.Faults, sf.Steps = ScheduleRandom, faults.Duration(mtbf), c.RandomFaults, steps
		return sf, nil
	case c.Schedule != "":
		return sf, fmt.Errorf("--schedule %q: valid are random (or give a FAULT, -f or --replay)", c.Schedule)
	case c.Scenario != "":
		sf.Kind, sf.Steps = ScheduleScenario, c.Steps
		return sf, faults.ValidateTimeline(c.Steps, fc)
	}
	if c.Fault == FaultSession {
		sf.Kind = ScheduleSession
		return sf, nil
	}
	f, err := faults.Lookup(c.Fault)
	if err != nil {
		return sf, err
	}
	p, err := c.FaultParams()
	if err != nil {
		return sf, err
	}
	sf.Kind, sf.Steps = ScheduleFault, f.Steps(p)
	return sf, nil
}

// clientPort is the system's client port (for random dropport faults); 0 if unknown.
func (c Config) clientPort(spec topology.Spec) int {
	sys, err := systems.Lookup(c.System)
	if err != nil || len(spec.Servers()) == 0 {
		return 0
	}
	n := spec.Servers()[0]
	eps := sys.ClientEndpoints(systems.Cluster{Members: []systems.Member{{Name: n.Name, IP: n.IP}}})
	if len(eps) == 0 {
		return 0
	}
	u, err := url.Parse(eps[0])
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(u.Port())
	return p
}

// startProcesses starts the scenario's extra processes and checks they stay up.
func (c *Cluster) startProcesses(ctx context.Context) error {
	eps := strings.Join(c.Sys.ClientEndpoints(c.Members), ",")
	for _, p := range c.Cfg.Processes {
		a, ok := c.Agents[p.Node]
		if !ok {
			return fmt.Errorf("process %s: unknown node %q", p.Name, p.Node)
		}
		env := []string{EnvEndpoints + "=" + eps}
		for k, v := range p.Env {
			env = append(env, k+"="+v)
		}
		slices.Sort(env[1:])
		argv := slices.Clone(p.Command)
		if argv[0] == "dt" { // this dt, wherever it is installed
			argv[0] = c.exe
			if argv[0] == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				argv[0] = exe
			}
		}
		spec := agent.ProcSpec{Name: "x-" + p.Name, Argv: argv, Env: env,
			Log: filepath.Join(c.RunDir, "logs", p.Node+"-"+p.Name+".log")}
		if _, err := a.Client().Start(ctx, spec); err != nil {
			return fmt.Errorf("process %s on %s: %w", p.Name, p.Node, err)
		}
	}
	if len(c.Cfg.Processes) == 0 {
		return nil
	}
	time.Sleep(300 * time.Millisecond) // an argument error ends a process at once
	for _, p := range c.Cfg.Processes {
		st, err := c.Agents[p.Node].Client().Status(ctx, "x-"+p.Name)
		if err != nil {
			return err
		}
		if !st.Alive() {
			return fmt.Errorf("process %s on %s ended at once (%s, exit %d): see logs/%s-%s.log", p.Name, p.Node, st.State, st.ExitCode, p.Node, p.Name)
		}
	}
	return nil
}

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

func (e *faultEnv) Impair(ctx context.Context, targets []string, imp shaping.Impairment, dir, owner string) (faults.Undo, error) {
	return e.c.Impair(ctx, targets, imp, dir, owner)
}

func (e *faultEnv) DropPort(ctx context.Context, node, proto string, port int, owner string) (faults.Undo, error) {
	cookie, err := e.c.Live.DropPort(ctx, node, proto, port, e.c.nextOwner(owner))
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error { return e.c.Live.Heal(ctx, cookie) }, nil
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

// Probe makes the request from inside node's namespace, through its agent.
func (e *faultEnv) Probe(ctx context.Context, node string, p faults.Probe) (faults.ProbeResult, error) {
	a, ok := e.c.Agents[node]
	if !ok {
		return faults.ProbeResult{}, fmt.Errorf("probe from %q: unknown node", node)
	}
	r, err := a.Client().Probe(ctx, agent.ProbeRequest{URL: p.URL, Timeout: p.Timeout.D()})
	if err != nil {
		return faults.ProbeResult{}, err
	}
	return faults.ProbeResult{Status: r.Status, Body: r.Body, Error: r.Error, Seconds: r.Seconds}, nil
}
