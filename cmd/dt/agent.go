package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/dtlab/dt/agent"
)

// newAgentCmd is the hidden `dt agent` verb: the process the controller starts inside
// each node's namespace (see agent.Launch). It serves the agent API on --socket until
// SIGTERM/SIGINT, a shutdown request, or the end of --parent-pid.
func newAgentCmd() *cobra.Command {
	var opts agent.Options
	cmd := &cobra.Command{
		Use:          "agent",
		Short:        "Run the per-node agent (started by dt itself inside a node's namespace)",
		Hidden:       true,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			// The agent's stderr is its log file: Info there by default, Debug with -v.
			level := slog.LevelInfo
			if slog.Default().Enabled(ctx, slog.LevelDebug) {
				level = slog.LevelDebug
			}
			opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			return agent.Run(ctx, opts)
		},
	}
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	opts.RegisterFlags(fs)
	cmd.Flags().AddGoFlagSet(fs)
	return cmd
}
