package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/dtlab/dt/ovs"
	"github.com/dtlab/dt/topology"
	"github.com/spf13/cobra"
)

func newPartitionCmd() *cobra.Command {
	var oneWay bool
	c := &cobra.Command{
		Use:   "partition A B",
		Short: "Cut traffic between two nodes or two groups of nodes (comma-separated) on a live topology",
		Example: `  dt partition s1 s2
  dt partition s1 s2 --one-way     # drop only s1 -> s2
  dt partition s1,c1 s2,s3`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			live, err := attachLive()
			if err != nil {
				return err
			}
			cut := topology.Cut{A: topology.SplitGroup(args[0]), B: topology.SplitGroup(args[1]), OneWay: oneWay}
			start := time.Now()
			if _, err := live.Partition(cmd.Context(), cut, ""); err != nil {
				return err
			}
			fmt.Printf("partitioned %s (rules installed in %s)\n", cut, time.Since(start).Round(time.Microsecond))
			return nil
		},
	}
	c.Flags().BoolVar(&oneWay, "one-way", false, "drop only traffic from A to B")
	return c
}

func newHealCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "heal [A B]",
		Short: "Remove one partition (between A and B, either direction) or, without arguments, all",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 && len(args) != 2 {
				return errors.New("heal takes no arguments (heal everything) or two groups A B")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			live, err := attachLive()
			if err != nil {
				return err
			}
			if len(args) == 0 {
				if err := live.HealAll(cmd.Context()); err != nil {
					return err
				}
				fmt.Println("healed all partitions")
				return nil
			}
			a, b := topology.SplitGroup(args[0]), topology.SplitGroup(args[1])
			for _, cut := range []topology.Cut{{A: a, B: b}, {A: a, B: b, OneWay: true}, {A: b, B: a, OneWay: true}} {
				if err := live.Heal(cmd.Context(), cookieOf(live, cut)); err != nil {
					return err
				}
			}
			fmt.Printf("healed %s <-> %s\n", args[0], args[1])
			return nil
		},
	}
}

// attachLive attaches to the live topology (--run, or the newest live one); dt must be root.
func attachLive() (*topology.Live, error) {
	if err := requireRoot(); err != nil {
		return nil, err
	}
	st, err := topology.FindLive(global.runID)
	if err != nil {
		return nil, err
	}
	return topology.Attach(st), nil
}

// cookieOf is the cookie `dt partition` used for this cut.
func cookieOf(live *topology.Live, cut topology.Cut) ovs.Cookie {
	return ovs.NewCookie(live.State.RunID, cut.Owner())
}
