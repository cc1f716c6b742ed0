package results

import (
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
)

// runDir returns a fresh run directory; with DT_KEEP_RESULTS=dir set it is dir/<test name>
// and survives the test, for looking at the plots and report.
func runDir(t *testing.T) string {
	t.Helper()
	if keep := os.Getenv("DT_KEEP_RESULTS"); keep != "" {
		d := filepath.Join(keep, strings.ReplaceAll(t.Name(), "/", "_"))
		os.RemoveAll(d)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.IsNaN(got) || math.Abs(got-want) > tol {
		t.Errorf("%s = %v, want %v ± %v", what, got, want, tol)
	}
}

func TestAnalyzeKnownGap(t *testing.T) {
	dir := runDir(t)
	s := leaderRun()
	s.write(t, dir)
	sum, err := Analyze(dir, Options{CheckTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + FormatSummary(sum))

	if sum.Ops.Total != 6000 || sum.Ops.OK+sum.Ops.Failed+sum.Ops.Overload != sum.Ops.Total {
		t.Errorf("ops = %+v", sum.Ops)
	}
	if sum.Ops.Failed != 500 { // 2.5 s at 200 ops/s
		t.Errorf("failed = %d, want 500", sum.Ops.Failed)
	}
	near(t, "workload start", sum.Workload.Start, 2, 1e-9)
	near(t, "workload end", sum.Workload.End, 32, 1e-9)

	w := sum.Windows
	if w.Before == nil || w.During == nil || w.After == nil || w.Overall == nil {
		t.Fatalf("windows missing: %+v", w)
	}
	near(t, "before duration", w.Before.DurationS, 10, 1e-9)
	near(t, "during duration", w.During.DurationS, 8, 1e-9)
	near(t, "after duration", w.After.DurationS, 12, 1e-9)
	near(t, "before throughput", w.Before.ThroughputOpsS, 200, 1)
	near(t, "during throughput", w.During.ThroughputOpsS, 200*5.5/8, 1) // 2.5 s of 8 lost
	near(t, "after throughput", w.After.ThroughputOpsS, 200, 1)
	if w.Before.LatencyMS == nil || w.Before.LatencyMS.P50 < 1 || w.Before.LatencyMS.P50 > 5 {
		t.Errorf("before latency = %+v", w.Before.LatencyMS)
	}

	near(t, "unavailability", sum.UnavailabilityS, 2.5, 0.01)
	if u := sum.Unavailable; u == nil || math.Abs(u.Start-12) > 0.01 || math.Abs(u.End-14.5) > 0.01 {
		t.Errorf("unavailable = %+v, want 12–14.5", sum.Unavailable)
	}
	// 1 s buckets from 12: [12,13) and [13,14) are dead, [14,15) has half, [15,16) is back.
	if r := sum.RecoveryS.FromFaultStart; r == nil || *r != 3 {
		t.Errorf("recovery from fault start = %v, want 3", fmtRecovery(r))
	}
	if r := sum.RecoveryS.FromHeal; r == nil || *r != 0 {
		t.Errorf("recovery from heal = %v, want 0", fmtRecovery(r))
	}
	near(t, "pre-fault throughput", sum.PreFaultThroughput, 200, 1)
	if sum.LeaderChanges != 1 || sum.MaxTerm != 3 {
		t.Errorf("leader changes %d max term %d, want 1 and 3", sum.LeaderChanges, sum.MaxTerm)
	}
	if len(sum.Faults) != 1 || sum.Faults[0].Name != "leader" || sum.Faults[0].End == nil || *sum.Faults[0].End != 20 ||
		strings.Join(sum.Faults[0].Targets, ",") != "s1" || len(sum.Faults[0].Actions) != 2 {
		t.Errorf("faults = %+v", sum.Faults)
	}
	if sum.Linearizability.Result != LinOK {
		t.Errorf("linearizability = %+v", sum.Linearizability)
	}
	if sum.Linearizability.IndeterminateWrites == 0 || sum.Linearizability.UnobservedIndeterminate == 0 {
		t.Errorf("expected indeterminate writes, some unobserved: %+v", sum.Linearizability)
	}
	if !strings.HasPrefix(sum.Title, "etcd simple uniform leader") || !strings.Contains(sum.Title, "200 ops/s") || !strings.Contains(sum.Title, "3 nodes") {
		t.Errorf("title = %q", sum.Title)
	}

	// summary.json is the same summary, snake_case.
	b, err := os.ReadFile(filepath.Join(dir, records.SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ops", "windows", "unavailability_s", "recovery_s", "leader_changes", "max_term", "faults", "linearizability", "skipped_records"} {
		if _, ok := m[k]; !ok {
			t.Errorf("summary.json lacks %q", k)
		}
	}
	rec := m["recovery_s"].(map[string]any)
	if _, ok := rec["from_heal"]; !ok {
		t.Errorf("recovery_s = %v", rec)
	}
	lin := m["linearizability"].(map[string]any)
	for _, k := range []string{"result", "keys_checked", "duration_s", "detail"} {
		if _, ok := lin[k]; !ok {
			t.Errorf("linearizability lacks %q", k)
		}
	}

	// CSVs: one per default window, buckets that add up.
	for _, w := range DefaultWindows {
		rows := readCSV(t, filepath.Join(dir, records.SeriesFile(w)))
		if rows[0][0] != "t_start_s" || rows[0][5] != "throughput_ok_per_s" || rows[0][8] != "latency_p50_ms" {
			t.Errorf("%s header = %v", w, rows[0])
		}
		ok, failed := 0, 0
		for _, r := range rows[1:] {
			ok += atoi(t, r[2])
			failed += atoi(t, r[3])
		}
		if ok != sum.Ops.OK || failed != sum.Ops.Failed {
			t.Errorf("%s csv: ok %d failed %d, want %d %d", w, ok, failed, sum.Ops.OK, sum.Ops.Failed)
		}
	}
	rows := readCSV(t, filepath.Join(dir, records.SeriesFile(time.Second)))
	for _, r := range rows[1:] {
		start, _ := strconv.ParseFloat(r[0], 64)
		switch start {
		case 12, 13:
			if r[2] != "0" || r[11] != "leader" {
				t.Errorf("bucket %v: %v, want no successes during the outage", start, r)
			}
		case 8:
			if atoi(t, r[2]) < 195 || r[11] != "" || r[8] == "" {
				t.Errorf("bucket 8: %v", r)
			}
		}
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) < 2 {
		t.Fatalf("%s: %d rows", path, len(rows))
	}
	return rows
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRunSeries(t *testing.T) {
	dir := t.TempDir()
	leaderRun().write(t, dir)
	run, err := records.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := SeriesOf(run, time.Second)
	ok := 0
	for _, b := range s.Buckets {
		ok += b.OK
		if b.Start == 13 && (b.OK != 0 || b.Failed != 200 || !math.IsNaN(b.P50)) {
			t.Errorf("bucket 13: %+v", b)
		}
		if b.Start == 5 && (math.Abs(s.Throughput(b)-200) > 3 || b.N != 200 || !(b.P50 > 0 && b.P50 <= b.P99 && b.P99 <= b.Max)) {
			t.Errorf("bucket 5: %+v", b)
		}
	}
	if ok != 5500 {
		t.Errorf("ok = %d", ok)
	}
}

// Re-elections of the same node count as leader changes; repeated observations and
// leaderless moments do not. A fault-end just before the workload ends leaves no "after".
func TestLeaderChangesAndShortWindows(t *testing.T) {
	dir := t.TempDir()
	s := leaderRun()
	events := []records.Event{
		{T: 0, Type: records.EventRunStart},
		{T: 1, Type: records.EventLeader, Leader: "s1", Term: 2},
		{T: 2, Type: records.EventWorkloadStart},
		{T: 3, Type: records.EventLeader, Leader: "s1", Term: 2}, // same leadership seen again
		{T: 12, Type: records.EventFaultStart, Fault: "partial-partition", Action: "partition", Targets: []string{"s1", "s3"}},
		{T: 13, Type: records.EventLeader, Term: 2}, // none known
		{T: 14, Type: records.EventLeader, Leader: "s1", Term: 6},
		{T: 15, Type: records.EventTerm, Node: "s3", Term: 7},
		{T: 31.9, Type: records.EventFaultEnd, Fault: "partial-partition", Action: "heal"},
		{T: 32, Type: records.EventWorkloadEnd},
	}
	writeRun(t, dir, s.config(), s.ops(), events)
	sum, err := Analyze(dir, Options{CheckTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if sum.LeaderChanges != 1 || sum.MaxTerm != 7 || len(sum.Leaders) != 4 {
		t.Errorf("leader changes %d, max term %d, leaders %v", sum.LeaderChanges, sum.MaxTerm, sum.Leaders)
	}
	if sum.Windows.After != nil {
		t.Errorf("after window of 0.1 s: %+v", sum.Windows.After)
	}
	f := sum.Faults[0]
	if len(f.Actions) != 1 || f.Actions[0].Action != "partition" || faultLabel(f) != "partial-partition: partition → s1, s3" {
		t.Errorf("fault %+v, label %q", f, faultLabel(f))
	}
}
