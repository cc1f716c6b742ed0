package experiment

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dtlab/dt/agent"
	"github.com/dtlab/dt/records"
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
