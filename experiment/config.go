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
	"math"
	"strings"
	"time"

	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/shaping"
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
	WriteRatio      float64 `json:"write_ratio"`      // --write-ratio W, shorthand for Ops read=1-W,write=W; < 0 = not given
	Ops             string  `json:"ops"`              // op mix as weights, "read=40,write=40,cas=20"; "" = WriteRatio's, or the system's default (OpMix)
	ReadConsistency string  `json:"read_consistency"` // linearizable | serializable
	MaxInflight     int     `json:"max_inflight"`
	OpTimeout       float64 `json:"op_timeout"`
	ClientEndpoints string  `json:"client_endpoints"` // all | one

	// Disk is what the members' data dirs are: plain directories, or served through dt's
	// disk layer (a FUSE passthrough per member, where the disk faults act).
	Disk string `json:"disk"`

	FailureTimeout float64 `json:"failure_timeout"`
	PreVote        bool    `json:"pre_vote"`
	SystemBin      string  `json:"system_bin,omitempty"`
	// SystemOpts are --system-opt KEY=VALUE, checked and applied by the system
	// (systems.Optioner): etcd's version, bin and pre-vote. Plan applies them to
	// SystemBin, PreVote and SystemVersion.
	SystemOpts map[string]string `json:"system_opts,omitempty"`
	// SystemVersion is a release that Start makes before the run (etcd: built from the Go
	// module proxy, "v3.6.16"); config.json's versions say what really ran.
	SystemVersion string `json:"system_version,omitempty"`

	MTBF       float64 `json:"mtbf"`
	KillN      int     `json:"kill_n"`
	KillTarget string  `json:"kill_target"`
	Seed       int64   `json:"seed"`

	// Links between two nodes, end to end, one way (reckon's --link-*; see
	// topology.LinkOptions), the shaping backend, and the amounts of the faults that
	// degrade links (slow-network, lossy-network, bandwidth-limit and the -leader ones).
	LinkLatency   float64 `json:"link_latency"`   // ms
	LinkLoss      float64 `json:"link_loss"`      // percent
	LinkJitter    float64 `json:"link_jitter"`    // a fraction of the latency
	LinkBandwidth string  `json:"link_bandwidth"` // "10mbit"; a bare number is Mbit/s; "" = unlimited
	Shaper        string  `json:"shaper"`         // auto | netem | userspace (config.json's shaper_backend says which ran)
	FaultDelay    string  `json:"fault_delay"`    // added one-way delay, "100ms" (a bare number is ms)
	FaultJitter   string  `json:"fault_jitter"`   // jitter of the added delay
	FaultLoss     float64 `json:"fault_loss"`     // added loss, percent
	FaultRate     string  `json:"fault_rate"`     // rate limit, "1mbit" (a bare number is Mbit/s)

	// Where the fault timeline comes from when it is not the positional fault (Fault is
	// then only the run's label): a scenario file (its Steps and Processes set by the
	// CLI), a schedule.json to replay, or a seeded random schedule ("random", drawing
	// RandomFaults with mean gap MTBF).
	Scenario     string        `json:"scenario,omitempty"`
	Replay       string        `json:"replay,omitempty"`
	Schedule     string        `json:"schedule,omitempty"`
	RandomFaults []string      `json:"random_faults,omitempty"`
	Steps        []faults.Step `json:"-"` // in schedule.json
	Processes    []Process     `json:"processes,omitempty"`
	// Source, when the steps and processes come from a scenario file, checks them with
	// their places in it (see StepSource).
	Source        StepSource `json:"-"`
	SnapshotCount int        `json:"snapshot_count,omitempty"` // etcd --snapshot-count; 0 = etcd's default

	ResultsRoot  string  `json:"results_root"`
	CheckTimeout float64 `json:"check_timeout"` // seconds for the linearizability check
	Settle       float64 `json:"settle"`        // seconds to wait after the workload for stragglers
}

// The kinds of data dir (--disk).
const (
	DiskPlain = "plain" // a directory under the runtime dir
	DiskFUSE  = "fuse"  // the disk layer: a FUSE passthrough over it, its files beside it
)

// Defaults are reckon's defaults where reckon has one.
func Defaults() Config {
	return Config{
		System: "etcd", Topology: "simple", Workload: "uniform", Fault: "none",
		Nodes: 3, Clients: 1, Datapath: "auto",
		Duration: 60, Rate: 100, Arrival: "uniform", MaxKey: 1, PayloadSize: 10, WriteRatio: -1,
		ReadConsistency: workloads.ReadLinearizable, MaxInflight: workloads.DefaultMaxInflight, OpTimeout: workloads.DefaultOpTimeout, ClientEndpoints: "all",
		FailureTimeout: 1.0, MTBF: 1.0, KillN: 1, KillTarget: "leader", Disk: DiskPlain,
		Shaper: shaping.NameAuto, FaultDelay: "100ms", FaultLoss: 10, FaultRate: "1mbit",
		ResultsRoot: "results", CheckTimeout: 30,
	}
}

