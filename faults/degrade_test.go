package faults

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
)

// TestDegradeFaults: each degrading fault records its targets and amounts before it
// impairs, impairs exactly its targets with exactly its amount, and removes it at the
// end of the window.
func TestDegradeFaults(t *testing.T) {
	for _, tc := range []struct {
		name   string
		p      func(*Params)
		impair string
		detail string
	}{
		{"slow-network", nil, "impair [s1 s2 s3 s4 s5] delay 100ms both slow-network", "delay 100ms on every path to or from s1,s2,s3,s4,s5"},
		{"slow-network", func(p *Params) { p.Delay, p.Jitter = 40*time.Millisecond, 5*time.Millisecond }, "impair [s1 s2 s3 s4 s5] delay 40ms jitter 5ms both slow-network", "delay 40ms jitter 5ms"},
		{"lossy-network", func(p *Params) { p.Loss = 2.5 }, "impair [s1 s2 s3 s4 s5] loss 2.5% both lossy-network", "loss 2.5%"},
		{"bandwidth-limit", nil, "impair [s1 s2 s3 s4 s5] rate 1Mbit both bandwidth-limit", "rate 1Mbit"},
		{"slow-leader", nil, "impair [s2] delay 100ms both slow-leader", "delay 100ms on every path to or from s2"},
		{"lossy-leader", nil, "impair [s2] loss 10% both lossy-leader", "loss 10%"},
		{"bandwidth-limit-leader", func(p *Params) { p.Rate = 500e3 }, "impair [s2] rate 500Kbit both bandwidth-limit-leader", "rate 500Kbit"},
	} {
		f := newFake(1)
		p := params()
		if tc.p != nil {
			tc.p(&p)
		}
		if err := ValidateParams(tc.name, p, 5); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		run(t, tc.name, f, p, context.Background())
		if len(f.log) != 5 || !strings.HasPrefix(f.log[0], "event fault-start") || f.log[1] != tc.impair ||
			f.log[2] != "event fault-action heal" || !strings.HasPrefix(f.log[3], "unimpair") || !strings.HasPrefix(f.log[4], "event fault-end") {
			t.Errorf("%s: log %q, want fault-start, %q, heal recorded, the undo, fault-end", tc.name, f.log, tc.impair)
		}
		if ev := f.events[0]; ev.Type != records.EventFaultStart || !strings.Contains(ev.Detail, tc.detail) || len(ev.Targets) == 0 {
			t.Errorf("%s: fault-start %+v, want targets and %q", tc.name, ev, tc.detail)
		}
		if f.cuts != 0 {
			t.Errorf("%s: %d impairments left", tc.name, f.cuts)
		}
	}
	// Cancelled in the window: removed all the same.
	f := newFake(1)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	run(t, "slow-leader", f, params(), ctx)
	if f.cuts != 0 || !strings.HasPrefix(f.log[len(f.log)-1], "event fault-end") {
		t.Errorf("cancelled: log %q", f.log)
	}
}

func TestDegradeParams(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    func(*Params)
		err  string
	}{
		{"lossy-network", func(p *Params) { p.Loss = 120 }, "--fault-loss 120: want 0..100"},
		{"slow-leader", func(p *Params) { p.Delay = 2 * time.Minute }, "--fault-delay 2m0s: want 0..1m0s"},
		{"bandwidth-limit", func(p *Params) { p.Rate = 100 }, "--fault-rate 100 bit/s: want at least 8000"},
		{"slow-network", func(p *Params) { p.Delay, p.Jitter = 50*time.Second, 20*time.Second }, "exceeds"},
	} {
		p := params()
		tc.p(&p)
		if err := ValidateParams(tc.name, p, 5); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
		}
	}
	for _, n := range []string{"slow-network", "lossy-network", "bandwidth-limit", "slow-leader", "lossy-leader", "bandwidth-limit-leader"} {
		if !strings.Contains(Help(), n) {
			t.Errorf("help lacks %s", n)
		}
	}
}
