package experiment

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dtlab/dt/agent"
	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/records"
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
			Log: filepath.Join(c.RunDir, records.LogsDir, p.Node+"-"+p.Name+".log")}
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
