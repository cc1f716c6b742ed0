package main

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dtlab/dt/topology"
)

var pingAvg = regexp.MustCompile(`= [\d.]+/([\d.]+)/[\d.]+/[\d.]+ ms`)

// pingRTT is the average RTT of `dt exec FROM -- ping` to ip.
func (e *e2e) pingRTT(from, ip string) time.Duration {
	e.t.Helper()
	out := e.mustDT("exec", from, "--", "ping", "-n", "-q", "-c", "30", "-i", "0.05", ip)
	m := pingAvg.FindStringSubmatch(out)
	if m == nil {
		e.t.Fatalf("cannot parse ping output:\n%s", out)
	}
	ms, _ := strconv.ParseFloat(m[1], 64)
	return time.Duration(ms * float64(time.Millisecond))
}

// TestLinkE2E: dt up with --link-latency shapes every path, dt link overrides one pair
// and --clear gives it back, bad input is named; then a crash (agents and dt up killed)
// leaves the rules in the namespaces and dt clean removes everything.
func TestLinkE2E(t *testing.T) {
	e := newE2E(t)
	if _, err := exec.LookPath("ping"); err != nil {
		t.Skip("needs ping (Debian iputils-ping)")
	}
	p := e.up("simple", "--link-latency", "20", "--shaper", "userspace")
	tol := func(want time.Duration) time.Duration { return time.Millisecond + want/20 }
	check := func(what string, got, want time.Duration) {
		t.Helper()
		if (got - want).Abs() > tol(want) {
			t.Errorf("%s: ping avg %v, want %v ±%v", what, got, want, tol(want))
		} else {
			t.Logf("%s: ping avg %v", what, got)
		}
	}
	check("--link-latency 20, s1 -> s2", e.pingRTT("s1", "10.0.1.2"), 40*time.Millisecond)

	out := e.mustDT("link", "s1", "s2", "--delay", "50ms", "--loss", "0%")
	if !strings.Contains(out, "s1 <-> s2: delay 50ms each way (userspace)") {
		t.Errorf("dt link output:\n%s", out)
	}
	check("dt link s1 s2 --delay 50ms", e.pingRTT("s1", "10.0.1.2"), 100*time.Millisecond)
	check("s1 -> s3, not linked", e.pingRTT("s1", "10.0.1.3"), 40*time.Millisecond)
	e.mustDT("link", "s1", "s2", "--clear")
	check("after dt link --clear", e.pingRTT("s2", "10.0.1.1"), 40*time.Millisecond)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"link", "s1", "s9", "--delay", "1ms"}, `unknown node "s9": valid nodes are s1, s2, s3, c1`},
		{[]string{"link", "s1", "s2", "--loss", "120"}, "--loss 120: want 0..100"},
		{[]string{"link", "s1", "s2", "--rate", "10"}, `--rate "10": give a unit`},
		{[]string{"link", "s1", "s2"}, "say what the link does"},
		{[]string{"link", "s1", "s2", "--clear", "--delay", "1ms"}, "--clear takes no"},
	} {
		out, err := e.dt(tc.args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("dt %s: %v\n%s\nwant an error with %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}

	// A crash: the agents die without clearing, then dt up itself.
	for _, pid := range topology.RunProcesses(p.runID) {
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); strings.Contains(string(b), "agent\x00") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	time.Sleep(300 * time.Millisecond)
	ns := topology.NetnsName(p.runID, "s1")
	rules, _ := exec.Command("ip", "netns", "exec", ns, "iptables-save", "-t", "mangle").CombinedOutput()
	if !strings.Contains(string(rules), "dt:"+p.runID) {
		t.Errorf("after the agents' crash %s has no rules of the run; the crash test tests nothing:\n%s", ns, rules)
	}
	_ = p.cmd.Process.Kill()
	_ = p.wait(t, 10*time.Second)
	out = e.mustDT("clean")
	if !strings.Contains(out, "removed run "+p.runID) {
		t.Errorf("dt clean:\n%s", out)
	}
	if _, err := os.Stat("/var/run/netns/" + ns); err == nil {
		t.Errorf("namespace %s left after dt clean", ns)
	}
	if left := topology.RunProcesses(p.runID); len(left) > 0 {
		t.Errorf("processes of the run left after dt clean: %v", left)
	}
}
