package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/dtlab/dt/topology"
	"github.com/spf13/cobra"
)

func newCleanCmd() *cobra.Command {
	var all, orphans bool
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
			for _, o := range topology.Orphans() {
				if !orphans {
					cleaned++ // not "nothing to clean": there is, on request
					fmt.Printf("orphan run %s (%d namespaces, %d veths, no state file here): dt clean --orphans removes it\n", o.RunID, len(o.Namespaces), len(o.Veths))
					continue
				}
				if err := topology.Teardown(context.Background(), o); err != nil {
					errs = append(errs, fmt.Errorf("orphan run %s: %w", o.RunID, err))
					continue
				}
				fmt.Printf("removed orphan run %s (%d namespaces, %d veths)\n", o.RunID, len(o.Namespaces), len(o.Veths))
				cleaned++
			}
			if cleaned == 0 && len(errs) == 0 {
				fmt.Println("nothing to clean")
			}
			return errors.Join(errs...)
		},
	}
	c.Flags().BoolVar(&all, "all", false, "also remove runs whose owner is still alive")
	c.Flags().BoolVar(&orphans, "orphans", false, "also remove runs with no state file here (namespaces dt-<id>-*, veths tagged dt-run-id=<id>, processes with DT_RUN_ID=<id>); a live run of another DT_RUNTIME_DIR looks the same")
	return c
}
