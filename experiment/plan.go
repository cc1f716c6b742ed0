package experiment

// Config → Plan → build. A Plan is a configuration checked and resolved as a whole, with
// nothing created on the host: the topology's spec, the system, the fault knobs, the
// whole fault timeline checked against the cluster it will run on, the shaping backend.
// Start and UpNetwork only build what a Plan says; `dt run`, `dt up`, scenarios and
// sweeps all go through one.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/dtlab/dt/agent"
	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/ovs"
	"github.com/dtlab/dt/shaping"
	"github.com/dtlab/dt/systems"
	"github.com/dtlab/dt/topology"
	"github.com/dtlab/dt/workloads"
)

// Plan is everything a run (or a network: NetworkPlan) needs, resolved and valid.
// Config.Plan makes one; Start, RunPlan and UpNetwork build it.
type Plan struct {
	// Config is what config.json records: the seed chosen when it was 0, and the node
	// counts the topology decided (wan and topology files decide them themselves).
	Config Config
	Spec   topology.Spec
	// Shaper is the link shaping backend that runs: netem or userspace (--shaper auto
	// resolved on this host).
	Shaper string
	// System runs on the servers; nil in a network plan.
	System systems.System
	// Params are the fault knobs, parsed (--mtbf, --kill-*, --fault-*): the named fault's
	// and the defaults of the faults fired from the debug prompt.
	Params faults.Params
	// Schedule is the whole fault timeline, as schedule.json records it, its steps
	// checked against Cluster.
	Schedule faults.ScheduleFile
	// Cluster is what steps are checked against; cluster() is its only maker.
	Cluster faults.Cluster
}

// StepSource is where a timeline's steps and processes were written (a scenario file:
// *scenario.Scenario is one). Given as Config.Source, the plan checks the steps and
// processes with it, so that each problem is named at its place in the file.
type StepSource interface {
	Validate(faults.Cluster) error
}

// Plan checks c as a whole and resolves it, reporting every problem at once. It creates
// nothing: the one thing it asks the host is whether the kernel has netem (--shaper
// auto or netem; shaping.Detect adds a qdisc in a namespace of its own that has no name
// and goes with its file descriptor, once per process). Without root that probe fails
// and auto means userspace. A Seed of 0 is replaced by a random one.
func (c Config) Plan() (*Plan, error) { return c.resolve(true, true) }

// NetworkPlan is the plan of `dt up TOPOLOGY`: the topology, its links, the datapath and
// the shaping backend; no system, workload or faults.
func (c Config) NetworkPlan() (*Plan, error) { return c.resolve(false, true) }

// Validate is Plan without asking the host (the netem probe needs root): every name and
// value, naming the bad one and the valid choices. Sweeps check every point with it when
// the file is read.
func (c Config) Validate() error {
	_, err := c.resolve(true, false)
	return err
}

// Session is p as a debug session (dt up SYSTEM TOPOLOGY, dt run -d): the same
// experiment, labelled FaultSession in the results tree, with a schedule that runs no
// step: the prompt fires the faults, with p's Params.
func (p *Plan) Session() *Plan {
	s := *p
	s.Config.Fault = FaultSession
	s.Schedule = faults.ScheduleFile{Version: faults.ScheduleVersion, Kind: ScheduleSession, Name: FaultSession,
		Seed: p.Config.Seed, Duration: faults.Duration(secs(p.Config.Duration))}
	return &s
}

// cluster is what steps are checked against: the topology's nodes and servers, and the
// capabilities the build's fault env will offer. It is made here and nowhere else.
func (p *Plan) cluster() faults.Cluster {
	fc := faults.Cluster{Nodes: p.Spec.NodeNames(), Caps: faults.Offers(p.env())}
	for _, n := range p.Spec.Servers() {
		fc.Servers = append(fc.Servers, n.Name)
	}
	return fc
}

// env is the kind of faults.Env the build makes, without anything live in it: the
// engine checks a fired step against faults.Offers of the real one, and the plan must
// refuse what it would refuse. A run's env has the system (faultEnv), a network's only
// the topology; both have an agent in every node.
func (p *Plan) env() faults.Env {
	ne := &netEnv{agents: map[string]*agent.Agent{}}
	if p.System == nil {
		return ne
	}
	return &faultEnv{netEnv: ne, c: &Cluster{Cfg: p.Config, Sys: p.System}}
}

