package main

import (
	"strings"

	"github.com/dtlab/dt/experiment"
	"github.com/dtlab/dt/shaping"
	"github.com/spf13/cobra"
)

// registerLinkFlags binds the link impairments (reckon's --link-* flags, end to end
// between two nodes), the shaping backend and the amounts of the faults that degrade
// links; dt up and dt run share them.
func registerLinkFlags(c *cobra.Command, cfg *experiment.Config) {
	f := c.Flags()
	f.Float64Var(&cfg.LinkLatency, "link-latency", cfg.LinkLatency, "one-way latency between two nodes, end to end, in ms (simple: between any two nodes, RTT = 2x; wan: between sites)")
	f.Float64Var(&cfg.LinkLoss, "link-loss", cfg.LinkLoss, "loss between two nodes, end to end, in percent (0..100)")
	f.Float64Var(&cfg.LinkJitter, "link-jitter", cfg.LinkJitter, "jitter as a fraction of --link-latency, 0..1 (reckon's meaning: 0.1 is ±10%)")
	f.StringVar(&cfg.LinkBandwidth, "link-bandwidth", cfg.LinkBandwidth, "rate limit of each sender towards each node: 10mbit, 500kbit (a bare number is Mbit/s)")
	f.StringVar(&cfg.Shaper, "shaper", cfg.Shaper, "link shaping backend: "+strings.Join(shaping.Names(), ", ")+" (auto: netem if the kernel has it, else userspace; config.json records which ran)")
	f.StringVar(&cfg.FaultDelay, "fault-delay", cfg.FaultDelay, "slow-* faults: added one-way delay (100ms; a bare number is ms)")
	f.StringVar(&cfg.FaultJitter, "fault-jitter", cfg.FaultJitter, "slow-* faults: jitter of the added delay")
	f.Float64Var(&cfg.FaultLoss, "fault-loss", cfg.FaultLoss, "lossy-* faults: added loss in percent")
	f.StringVar(&cfg.FaultRate, "fault-rate", cfg.FaultRate, "bandwidth-limit* faults: rate limit (1mbit; a bare number is Mbit/s)")
}
