package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/systems"
)

// TestShellZooKeeper pipes a session into `dt up zookeeper simple`: every member agrees
// on the leader, zkCli writes and reads a znode from a client node, `dt exec` finds
// ZK_SERVERS in the node's environment, and a killed leader is replaced.
func TestShellZooKeeper(t *testing.T) {
	e := newE2E(t)
	sys, err := systems.Lookup("zookeeper")
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.(systems.Checker).Check(systems.Cluster{}); err != nil {
		t.Skip(err)
	}
	script := strings.Join([]string{
		"status",
		"zkCli create /dt-e2e hello",
		"zkCli get /dt-e2e",
		`c1 sh -c "echo servers=$ZK_SERVERS"`,
		"kill leader",
		"wait leader",
		"status",
	}, "\n") + "\n"
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := e.command(ctx, "up", "zookeeper", "simple", "--results", t.TempDir())
	cmd.Stdin = strings.NewReader(script)
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	t.Logf("session:\n%s", out)
	if err != nil {
		t.Fatalf("dt up zookeeper simple: %v", err)
	}
	m := runLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatal("no run id in the output")
	}
	secs := sections(out)
	if len(secs) != 7 {
		t.Fatalf("%d commands echoed, want 7", len(secs))
	}
	body := func(i int) string { return strings.Join(secs[i].out, "\n") }
	l0, rows := parseStatus(t, secs[0].out)
	for n, r := range rows {
		if r.process != "running" || r.health != "healthy" || r.leader != l0 || r.term != rows[l0].term {
			t.Errorf("first status: %s is %+v, want running, healthy, leader %s at epoch %d", n, r, l0, rows[l0].term)
		}
	}
	if !strings.Contains(body(1), "Created /dt-e2e") || !regexp.MustCompile(`(?m)^hello$`).MatchString(body(2)) {
		t.Errorf("zkCli create and get printed:\n%s\n%s", body(1), body(2))
	}
	if !strings.Contains(body(3), "servers=10.") || !strings.Contains(body(3), ":2181,") {
		t.Errorf("ZK_SERVERS in c1's environment:\n%s", body(3))
	}
	e0 := rows[l0].term
	l1, rows := parseStatus(t, secs[6].out)
	if l1 == "none" || l1 == l0 || rows[l1].term <= e0 {
		t.Errorf("after killing %s (epoch %d): leader %s\n%s", l0, e0, l1, body(6))
	}
	if r := rows[l0]; r.process != "killed" || !strings.HasPrefix(r.health, "error") {
		t.Errorf("the killed leader %s shows %+v", l0, r)
	}
	e.assertGone(m[1], "the end of the script")
}
