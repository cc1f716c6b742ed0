// Package systemstest runs a real cluster of a registered system inside the test's own
// network namespace, each member on its own loopback address (127.0.B.11, .12, ...),
// for tests and benchmarks that need the real thing but no namespaces or root. It
// starts members with the system's own MemberCommand and kills them, by pid, when the
// test ends.
package systemstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dtlab/dt/systems"
)

// Cluster is a running local cluster.
type Cluster struct {
	System  systems.System
	Cluster systems.Cluster

	tb    testing.TB
	mu    sync.Mutex
	procs []*exec.Cmd // nil while a member is stopped
	argv  [][]string  // the argv each member was last started with
}

// Start starts an n-member cluster of sys under tb.TempDir() and registers its teardown
// with tb.Cleanup. edit, if not nil, may change the cluster description (PreVote,
// FailureTimeout, ...) before anything starts. The test is skipped when the system's
// binary is not installed.
func Start(tb testing.TB, sys systems.System, n int, edit func(*systems.Cluster)) *Cluster {
	tb.Helper()
	c := systems.Cluster{RunDir: tb.TempDir(), Token: "systemstest", SharedNetns: true}
	if edit != nil {
		edit(&c)
	}
	if ch, ok := sys.(systems.Checker); ok {
		if err := ch.Check(c); err != nil {
			tb.Skipf("%s not installed: %v", sys.Name(), err)
		}
	}
	ips, err := freeLoopbackBlock(n, ports(sys))
	if err != nil {
		tb.Fatal(err)
	}
	c.Members = make([]systems.Member, n)
	for i := range n {
		c.Members[i] = systems.Member{Name: "s" + strconv.Itoa(i+1), IP: ips[i]}
	}
	if bin := sys.MemberCommand(c, 0, false).Argv[0]; !executable(bin) {
		tb.Skipf("%s server binary %s not installed", sys.Name(), bin)
	}
	lc := &Cluster{System: sys, Cluster: c, tb: tb, procs: make([]*exec.Cmd, n), argv: make([][]string, n)}
	tb.Cleanup(lc.stopAll)
	for i := range n {
		if err := lc.start(i, false); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Logf("%s cluster: %s (run dir %s)", sys.Name(), strings.Join(sys.ClientEndpoints(c), ","), c.RunDir)
	return lc
}

func executable(bin string) bool {
	_, err := exec.LookPath(bin)
	return err == nil
}

// ports are the ports each member listens on: what the system says (systems.Porter), or
// etcd's.
func ports(sys systems.System) []int {
	if p, ok := sys.(systems.Porter); ok {
		return p.Ports()
	}
	return []int{systems.EtcdClientPort, systems.EtcdPeerPort}
}

// freeLoopbackBlock finds n loopback addresses 127.0.B.11.. whose ports are free. B
// starts from the pid so that test binaries running at once (go test runs packages in
// parallel) do not race for the same block.
func freeLoopbackBlock(n int, ports []int) ([]string, error) {
	first := os.Getpid()%250 + 1
	for k := range 250 {
		b := (first+k)%250 + 1
		ips := make([]string, n)
		free := true
		for i := range n {
			ips[i] = fmt.Sprintf("127.0.%d.%d", b, 11+i)
			for _, port := range ports {
				l, err := net.Listen("tcp", net.JoinHostPort(ips[i], strconv.Itoa(port)))
				if err != nil {
					free = false
					break
				}
				l.Close()
			}
		}
		if free {
			return ips, nil
		}
	}
	return nil, errors.New("no free block of loopback addresses 127.0.B.11 onwards")
}

func (lc *Cluster) start(i int, rejoin bool) error {
	cmd := lc.System.MemberCommand(lc.Cluster, i, rejoin)
	if err := systems.WriteFiles(cmd); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(cmd.Log), 0o755); err != nil {
		return fmt.Errorf("log dir: %w", err)
	}
	log, err := os.OpenFile(cmd.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open member log: %w", err)
	}
	defer log.Close() // the child holds its own descriptor
	p := exec.Command(cmd.Argv[0], cmd.Argv[1:]...)
	p.Env = append(cleanEnv(), cmd.Env...)
	p.Dir = cmd.Dir
	p.Stdout, p.Stderr = log, log
	// Members die with the test binary even when it is killed by a test timeout.
	p.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.Start(); err != nil {
		return fmt.Errorf("start %s: %w", lc.Cluster.Members[i].Name, err)
	}
	lc.mu.Lock()
	lc.procs[i], lc.argv[i] = p, cmd.Argv
	lc.mu.Unlock()
	return nil
}

