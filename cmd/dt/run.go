package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/dtlab/dt/experiment"
	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/results"
	"github.com/dtlab/dt/scenario"
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
	f.StringVar(&cfg.Ops, "ops", cfg.Ops, "op mix as weights of "+strings.Join(workloads.OpKinds(), ", ")+" (default "+workloads.DefaultMix.String()+"; "+workloads.DefaultMixNoCAS.String()+" on a system without cas)")
	f.Var(&optionalRatio{&cfg.WriteRatio}, "write-ratio", "shorthand for --ops read=1-W,write=W")
	c.MarkFlagsMutuallyExclusive("ops", "write-ratio")
	f.StringVar(&cfg.ReadConsistency, "read-consistency", cfg.ReadConsistency, "how reads are made: "+strings.Join(workloads.ReadConsistencies(), " | ")+" (etcd: serializable reads are served by the member the client talks to, from its own state)")
	f.IntVar(&cfg.MaxInflight, "max-inflight", cfg.MaxInflight, "outstanding ops per client; due ops beyond it are recorded as overload")
	f.Float64Var(&cfg.OpTimeout, "op-timeout", cfg.OpTimeout, "seconds before an op is abandoned")
	f.StringVar(&cfg.ClientEndpoints, "client-endpoints", cfg.ClientEndpoints, "all: clients use every member; one: client i uses member i mod N")
	f.Float64Var(&cfg.FailureTimeout, "failure-timeout", cfg.FailureTimeout, "seconds t: election timeout 1000·t ms, heartbeat 100·t ms (zookeeper: tickTime 100·t ms, syncLimit 10 ticks)")
	f.BoolVar(&cfg.PreVote, "pre-vote", cfg.PreVote, "enable raft pre-vote (etcd --pre-vote)")
	f.StringVar(&cfg.SystemBin, "system-bin", cfg.SystemBin, "the system's server binary (etcd: /usr/bin/etcd; zookeeper: the java that runs it, /usr/bin/java)")
	f.StringVar(&cfg.SystemBin, "etcd-bin", cfg.SystemBin, "--system-bin, by its first name")
	_ = f.MarkHidden("etcd-bin")
	f.StringToStringVar(&cfg.SystemOpts, "system-opt", cfg.SystemOpts, "KEY=VALUE for the system, repeatable (etcd: version=3.6.16 builds that release, bin=PATH, pre-vote=true; dt run --help lists every system's keys)")
	f.StringVar(&cfg.Disk, "disk", cfg.Disk, "members' data dirs: plain, or fuse (served by dt's disk layer, a FUSE passthrough per member: needed by disk-error, disk-slow, disk-full, power-loss, corrupt)")
	f.Float64Var(&cfg.MTBF, "mtbf", cfg.MTBF, "seconds between toggles of intermittent faults; --schedule random: mean seconds between faults")
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
	var file string
	c := &cobra.Command{
		Use:   "run SYSTEM TOPOLOGY WORKLOAD FAULT | run -f SCENARIO | run SYSTEM TOPOLOGY WORKLOAD (--schedule random | --replay FILE)",
		Short: "Run one experiment and record every operation and event",
		Long: `run builds the topology, starts the system, drives the workload open loop, fires the
faults on their schedule, and writes results/<system>-<topology>-<workload>-<fault>/<time>/
(config.json, schedule.json, ops.jsonl, events.jsonl, logs/, summary.json, plots, report.html).

The faults come from one of:
  FAULT                    a named fault (below; dt faults lists every action too)
  -f SCENARIO              a scenario file: the experiment and a timeline of steps
  --schedule random        faults drawn from --seed: --faults KINDS, one every --mtbf s on average
  --replay schedule.json   exactly the timeline an earlier run wrote

Systems:   ` + strings.Join(systems.Names(), ", ") + `
` + systemOptsHelp() + `Workloads: ` + strings.Join(workloads.Names(), ", ") + `
Faults (T = --duration):
` + faults.Help(),
		Example: `  dt run etcd simple uniform leader
  dt run etcd simple uniform leader -d      # a prompt instead of the schedule (see dt up)
  dt run etcd simple uniform partial-partition --duration 30 --rate 500
  dt run etcd-pre-vote simple uniform intermittent-full --mtbf 2 --number-nodes 5
  dt run -f examples/scenarios/dt-style.yaml
  dt run etcd simple uniform --schedule random --seed 7 --mtbf 5 --faults kill,partition,pause
  dt run etcd simple uniform --replay results/latest/schedule.json`,
		Args: func(cmd *cobra.Command, args []string) error {
			replay, sched := cmd.Flags().Changed("replay"), cmd.Flags().Changed("schedule")
			switch {
			case file != "":
				if len(args) != 0 || replay || sched {
					return fmt.Errorf("-f SCENARIO holds the system, topology, workload and faults: give no other arguments, --schedule or --replay")
				}
			case replay && sched:
				return fmt.Errorf("--schedule and --replay: give one")
			case replay || sched:
				if len(args) != 3 {
					return fmt.Errorf("with --schedule or --replay give SYSTEM TOPOLOGY WORKLOAD (no FAULT); got %d arguments", len(args))
				}
			default:
				return cobra.ExactArgs(4)(cmd, args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case file != "":
				if err := applyScenario(cmd, file, &cfg); err != nil {
					return err
				}
			case cfg.Replay != "":
				cfg.System, cfg.Topology, cfg.Workload, cfg.Fault = args[0], args[1], args[2], "replay"
				sf, err := faults.ReadSchedule(cfg.Replay)
				if err != nil {
					return err
				}
				if !cmd.Flags().Changed("duration") {
					cfg.Duration = sf.Duration.D().Seconds()
				}
			case cfg.Schedule != "":
				cfg.System, cfg.Topology, cfg.Workload, cfg.Fault = args[0], args[1], args[2], cfg.Schedule
			default:
				cfg.System, cfg.Topology, cfg.Workload, cfg.Fault = args[0], args[1], args[2], args[3]
			}
			plan, err := cfg.Plan()
			if err != nil {
				return err
			}
			if err := requireRoot(); err != nil {
				return err
			}
			if debug {
				named := cfg.Fault
				if file != "" || cfg.Replay != "" || cfg.Schedule != "" {
					named = "" // the prompt fires named faults; a timeline has no single name
				}
				return debugSession(cmd.Context(), plan, debugOptions{load: true, fault: named})
			}
			tty := isTerminal(os.Stdout)
			out, err := experiment.RunPlan(cmd.Context(), plan, experiment.Options{Progress: os.Stdout, TTY: tty})
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
	f := c.Flags()
	f.BoolVarP(&debug, "debug", "d", false, "build the topology, start the system and the workload, then open the debug prompt instead of running the schedule (as reckon's -d)")
	f.StringVarP(&file, "file", "f", "", "scenario file: the experiment and its timeline of fault steps (examples/scenarios/)")
	f.StringVar(&cfg.Replay, "replay", "", "run the timeline of this schedule.json (written by every run) again")
	f.StringVar(&cfg.Schedule, "schedule", "", "random: draw the faults from --seed, one every --mtbf s on average")
	f.StringSliceVar(&cfg.RandomFaults, "faults", nil, "--schedule random: the kinds to draw from, comma-separated ("+strings.Join(faults.RandomKinds(), ", ")+"; default all)")
	f.IntVar(&cfg.SnapshotCount, "snapshot-count", 0, "entries between member snapshots (etcd --snapshot-count, zookeeper snapCount; 0 = the system's default)")
	return c
}

// applyScenario loads a scenario file into cfg: its experiment, its options (flags given
// on the command line win), its processes and steps, and the scenario itself as their
// source, for the plan to check them against the topology's nodes at their places in the
// file.
func applyScenario(cmd *cobra.Command, file string, cfg *experiment.Config) error {
	s, err := scenario.Load(file)
	if err != nil {
		return err
	}
	cfg.System, cfg.Topology, cfg.Fault, cfg.Scenario = s.System, s.Topology, s.Name, file
	if s.Workload != "" {
		cfg.Workload = s.Workload
	}
	flags := cmd.Flags()
	if s.Duration != 0 && !flags.Changed("duration") {
		cfg.Duration = s.Duration.D().Seconds()
	}
	if s.Seed != nil && !flags.Changed("seed") {
		cfg.Seed = *s.Seed
	}
	var errs []error
	for _, o := range s.Options {
		fl := flags.Lookup(o.Name)
		switch {
		case fl == nil || o.Name == "file" || o.Name == "replay" || o.Name == "schedule" || o.Name == "debug":
			errs = append(errs, fmt.Errorf("%s:%d: options: unknown option %q: valid are the flags of dt run (dt run --help), without dashes", file, o.Line, o.Name))
		case flags.Changed(o.Name):
			// the command line wins
		default:
			if err := flags.Set(o.Name, o.Value); err != nil {
				errs = append(errs, fmt.Errorf("%s:%d: options: %s: %v", file, o.Line, o.Name, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	cfg.Steps, cfg.Source = s.Steps, s
	for _, p := range s.Processes {
		cfg.Processes = append(cfg.Processes, experiment.Process{Node: p.Node, Name: p.Name, Command: p.Command, Env: p.Env})
	}
	return nil
}

// optionalRatio is a float flag that is "not given" (negative) until set, so that the
// help shows no default for --write-ratio.
type optionalRatio struct{ v *float64 }

func (o *optionalRatio) String() string {
	if o.v == nil || *o.v < 0 {
		return ""
	}
	return strconv.FormatFloat(*o.v, 'g', -1, 64)
}

func (o *optionalRatio) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("%q is not a number", s)
	}
	*o.v = f
	return nil
}

func (o *optionalRatio) Type() string { return "float" }

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// systemOptsHelp lists every system's --system-opt keys, one line each.
func systemOptsHelp() string {
	var b strings.Builder
	for _, name := range systems.Names() {
		s, _ := systems.Lookup(name)
		o, ok := s.(systems.Optioner)
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "  --system-opt for %s:\n", name)
		for _, opt := range o.Options() {
			fmt.Fprintf(&b, "    %-10s %s\n", opt.Key, opt.Help)
		}
	}
	return b.String()
}
