package main

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/dtlab/dt/topology"
	"github.com/spf13/cobra"
)

func newDownCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Stop a live topology (the newest, or --run ID): its owner tears it down",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			st, err := topology.FindLive(global.runID)
			if err != nil {
				return err
			}
			if st.OwnerAlive() {
				// The owner holds the agents and the system: let it tear down in order.
				if err := syscall.Kill(st.Owner, syscall.SIGTERM); err != nil {
					return fmt.Errorf("signal owner pid %d: %w", st.Owner, err)
				}
				deadline := time.Now().Add(30 * time.Second)
				for time.Now().Before(deadline) {
					if _, err := topology.LoadState(st.Dir); err != nil {
						fmt.Println("down:", st.RunID)
						return nil
					}
					time.Sleep(50 * time.Millisecond)
				}
				return fmt.Errorf("owner pid %d did not tear down run %s within 30s; try dt clean --all", st.Owner, st.RunID)
			}
			if err := topology.Teardown(context.Background(), st); err != nil {
				return err
			}
			fmt.Println("down:", st.RunID)
			return nil
		},
	}
}
