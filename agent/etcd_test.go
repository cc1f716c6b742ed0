package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/systems"
	"github.com/dtlab/dt/workloads"
)

// TestEtcdThroughAgent is the agent's end-to-end path: an agent in a namespace of its
// own starts a real etcd, reads its status from inside, runs a real workload client
// against it and streams the records back; then pause, stop, backup and clean.
func TestEtcdThroughAgent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace (CI runs as root)")
	}
	if _, err := exec.LookPath(systems.EtcdBin); err != nil {
		t.Skipf("%s not installed (apt-get install etcd-server): %v", systems.EtcdBin, err)
	}
	name := fmt.Sprintf("dtagtest-etcd-%d", os.Getpid())
	newNamedNetns(t, name)
	loUp(t, name)

	o := launchOpts(t, "s1")
	o.Netns = name
	a := launch(t, o)
	cl := a.Client()
	ctx := ctxT(t)

	sys, err := systems.Lookup("etcd")
	if err != nil {
		t.Fatal(err)
	}
	// The namespace is the member's alone, so its one address can be the loopback.
	c := systems.Cluster{Members: []systems.Member{{Name: "s1", IP: "127.0.0.1"}}, RunDir: o.RunDir, Token: o.RunID, SharedNetns: true}
	mc := sys.MemberCommand(c, 0, false)
	if _, err := cl.Start(ctx, ProcSpec{Name: "etcd", Argv: mc.Argv, Env: mc.Env, Dir: mc.Dir, Log: mc.Log}); err != nil {
		t.Fatal(err)
	}
	local := sys.LocalEndpoint(c, 0)
	var st systems.MemberStatus
	waitFor(t, 30*time.Second, "etcd is healthy", func() bool {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		st, err = cl.SystemStatus(sctx, "etcd", local)
		return err == nil && st.Healthy
	})
	if st.LeaderID == "" || st.LeaderID != st.ID || st.Term == 0 {
		t.Fatalf("single member status %+v: want itself as leader", st)
	}

	spec := workloads.DefaultSpec()
	spec.Client, spec.Rate, spec.Duration, spec.Mix, spec.MaxKey = "c1", 50, 1, workloads.WriteMix(0.5), 5
	spec.System, spec.Endpoints = "etcd", sys.ClientEndpoints(c)
	spec.StartUnixNano = time.Now().UnixNano()
	var ops []records.Op
	if err := cl.RunWorkload(ctx, spec, func(op records.Op) error { ops = append(ops, op); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(ops) < 45 || len(ops) > 55 {
		t.Fatalf("got %d ops for 50 ops/s over 1 s", len(ops))
	}
	for _, op := range ops {
		if !op.OK() {
			t.Fatalf("op failed against a healthy member: %+v", op)
		}
	}

	// A paused member does not answer: the controller sees a 502 once its deadline passes.
	if _, err := cl.Pause(ctx, "etcd"); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = cl.SystemStatus(sctx, "etcd", local)
	cancel()
	if err == nil {
		t.Errorf("a paused etcd reported its status")
	}
	if _, err := cl.Continue(ctx, "etcd"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "etcd answers again", func() bool {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		st, err := cl.SystemStatus(sctx, "etcd", local)
		return err == nil && st.Healthy
	})

	if ps, err := cl.Stop(ctx, "etcd", 5*time.Second); err != nil || ps.State != StateStopped {
		t.Fatalf("stop etcd: %+v, %v", ps, err)
	}
	backup := filepath.Join(o.RunDir, "backup", "s1")
	if err := cl.BackupDir(ctx, mc.DataDir, backup); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(backup, "member", "wal")); err != nil {
		t.Errorf("backup lacks the WAL: %v", err)
	}
	if err := cl.CleanDir(ctx, mc.DataDir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(mc.DataDir); !os.IsNotExist(err) {
		t.Errorf("data dir still there after clean: %v", err)
	}
}

// loUp brings the loopback up inside the named namespace, through a handle bound to it.
// Equivalent to: ip -n NAME link set lo up.
func loUp(t *testing.T, name string) {
	t.Helper()
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatalf("set lo up in %s: %v", name, err)
	}
}
