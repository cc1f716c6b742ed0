package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/dtlab/dt/faults"
	"github.com/spf13/cobra"
)

func newFaultsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "faults",
		Short: "List the named faults, the step actions of scenario files, selectors and random kinds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 8, 2, ' ', 0)
			fmt.Fprintln(w, "Named faults (dt run SYSTEM TOPOLOGY WORKLOAD FAULT; T = --duration), each a timeline of steps:")
			for _, n := range faults.Names() {
				f, _ := faults.Lookup(n)
				fmt.Fprintf(w, "  %s\t%s\n", n, f.Describe())
			}
			fmt.Fprintln(w, "\nStep actions (scenario files, dt run -f, the prompt; see examples/scenarios/):")
			fmt.Fprintln(w, "  action\tfields\tneeds\twhat it does")
			for _, n := range faults.ActionNames() {
				a, _ := faults.LookupAction(n)
				var needs []string
				for _, c := range a.Form().Needs {
					needs = append(needs, string(c))
				}
				fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", n, orDash(strings.Join(faults.AcceptedFields(a), ",")), orDash(strings.Join(needs, ",")), a.Describe())
			}
			fmt.Fprintf(w, "\nTargets: node names, @ID (an earlier step's targets), or selectors resolved when the step fires:\n  %s\n",
				strings.Join(faults.Selectors, ", "))
			fmt.Fprintf(w, "Partition modes: %s\n", strings.Join(faults.PartitionModes, ", "))
			fmt.Fprintf(w, "Random schedule kinds (--schedule random --faults ...): %s\n", strings.Join(faults.RandomKinds(), ", "))
			return w.Flush()
		},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
