package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dtlab/dt/internal/procenv"
)

// TestDiskKill9ThenClean: a `dt run --disk fuse` killed with SIGKILL, one of its agents
// killed with SIGKILL first: the agents whose controller died unmount their layers on
// the way out, the killed one leaves its mount without a server, and dt clean detaches
// it; nothing of the run is left, mounts included.
func TestDiskKill9ThenClean(t *testing.T) {
	e := newE2E(t)
	needEtcd(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("needs /dev/fuse")
	}
	cmd := e.command(context.Background(), "run", "etcd", "simple", "uniform", "none", "--disk", "fuse",
		"--duration", "60", "--results", t.TempDir())
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	// The run is up once every member's data dir is mounted and the workload runs.
	var id string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(out.String(), "ok ops/s") {
		time.Sleep(100 * time.Millisecond)
	}
	if ents, _ := os.ReadDir(e.rt); len(ents) == 1 {
		id = ents[0].Name()
	}
	if id == "" || !strings.Contains(out.String(), "ok ops/s") {
		t.Fatalf("the run did not start (run %q):\n%s", id, out)
	}
	if l := e.findRun(id); len(l.mounts) != 3 {
		t.Fatalf("mounts of run %s while it runs: %v", id, l.mounts)
	}
	// SIGKILL the agent of s1, then dt.
	agentPid := 0
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		env, err := procenv.Read(atoi(p.Name()))
		if err != nil || !procenv.Contains(env, "DT_RUN_ID="+id) || !procenv.Contains(env, "DT_NODE=s1") {
			continue
		}
		if cl, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline")); strings.Contains(string(cl), "\x00agent\x00") {
			agentPid = atoi(p.Name())
		}
	}
	if agentPid == 0 {
		t.Fatal("no agent of s1 found")
	}
	if err := syscall.Kill(agentPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// The other agents notice their controller is gone and unmount; s1's mount stays.
	var l leftovers
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if l = e.findRun(id); len(l.mounts) == 1 {
			break
		}
	}
	if len(l.mounts) != 1 || !strings.Contains(l.mounts[0], "/data/s1 ") {
		t.Fatalf("after kill -9 of s1's agent and of dt, want s1's mount left for dt clean, have %v", l.mounts)
	}
	if out := e.mustDT("clean"); !strings.Contains(out, "removed run "+id) {
		t.Errorf("dt clean: %s", out)
	}
	e.assertGone(id, "kill -9 of an agent and of dt, then dt clean")
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0
		}
		n = 10*n + int(c-'0')
	}
	return n
}
