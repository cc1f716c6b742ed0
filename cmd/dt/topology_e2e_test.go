package main

// End-to-end tests of the real dt binary, run the way a user runs it: `dt up simple` in
// the background, then `dt ls`, `dt exec`, `dt partition`, `dt heal`, `dt down`, `dt clean`
// as separate processes. They need root and Open vSwitch and skip with a message saying
// which is missing.
//
// TCP probes: dt exec runs any program in a node's namespace, so the probes are this test
// binary itself, re-executed by `dt exec NODE -- <test binary> serve|probe ...` (see
// helperMain). That needs no extra Debian package (no netcat, socat or python) and
// checks a real TCP round trip, not just a connect.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dtlab/dt/internal/procenv"
)

// helperEnv selects helper mode: the test binary started by `dt exec` inside a node.
const helperEnv = "DT_E2E_HELPER"

// probePort is where every node's echo server listens.
const probePort = 7077

// probeUnreachable is the probe's exit code when the TCP round trip fails.
const probeUnreachable = 3

var (
	dtBin      string // the dt binary under test
	selfBin    string // this test binary, re-executed as a probe
	skipReason string // why the end-to-end tests cannot run here ("" = they can)
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain(os.Args[1:]))
	}
	os.Exit(e2eMain(m))
}

func e2eMain(m *testing.M) int {
	switch {
	case os.Geteuid() != 0:
		skipReason = "needs root: dt creates network namespaces, veths and an OVS instance (CI runs as root)"
	case !haveAll("ovsdb-server", "ovs-vswitchd", "ovs-ofctl", "ovsdb-tool", "ovs-appctl"):
		skipReason = "needs Open vSwitch: apt-get install openvswitch-switch"
	case !haveAll("ip"):
		skipReason = "needs iproute2: apt-get install iproute2"
	}
	var err error
	if selfBin, err = os.Executable(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: cannot find the test binary:", err)
		return 1
	}
	if skipReason == "" {
		dir, cleanup, err := buildDT()
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		defer cleanup()
		dtBin = dir
	}
	return m.Run()
}

func haveAll(progs ...string) bool {
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			return false
		}
	}
	return true
}

// buildDT returns $DT_BIN, or builds ./cmd/dt into a temporary directory.
func buildDT() (string, func(), error) {
	if b := os.Getenv("DT_BIN"); b != "" {
		abs, err := filepath.Abs(b)
		if err != nil {
			return "", nil, err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", nil, fmt.Errorf("DT_BIN: %w", err)
		}
		return abs, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "dt-e2e-bin")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "dt")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("go build ./cmd/dt: %w\n%s", err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// e2e is one test's view of dt: its own runtime dir, so it never sees real runs or
// another test's.
type e2e struct {
	t  *testing.T
	rt string // DT_RUNTIME_DIR
}

func newE2E(t *testing.T) *e2e {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	// Short: unix socket paths under it must stay below 108 bytes.
	rt, err := os.MkdirTemp("/tmp", "dte2e")
	if err != nil {
		t.Fatal(err)
	}
	e := &e2e{t: t, rt: rt}
	t.Cleanup(func() {
		// Safety net: whatever a failed test left of its own runs.
		if out, err := e.dt("clean", "--all"); err != nil {
			t.Logf("dt clean --all: %v\n%s", err, out)
		}
		os.RemoveAll(rt)
	})
	return e
}

func (e *e2e) env(extra ...string) []string {
	return append(append(os.Environ(), "DT_RUNTIME_DIR="+e.rt), extra...)
}

func (e *e2e) command(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, dtBin, args...)
	c.Env = e.env()
	return c
}

// dt runs one dt verb to completion and returns its combined output.
func (e *e2e) dt(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := e.command(ctx, args...).CombinedOutput()
	return string(out), err
}

