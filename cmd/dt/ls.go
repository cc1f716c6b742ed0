package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/dtlab/dt/topology"
	"github.com/spf13/cobra"
)

func newLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List topologies dt created on this host",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			states, errs := topology.ListStates()
			for _, e := range errs {
				fmt.Fprintln(os.Stderr, "warning:", e)
			}
			if len(states) == 0 {
				fmt.Println("no topologies")
				return nil
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "RUN\tCOMMAND\tOWNER\tTOPOLOGY\tNODES\tCREATED")
			for _, s := range states {
				owner := fmt.Sprintf("%d", s.Owner)
				if !s.OwnerAlive() {
					owner += " (dead: dt clean)"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", s.RunID, s.Command, owner, s.Spec.Name,
					strings.Join(s.Spec.NodeNames(), ","), s.Created.Format("2006-01-02 15:04:05Z"))
			}
			return w.Flush()
		},
	}
}