// resolve is Plan (run: a system runs; probe: ask the host about netem).
func (c Config) resolve(run, probe bool) (*Plan, error) {
	// The config as given, until it is resolved: env() reads it (the disk layer).
	p := &Plan{Config: c}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	// The network.
	haveSpec := false
	if bo, err := c.BuildOptions(); err != nil {
		add(err)
	} else if spec, err := topology.Build(c.Topology, bo); err != nil {
		add(err)
	} else if err := spec.Validate(); err != nil {
		add(err)
	} else {
		p.Spec, haveSpec = spec, true
		c.Nodes, c.Clients = len(spec.Servers()), len(spec.Clients())
	}
	switch {
	case c.Shaper != "" && !slices.Contains(shaping.Names(), c.Shaper):
		add(fmt.Errorf("--shaper %q: valid are %s", c.Shaper, strings.Join(shaping.Names(), ", ")))
	case probe:
		var err error
		p.Shaper, err = ResolveShaper(c.Shaper)
		add(err)
	}
	// auto is decided when the switch starts: it depends on what runs then.
	if c.Datapath != "" && c.Datapath != ovs.DatapathAuto {
		if _, err := ovs.ResolveDatapath(c.Datapath, ""); err != nil {
			add(fmt.Errorf("--datapath: %w", err))
		}
	}
	if !run {
		p.Config = c
		if haveSpec {
			p.Cluster = p.cluster()
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		return p, nil
	}

	// The system, the workload, the faults.
	if c.Seed == 0 {
		c.Seed = rand.Int64N(1<<53) + 1
	}
	if sys, err := systems.Lookup(c.System); err != nil {
		add(err)
	} else {
		p.System = sys
		sc := systems.Cluster{Bin: c.SystemBin, PreVote: c.PreVote, Version: c.SystemVersion}
		if err := systems.SetOptions(sys, &sc, c.SystemOpts); err != nil {
			add(err)
		} else {
			c.SystemBin, c.PreVote, c.SystemVersion = sc.Bin, sc.PreVote, sc.Version
			if ch, ok := sys.(systems.Checker); ok {
				add(ch.Check(sc))
			}
		}
	}
	if haveSpec {
		p.Cluster = p.cluster()
		if p.System == nil {
			// An unknown system is reported once, not again by every step that needs it.
			p.Cluster.Caps = nil
		}
	}
	_, mixErr := c.OpMix()
	add(mixErr)
	params, perr := c.FaultParams()
	add(perr)
	p.Params = params
	if _, err := workloads.Lookup(c.Workload); err != nil {
		add(err)
	}
	if c.usesTimeline() {
		if haveSpec {
			sched, err := c.timeline(p)
			add(err)
			if err == nil {
				p.Schedule = sched
				add(c.checkSteps(p))
			}
		}
	} else if f, err := faults.Lookup(c.Fault); err != nil {
		add(err)
	} else if err := faults.ValidateParams(c.Fault, params, c.Nodes); err != nil {
		add(err)
	} else if perr == nil {
		p.Schedule = faults.ScheduleFile{Version: faults.ScheduleVersion, Kind: ScheduleFault, Name: c.Fault,
			Seed: c.Seed, Duration: faults.Duration(secs(c.Duration)), Steps: f.Steps(params)}
		if haveSpec {
			add(c.checkSteps(p))
		}
	}
	if haveSpec && (c.Source == nil || c.Scenario == "") {
		add(checkProcesses(c.Processes, p.Cluster))
	}
	switch c.Disk {
	case "", DiskPlain, DiskFUSE:
	default:
		add(fmt.Errorf("--disk %q: valid are %s, %s", c.Disk, DiskPlain, DiskFUSE))
	}
	if c.SnapshotCount < 0 {
		add(fmt.Errorf("--snapshot-count %d: want 0 (the system's default) or more", c.SnapshotCount))
	}
	if c.Clients < 1 {
		add(fmt.Errorf("--number-clients %d: a run needs at least one client", c.Clients))
	}
	if c.Nodes < 1 {
		add(fmt.Errorf("topology %s has no server", c.Topology))
	}
	switch c.ClientEndpoints {
	case "all", "one":
	default:
		add(fmt.Errorf("--client-endpoints %q: valid are all, one", c.ClientEndpoints))
	}
	if c.FailureTimeout <= 0 {
		add(fmt.Errorf("--failure-timeout %v: must be > 0 seconds", c.FailureTimeout))
	}
	if err := workloads.ValidateSpec(c.clientSpec("c1", 0, nil)); err != nil {
		add(err)
	} else if p.System != nil && mixErr == nil {
		// what the system's client lacks (cas, a read consistency) is refused here, not by
		// the agent once everything is up
		add(systems.Features(p.System).Check(c.clientSpec("c1", 0, nil)))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p.Config = c.withOpMix() // config.json says which mix ran
	return p, nil
}

// timeline is the fault timeline of a run whose faults do not come from the positional
// fault: a replayed schedule.json, a random schedule drawn from the seed, or a scenario's
// steps. checkSteps checks it.
func (c Config) timeline(p *Plan) (faults.ScheduleFile, error) {
	sf := faults.ScheduleFile{Version: faults.ScheduleVersion, Name: c.Fault, Seed: c.Seed, Duration: faults.Duration(secs(c.Duration))}
	switch {
	case c.Replay != "":
		old, err := faults.ReadSchedule(c.Replay)
		if err != nil {
			return sf, err
		}
		old.Seed, old.Duration = c.Seed, sf.Duration
		return old, nil
	case c.Schedule == ScheduleRandom:
		mtbf := secs(c.MTBF)
		steps, err := faults.RandomSchedule(faults.RandomOptions{Seed: c.Seed, Duration: secs(c.Duration), MTBF: mtbf,
			Faults: c.RandomFaults, Servers: p.Cluster.Servers, Nodes: p.Cluster.Nodes, ClientPort: clientPort(p), Caps: p.Cluster.Caps})
		if err != nil {
			return sf, err
		}
		sf.Kind, sf.MTBF, sf.Faults, sf.Steps = ScheduleRandom, faults.Duration(mtbf), c.RandomFaults, steps
		return sf, nil
	case c.Schedule != "":
		return sf, fmt.Errorf("--schedule %q: valid are random (or give a FAULT, -f or --replay)", c.Schedule)
	}
	sf.Kind, sf.Steps = ScheduleScenario, c.Steps
	return sf, nil
}

// checkSteps checks the plan's timeline against its cluster: a scenario's through its
// source (each problem at its place in the file, its processes too), a replayed one
// naming the file.
func (c Config) checkSteps(p *Plan) error {
	if p.Schedule.Kind == ScheduleScenario && c.Source != nil {
		return c.Source.Validate(p.Cluster)
	}
	err := faults.ValidateTimeline(p.Schedule.Steps, p.Cluster)
	if err != nil && c.Replay != "" {
		return fmt.Errorf("%s: %w", c.Replay, err)
	}
	return err
}

// checkProcesses checks that every extra process runs on a node that exists.
func checkProcesses(procs []Process, fc faults.Cluster) error {
	var errs []error
	for _, p := range procs {
		switch {
		case !slices.Contains(fc.Nodes, p.Node):
			errs = append(errs, fmt.Errorf("process %s: unknown node %q: nodes are %s", p.Name, p.Node, strings.Join(fc.Nodes, ", ")))
		case len(p.Command) == 0 || p.Command[0] == "":
			errs = append(errs, fmt.Errorf("process %s: no command", p.Name))
		}
	}
	return errors.Join(errs...)
}

// clientPort is the system's client port (for random dropport faults); 0 if unknown.
func clientPort(p *Plan) int {
	servers := p.Spec.Servers()
	if p.System == nil || len(servers) == 0 {
		return 0
	}
	n := servers[0]
	eps := p.System.ClientEndpoints(systems.Cluster{Members: []systems.Member{{Name: n.Name, IP: n.IP}}})
	if len(eps) == 0 {
		return 0
	}
	// A URL (etcd's http://IP:2379) or host:port (ZooKeeper's IP:2181).
	ps := ""
	if u, err := url.Parse(eps[0]); err == nil && u.Host != "" {
		ps = u.Port()
	} else if _, pt, err := net.SplitHostPort(eps[0]); err == nil {
		ps = pt
	}
	port, _ := strconv.Atoi(ps)
	return port
}
