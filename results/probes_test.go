package results

import "testing"

func TestProbesSummaryCountsAndListsFailures(t *testing.T) {
	events := []Event{
		{T: 1, Type: EventProbe, Fault: "pause#1", Node: "c1", Detail: `{"url":"http://x/check","ok":true,"status":200}`},
		{T: 2, Type: EventProbe, Fault: "dropport#2", Node: "c1", Detail: `{"url":"http://x/check","ok":false,"status":503}`},
		{T: 3, Type: EventProbe, Fault: "heal#3", Node: "c1", Detail: `not json`},
		{T: 4, Type: EventFaultStart, Fault: "x"},
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
