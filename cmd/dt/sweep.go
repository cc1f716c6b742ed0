package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dtlab/dt/experiment"
	"github.com/dtlab/dt/sweep"
	"github.com/spf13/cobra"
)

func newSweepCmd() *cobra.Command {
	var (
		root        = experiment.Defaults().ResultsRoot
		fresh       bool
		dryRun      bool
		retryFailed bool
		only        []string
	)
	c := &cobra.Command{
		Use:   "sweep FILE",
		Short: "Run an experiment over a grid of parameters, several times each, resumably",
		Long: `sweep runs one experiment per point of a sweep file's axes and per repeat, in sequence,
into results/sweeps/<name>/ (runs/<point>-r<repeat>/ per run), then writes sweep.csv (one
row per run: parameters and every summary figure), plots/ and index.html.

Re-running the same command resumes: completed runs are skipped, crashed and interrupted
ones run again (failed ones too with --retry-failed). A directory made from a different
sweep file is refused; --fresh starts a new one beside it (<name>-2, ...). Ctrl-C stops
after tearing down the current run. After every run dt checks that nothing of it is left
on the host.

The sweep file (strict YAML):

  name: partial-vs-rate
  base: {system: etcd, topology: simple, workload: uniform, fault: partial-partition, duration: 30}
  axes:
    rate: [100, 1000, 10000]                         # a list
    number-nodes: [3, 5]
    # mtbf: {from: 0.5, to: 4, steps: 4, log: true}  # or a range: step | steps, log
  # zip: [[number-nodes, kill-n]]                    # axes varying together, same length
  repeats: 3
  seed: 42                                           # each run's seed derives from it
  plots:                                             # optional; default from the axes
    - {x: rate, y: p99, by: number-nodes}

base and axes take system, topology, workload, fault and these dt run flags:
` + wrapList(sweep.ParamNames()[4:], "  ", 88) + `
Plot figures: p50, p99, max-latency, throughput, during-p99, during-throughput,
unavailability, recovery, recovery-from-heal, leader-changes, failed, seconds, or any
sweep.csv column (windows.after.latency_ms.p99, linearizability.result, ...).`,
		Example: `  dt sweep partial-vs-rate.yaml --dry-run
  dt sweep partial-vs-rate.yaml
  dt sweep partial-vs-rate.yaml --only 'fault=leader,rate=1000|10000'
  dt sweep report results/sweeps/partial-vs-rate --plot 'x=rate,y=unavailability,by=fault'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := sweep.Parse(args[0])
			if err != nil {
				return err
			}
			filter, err := sweep.ParseFilter(s, only...)
			if err != nil {
				return err
			}
			if dryRun {
				return sweep.List(os.Stdout, root, s, filter, fresh)
			}
			if err := requireRoot(); err != nil {
				return err
			}
			d, err := sweep.Open(root, s, fresh)
			if err != nil {
				return err
			}
			defer d.Close()
			for _, w := range d.Warn {
				fmt.Fprintln(os.Stderr, "warning:", w)
			}
			res, err := d.Execute(cmd.Context(), sweep.Options{Only: filter, RetryFailed: retryFailed,
				Progress: os.Stdout, TTY: isTerminal(os.Stdout)})
			if res != nil {
				fmt.Printf("sweep %s: %d of %d selected runs done; this session ran %d in %s (%d ok, %d failed",
					s.Name, res.Done+res.OK+res.Failed, res.Selected, res.Ran, res.Elapsed.Round(time.Second), res.OK, res.Failed)
				if res.Interrupted {
					fmt.Print(", 1 interrupted")
				}
				fmt.Print(")")
				if res.KeptFailed > 0 {
					fmt.Printf("; %d failed earlier (--retry-failed runs them again)", res.KeptFailed)
				}
				fmt.Printf("\nresults: %s\n", rel(filepath.Join(d.Path, sweep.FileIndex)))
			}
			switch {
			case err != nil:
				return err
			case res.Interrupted:
				return errors.New("interrupted: re-run the same command to resume")
			case res.Failed > 0:
				return fmt.Errorf("%d runs failed (their errors are in %s)", res.Failed, rel(filepath.Join(d.Path, sweep.FileCSV)))
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&root, "results", root, "results root: the sweep goes to ROOT/sweeps/<name>/")
	f.BoolVar(&fresh, "fresh", false, "start a new sweep directory (<name>-N) instead of resuming the existing one")
	f.BoolVar(&dryRun, "dry-run", false, "list the runs, their seeds and statuses; run nothing")
	f.BoolVar(&retryFailed, "retry-failed", false, "run failed runs again (crashed and interrupted ones always are)")
	f.StringArrayVar(&only, "only", nil, "run only the matching runs: 'fault=leader,rate=100|1000,repeat=1' (repeatable; all must hold)")
	c.AddCommand(newSweepReportCmd())
	return c
}

func newSweepReportCmd() *cobra.Command {
	var plots []string
	c := &cobra.Command{
		Use:   "report DIR",
		Short: "Rebuild sweep.csv, the plots and index.html of a sweep directory",
		Long: `report reads a sweep directory's manifest and its runs' summary.json files and rewrites
sweep.csv, plots/ and index.html. The plots are those of the directory's sweep.yaml plus
any --plot.`,
		Example: `  dt sweep report results/sweeps/partial-vs-rate
  dt sweep report results/sweeps/partial-vs-rate --plot 'x=rate,y=p99,by=fault,log-y=true'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := sweep.OpenReport(args[0])
			if err != nil {
				return err
			}
			var extra []sweep.PlotSpec
			for _, p := range plots {
				ps, err := sweep.ParsePlotFlag(d.Sweep, p)
				if err != nil {
					return err
				}
				extra = append(extra, ps...)
			}
			for _, w := range d.Warn {
				fmt.Fprintln(os.Stderr, "warning:", w)
			}
			err = d.Report(extra)
			rows := d.Rows()
			fmt.Printf("%d runs → %s, %s\n", len(rows), rel(filepath.Join(d.Path, sweep.FileCSV)), rel(filepath.Join(d.Path, sweep.FileIndex)))
			return err
		},
	}
	c.Flags().StringArrayVar(&plots, "plot", nil, "an extra plot: 'x=AXIS,y=FIGURE[,by=AXIS][,log-x=true][,log-y=true]' (repeatable)")
	return c
}

// rel shows path relative to the working directory when it is below it.
func rel(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	if r, err := filepath.Rel(wd, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}

// wrapList joins names with commas into indented lines of at most width bytes.
func wrapList(names []string, indent string, width int) string {
	var b strings.Builder
	line := indent
	for i, n := range names {
		item := n
		if i < len(names)-1 {
			item += ","
		}
		if len(line)+1+len(item) > width && line != indent {
			b.WriteString(line + "\n")
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += item
	}
	b.WriteString(line)
	return b.String()
}