// cleanEnv drops ETCD_* variables: etcd refuses to start when one shadows a flag.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			env = append(env, kv)
		}
	}
	return env
}

// Kill sends SIGKILL to member i (by its pid) and reaps it.
func (lc *Cluster) Kill(i int) {
	lc.mu.Lock()
	p := lc.procs[i]
	lc.procs[i] = nil
	lc.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.Process.Kill()
	_ = p.Wait()
}

// Restart starts a killed member again on its existing data dir.
func (lc *Cluster) Restart(i int) {
	lc.tb.Helper()
	if err := lc.start(i, true); err != nil {
		lc.tb.Fatal(err)
	}
}

func (lc *Cluster) stopAll() {
	for i := range lc.procs {
		lc.Kill(i)
	}
}

// Running reports whether member i has been started and not killed.
func (lc *Cluster) Running(i int) bool {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.procs[i] != nil
}

// Argv is the command line member i was last started with.
func (lc *Cluster) Argv(i int) []string {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.argv[i]
}

// Endpoints are the members' client URLs.
func (lc *Cluster) Endpoints() []string { return lc.System.ClientEndpoints(lc.Cluster) }

// LogPath is member i's log file.
func (lc *Cluster) LogPath(i int) string { return lc.System.MemberCommand(lc.Cluster, i, false).Log }

// Log returns member i's log so far.
func (lc *Cluster) Log(i int) string {
	b, _ := os.ReadFile(lc.LogPath(i))
	return string(b)
}

// Status reads member i's own view.
func (lc *Cluster) Status(ctx context.Context, i int) (systems.MemberStatus, error) {
	st, err := lc.System.Status(ctx, lc.System.LocalEndpoint(lc.Cluster, i))
	st.Member = lc.Cluster.Members[i].Name
	return st, err
}

// WaitLeader polls every running member until all of them are healthy and name the same
// leader, and returns that leader's index and its status.
func (lc *Cluster) WaitLeader(ctx context.Context) (int, systems.MemberStatus, error) {
	var last error
	for {
		leader, st, err := lc.agreedLeader(ctx)
		if err == nil {
			return leader, st, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return -1, systems.MemberStatus{}, fmt.Errorf("no agreed leader: %w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// MustWaitLeader is WaitLeader for at most timeout; without a leader the test fails, after
// logging the end of every member's log.
func (lc *Cluster) MustWaitLeader(timeout time.Duration) (int, systems.MemberStatus) {
	lc.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	i, st, err := lc.WaitLeader(ctx)
	if err != nil {
		for j := range lc.Cluster.Members {
			log := strings.Split(strings.TrimRight(lc.Log(j), "\n"), "\n")
			lc.tb.Logf("log of member %d:\n%s", j, strings.Join(log[max(0, len(log)-15):], "\n"))
		}
		lc.tb.Fatal(err)
	}
	return i, st
}

func (lc *Cluster) agreedLeader(ctx context.Context) (int, systems.MemberStatus, error) {
	sts := map[int]systems.MemberStatus{}
	for i := range lc.Cluster.Members {
		if !lc.Running(i) {
			continue
		}
		st, err := lc.Status(ctx, i)
		if err != nil {
			return -1, st, err
		}
		if !st.Healthy {
			return -1, st, fmt.Errorf("%s knows no leader", st.Member)
		}
		sts[i] = st
	}
	leaderID := ""
	for _, st := range sts {
		if leaderID != "" && st.LeaderID != leaderID {
			return -1, st, fmt.Errorf("members disagree on the leader: %s vs %s", leaderID, st.LeaderID)
		}
		leaderID = st.LeaderID
	}
	for i, st := range sts {
		if st.ID == leaderID {
			return i, st, nil
		}
	}
	return -1, systems.MemberStatus{}, fmt.Errorf("leader %s is not a running member", leaderID)
}
