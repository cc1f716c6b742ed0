package experiment

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/shaping"
)

// planConfig is a valid run that needs no etcd binary to plan (the Checker only looks).
func planConfig(t *testing.T) Config {
	cfg := Defaults()
	cfg.Fault, cfg.Duration, cfg.Seed = "leader", 30, 7
	cfg.ResultsRoot = filepath.Join(t.TempDir(), "results")
	cfg.Shaper = shaping.NameUserspace // no netem probe: the plan tests run anywhere
	return cfg
}

// TestPlanResolves: a plan holds everything a build needs, resolved once.
func TestPlanResolves(t *testing.T) {
	cfg := planConfig(t)
	cfg.Seed = 0
	cfg.Topology, cfg.Nodes = "wan", 5
	cfg.FaultDelay, cfg.FaultJitter = "300ms", "20"
	p, err := cfg.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if p.Config.Seed == 0 {
		t.Error("the plan kept seed 0: the run would not record the seed it ran with")
	}
	// wan decides the clients: one per site.
	if p.Config.Nodes != 5 || p.Config.Clients != 5 || len(p.Spec.Nodes) != 10 {
		t.Errorf("plan of wan -n 5: %d servers, %d clients, %d nodes", p.Config.Nodes, p.Config.Clients, len(p.Spec.Nodes))
	}
	if p.System == nil || p.Shaper != shaping.NameUserspace {
		t.Errorf("system %v, shaper %q", p.System, p.Shaper)
	}
	if p.Params.Delay != 300*time.Millisecond || p.Params.Jitter != 20*time.Millisecond || p.Params.MTBF != time.Second {
		t.Errorf("params: %+v", p.Params)
	}
	if p.Schedule.Kind != ScheduleFault || p.Schedule.Name != "leader" || len(p.Schedule.Steps) == 0 || p.Schedule.Seed != p.Config.Seed {
		t.Errorf("schedule: %+v", p.Schedule)
	}
	if len(p.Cluster.Nodes) != 10 || len(p.Cluster.Servers) != 5 || !slices.Contains(p.Cluster.Nodes, "c5") ||
		!slices.Equal(p.Cluster.Caps, slices.DeleteFunc(slices.Clone(faults.AllCapabilities), func(c faults.Capability) bool { return c == faults.CapDisk })) {
		t.Errorf("cluster: %+v", p.Cluster)
	}

	s := p.Session()
	if s.Config.Fault != FaultSession || s.Schedule.Kind != ScheduleSession || len(s.Schedule.Steps) != 0 ||
		s.Params != p.Params || p.Config.Fault != "leader" {
		t.Errorf("session of the plan: fault %q, schedule %+v, params %+v (the plan's fault is now %q)",
			s.Config.Fault, s.Schedule, s.Params, p.Config.Fault)
	}
}

// TestPlanSystemOpts: --system-opt lands in the config the run records, and a release to
// build is only named by the plan (it builds nothing).
func TestPlanSystemOpts(t *testing.T) {
	cfg := planConfig(t)
	cfg.SystemOpts = map[string]string{"version": "3.6.16", "pre-vote": "true"}
	p, err := cfg.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if p.Config.SystemVersion != "v3.6.16" || !p.Config.PreVote || p.Config.SystemBin != "" {
		t.Errorf("plan config: version %q pre-vote %v bin %q", p.Config.SystemVersion, p.Config.PreVote, p.Config.SystemBin)
	}
	cfg.SystemOpts = map[string]string{"bin": "/usr/bin/etcd"}
	if p, err = cfg.Plan(); err != nil || p.Config.SystemBin != "/usr/bin/etcd" {
		t.Errorf("bin=/usr/bin/etcd: %v", err)
	}
}

// TestPlanEveryFault: every named fault's timeline passes the checks a scenario's steps
// get, on the clusters it is meant for.
func TestPlanEveryFault(t *testing.T) {
	for _, name := range faults.Names() {
		for _, n := range []int{3, 5} {
			cfg := planConfig(t)
			cfg.Fault, cfg.Nodes = name, n
			if _, err := cfg.Plan(); err != nil {
				t.Errorf("%s with %d servers: %v", name, n, err)
			}
		}
	}
}

