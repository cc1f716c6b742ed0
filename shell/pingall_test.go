package shell

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/dtlab/dt/topology"
)

// needRoot skips tests that need root and Open vSwitch, saying which is missing.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and an OVS instance (CI runs as root)")
	}
	if _, err := exec.LookPath("ovs-vswitchd"); err != nil {
		t.Skip("needs Open vSwitch: apt-get install openvswitch-switch")
	}
}

// upSimple builds a simple topology in a runtime dir of the test's own.
func upSimple(t *testing.T) *topology.Live {
	t.Helper()
	needRoot(t)
	d, err := os.MkdirTemp("/tmp", "dtsh")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("DT_RUNTIME_DIR", d)
	t.Cleanup(func() { os.RemoveAll(d) })
	spec, err := topology.Build("simple", topology.BuildOptions{Servers: 3, Clients: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	live, err := topology.Up(ctx, spec, topology.Options{Command: "test"})
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	t.Cleanup(func() { _ = live.Down(context.Background()) })
	return live
}

// TestPingMatrixSeesPartitions: the ICMP matrix is complete on a fresh topology and marks
// exactly the pairs a cut separates, in both directions, and only while it is in place.
func TestPingMatrixSeesPartitions(t *testing.T) {
	live := upSimple(t)
	ctx := context.Background()
	// OVS applies new rules to flows it has cached a little later than ovs-ofctl returns
	// (the userspace datapath revalidates in the background): poll for a few seconds.
	check := func(when string, cut func(a, b string) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			m, err := PingMatrix(ctx, live, time.Second)
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			var wrong []string
			for _, a := range m.Nodes {
				for _, b := range m.Nodes {
					if a != b && m.Reached[a][b] == cut(a, b) {
						wrong = append(wrong, a+"->"+b)
					}
				}
			}
			if len(wrong) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: pairs %v wrong:\n%s", when, wrong, m)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	check("before any cut", func(a, b string) bool { return false })

	cookie, err := live.Partition(ctx, topology.Cut{A: []string{"c1"}, B: []string{"s1", "s2", "s3"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	check("c1 isolated", func(a, b string) bool { return a == "c1" || b == "c1" })
	if err := live.Heal(ctx, cookie); err != nil {
		t.Fatal(err)
	}
	check("healed", func(a, b string) bool { return false })

	if _, err := live.Partition(ctx, topology.Cut{A: []string{"s1"}, B: []string{"s2"}, OneWay: true}, ""); err != nil {
		t.Fatal(err)
	}
	// One way s1 -> s2 drops s1's requests and s2's replies to s1: no echo either way.
	check("s1 -> s2 cut", func(a, b string) bool { return a == "s1" && b == "s2" || a == "s2" && b == "s1" })
}