// mustDT runs a dt verb that must succeed.
func (e *e2e) mustDT(args ...string) string {
	e.t.Helper()
	out, err := e.dt(args...)
	if err != nil {
		e.t.Fatalf("dt %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// upProc is a `dt up` running in the background.
type upProc struct {
	cmd   *exec.Cmd
	runID string
	out   *lockedBuffer
	done  chan error
}

var runLine = regexp.MustCompile(`topology \S+ up: run ([0-9a-f]+)`)

// up starts `dt up ARGS...` in the background and waits until it reports the topology up.
func (e *e2e) up(args ...string) *upProc {
	e.t.Helper()
	cmd := exec.Command(dtBin, append([]string{"up"}, args...)...)
	cmd.Env = e.env()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	p := &upProc{cmd: cmd, out: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.out
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			p.out.Write([]byte(line + "\n"))
			if m := runLine.FindStringSubmatch(line); m != nil {
				p.runID = m[1]
			}
			// The hint line comes after the node list: the topology is complete.
			if !sent && p.runID != "" && strings.Contains(line, "tears it down") {
				ready <- p.runID
				sent = true
			}
		}
		p.done <- cmd.Wait()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
			}
		}
	})
	select {
	case <-ready:
		return p
	case err := <-p.done:
		e.t.Fatalf("dt up %s exited before the topology was up: %v\n%s", strings.Join(args, " "), err, p.out)
	case <-time.After(90 * time.Second):
		e.t.Fatalf("dt up %s: not up within 90s\n%s", strings.Join(args, " "), p.out)
	}
	return nil
}

// wait waits for the background dt up to exit.
func (p *upProc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		return err
	case <-time.After(d):
		t.Fatalf("dt up (run %s) still running after %s\n%s", p.runID, d, p.out)
	}
	return nil
}

// lockedBuffer collects a background process's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serveAll starts an echo server in every node's namespace through `dt exec`.
func (e *e2e) serveAll(nodes []string) {
	e.t.Helper()
	for _, n := range nodes {
		cmd := exec.Command(dtBin, "exec", n, "--", selfBin, "serve", strconv.Itoa(probePort))
		cmd.Env = e.env(helperEnv + "=1")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			e.t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			e.t.Fatalf("dt exec %s -- serve: %v", n, err)
		}
		e.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "listening") {
			e.t.Fatalf("echo server on %s did not start: %q %v\n%s", n, line, err, stderr.String())
		}
	}
}

// reach reports whether a TCP round trip from node src to addr succeeds, probing with
// `dt exec SRC -- <test binary> probe ADDR`.
func (e *e2e) reach(src, addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, dtBin, "exec", src, "--", selfBin, "probe", addr)
	cmd.Env = e.env(helperEnv + "=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != probeUnreachable {
			e.t.Errorf("dt exec %s -- probe %s: %v\n%s", src, addr, err, out)
		}
		return false
	}
	return true
}

// matrix probes TCP between every ordered pair of nodes.
func (e *e2e) matrix(ips map[string]string) map[string]bool {
	m := map[string]bool{}
	for a := range ips {
		for b, ip := range ips {
			if a != b {
				m[a+">"+b] = e.reach(a, net.JoinHostPort(ip, strconv.Itoa(probePort)))
			}
		}
	}
	return m
}

// helperMain is the test binary running inside a node's namespace:
//
//	serve PORT   echo one line per connection on 0.0.0.0:PORT until killed
//	probe ADDR   connect, send a line, expect it back; exit 0 on success, probeUnreachable
//	             if not (dt itself exits 1 on its own errors, so that code stays distinct)
func helperMain(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "helper: want serve PORT or probe ADDR")
		return 2
	}
	switch args[0] {
	case "serve":
		ln, err := net.Listen("tcp", ":"+args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 2
		}
		fmt.Println("listening", ln.Addr())
		for {
			c, err := ln.Accept()
			if err != nil {
				return 2
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err == nil {
					io.WriteString(c, line)
				}
			}()
		}
	case "probe":
		c, err := net.DialTimeout("tcp", args[1], time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, "probe:", err)
			return probeUnreachable
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		host, _ := os.Hostname()
		msg := "dt-e2e " + host + "\n"
		if _, err := io.WriteString(c, msg); err != nil {
			fmt.Fprintln(os.Stderr, "probe:", err)
			return probeUnreachable
		}
		got, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || got != msg {
			fmt.Fprintf(os.Stderr, "probe: echo %q, %v\n", got, err)
			return probeUnreachable
		}
		return 0
	}
	fmt.Fprintln(os.Stderr, "helper: unknown mode", args[0])
	return 2
}

