package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
)

// TestPromptFaultsTakeTheFaultFlags: the faults fired from the prompt of `dt up SYSTEM
// TOPOLOGY` get the amounts of --fault-delay, --fault-jitter and --fault-loss, as a run's
// faults do (dt up used to build their parameters by hand and dropped those flags, so
// slow-network added the default 100ms).
func TestPromptFaultsTakeTheFaultFlags(t *testing.T) {
	e := newShellE2E(t)
	resultsDir := t.TempDir()
	script := "fault slow-network --duration 2 --wait\nfault lossy-network --duration 2 --wait\n"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := e.command(ctx, "up", "etcd", "simple", "--results", resultsDir,
		"--fault-delay", "300ms", "--fault-jitter", "30ms", "--fault-loss", "35")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	t.Logf("session:\n%s", out)
	if err != nil {
		t.Fatalf("dt up: %v", err)
	}
	if m := runLine.FindSubmatch(out); m != nil {
		e.assertGone(string(m[1]), "the end of the script")
	}
	var slow, lossy []string
	for _, ev := range readEvents(t, resultsDir) {
		if ev.Type != records.EventFaultStart {
			continue
		}
		switch {
		case strings.Contains(ev.Detail, "delay "):
			slow = append(slow, ev.Detail)
		case strings.Contains(ev.Detail, "loss "):
			lossy = append(lossy, ev.Detail)
		}
	}
	if len(slow) == 0 || len(lossy) == 0 {
		t.Fatalf("events.jsonl: fault-start of slow-network %q, of lossy-network %q: want both", slow, lossy)
	}
	for _, d := range slow {
		if !strings.Contains(d, "delay 300ms jitter 30ms") {
			t.Errorf("slow-network from the prompt: %q, want --fault-delay 300ms --fault-jitter 30ms", d)
		}
	}
	for _, d := range lossy {
		if !strings.Contains(d, "loss 35%") {
			t.Errorf("lossy-network from the prompt: %q, want --fault-loss 35", d)
		}
	}
}
