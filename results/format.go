package results

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/dtlab/dt/records"
)

// FormatSummary renders s as a short plain-text summary for the terminal.
func FormatSummary(s *Summary) string {
	if s == nil {
		return "no summary\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", s.Title)
	o := s.Ops
	fmt.Fprintf(&b, "ops: %d total, %d ok, %d failed, %d not sent (overload)", o.Total, o.OK, o.Failed, o.Overload)
	if s.SkippedRecords > 0 {
		fmt.Fprintf(&b, "; %d unreadable record(s) skipped", s.SkippedRecords)
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "window\tseconds\tok ops/s\tp50 ms\tp99 ms\tmax ms\tfailed\t")
	for _, w := range []struct {
		name string
		w    *WindowStats
	}{{"before", s.Windows.Before}, {"during", s.Windows.During}, {"after", s.Windows.After}, {"overall", s.Windows.Overall}} {
		if w.w == nil {
			continue
		}
		p50, p99, mx := "–", "–", "–"
		if l := w.w.LatencyMS; l != nil {
			p50, p99, mx = fmtMS(l.P50), fmtMS(l.P99), fmtMS(l.Max)
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%s\t%s\t%s\t%d\t\n", w.name, w.w.DurationS, w.w.ThroughputOpsS, p50, p99, mx, w.w.Failed)
	}
	tw.Flush()
	fmt.Fprintf(&b, "unavailable: %.2f s", s.UnavailabilityS)
	if u := s.Unavailable; u != nil {
		fmt.Fprintf(&b, " (t=%.2f–%.2f s)", u.Start, u.End)
	}
	if len(s.Faults) > 0 {
		fmt.Fprintf(&b, "; recovery to 90%% of %.1f ops/s: %s from fault start, %s from heal",
			s.PreFaultThroughput, fmtRecovery(s.RecoveryS.FromFaultStart), fmtRecovery(s.RecoveryS.FromHeal))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "leader changes: %d, max term %d\n", s.LeaderChanges, s.MaxTerm)
	for _, f := range s.Faults {
		end := "never healed"
		if f.End != nil {
			end = fmt.Sprintf("%.2f s", *f.End)
		}
		fmt.Fprintf(&b, "fault %s", f.Name)
		if len(f.Targets) > 0 {
			fmt.Fprintf(&b, " → %s", strings.Join(f.Targets, ", "))
		}
		fmt.Fprintf(&b, ": %.2f s – %s", f.Start, end)
		switch n := len(f.Actions); {
		case n == 1:
			fmt.Fprintf(&b, ", %s", f.Actions[0].Action)
		case n > 1:
			fmt.Fprintf(&b, ", %d actions", n)
		}
		b.WriteString("\n")
		for i, a := range f.Actions {
			if i == 0 && a.T == f.Start && a.Detail == f.Detail {
				continue // the fault-start itself
			}
			if slices.Contains(records.OutcomeActions, a.Action) && a.Detail != "" {
				fmt.Fprintf(&b, "  %s %s at %.2f s: %s\n", a.Action, strings.Join(a.Targets, ", "), a.T, a.Detail)
			}
		}
	}
	if p := s.Probes; p != nil {
		fmt.Fprintf(&b, "probes: %d called, %d failed\n", p.Total, p.Failed)
		for _, f := range p.Failures {
			what := f.Error
			if what == "" {
				what = fmt.Sprintf("status %d", f.Status)
			}
			fmt.Fprintf(&b, "  probe FAILED at %.2f s after %s (from %s): %s\n", f.T, f.Step, f.From, what)
		}
	}
	for _, e := range s.StepErrors {
		fmt.Fprintf(&b, "step error: %s\n", e)
	}
	l := s.Linearizability
	fmt.Fprintf(&b, "linearizability: %s (%d/%d keys, %d ops, %.2f s)", strings.ToUpper(l.Result), l.KeysChecked, l.Keys, l.OpsChecked, l.DurationS)
	switch {
	case len(l.Violations) > 0:
		// one line per kind of violation, each naming its first instance's key and operations
		fmt.Fprintf(&b, ": %s", describeViolations(l.Violations))
		if l.Visualization != "" {
			fmt.Fprintf(&b, "; %s shows the first", l.Visualization)
		}
		for _, v := range l.Violations {
			fmt.Fprintf(&b, "\n  %s, first on key %q at t=%.3f s: %s", v.Kind, v.Key, v.T, v.Text)
		}
	case l.Result != LinOK && l.Detail != "":
		fmt.Fprintf(&b, ": %s", l.Detail)
	}
	b.WriteString("\n")
	for _, w := range s.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	return b.String()
}

func fmtRecovery(v *float64) string {
	if v == nil {
		return "never"
	}
	return fmt.Sprintf("%.1f s", *v)
}