// TestPlanRefusesEverything: every problem of the input is reported at once, by Plan and
// by Validate, before anything is created.
func TestPlanRefusesEverything(t *testing.T) {
	at := faults.Duration(time.Second)
	cases := []struct {
		name string
		mod  func(*Config)
		want []string
	}{
		{"all at once", func(c *Config) {
			c.System, c.Workload, c.FaultDelay, c.LinkBandwidth, c.Shaper, c.Datapath = "riak", "bursty", "soon", "fast", "tc", "fpga"
		}, []string{`"riak"`, `"bursty"`, `--fault-delay "soon"`, `--link-bandwidth "fast"`, `--shaper "tc"`, `--datapath: unknown datapath "fpga"`}},
		{"unknown fault", func(c *Config) { c.Fault = "meteor" }, []string{`"meteor"`}},
		{"the session label is no fault", func(c *Config) { c.Fault = FaultSession }, []string{`"debug"`}},
		{"a step on an unknown node", func(c *Config) {
			c.Scenario, c.Fault = "s.yaml", "s"
			c.Steps = []faults.Step{{Action: "kill", Targets: []string{"s9"}, At: &at}}
		}, []string{`unknown target "s9"`, "s1, s2, s3, c1"}},
		{"a disk fault without the disk layer", func(c *Config) {
			c.Scenario, c.Fault = "s.yaml", "s"
			c.Steps = []faults.Step{{Action: "disk-error", Targets: []string{"s1"}, Errno: "EIO", At: &at}}
		}, []string{`disk-error needs disk (the disk layer: dt run --disk fuse)`}},
		{"an unknown disk", func(c *Config) { c.Disk = "nvme" }, []string{`--disk "nvme": valid are plain, fuse`}},
		{"a process on an unknown node", func(c *Config) {
			c.Processes = []Process{{Node: "c9", Name: "probe", Command: []string{"true"}}}
		}, []string{`process probe: unknown node "c9": nodes are s1, s2, s3, c1`}},
		{"a process without a command", func(c *Config) {
			c.Processes = []Process{{Node: "c1", Name: "probe"}}
		}, []string{"process probe: no command"}},
		{"random schedule, bad kind", func(c *Config) {
			c.Schedule, c.RandomFaults = ScheduleRandom, []string{"meteor"}
		}, []string{`"meteor"`}},
		{"bad schedule", func(c *Config) { c.Schedule = "chaos" }, []string{"valid are random"}},
		{"kill more than there are", func(c *Config) { c.Fault, c.KillN = "kill-n", 4 }, []string{"kill-n"}},
		{"an etcd release older than 3.5", func(c *Config) { c.SystemOpts = map[string]string{"version": "3.4.23"} },
			[]string{`--system-opt version: etcd version "3.4.23": want a release of go.etcd.io/etcd/server/v3, 3.5.0 or newer, as MAJOR.MINOR.PATCH`}},
		{"not a version", func(c *Config) { c.SystemOpts = map[string]string{"version": "latest"} }, []string{`"latest"`, "MAJOR.MINOR.PATCH"}},
		{"an unknown system option", func(c *Config) { c.SystemOpts = map[string]string{"color": "red"} },
			[]string{"--system-opt color: unknown key; valid: version, bin, pre-vote"}},
		{"a version and a binary", func(c *Config) {
			c.SystemBin, c.SystemOpts = "/usr/bin/etcd", map[string]string{"version": "3.6.16"}
		}, []string{"give one"}},
	}
	for _, tc := range cases {
		cfg := planConfig(t)
		tc.mod(&cfg)
		p, err := cfg.Plan()
		verr := cfg.Validate()
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: Plan: %v, want %q", tc.name, err, w)
			}
			if verr == nil || !strings.Contains(verr.Error(), w) {
				t.Errorf("%s: Validate: %v, want %q", tc.name, verr, w)
			}
		}
		if p != nil {
			t.Errorf("%s: a refused config has a plan", tc.name)
		}
	}
}

