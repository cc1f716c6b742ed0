package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dtlab/dt/experiment"
	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/results"
	"github.com/dtlab/dt/shell"
	"github.com/dtlab/dt/systems"
	"github.com/spf13/cobra"
)

func newUpCmd() *cobra.Command {
	cfg := experiment.Defaults()
	var workload string
	c := &cobra.Command{
		Use:   "up [SYSTEM] TOPOLOGY",
		Short: "Build a topology (and start a system in it) and open a debug prompt, or stay up until Ctrl-C or `dt down`",
		Long: `up builds the topology and, given a system, starts it and waits for a leader. Then:

  - on a terminal it opens a prompt (help, Tab completion; Ctrl-D or exit tears down);
  - with commands piped in (dt up etcd simple < script.txt) it runs them, echoing each
    with its output, and tears down at the end (non-zero exit if a command failed);
  - with no input (</dev/null, or in the background) it stays up until Ctrl-C or ` + "`dt down`" + `.

With a system, every command and action is recorded in the run's events.jsonl under
--results, so the session can be analysed like a run.

Systems: ` + strings.Join(systems.Names(), ", "),
		Example: `  dt up simple
  dt up simple --number-nodes 5 --number-clients 2
  dt up etcd simple
  dt up etcd simple --workload uniform --rate 200
  printf 'status\npartition leader follower\nsleep 5\nstatus\n' | dt up etcd simple`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			if len(args) == 1 {
				if _, err := systems.Lookup(args[0]); err == nil {
					return fmt.Errorf("%s is a system: name a topology too, e.g. dt up %s simple", args[0], args[0])
				}
				if workload != "" {
					return errors.New("--workload needs a system: dt up SYSTEM TOPOLOGY --workload " + workload)
				}
				return upTopology(cmd.Context(), args[0], cfg)
			}
			cfg.System, cfg.Topology = args[0], args[1]
			if workload != "" {
				cfg.Workload = workload
			}
			plan, err := cfg.Plan()
			if err != nil {
				return err
			}
			return debugSession(cmd.Context(), plan, debugOptions{load: workload != ""})
		},
	}
	registerRunFlags(c, &cfg)
	c.Flags().StringVar(&workload, "workload", "", "start this client workload (uniform, zipfian) at --rate when the prompt opens; `load start` starts it later")
	return c
}

// upTopology is `dt up TOPOLOGY`: the topology alone, with the prompt when there is input.
func upTopology(ctx context.Context, name string, cfg experiment.Config) error {
	mode := shell.DetectMode(os.Stdin, os.Stdout)
	cfg.Topology = name
	plan, err := cfg.NetworkPlan()
	if err != nil {
		return err
	}
	// An agent in every node shapes its links (--link-*, and `link` / dt link later).
	network, err := experiment.UpNetwork(ctx, plan, experiment.Options{})
	if err != nil {
		return err
	}
	live := network.Live
	printNodes(live)
	if mode == shell.ModeNone {
		fmt.Println("Ctrl-C or `dt down` tears it down; `dt exec NODE -- CMD`, `dt shell NODE`, `dt partition A B`, `dt link A B` act on it.")
	}
	sctx, stop := sessionContext(ctx, mode)
	defer stop()
	err = shell.New(shell.Options{Live: live}).Run(sctx, mode, os.Stdin, os.Stdout)
	fmt.Println("tearing down", live.State.RunID)
	return errors.Join(err, network.Close(context.Background()))
}

// sessionContext is the context a session lives in. At a terminal Ctrl-C belongs to the
// prompt (it interrupts a command), so only SIGTERM (`dt down`) and SIGHUP (the terminal
// went away) end the session; otherwise Ctrl-C ends it too. Before the session starts,
// Ctrl-C aborts the build as usual.
func sessionContext(ctx context.Context, mode shell.Mode) (context.Context, context.CancelFunc) {
	if mode == shell.ModeTerminal {
		return signal.NotifyContext(context.WithoutCancel(ctx), syscall.SIGTERM, syscall.SIGHUP)
	}
	return signal.NotifyContext(ctx, syscall.SIGHUP)
}

// debugOptions are what `dt run --debug` and `dt up SYSTEM TOPOLOGY` differ in.
type debugOptions struct {
	load  bool   // start the workload when the prompt opens
	fault string // the fault the user named (dt run), suggested in the banner
}

// debugSession starts the system as a run of plan would, then hands it to the prompt
// instead of running the schedule. It always tears down what it started, and analyses
// the history when the load ran.
func debugSession(ctx context.Context, plan *experiment.Plan, o debugOptions) (err error) {
	// A session is not a run of the fault schedule: keep it apart in the results tree.
	plan = plan.Session()
	cfg := plan.Config
	mode := shell.DetectMode(os.Stdin, os.Stdout)
	c, err := experiment.Start(ctx, plan, experiment.Options{Progress: os.Stdout})
	var load *experiment.Load
	if c != nil {
		defer func() {
			if c.Live != nil {
				fmt.Println("tearing down", c.Live.State.RunID)
			}
			c.Close()
			if load != nil && load.Status().Started > 0 {
				sum, aerr := results.Analyze(c.RunDir, results.Options{CheckTimeout: time.Duration(cfg.CheckTimeout * float64(time.Second))})
				if sum != nil {
					fmt.Println(results.FormatSummary(sum))
				}
				if aerr != nil {
					err = errors.Join(err, fmt.Errorf("analyse %s: %w", c.RunDir, aerr))
				}
			}
			fmt.Println("results:", c.RunDir)
		}()
	}
	if err != nil {
		return err
	}
	printNodes(c.Live)
	fmt.Printf("%s is up: leader %s (term %d); every command goes to %s\n",
		cfg.System, c.Monitor.Leader(), c.Monitor.Term(), filepath.Join(c.RunDir, records.EventsFile))

	sctx, stop := sessionContext(ctx, mode)
	defer stop()
	var sh *shell.Shell
	load = experiment.NewLoad(c, func(err error) { sh.Note("load: %v", err) })
	sh = shell.New(shell.Options{
		Live: c.Live, Cluster: c, Load: load,
		Params: plan.Params, // every --fault-*, --mtbf and --kill-* flag, as a run's faults get them
		Window: secs(cfg.Duration / 3),
	})
	if o.load {
		if err := load.Start(sctx, 0); err != nil {
			return err
		}
		fmt.Printf("load: %s at %g ops/s (`load stop`, `load rate N`)\n", cfg.Workload, cfg.Rate)
	}
	if o.fault != "" && o.fault != "none" {
		fmt.Printf("`fault %s` fires the run's fault now (window --duration/3 = %gs)\n", o.fault, cfg.Duration/3)
	}
	if mode == shell.ModeNone {
		fmt.Println("Ctrl-C or `dt down` tears it down; `dt exec NODE -- CMD`, `dt shell NODE`, `dt partition A B` act on it.")
	}
	return sh.Run(sctx, mode, os.Stdin, os.Stdout)
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
