package main

import (
	"errors"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

// globalFlags are shared by every verb.
type globalFlags struct {
	verbose bool
	runID   string
}

var global globalFlags

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "dt",
		Short: "Test distributed systems under network and process faults on one Linux host",
		Long: `dt emulates a cluster on one host — a network namespace per node, linked through a
private Open vSwitch bridge — runs a real system in it, injects faults on a schedule and
records every client operation.

  dt run etcd simple uniform leader      run an experiment
  dt up simple                            build a topology and stay in the foreground
  dt exec s1 -- ip addr                   run a command on a node
  dt partition s1 s2 / dt heal            cut and heal links on a live topology
  dt clean                                remove everything dt created, and nothing else`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			level := slog.LevelWarn
			if global.verbose {
				level = slog.LevelDebug
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
		},
	}
	root.PersistentFlags().BoolVarP(&global.verbose, "verbose", "v", false, "log what dt does")
	root.PersistentFlags().StringVar(&global.runID, "run", "", "run id of the live topology to act on (default: the newest live one; see dt ls)")
	for _, c := range verbs() {
		root.AddCommand(c)
	}
	return root
}

// verbs lists every subcommand; each lives in its own file.
func verbs() []*cobra.Command {
	return []*cobra.Command{
		newRunCmd(), newSweepCmd(), newUpCmd(), newDownCmd(), newLsCmd(), newExecCmd(), newShellCmd(),
		newPartitionCmd(), newHealCmd(), newLinkCmd(), newCleanCmd(), newReportCmd(), newCompareCmd(), newAgentCmd(), newProbeCmd(), newFaultsCmd(),
	}
}

// requireRoot fails with a clear message when dt is not root.
func requireRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("this verb must run as root (it creates network namespaces, veths and an Open vSwitch instance): try sudo dt VERB")
	}
	return nil
}