// simpleIPs are the addresses `dt up simple` gives its nodes by default.
var simpleIPs = map[string]string{"s1": "10.0.1.1", "s2": "10.0.1.2", "s3": "10.0.1.3", "c1": "10.0.2.1"}

func simpleNodes() []string { return []string{"s1", "s2", "s3", "c1"} }

// leftovers is what of a run exists on the host.
type leftovers struct {
	namespaces, links, procs, mounts []string
	dirExists                        bool
}

func (l leftovers) empty() bool {
	return len(l.namespaces) == 0 && len(l.links) == 0 && len(l.procs) == 0 && len(l.mounts) == 0 && !l.dirExists
}

// hasNodes reports whether every node's namespace (dt-<id>-<node>) exists.
func (l leftovers) hasNodes(id string, nodes []string) bool {
	for _, n := range nodes {
		found := false
		for _, ns := range l.namespaces {
			found = found || ns == "dt-"+id+"-"+n
		}
		if !found {
			return false
		}
	}
	return true
}

func (l leftovers) String() string {
	return fmt.Sprintf("namespaces %v, interfaces %v, processes %v, mounts %v, runtime dir present %v",
		l.namespaces, l.links, l.procs, l.mounts, l.dirExists)
}

// findRun lists what of run id exists on the host: namespaces under /var/run/netns and
// interfaces whose name contains the id, processes with DT_RUN_ID=<id> in their
// environment or the run's directory on their command line, the runtime dir.
func (e *e2e) findRun(id string) leftovers {
	var l leftovers
	if ents, err := os.ReadDir("/var/run/netns"); err == nil {
		for _, n := range ents {
			if strings.Contains(n.Name(), id) {
				l.namespaces = append(l.namespaces, n.Name())
			}
		}
	}
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if strings.Contains(i.Name, id) {
			l.links = append(l.links, i.Name)
		}
	}
	runDir := filepath.Join(e.rt, id)
	wantEnv := "DT_RUN_ID=" + id
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		env, _ := procenv.Read(pid)
		cmdline, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if procenv.Contains(env, wantEnv) || bytes.Contains(cmdline, []byte(runDir)) {
			l.procs = append(l.procs, p.Name()+" "+strings.ReplaceAll(string(bytes.TrimRight(cmdline, "\x00")), "\x00", " "))
		}
	}
	// Mounts: FUSE mounts in /proc/mounts that name the run (the disk layer's source
	// carries its id) or lie under its runtime dir (namespaces are listed above).
	if b, err := os.ReadFile("/proc/mounts"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 2 && strings.HasPrefix(f[2], "fuse") && (strings.HasPrefix(f[0], "dt-"+id+"-") || strings.HasPrefix(f[1], runDir+"/")) {
				l.mounts = append(l.mounts, line)
			}
		}
	}
	_, err := os.Stat(runDir)
	l.dirExists = err == nil
	return l
}

