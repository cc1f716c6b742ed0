package main

import (
	"github.com/spf13/cobra"

	"github.com/dtlab/dt/results"
)

// newCompareCmd is `dt compare RUN_DIR...`: overlay several runs in one plot and one table.
func newCompareCmd() *cobra.Command {
	var outDir string
	c := &cobra.Command{
		Use:   "compare RUN_DIR...",
		Short: "Overlay several runs: throughput and p99 latency against time since the fault start, and a table",
		Long: `compare reads each run directory and draws its successful ops/s and p99 latency per
second against the time since its first fault started (the workload start when there is no
fault), all runs in one plot (compare.png, compare.svg), with one table row per run
(compare.csv, also printed) and the time series behind the plot (compare_timeseries.csv).
Runs are labelled by the parameters that differ between them. The linearizability column
is the verdict of each run's last analysis (dt run or dt report).`,
		Example: `  dt compare results/etcd-simple-uniform-leader/*
  dt compare results/etcd-simple-uniform-leader/latest results/etcd-pre-vote-simple-uniform-leader/latest -o /tmp/cmp`,
		Args:         cobra.MinimumNArgs(1),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := outDir
			if dir == "" {
				dir = defaultCompareDir(args)
			}
			return results.CompareTo(cmd.OutOrStdout(), args, dir) // its errors say "compare: ..."
		},
	}
	c.Flags().StringVarP(&outDir, "out", "o", "", "directory for the plot and tables (default: compare-<UTC time> beside the runs)")
	return c
}
