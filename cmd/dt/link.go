package main

import (
	"errors"
	"fmt"

	"github.com/dtlab/dt/experiment"
	"github.com/dtlab/dt/shaping"
	"github.com/dtlab/dt/topology"
	"github.com/spf13/cobra"
)

func newLinkCmd() *cobra.Command {
	var delay, jitter, loss, rate string
	var clear bool
	c := &cobra.Command{
		Use:   "link A B",
		Short: "Set what the path between two nodes (or groups, comma-separated) does, both ways, on a live topology",
		Long: `link sets the one-way delay, jitter, loss and rate of the path between A and B, in both
directions, through the nodes' agents on a topology started with dt up (or dt run -d).
It replaces what the topology's links give that pair (--link-latency, a topology file's
links) until --clear gives them back; faults add on top of it.

Values: --delay and --jitter are durations (50ms; a bare number is ms), --loss a
percentage (5% or 5), --rate bits/s with a unit (10mbit, 500kbit). The backend is the
one the topology was started with (--shaper): netem, or userspace where the kernel has no
netem (its precision is about 0.2 ms per packet).`,
		Example: `  dt link s1 s2 --delay 50ms
  dt link s1 s2 --delay 20ms --jitter 2ms --loss 1%
  dt link s1,s2 s3 --rate 10mbit
  dt link s1 s2 --clear`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			imp, err := shaping.LinkFlags(delay, jitter, loss, rate).Impairment()
			if err != nil {
				return err
			}
			if clear != imp.IsZero() {
				if clear {
					return errors.New("--clear takes no --delay, --jitter, --loss or --rate")
				}
				return errors.New("say what the link does: --delay, --jitter, --loss, --rate, or --clear")
			}
			live, err := attachLive()
			if err != nil {
				return err
			}
			if err := experiment.ShapersFromState(live); err != nil {
				return err
			}
			as, bs := topology.SplitGroup(args[0]), topology.SplitGroup(args[1])
			if len(as) == 0 || len(bs) == 0 {
				return errors.New("link needs two nodes or groups of nodes")
			}
			for _, a := range as {
				for _, b := range bs {
					if err := live.ShapeLink(cmd.Context(), a, b, imp); err != nil {
						return err
					}
					if clear {
						fmt.Printf("%s <-> %s: cleared (the topology's links again)\n", a, b)
					} else {
						fmt.Printf("%s <-> %s: %s each way (%s)\n", a, b, imp, live.State.Shaper)
					}
				}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&delay, "delay", "", "one-way delay (50ms; a bare number is ms)")
	f.StringVar(&jitter, "jitter", "", "jitter of the delay: uniform within ±jitter")
	f.StringVar(&loss, "loss", "", "loss in percent (5% or 5)")
	f.StringVar(&rate, "rate", "", "rate limit with a unit: 10mbit, 500kbit, 1gbit")
	f.BoolVar(&clear, "clear", false, "remove what dt link set for the pair")
	return c
}
