package main

import (
	"context"
	"fmt"

	"github.com/dtlab/dt/topology"
	"github.com/spf13/cobra"
)

func newUpCmd() *cobra.Command {
	var tf topoFlags
	c := &cobra.Command{
		Use:   "up TOPOLOGY",
		Short: "Build a topology and keep it up until Ctrl-C or `dt down`",
		Example: `  dt up simple
  dt up simple --number-nodes 5 --number-clients 2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			spec, err := tf.build(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			live, err := topology.Up(ctx, spec, topology.Options{Datapath: tf.datapath, Command: "up"})
			if err != nil {
				return err
			}
			printNodes(live)
			fmt.Println("Ctrl-C or `dt down` tears it down; `dt exec NODE -- CMD`, `dt shell NODE`, `dt partition A B` act on it.")
			<-ctx.Done()
			fmt.Println("tearing down", live.State.RunID)
			return live.Down(context.Background())
		},
	}
	tf.register(c)
	return c
}