// FaultParams are the knobs of the fault schedule, with the amounts of the degrading
// faults parsed; the error names the flag.
func (c Config) FaultParams() (faults.Params, error) {
	p := faults.Params{
		Duration:   secs(c.Duration),
		MTBF:       secs(c.MTBF),
		KillN:      c.KillN,
		KillTarget: c.KillTarget,
		Loss:       c.FaultLoss,
	}
	var errs []error
	imp, err := shaping.Flags{Delay: shaping.Flag{Name: "--fault-delay", Value: c.FaultDelay},
		Jitter: shaping.Flag{Name: "--fault-jitter", Value: c.FaultJitter},
		Rate:   shaping.Flag{Name: "--fault-rate", Value: c.FaultRate}, BareRate: 1e6}.Parse()
	if err != nil {
		errs = append(errs, err)
	}
	p.Delay, p.Jitter, p.Rate = imp.Delay, imp.Jitter, imp.Rate
	if math.IsNaN(c.FaultLoss) || c.FaultLoss < 0 || c.FaultLoss > 100 {
		errs = append(errs, fmt.Errorf("--fault-loss %g: want 0..100 (percent)", c.FaultLoss))
	}
	return p, errors.Join(errs...)
}

// BuildOptions are the topology builder's options: the node counts and the links.
func (c Config) BuildOptions() (topology.BuildOptions, error) {
	o := topology.BuildOptions{Servers: c.Nodes, Clients: c.Clients, Link: topology.LinkOptions{
		Latency: time.Duration(c.LinkLatency * float64(time.Millisecond)),
		Jitter:  c.LinkJitter,
		Loss:    c.LinkLoss,
	}}
	bw, err := shaping.Flags{Rate: shaping.Flag{Name: "--link-bandwidth", Value: c.LinkBandwidth}, BareRate: 1e6}.Parse()
	o.Link.Bandwidth = bw.Rate
	return o, err
}

// OpMix is the run's op mix: Ops when given, else WriteRatio's when given, else the
// default: workloads.DefaultMix (read=40,write=40,cas=20) where the system's client can
// compare-and-set, DefaultMixNoCAS (read=50,write=50) where it cannot. Ops and
// WriteRatio both given must agree on the share of writes.
func (c Config) OpMix() (workloads.Mix, error) {
	given := c.WriteRatio >= 0
	if given && !(c.WriteRatio <= 1) || math.IsNaN(c.WriteRatio) {
		return workloads.Mix{}, fmt.Errorf("--write-ratio %v: must be in [0, 1] (the share of writes; the rest are reads)", c.WriteRatio)
	}
	switch {
	case c.Ops != "":
		m, err := workloads.ParseMix(c.Ops)
		if err != nil {
			return m, fmt.Errorf("--ops: %w", err)
		}
		if given && math.Abs(m.Share(records.KindWrite)-c.WriteRatio) > 1e-9 {
			return m, fmt.Errorf("--ops %s and --write-ratio %v disagree on the share of writes: give one of them", c.Ops, c.WriteRatio)
		}
		return m, nil
	case given:
		return workloads.WriteMix(c.WriteRatio), nil
	}
	if sys, err := systems.Lookup(c.System); err == nil && !systems.Features(sys).CAS {
		return workloads.DefaultMixNoCAS, nil
	}
	return workloads.DefaultMix, nil
}

// withOpMix records the mix the run uses in Ops and its share of writes in WriteRatio,
// for config.json (an invalid mix is left as it is, for Validate to report).
func (c Config) withOpMix() Config {
	if m, err := c.OpMix(); err == nil {
		c.Ops, c.WriteRatio = m.String(), m.Share(records.KindWrite)
	}
	return c
}

// clientSpec is client name's share of the workload: the rate split evenly.
func (c Config) clientSpec(name string, startUnixNano int64, endpoints []string) workloads.Spec {
	mix, err := c.OpMix()
	if err != nil {
		mix = workloads.DefaultMixNoCAS // Validate reports the error
	}
	s := workloads.Spec{
		Name: c.Workload, Client: name, Rate: c.Rate / float64(max(1, c.Clients)), Arrival: c.Arrival,
		Duration: c.Duration, StartUnixNano: startUnixNano, MaxKey: c.MaxKey, PayloadSize: c.PayloadSize,
		Mix: mix, ReadConsistency: c.ReadConsistency, MaxInflight: c.MaxInflight, OpTimeout: c.OpTimeout,
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
