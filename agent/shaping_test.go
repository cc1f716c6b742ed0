package agent

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/shaping"
	"github.com/vishvananda/netns"
)

// TestShapingThroughAgent: an agent in its own namespace applies, combines, lists and
// removes layers of impairments on its interface, refuses bad requests with the right
// status, and leaves nothing behind when it shuts down.
func TestShapingThroughAgent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace and run iptables (CI runs as root)")
	}
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		t.Skip("needs iptables (Debian package iptables)")
	}
	name := fmt.Sprintf("dtagshape-%d", os.Getpid())
	newNamedNetns(t, name)
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v\n%s", err, out)
	}
	o := launchOpts(t, "s1")
	o.Netns = name
	a := launch(t, o)
	c := a.Client()
	ctx := ctxT(t)
	ms := time.Millisecond

	st, err := c.Shaping(ctx)
	if err != nil || st.Backend != "" || len(st.Ifaces) != 0 {
		t.Fatalf("fresh agent: %+v, %v", st, err)
	}
	topo := shaping.Layer{Name: "topology", Mode: shaping.ModeSet, Rules: []shaping.Rule{{Impairment: shaping.Impairment{Delay: 5 * ms}}}}
	if st, err = c.SetShapeLayer(ctx, ShapeRequest{Backend: shaping.NameUserspace, Iface: "lo", Layer: topo}); err != nil {
		t.Fatal(err)
	}
	fault := shaping.Layer{Name: "fault:x#1", Mode: shaping.ModeAdd, Rules: []shaping.Rule{{Impairment: shaping.Impairment{Delay: 10 * ms, Loss: 1}}}}
	if st, err = c.SetShapeLayer(ctx, ShapeRequest{Backend: shaping.NameAuto, Iface: "lo", Layer: fault}); err != nil {
		t.Fatal(err)
	}
	if st.Backend != shaping.NameUserspace || len(st.Ifaces) != 1 || len(st.Ifaces[0].Layers) != 2 {
		t.Fatalf("status %+v", st)
	}
	if r := st.Ifaces[0].Rules; len(r) != 1 || r[0].String() != "default: delay 15ms loss 1%" {
		t.Errorf("combined rules %v, want delay 15ms loss 1%%", r)
	}
	if st.Ifaces[0].Queue == nil {
		t.Error("no reader counters in the status")
	}
	inv, err := listIn(name, o.RunID)
	if err != nil || len(inv.Chains) == 0 || len(inv.Queues) != 1 {
		t.Errorf("inventory in %s: %v, %v", name, inv, err)
	}

	// Refusals.
	_, err = c.SetShapeLayer(ctx, ShapeRequest{Backend: shaping.NameNetem, Iface: "lo", Layer: topo})
	wantStatus(t, err, http.StatusConflict)
	_, err = c.SetShapeLayer(ctx, ShapeRequest{Iface: "lo", Layer: shaping.Layer{Name: "x", Mode: "mul"}})
	wantStatus(t, err, http.StatusBadRequest)
	_, err = c.SetShapeLayer(ctx, ShapeRequest{Iface: "lo", Layer: shaping.Layer{Name: "big", Mode: shaping.ModeAdd, Rules: []shaping.Rule{{Impairment: shaping.Impairment{Delay: shaping.MaxDelay}}}}})
	wantStatus(t, err, http.StatusBadRequest)
	_, err = c.SetShapeLayer(ctx, ShapeRequest{Iface: "nope0", Layer: topo})
	wantStatus(t, err, http.StatusInternalServerError)
	_, err = c.ClearShaping(ctx, ShapeClearRequest{Iface: "lo", Layer: "nothing"})
	wantStatus(t, err, http.StatusNotFound)
	if err := c.Shaper("").DeleteLayer(ctx, "lo", "nothing"); err != nil {
		t.Errorf("DeleteLayer of a missing layer: %v", err)
	}
	if st, _ = c.Shaping(ctx); len(st.Ifaces) != 1 || st.Ifaces[0].Rules[0].Delay != 15*ms {
		t.Errorf("a refused request changed the state: %+v", st)
	}

	// Removing a layer leaves the other.
	if st, err = c.ClearShaping(ctx, ShapeClearRequest{Iface: "lo", Layer: "topology"}); err != nil {
		t.Fatal(err)
	}
	if r := st.Ifaces[0].Rules; len(r) != 1 || r[0].Delay != 10*ms {
		t.Errorf("after removing the topology layer: %v", r)
	}

	// Shutdown removes everything.
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	inv, err = listIn(name, o.RunID)
	if err != nil || !inv.Empty() {
		t.Errorf("after the agent's shutdown %s still has:\n%v (%v)", name, inv, err)
	}
	if !strings.HasPrefix(o.RunID, "test-") {
		t.Fatal(o.RunID)
	}
}

func listIn(nsName, owner string) (shaping.Inventory, error) {
	ns, err := netns.GetFromName(nsName)
	if err != nil {
		return shaping.Inventory{}, err
	}
	defer ns.Close()
	return shaping.List(context.Background(), owner, shaping.InNamespace(ns))
}
