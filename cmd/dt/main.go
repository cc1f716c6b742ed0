// Command dt tests distributed systems under network and process faults on one Linux
// host. See README.md; `dt --help` lists the verbs.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if err := run(); err != nil {
		if !errors.Is(err, errSilent) {
			fmt.Fprintln(os.Stderr, "dt:", err)
		}
		os.Exit(1)
	}
}

// errSilent is returned when the error was already reported.
var errSilent = errors.New("reported")

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return newRootCmd().ExecuteContext(ctx)
}