// assertGone fails unless nothing of run id is left. Deletions the kernel finishes
// asynchronously (a veth going with its namespace) get a short grace period.
func (e *e2e) assertGone(id, after string) {
	e.t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		l := e.findRun(id)
		if l.empty() {
			return
		}
		if time.Now().After(deadline) {
			e.t.Errorf("after %s, run %s left behind: %s", after, id, l)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestUpExecPartitionHealDown drives a whole session the way a user does.
func TestUpExecPartitionHealDown(t *testing.T) {
	e := newE2E(t)
	p := e.up("simple")
	id := p.runID

	if l := e.findRun(id); !l.hasNodes(id, simpleNodes()) || len(l.procs) < 2 || !l.dirExists {
		t.Errorf("while up, want a namespace per node, ≥2 OVS daemons and a runtime dir; have %s", l)
	}
	ls := e.mustDT("ls")
	if !strings.Contains(ls, id) || !strings.Contains(ls, "s1,s2,s3,c1") || strings.Contains(ls, "dead") {
		t.Errorf("dt ls does not show live run %s with its nodes:\n%s", id, ls)
	}

	// The node sees its own address on eth0.
	if out := e.mustDT("exec", "s1", "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, "10.0.1.1/16") {
		t.Errorf("dt exec s1 -- ip addr: want 10.0.1.1/16 on eth0:\n%s", out)
	}

	e.serveAll(simpleNodes())
	for k, ok := range e.matrix(simpleIPs) {
		if !ok {
			t.Errorf("before any partition: TCP %s fails", k)
		}
	}

	out := e.mustDT("partition", "s1", "s2")
	if !strings.Contains(out, "partitioned s1 <-> s2") {
		t.Errorf("dt partition s1 s2 printed %q", out)
	}
	for k, ok := range e.matrix(simpleIPs) {
		cut := k == "s1>s2" || k == "s2>s1"
		if ok == cut {
			t.Errorf("after dt partition s1 s2: TCP %s reachable=%v, want %v", k, ok, !cut)
		}
	}

	e.mustDT("heal")
	for k, ok := range e.matrix(simpleIPs) {
		if !ok {
			t.Errorf("after dt heal: TCP %s fails", k)
		}
	}

	// dt heal A B removes exactly that cut.
	e.mustDT("partition", "s1", "s2")
	e.mustDT("partition", "c1", "s3")
	e.mustDT("heal", "s2", "s1")
	if !e.reach("s1", "10.0.1.2:7077") || e.reach("c1", "10.0.1.3:7077") {
		t.Errorf("dt heal s2 s1 must heal s1<->s2 and leave c1<->s3 cut")
	}
	e.mustDT("heal")

	t.Run("errors with a live topology", func(t *testing.T) {
		out, err := e.dt("exec", "zz", "--", "true")
		if err == nil || !strings.Contains(out, `unknown node "zz"`) || !strings.Contains(out, "s1, s2, s3, c1") {
			t.Errorf("dt exec zz: want an error listing valid nodes, got %v:\n%s", err, out)
		}
		out, err = e.dt("partition", "s1", "s9")
		if err == nil || !strings.Contains(out, `unknown node "s9"`) || !strings.Contains(out, "s1, s2, s3, c1") {
			t.Errorf("dt partition s1 s9: want an error listing valid nodes, got %v:\n%s", err, out)
		}
		out, err = e.dt("exec", "s1", "--", "dt-no-such-program")
		if err == nil || !strings.Contains(out, "dt-no-such-program") {
			t.Errorf("dt exec of a missing program: want an error naming it, got %v:\n%s", err, out)
		}
	})

	out = e.mustDT("down")
	if !strings.Contains(out, "down: "+id) {
		t.Errorf("dt down printed %q", out)
	}
	if err := p.wait(t, 30*time.Second); err != nil {
		t.Errorf("dt up after dt down: %v\n%s", err, p.out)
	}
	if !strings.Contains(p.out.String(), "tearing down "+id) {
		t.Errorf("dt up did not report its teardown:\n%s", p.out)
	}
	e.assertGone(id, "dt down")
	if out := e.mustDT("ls"); !strings.Contains(out, "no topologies") {
		t.Errorf("dt ls after dt down:\n%s", out)
	}
}

// TestKill9ThenClean: a dt up killed with SIGKILL leaves its namespaces and OVS daemons;
// dt clean removes them, and only them.
func TestKill9ThenClean(t *testing.T) {
	e := newE2E(t)

	// Objects dt did not create, which must survive.
	tag := fmt.Sprintf("%d", os.Getpid()%100000)
	foreignNS, foreignA, foreignB := "dte2e-foreign-"+tag, "dte2eA"+tag, "dte2eB"+tag
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", foreignNS)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", foreignNS).Run() })
	run("ip", "link", "add", foreignA, "type", "veth", "peer", "name", foreignB)
	t.Cleanup(func() { exec.Command("ip", "link", "delete", foreignA).Run() })

	hostBridge := ""
	hostDB := "unix:/var/run/openvswitch/db.sock"
	if err := exec.Command("ovs-vsctl", "--db="+hostDB, "--timeout=5", "show").Run(); err == nil {
		hostBridge = "dte2ebr" + tag
		run("ovs-vsctl", "--db="+hostDB, "--timeout=10", "add-br", hostBridge,
			"--", "set", "bridge", hostBridge, "datapath_type=netdev")
		t.Cleanup(func() {
			exec.Command("ovs-vsctl", "--db="+hostDB, "--timeout=10", "--if-exists", "del-br", hostBridge).Run()
		})
	} else {
		t.Logf("no host OVS answers at %s: the host-bridge-survives check is skipped", hostDB)
	}

	p := e.up("simple", "--number-nodes", "3", "--number-clients", "1")
	id := p.runID
	before := e.findRun(id)
	if len(before.procs) < 2 {
		t.Fatalf("want the private OVS daemons running, have %s", before)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 10*time.Second)

	// Killed: everything but the dt process itself is still there.
	after := e.findRun(id)
	if !after.hasNodes(id, simpleNodes()) || len(after.procs) < 2 || !after.dirExists {
		t.Fatalf("after kill -9 expected the run's objects to remain for dt clean; have %s", after)
	}
	if ls := e.mustDT("ls"); !strings.Contains(ls, id) || !strings.Contains(ls, "dead") {
		t.Errorf("dt ls must show run %s with a dead owner:\n%s", id, ls)
	}
	// With the owner dead there is no live topology to act on.
	if out, err := e.dt("exec", "s1", "--", "true"); err == nil || !strings.Contains(out, "no live topology") {
		t.Errorf("dt exec after the owner died: want 'no live topology', got %v:\n%s", err, out)
	}

	out := e.mustDT("clean")
	if !strings.Contains(out, "removed run "+id) {
		t.Errorf("dt clean printed %q", out)
	}
	e.assertGone(id, "kill -9 and dt clean")
	if out := e.mustDT("clean"); !strings.Contains(out, "nothing to clean") {
		t.Errorf("second dt clean: %q", out)
	}

	if _, err := os.Stat("/var/run/netns/" + foreignNS); err != nil {
		t.Errorf("dt clean removed namespace %s that the test created", foreignNS)
	}
	for _, l := range []string{foreignA, foreignB} {
		if _, err := net.InterfaceByName(l); err != nil {
			t.Errorf("dt clean removed interface %s that the test created", l)
		}
	}
	if hostBridge != "" {
		if err := exec.Command("ovs-vsctl", "--db="+hostDB, "--timeout=5", "br-exists", hostBridge).Run(); err != nil {
			t.Errorf("dt clean removed bridge %s from the host OVS", hostBridge)
		}
	}
}

