package ovs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func needOVS(t *testing.T) *Instance {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run ovs-vswitchd (CI runs as root)")
	}
	if err := CheckInstalled(); err != nil {
		t.Skip(err)
	}
	dir, err := os.MkdirTemp("/tmp", "dtovs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The userspace datapath creates an "ovs-netdev" tap in vswitchd's namespace; run
	// in a throwaway one so the test never collides with anything on the host.
	ns := fmt.Sprintf("dtovstest-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	inst, err := Start(ctx, Options{Dir: dir, RunID: "t" + fmt.Sprint(os.Getpid()%100000), Datapath: DatapathNetdev, Netns: ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Stop(context.Background()) })
	return inst
}

// needBridge is needOVS with one bridge, dtovsbr.
func needBridge(t *testing.T) (*Instance, context.Context) {
	t.Helper()
	inst := needOVS(t)
	ctx := context.Background()
	if err := inst.AddBridge(ctx, "dtovsbr", nil); err != nil {
		t.Fatal(err)
	}
	return inst, ctx
}

func TestStartStopLeavesNoDaemon(t *testing.T) {
	inst := needOVS(t)
	if p := inst.Pids(); len(p) != 2 {
		t.Fatalf("want ovsdb-server and ovs-vswitchd, got %v", p)
	}
	if err := inst.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p := inst.Pids(); len(p) != 0 {
		t.Errorf("daemons left after Stop: %v", p)
	}
}

func TestFlowsAreRemovedByCookieOnly(t *testing.T) {
	inst, ctx := needBridge(t)
	a, b := NewCookie(inst.RunID, "fault-a"), NewCookie(inst.RunID, "fault-b")
	if a == b || a>>32 != b>>32 {
		t.Fatalf("cookies must share the run prefix and differ per owner: %#x %#x", a, b)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(inst.AddFlows(ctx, "dtovsbr", a, []Flow{DropIP("10.0.0.1", "10.0.0.2"), DropIP("10.0.0.2", "10.0.0.1")}))
	must(inst.AddFlows(ctx, "dtovsbr", b, []Flow{DropIP("10.0.0.3", "10.0.0.4")}))
	count := func(c Cookie) int {
		flows, err := inst.DumpFlows(ctx, "dtovsbr")
		must(err)
		n := 0
		for _, f := range flows {
			if strings.Contains(f, fmt.Sprintf("cookie=%#x", uint64(c))) {
				n++
			}
		}
		return n
	}
	if count(a) != 2 || count(b) != 1 {
		t.Fatalf("installed a=%d b=%d rules, want 2 and 1", count(a), count(b))
	}
	must(inst.DelFlows(ctx, "dtovsbr", a))
	if count(a) != 0 || count(b) != 1 {
		t.Errorf("after deleting a: a=%d b=%d, want 0 and 1", count(a), count(b))
	}
	must(inst.DelRunFlows(ctx, "dtovsbr"))
	flows, _ := inst.DumpFlows(ctx, "dtovsbr")
	if count(b) != 0 || len(flows) == 0 {
		t.Errorf("after deleting the run's rules: %v (the default NORMAL rule must stay)", flows)
	}
}

// TestSameRuleUnderTwoCookies: two owners dropping the same traffic each keep a rule of
// their own, so healing one leaves the other's in force (OpenFlow replaces a rule with an
// identical match and priority, cookie and all, unless the matches differ).
func TestSameRuleUnderTwoCookies(t *testing.T) {
	inst, ctx := needBridge(t)
	a, b := NewCookie(inst.RunID, "fault-a"), NewCookie(inst.RunID, "fault-b")
	rules := func(c Cookie) int {
		flows, err := inst.DumpFlows(ctx, "dtovsbr")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, f := range flows {
			if strings.Contains(f, fmt.Sprintf("cookie=%#x,", uint64(c))) && strings.Contains(f, "nw_dst=10.0.0.2") {
				n++
			}
		}
		return n
	}
	same := []Flow{DropIP("10.0.0.1", "10.0.0.2"), DropPort("10.0.0.2", "tcp", 2379)}
	for _, c := range []Cookie{a, b, a} { // a again: idempotent for one owner
		if err := inst.AddFlows(ctx, "dtovsbr", c, same); err != nil {
			t.Fatal(err)
		}
	}
	if rules(a) != 2 || rules(b) != 2 {
		t.Fatalf("same rules under two cookies: a has %d, b has %d, want 2 each", rules(a), rules(b))
	}
	if err := inst.DelFlows(ctx, "dtovsbr", a); err != nil {
		t.Fatal(err)
	}
	if rules(a) != 0 || rules(b) != 2 {
		t.Errorf("after healing a: a has %d, b has %d, want 0 and 2", rules(a), rules(b))
	}
}

func TestDropFlowText(t *testing.T) {
	for _, c := range []struct {
		got  Flow
		want string
	}{
		{DropIP("10.0.0.1", "10.0.0.2"), "priority=100,ip,nw_src=10.0.0.1,nw_dst=10.0.0.2,actions=drop"},
		{DropPort("10.0.0.2", "tcp", 2379), "priority=100,tcp,nw_dst=10.0.0.2,tp_dst=2379,actions=drop"},
		{DropPort("10.0.0.3", "udp", 53), "priority=100,udp,nw_dst=10.0.0.3,tp_dst=53,actions=drop"},
	} {
		if string(c.got) != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	if m := NewCookie("abc123", "x").ownerMatch(); !strings.HasPrefix(m, "metadata=0/0x") || m == "metadata=0/0x0" {
		t.Errorf("owner match %q: want metadata=0 under a non-zero mask", m)
	}
}

// TestReadsSurviveUnmodelledUpdates: ovs-vswitchd and users update columns dt does not
// model; reading the database must not fail on them.
func TestReadsSurviveUnmodelledUpdates(t *testing.T) {
	inst, ctx := needBridge(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 100; i++ {
			exec.Command("ovs-vsctl", "--no-wait", "--db=unix:"+inst.DBSocket(), "set", "bridge", "dtovsbr",
				fmt.Sprintf("other_config:x=%d", i)).Run()
		}
	}()
	fails := 0
	for i := 0; i < 100; i++ {
		if _, err := inst.Ofports(ctx); err != nil {
			fails++
			t.Logf("read %d: %v", i, err)
		}
	}
	<-done
	if fails > 0 {
		t.Errorf("%d of 100 reads failed while unmodelled columns changed", fails)
	}
}

func TestResolveDatapath(t *testing.T) {
	if _, err := ResolveDatapath("dpdk", ""); err == nil || !strings.Contains(err.Error(), "auto, system, netdev") {
		t.Errorf("unknown datapath must list the valid ones: %v", err)
	}
	if !KernelModuleLoaded() {
		if _, err := ResolveDatapath("system", ""); err == nil {
			t.Errorf("system datapath without the module must fail")
		}
		if dp, _ := ResolveDatapath("auto", ""); dp != DatapathNetdev {
			t.Errorf("auto without the module chose %s", dp)
		}
	}
}
