package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/dtlab/dt/topology"
	"github.com/spf13/cobra"
)

func newCleanCmd() *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:   "clean",
		Short: "Remove what dt created (namespaces, veths, OVS daemons, processes, files) and nothing else",
		Long: `clean reads every run's state file under /run/dt and removes exactly the objects it
lists, each checked for the run id it carries. Runs whose owner is still alive are left
alone unless --all is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			states, errs := topology.ListStates()
			cleaned := 0
			for _, s := range states {
				if s.OwnerAlive() && !all {
					fmt.Printf("skip %s: owner pid %d is alive (dt down, or dt clean --all)\n", s.RunID, s.Owner)
					continue
				}
				if err := topology.Teardown(context.Background(), s); err != nil {
					errs = append(errs, fmt.Errorf("run %s: %w", s.RunID, err))
					continue
				}
				fmt.Printf("removed run %s (%d namespaces, %d bridges)\n", s.RunID, len(s.Namespaces), len(s.Bridges))
				cleaned++
			}
			if cleaned == 0 && len(errs) == 0 {
				fmt.Println("nothing to clean")
			}
			return errors.Join(errs...)
		},
	}
	c.Flags().BoolVar(&all, "all", false, "also remove runs whose owner is still alive")
	return c
}