// TestRefusedRunCreatesNothing: Run of a config with a bad step or a process on an
// unknown node stops at the plan: no results directory, no namespace, no runtime dir.
func TestRefusedRunCreatesNothing(t *testing.T) {
	rt := filepath.Join(t.TempDir(), "rt")
	t.Setenv("DT_RUNTIME_DIR", rt)
	netnsBefore, _ := os.ReadDir("/var/run/netns")
	at := faults.Duration(2 * time.Second)
	for name, mod := range map[string]func(*Config){
		"bad step": func(c *Config) {
			c.Scenario, c.Fault = "s.yaml", "s"
			c.Steps = []faults.Step{{Action: "pause", Targets: []string{"leader"}, At: &at}, {Action: "explode", Targets: []string{"s1"}}}
		},
		"process on an unknown node": func(c *Config) {
			c.Processes = []Process{{Node: "c9", Name: "probe", Command: []string{"dt", "probe", "etcd"}}}
		},
	} {
		cfg := planConfig(t)
		mod(&cfg)
		out, err := Run(context.Background(), cfg, Options{Exe: dtBin})
		if err == nil || out != nil {
			t.Errorf("%s: run accepted (%v, %+v)", name, err, out)
		}
		if _, err := os.Stat(cfg.ResultsRoot); err == nil {
			t.Errorf("%s: a results directory was created for a refused run", name)
		}
	}
	if _, err := os.Stat(rt); err == nil {
		t.Error("a runtime dir was created for refused runs")
	}
	if netnsAfter, _ := os.ReadDir("/var/run/netns"); len(netnsAfter) != len(netnsBefore) {
		t.Errorf("namespaces before %d, after %d", len(netnsBefore), len(netnsAfter))
	}
}

// TestNetworkPlan: dt up TOPOLOGY plans the network only: no system, workload or faults
// are asked for, the links and the backend are.
func TestNetworkPlan(t *testing.T) {
	cfg := planConfig(t)
	cfg.System, cfg.Workload, cfg.Fault = "none-here", "none-here", "none-here"
	cfg.LinkLatency = 20
	p, err := cfg.NetworkPlan()
	if err != nil {
		t.Fatal(err)
	}
	if p.System != nil || len(p.Schedule.Steps) != 0 || !p.Spec.HasImpairments() || len(p.Cluster.Nodes) != 4 {
		t.Errorf("network plan: system %v, schedule %+v, impairments %v, cluster %+v", p.System, p.Schedule, p.Spec.HasImpairments(), p.Cluster)
	}
	if slices.Contains(p.Cluster.Caps, faults.CapProcesses) || !slices.Contains(p.Cluster.Caps, faults.CapProbe) {
		t.Errorf("a network without a system offers %v", p.Cluster.Caps)
	}
	if _, err := Start(context.Background(), p, Options{}); err == nil || !strings.Contains(err.Error(), "plan of a run") {
		t.Errorf("Start of a network plan: %v", err)
	}
	cfg.LinkBandwidth, cfg.Datapath = "10", "fpga"
	if _, err := cfg.NetworkPlan(); err == nil || !strings.Contains(err.Error(), "--datapath") {
		t.Errorf("bad datapath: %v", err)
	}
}

// TestPlanDiskLayer: with --disk fuse the plan offers the disk capability, and the disk
// faults plan; random schedules draw them.
func TestPlanDiskLayer(t *testing.T) {
	cfg := planConfig(t)
	cfg.Disk = DiskFUSE
	at := faults.Duration(time.Second)
	cfg.Scenario, cfg.Fault = "s.yaml", "s"
	cfg.Steps = []faults.Step{{Action: "disk-error", Targets: []string{"s1"}, Errno: "EIO", Ops: faults.Words{"fsync"}, At: &at},
		{Action: "power-loss", Targets: []string{"all"}}}
	p, err := cfg.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(p.Cluster.Caps, faults.CapDisk) {
		t.Errorf("caps with --disk fuse: %v", p.Cluster.Caps)
	}
	cfg.Scenario, cfg.Steps, cfg.Schedule, cfg.RandomFaults = "", nil, ScheduleRandom, []string{"disk-slow", "power-loss"}
	cfg.MTBF = 2
	p, err = cfg.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Schedule.Steps) == 0 {
		t.Error("random schedule of disk kinds drew nothing")
	}
}
