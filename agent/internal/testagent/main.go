// Command testagent runs the agent exactly as `dt agent` does, for the agent package's
// tests when the dt binary cannot be built (cmd/dt is written by others in parallel).
//
//	testagent agent --socket S --run-dir D --run-id R --node N --parent-pid P
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/dtlab/dt/agent"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "agent" {
		fmt.Fprintln(os.Stderr, "usage: testagent agent --socket S --run-dir D --run-id R --node N [--parent-pid P]")
		os.Exit(2)
	}
	var opts agent.Options
	fs := flag.NewFlagSet("agent", flag.ExitOnError)
	opts.RegisterFlags(fs)
	_ = fs.Parse(os.Args[2:]) // ExitOnError
	opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := agent.Run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "testagent:", err)
		os.Exit(1)
	}
}
