package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/dtlab/dt/experiment"
	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/results"
	"github.com/dtlab/dt/systems"
	"github.com/dtlab/dt/workloads"
	"github.com/spf13/cobra"
)

// registerRunFlags binds every experiment parameter to flags (reckon's names and defaults).
func registerRunFlags(c *cobra.Command, cfg *experiment.Config) {
	f := c.Flags()
	f.IntVarP(&cfg.Nodes, "number-nodes", "n", cfg.Nodes, "number of server nodes (s1..sN)")
	f.IntVar(&cfg.Clients, "number-clients", cfg.Clients, "number of client nodes (c1..cM), each running a client")
	f.StringVar(&cfg.Datapath, "datapath", cfg.Datapath, "OVS datapath: auto, system (kernel module), netdev (userspace)")
	f.Float64Var(&cfg.Duration, "duration", cfg.Duration, "seconds of workload (T); faults are scheduled relative to it")
	f.Float64Var(&cfg.Rate, "rate", cfg.Rate, "total ops/s over all clients (open loop)")
	f.StringVar(&cfg.Arrival, "arrival-process", cfg.Arrival, "uniform | poisson")
	f.IntVar(&cfg.MaxKey, "max-key", cfg.MaxKey, "keys are uniform in [0, max-key]")
	f.IntVar(&cfg.PayloadSize, "payload-size", cfg.PayloadSize, "bytes per written value")
	f.Float64Var(&cfg.WriteRatio, "write-ratio", cfg.WriteRatio, "fraction of writes; the rest are reads")
	f.IntVar(&cfg.MaxInflight, "max-inflight", cfg.MaxInflight, "outstanding ops per client; due ops beyond it are recorded as overload")
	f.Float64Var(&cfg.OpTimeout, "op-timeout", cfg.OpTimeout, "seconds before an op is abandoned")
	f.StringVar(&cfg.ClientEndpoints, "client-endpoints", cfg.ClientEndpoints, "all: clients use every member; one: client i uses member i mod N")
	f.Float64Var(&cfg.FailureTimeout, "failure-timeout", cfg.FailureTimeout, "seconds t: election timeout 1000·t ms, heartbeat 100·t ms")
	f.BoolVar(&cfg.PreVote, "pre-vote", cfg.PreVote, "enable raft pre-vote (etcd --pre-vote)")
	f.StringVar(&cfg.SystemBin, "etcd-bin", cfg.SystemBin, "etcd binary to run (default /usr/bin/etcd)")
	f.Float64Var(&cfg.MTBF, "mtbf", cfg.MTBF, "seconds between toggles of intermittent faults")
	f.IntVar(&cfg.KillN, "kill-n", cfg.KillN, "kill-n: how many members to kill")
	f.StringVar(&cfg.KillTarget, "kill-target", cfg.KillTarget, "kill-n: leader (leader included) | follower | any")
	f.Int64Var(&cfg.Seed, "seed", cfg.Seed, "seed for every random choice (0 = pick one and record it)")
	f.StringVar(&cfg.ResultsRoot, "results", cfg.ResultsRoot, "root directory of run directories")
	f.Float64Var(&cfg.CheckTimeout, "check-timeout", cfg.CheckTimeout, "seconds for the linearizability check (negative skips it)")
	registerLinkFlags(c, cfg)
}

func newRunCmd() *cobra.Command {
	cfg := experiment.Defaults()
	var debug bool
	c := &cobra.Command{
		Use:   "run SYSTEM TOPOLOGY WORKLOAD FAULT",
		Short: "Run one experiment and record every operation and event",
		Long: `run builds the topology, starts the system, drives the workload open loop, fires the
fault on its schedule, and writes results/<system>-<topology>-<workload>-<fault>/<time>/
(config.json, ops.jsonl, events.jsonl, logs/, summary.json, plots, report.html).

Systems:   ` + strings.Join(systems.Names(), ", ") + `
Workloads: ` + strings.Join(workloads.Names(), ", ") + `
Faults (T = --duration):
` + faults.Help(),
		Example: `  dt run etcd simple uniform leader
  dt run etcd simple uniform leader -d      # a prompt instead of the schedule (see dt up)
  dt run etcd simple uniform partial-partition --duration 30 --rate 500
  dt run etcd-pre-vote simple uniform intermittent-full --mtbf 2 --number-nodes 5`,
		Args: cobra.ExactArgs(4),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.System, cfg.Topology, cfg.Workload, cfg.Fault = args[0], args[1], args[2], args[3]
			if err := cfg.Validate(); err != nil {
				return err
			}
			if err := requireRoot(); err != nil {
				return err
			}
			if debug {
				return debugSession(cmd.Context(), cfg, debugOptions{load: true, fault: cfg.Fault})
			}
			tty := isTerminal(os.Stdout)
			out, err := experiment.Run(cmd.Context(), cfg, experiment.Options{Progress: os.Stdout, TTY: tty})
			if out != nil {
				if out.Summary != nil {
					fmt.Println(results.FormatSummary(out.Summary))
				}
				fmt.Println("results:", out.RunDir)
			}
			return err
		},
	}
	registerRunFlags(c, &cfg)
	c.Flags().BoolVarP(&debug, "debug", "d", false, "build the topology, start the system and the workload, then open the debug prompt instead of running the schedule (as reckon's -d)")
	return c
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
