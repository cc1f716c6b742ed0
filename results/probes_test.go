package results

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
)

func TestProbesSummaryCountsAndListsFailures(t *testing.T) {
	events := []records.Event{
		{T: 1, Type: records.EventProbe, Fault: "pause#1", Node: "c1", Detail: `{"url":"http://x/check","ok":true,"status":200}`},
		{T: 2, Type: records.EventProbe, Fault: "dropport#2", Node: "c1", Detail: `{"url":"http://x/check","ok":false,"status":503}`},
		{T: 3, Type: records.EventProbe, Fault: "heal#3", Node: "c1", Detail: `not json`},
		{T: 4, Type: records.EventFaultStart, Fault: "x"},
	}
	p := probes(events)
	if p == nil || p.Total != 3 || p.Failed != 2 || len(p.Failures) != 2 {
		t.Fatalf("probes %+v: want 3 called, 2 failed", p)
	}
	if f := p.Failures[0]; f.Step != "dropport#2" || f.Status != 503 || f.From != "c1" || f.T != 2 {
		t.Errorf("first failure %+v", f)
	}
	if probes(events[3:]) != nil {
		t.Errorf("no probe events must give no probes section")
	}
}

func TestReportListsProbeFailuresAndStepErrors(t *testing.T) {
	dir := runDir(t)
	leaderRun().write(t, dir)
	w, err := records.CreateJSONL(filepath.Join(dir, records.EventsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []records.Event{
		{T: 13, Type: records.EventProbe, Fault: "pause#1", Node: "c1", Detail: `{"url":"http://127.0.0.1:7070/check","ok":true,"status":200}`},
		{T: 21, Type: records.EventProbe, Fault: "heal#2", Node: "c1", Detail: `{"url":"http://127.0.0.1:7070/check","ok":false,"status":503}`},
		{T: 22, Type: records.EventError, Fault: "recoverport#3", Detail: "no dropport of port 80 tcp in place on s1"},
	} {
		if err := w.Append(ev); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	sum, err := Analyze(dir, Options{CheckTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Probes == nil || sum.Probes.Failed != 1 || len(sum.StepErrors) != 1 {
		t.Fatalf("probes %+v, step errors %v", sum.Probes, sum.StepErrors)
	}
	b, _ := os.ReadFile(filepath.Join(dir, records.ReportFile))
	for _, want := range []string{"<h2>Probes</h2>", "2 probe(s) called after fault steps, 1 failed", "heal#2", "status 503",
		"<h2>Step errors</h2>", "no dropport of port 80"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	text := FormatSummary(sum)
	for _, want := range []string{"probes: 2 called, 1 failed", "probe FAILED at 21.00 s after heal#2 (from c1): status 503", "step error: 22.00 s recoverport#3"} {
		if !strings.Contains(text, want) {
			t.Errorf("summary text lacks %q:\n%s", want, text)
		}
	}
}