// TestCleanSparesLiveRuns: dt clean without --all leaves a run whose owner is alive.
func TestCleanSparesLiveRuns(t *testing.T) {
	e := newE2E(t)
	p := e.up("simple", "--number-nodes", "1", "--number-clients", "0")
	out := e.mustDT("clean")
	if !strings.Contains(out, "skip "+p.runID) {
		t.Errorf("dt clean with a live owner: want it skipped, got:\n%s", out)
	}
	if l := e.findRun(p.runID); !l.hasNodes(p.runID, []string{"s1"}) || len(l.procs) < 2 || !l.dirExists {
		t.Errorf("dt clean touched live run %s: %s", p.runID, l)
	}
	if out := e.mustDT("exec", "s1", "--", "true"); out != "" {
		t.Errorf("dt exec s1 -- true printed %q", out)
	}
	e.mustDT("down")
	p.wait(t, 30*time.Second)
	e.assertGone(p.runID, "dt down")
}

// TestErrors checks the messages a user sees when something is wrong.
func TestErrors(t *testing.T) {
	e := newE2E(t)
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"up", "nosuchtopo"}, []string{`unknown topology "nosuchtopo"`, "valid topologies are", "simple"}},
		{[]string{"exec", "s1", "--", "true"}, []string{"no live topology", "dt up simple"}},
		{[]string{"shell", "s1"}, []string{"no live topology"}},
		{[]string{"partition", "s1", "s2"}, []string{"no live topology"}},
		{[]string{"heal"}, []string{"no live topology"}},
		{[]string{"down"}, []string{"no live topology"}},
		{[]string{"up", "simple", "--number-nodes", "0"}, []string{"--number-nodes 0"}},
		{[]string{"up", "simple", "--datapath", "bogus"}, []string{`unknown datapath "bogus"`, "auto, system, netdev"}},
		{[]string{"heal", "s1"}, []string{"two groups"}},
	}
	for _, c := range cases {
		out, err := e.dt(c.args...)
		if err == nil {
			t.Errorf("dt %s: want an error, got success:\n%s", strings.Join(c.args, " "), out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("dt %s: output lacks %q:\n%s", strings.Join(c.args, " "), w, out)
			}
		}
	}
	// Nothing of a failed dt up may stay behind (a bad --datapath fails after the
	// runtime dir exists).
	if ents, _ := os.ReadDir(e.rt); len(ents) != 0 {
		var names []string
		for _, x := range ents {
			names = append(names, x.Name())
		}
		t.Errorf("failed dt up left %v in the runtime dir", names)
	}

	t.Run("not root", func(t *testing.T) {
		// Run the binary as nobody; it must refuse with a message, not fail half-way.
		if err := os.Chmod(filepath.Dir(dtBin), 0o755); err != nil {
			t.Skip(err)
		}
		cmd := exec.Command(dtBin, "up", "simple")
		cmd.Env = e.env()
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Skipf("cannot run dt as nobody here (%v)", err)
		}
		if !strings.Contains(string(out), "must run as root") {
			t.Errorf("dt up as nobody: want 'must run as root', got:\n%s", out)
		}
	})
}

