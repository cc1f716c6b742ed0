package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
)

// needEtcd skips when etcd is missing, saying which package provides it.
func needEtcd(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Skip("needs etcd: apt-get install etcd-server")
	}
}

func countLines(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
	}
	return n
}

// TestRunInterruptedKeepsHistory: Ctrl-C in the middle of a run tears everything down
// and still leaves a readable, analysed history.
func TestRunInterruptedKeepsHistory(t *testing.T) {
	e := newE2E(t)
	needEtcd(t)
	res := t.TempDir()
	cmd := e.command(context.Background(), "run", "etcd", "simple", "uniform", "partial-partition",
		"--duration", "60", "--rate", "200", "--results", res)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ops := filepath.Join(res, "latest", records.OpsFile)
	deadline := time.Now().Add(60 * time.Second)
	for countLines(ops) < 400 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if countLines(ops) < 400 {
		cmd.Process.Kill()
		t.Fatalf("ops.jsonl never reached 400 records while running; output:\n%s", out.String())
	}
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("an interrupted run must exit non-zero")
		}
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("dt run did not exit within 90 s of SIGINT; output:\n%s", out.String())
	}
	if ls := e.mustDT("ls"); !strings.Contains(ls, "no topologies") {
		t.Errorf("after Ctrl-C dt ls still lists:\n%s", ls)
	}
	if netns, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(netns), "dt-") {
		for _, l := range strings.Split(string(netns), "\n") {
			if strings.HasPrefix(l, "dt-") {
				// Only ours count: the runtime dir is private to this test.
				t.Logf("namespace present after run: %s", l)
			}
		}
	}
	var sum map[string]any
	b, err := os.ReadFile(filepath.Join(res, "latest", records.SummaryFile))
	if err != nil {
		t.Fatalf("no summary after an interrupted run: %v\n%s", err, out.String())
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if n := countLines(ops); n < 400 {
		t.Errorf("ops.jsonl has %d records after the interrupt", n)
	}
	ev, _ := os.ReadFile(filepath.Join(res, "latest", records.EventsFile))
	if !strings.Contains(string(ev), `"run-end"`) {
		t.Errorf("events.jsonl has no run-end after the interrupt:\n%s", ev)
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	e := newE2E(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"run", "riak", "simple", "uniform", "leader"}, "valid: etcd, etcd-pre-vote, zookeeper"},
		{[]string{"run", "etcd", "ring", "uniform", "leader"}, "valid topologies are"},
		{[]string{"run", "etcd", "simple", "uniform", "chaos"}, "partial-partition"},
		{[]string{"run", "etcd", "simple", "ycsb", "leader"}, "uniform"},
		{[]string{"run", "etcd", "simple", "uniform", "leader", "--write-ratio", "2"}, "--write-ratio 2: must be in [0, 1]"},
		{[]string{"run", "etcd", "simple", "uniform", "leader", "--ops", "reed=40,write=60"}, `unknown op kind "reed"; valid: read, write, cas`},
		{[]string{"run", "etcd", "simple", "uniform", "leader", "--ops", "read=40,cas"}, `"cas": want KIND=WEIGHT`},
		{[]string{"run", "etcd", "simple", "uniform", "leader", "--ops", "read=1", "--write-ratio", "0.5"}, "[ops write-ratio]"},
		{[]string{"run", "etcd", "simple", "uniform", "leader", "--read-consistency", "eventual"}, "valid: linearizable, serializable"},
		{[]string{"run", "etcd", "simple", "uniform", "kill-n", "--kill-n", "4"}, "--kill-n 4"},
		{[]string{"run", "etcd", "simple", "uniform", "leader", "--client-endpoints", "some"}, "valid are all, one"},
		{[]string{"run", "etcd", "simple", "uniform", "leader", "--etcd-bin", "/nonexistent/etcd"}, "apt-get install etcd-server"},
	}
	for _, c := range cases {
		out, err := e.dt(c.args...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("dt %s: err %v, output %q; want an error mentioning %q", strings.Join(c.args, " "), err, out, c.want)
		}
	}
}

// TestPreVoteReallyTakesEffect: reckon's --pre-vote is a no-op; dt's must reach etcd.
func TestPreVoteReallyTakesEffect(t *testing.T) {
	e := newE2E(t)
	needEtcd(t)
	res := t.TempDir()
	out, err := e.dt("run", "etcd-pre-vote", "simple", "uniform", "none", "--duration", "2", "--results", res)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	log, err := os.ReadFile(filepath.Join(res, "latest", records.LogsDir, "s1.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), `"pre-vote":true`) {
		t.Errorf("s1's etcd did not start with pre-vote enabled; its log:\n%.2000s", log)
	}
}
