// Package experiment runs one experiment end to end: it builds the run directory,
// realises the topology, starts an agent in every namespace, starts the system through
// them, streams the workload's records to disk as they arrive, fires the fault schedule,
// watches leader and term, and tears everything down — leaving a readable history even
// when the run is interrupted. It wires the other packages together and holds no
// kernel, OVS or system knowledge of its own.
package experiment

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/systems"
	"github.com/dtlab/dt/topology"
	"github.com/dtlab/dt/workloads"
)

// Config is every parameter of a run; it is written to config.json.
type Config struct {
	System   string `json:"system"`
	Topology string `json:"topology"`
	Workload string `json:"workload"`
	Fault    string `json:"fault"`

	Nodes    int    `json:"number_nodes"`
	Clients  int    `json:"number_clients"`
	Datapath string `json:"datapath"`

	Duration        float64 `json:"duration"` // seconds of workload (reckon's T)
	Rate            float64 `json:"rate"`     // total ops/s over all clients
	Arrival         string  `json:"arrival_process"`
	MaxKey          int     `json:"max_key"`
	PayloadSize     int     `json:"payload_size"`
	WriteRatio      float64 `json:"write_ratio"`
	MaxInflight     int     `json:"max_inflight"`
	OpTimeout       float64 `json:"op_timeout"`
	ClientEndpoints string  `json:"client_endpoints"` // all | one

	FailureTimeout float64 `json:"failure_timeout"`
	PreVote        bool    `json:"pre_vote"`
	SystemBin      string  `json:"system_bin,omitempty"`

	MTBF       float64 `json:"mtbf"`
	KillN      int     `json:"kill_n"`
	KillTarget string  `json:"kill_target"`
	Seed       int64   `json:"seed"`

	ResultsRoot  string  `json:"results_root"`
	CheckTimeout float64 `json:"check_timeout"` // seconds for the linearizability check
	Settle       float64 `json:"settle"`        // seconds to wait after the workload for stragglers
}

// Defaults are reckon's defaults where reckon has one.
func Defaults() Config {
	return Config{
		System: "etcd", Topology: "simple", Workload: "uniform", Fault: "none",
		Nodes: 3, Clients: 1, Datapath: "auto",
		Duration: 60, Rate: 100, Arrival: "uniform", MaxKey: 1, PayloadSize: 10, WriteRatio: 1.0,
		MaxInflight: workloads.DefaultMaxInflight, OpTimeout: workloads.DefaultOpTimeout, ClientEndpoints: "all",
		FailureTimeout: 1.0, MTBF: 1.0, KillN: 1, KillTarget: "leader",
		ResultsRoot: "results", CheckTimeout: 30,
	}
}

// Validate checks every name and value, naming the bad one and the valid choices.
func (c Config) Validate() error {
	var errs []error
	if _, err := systems.Lookup(c.System); err != nil {
		errs = append(errs, err)
	}
	if _, err := topology.Build(c.Topology, topology.BuildOptions{Servers: c.Nodes, Clients: c.Clients}); err != nil {
		errs = append(errs, err)
	}
	if _, err := workloads.Lookup(c.Workload); err != nil {
		errs = append(errs, err)
	}
	if _, err := faults.Lookup(c.Fault); err != nil {
		errs = append(errs, err)
	} else if err := faults.ValidateParams(c.Fault, c.faultParams(), c.Nodes); err != nil {
		errs = append(errs, err)
	}
	if c.Clients < 1 {
		errs = append(errs, fmt.Errorf("--number-clients %d: a run needs at least one client", c.Clients))
	}
	switch c.ClientEndpoints {
	case "all", "one":
	default:
		errs = append(errs, fmt.Errorf("--client-endpoints %q: valid are all, one", c.ClientEndpoints))
	}
	if c.FailureTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--failure-timeout %v: must be > 0 seconds", c.FailureTimeout))
	}
	spec := c.clientSpec("c1", 0, nil)
	if err := workloads.ValidateSpec(spec); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c Config) faultParams() faults.Params {
	return faults.Params{
		Duration:   secs(c.Duration),
		MTBF:       secs(c.MTBF),
		KillN:      c.KillN,
		KillTarget: c.KillTarget,
	}
}

// clientSpec is client name's share of the workload: the rate split evenly.
func (c Config) clientSpec(name string, startUnixNano int64, endpoints []string) workloads.Spec {
	s := workloads.Spec{
		Name: c.Workload, Client: name, Rate: c.Rate / float64(max(1, c.Clients)), Arrival: c.Arrival,
		Duration: c.Duration, StartUnixNano: startUnixNano, MaxKey: c.MaxKey, PayloadSize: c.PayloadSize,
		WriteRatio: c.WriteRatio, MaxInflight: c.MaxInflight, OpTimeout: c.OpTimeout,
		Seed: c.Seed + int64(hash(name)), System: c.System, Endpoints: endpoints,
	}
	return s.WithDefaults()
}

// Name is system-topology-workload-fault, the run directory's parent.
func (c Config) Name() string {
	topo := c.Topology
	if i := strings.LastIndexAny(topo, "/"); i >= 0 {
		topo = topo[i+1:]
	}
	topo = strings.TrimSuffix(strings.TrimSuffix(topo, ".yaml"), ".yml")
	return strings.Join([]string{c.System, topo, c.Workload, c.Fault}, "-")
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func hash(s string) uint32 {
	var h uint32 = 2166136261
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