// TestTwoRunsAtOnce: two topologies up at the same time on one host must both forward.
// (With the userspace datapath every ovs-vswitchd creates a tap named "ovs-netdev" in its
// network namespace; before each run's switch got a namespace of its own, the second
// run's bridge silently failed.)
func TestTwoRunsAtOnce(t *testing.T) {
	e := newE2E(t)
	first := e.up("simple", "--number-nodes", "1", "--number-clients", "1")
	second := e.up("simple", "--number-nodes", "1", "--number-clients", "1")
	for _, p := range []*upProc{first, second} {
		cmd := exec.Command(dtBin, "--run", p.runID, "exec", "s1", "--", selfBin, "serve", strconv.Itoa(probePort))
		cmd.Env = e.env(helperEnv + "=1")
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || !strings.HasPrefix(line, "listening") {
			t.Fatalf("run %s: echo server on s1 did not start: %q %v", p.runID, line, err)
		}
		probe := exec.Command(dtBin, "--run", p.runID, "exec", "c1", "--", selfBin, "probe", "10.0.1.1:7077")
		probe.Env = e.env(helperEnv + "=1")
		if out, err := probe.CombinedOutput(); err != nil {
			t.Errorf("run %s (one of two at once): TCP c1 -> s1 fails: %v %s", p.runID, err, out)
		}
	}
	for _, p := range []*upProc{first, second} {
		e.mustDT("--run", p.runID, "down")
		p.wait(t, 30*time.Second)
		e.assertGone(p.runID, "dt down")
	}
}
