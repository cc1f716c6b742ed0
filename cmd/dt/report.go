package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/results"
)

// newReportCmd is `dt report RUN_DIR`: re-read a saved run (also one that crashed half-way)
// and rewrite its summary.json, CSV time series, plots, report.html and linearizability
// verdict.
func newReportCmd() *cobra.Command {
	var opts results.Options
	var checkMemoryMiB int64
	c := &cobra.Command{
		Use:   "report RUN_DIR",
		Short: "Re-analyse a saved run: summary, time series, plots, report.html, linearizability check",
		Long: `report re-reads RUN_DIR/ops.jsonl and events.jsonl — skipping, and counting, lines that
cannot be read, such as the half-written last line of a run that crashed — and rewrites
summary.json, timeseries_<window>.csv, the plots (PNG and SVG), report.html and, when the
history is not linearizable, linearizability.html. dt run does the same at the end of
every run.`,
		Example: `  dt report results/latest
  dt report results/etcd-simple-uniform-leader/2026-01-02T03:04:05Z --window 250ms,1s,5s
  dt report results/latest --check-timeout 2m`,
		Args:         cobra.ExactArgs(1),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			opts.CheckMemory = checkMemoryMiB << 20
			sum, err := results.Analyze(dir, opts)
			out := cmd.OutOrStdout()
			if sum != nil {
				fmt.Fprint(out, results.FormatSummary(sum))
				fmt.Fprintf(out, "skipped %d unreadable record(s)\n", sum.SkippedRecords)
				for _, s := range sum.Skipped {
					fmt.Fprintf(out, "  %s:%d: %s\n", s.File, s.Line, s.Error)
				}
				if n := sum.SkippedRecords - len(sum.Skipped); n > 0 {
					fmt.Fprintf(out, "  ... and %d more\n", n)
				}
				fmt.Fprintln(out, "report:", filepath.Join(dir, records.ReportFile))
			}
			return err // Analyze's errors name the run directory already
		},
	}
	f := c.Flags()
	f.DurationSliceVar(&opts.Windows, "window", results.DefaultWindows, "bucket widths of the CSV time series (repeat or comma-separate)")
	f.DurationVar(&opts.CheckTimeout, "check-timeout", results.DefaultCheckTimeout, "time budget of the linearizability check; the verdict is unknown when it runs out (negative skips the check)")
	f.IntVar(&opts.MaxOpsPerSegment, "check-segment", results.DefaultMaxOpsPerSegment, "operations per key porcupine searches at once (bounds its memory)")
	f.BoolVar(&opts.Porcupine, "porcupine", false, "search every key with porcupine (in segments), also where the chain checker could decide it")
	f.Int64Var(&checkMemoryMiB, "check-memory", results.DefaultCheckMemory>>20, "MiB of heap growth after which a linearizability search is abandoned as unknown")
	return c
}

// defaultCompareDir is <common parent of the runs>/compare-<UTC time>, beside the runs.
func defaultCompareDir(runDirs []string) string {
	parent := ""
	for i, d := range runDirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			abs = d
		}
		p := filepath.Dir(filepath.Clean(abs))
		if i == 0 {
			parent = p
			continue
		}
		for parent != "/" && parent != "." && !isWithin(p, parent) {
			parent = filepath.Dir(parent)
		}
	}
	return filepath.Join(parent, "compare-"+time.Now().UTC().Format("2006-01-02T15-04-05Z"))
}

// isWithin reports whether path is dir or below it.
func isWithin(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && (len(rel) < 3 || rel[:3] != "../")
}
