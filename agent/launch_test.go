package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/dtlab/dt/internal/nsrun"
	"github.com/dtlab/dt/internal/procenv"
)

var (
	binOnce sync.Once
	binPath string
	binDir  string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// agentExe returns a binary that runs the agent as `EXE agent --flags...`: $DT_BIN (make
// test builds it), else a fresh build of ./cmd/dt, else of ./agent/internal/testagent
// (while cmd/dt does not build or lacks the agent verb). Both call agent.Run.
func agentExe(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() { binPath, binErr = findAgentExe(t) })
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func findAgentExe(t *testing.T) (string, error) {
	if bin := os.Getenv("DT_BIN"); bin != "" {
		if hasAgentVerb(bin) {
			return bin, nil
		}
		t.Logf("$DT_BIN=%s has no agent verb; building one", bin)
	}
	// go test puts its own GOROOT/bin first on the PATH of the test binary.
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("no $DT_BIN and no go on PATH to build an agent: %w", err)
	}
	if binDir, err = os.MkdirTemp("", "dtagent-bin-"); err != nil {
		return "", err
	}
	var notes []string
	for _, pkg := range []string{"./cmd/dt", "./agent/internal/testagent"} {
		out := filepath.Join(binDir, filepath.Base(pkg))
		cmd := exec.Command(goBin, "build", "-o", out, pkg)
		cmd.Dir = ".." // the module root
		if b, err := cmd.CombinedOutput(); err != nil {
			notes = append(notes, fmt.Sprintf("go build %s: %v\n%s", pkg, err, b))
			continue
		}
		if !hasAgentVerb(out) {
			notes = append(notes, pkg+" has no agent verb")
			continue
		}
		t.Logf("agent binary: %s (%s)", out, strings.Join(notes, "; "))
		return out, nil
	}
	return "", fmt.Errorf("no agent binary:\n%s", strings.Join(notes, "\n"))
}

func hasAgentVerb(bin string) bool {
	out, _ := exec.Command(bin, "agent", "--help").CombinedOutput()
	return bytes.Contains(out, []byte(flagParentPid))
}

// shortTempDir keeps socket paths far below the 107-byte limit.
func shortTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "dtag-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func launchOpts(t *testing.T, node string) LaunchOptions {
	dir := shortTempDir(t)
	return LaunchOptions{
		Socket: filepath.Join(dir, node+".sock"),
		RunDir: dir,
		Log:    filepath.Join(dir, "logs", node+".agent.log"),
		RunID:  "test-" + t.Name(),
		Node:   node,
		Exe:    agentExe(t),
	}
}

func launch(t *testing.T, o LaunchOptions) *Agent {
	t.Helper()
	a, err := Launch(ctxT(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Close(context.Background()); err != nil {
			t.Errorf("close agent: %v", err)
		}
	})
	return a
}

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

func TestLaunchAndClose(t *testing.T) {
	o := launchOpts(t, "c1")
	a := launch(t, o)
	ctx := ctxT(t)
	h, err := a.Client().Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.Pid != a.Pid() || h.Node != "c1" || h.RunID != o.RunID {
		t.Fatalf("health = %+v, agent pid %d", h, a.Pid())
	}
	env, _ := procenv.Read(a.Pid())
	if !procenv.Contains(env, EnvRunID+"="+o.RunID) {
		t.Errorf("agent's environment lacks %s", EnvRunID)
	}
	if pgid, _ := syscall.Getpgid(a.Pid()); pgid != a.Pid() {
		t.Errorf("agent in process group %d, want its own", pgid)
	}
	st, err := a.Client().Start(ctx, ProcSpec{Name: "s", Argv: []string{"sleep", "100"}, Log: filepath.Join(o.RunDir, "s.log")})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Done():
	default:
		t.Fatal("Close returned before the agent exited")
	}
	if !pidGone(st.Pid) {
		t.Errorf("child %d survived the agent", st.Pid)
	}
	if _, err := os.Stat(o.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	if err := a.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestLaunchInNetns starts an agent in a namespace made for the test and checks that
// it, and what it starts, really live there.
func TestLaunchInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace (CI runs as root)")
	}
	name := fmt.Sprintf("dtagtest-%d", os.Getpid())
	newNamedNetns(t, name)
	before := nsInode(t, "/proc/self/ns/net")

	o := launchOpts(t, "s1")
	o.Netns = name
	a := launch(t, o)
	ctx := ctxT(t)

	want := nsInode(t, filepath.Join("/run/netns", name))
	if got := nsInode(t, fmt.Sprintf("/proc/%d/ns/net", a.Pid())); got != want {
		t.Fatalf("agent in netns inode %d, want %d (%s)", got, want, name)
	}
	if got := nsInode(t, "/proc/self/ns/net"); got != before {
		t.Fatalf("the test process changed namespace: %d -> %d", before, got)
	}
	h, err := a.Client().Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.Netns != fmt.Sprintf("net:[%d]", want) {
		t.Errorf("health netns %q, want net:[%d]", h.Netns, want)
	}
	st, err := a.Client().Start(ctx, ProcSpec{Name: "s", Argv: []string{"sleep", "100"}, Log: filepath.Join(o.RunDir, "s.log")})
	if err != nil {
		t.Fatal(err)
	}
	if got := nsInode(t, fmt.Sprintf("/proc/%d/ns/net", st.Pid)); got != want {
		t.Errorf("child in netns inode %d, want %d", got, want)
	}
	// Only a loopback exists in there; the agent can still be reached over its socket.
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if !pidGone(st.Pid) {
		t.Errorf("child %d survived the agent", st.Pid)
	}
}

// newNamedNetns creates a named netns (nsrun: the test's threads stay where they are) and
// deletes it at the end of the test.
func newNamedNetns(t *testing.T, name string) {
	t.Helper()
	h, err := nsrun.NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
}

func TestLaunchFailures(t *testing.T) {
	t.Run("exits at once", func(t *testing.T) {
		o := launchOpts(t, "f1")
		o.Exe = writeScript(t, "#!/bin/sh\necho 'boom: no such thing' >&2\nexit 1\n")
		_, err := Launch(ctxT(t), o)
		if err == nil || !strings.Contains(err.Error(), "boom: no such thing") || !strings.Contains(err.Error(), "exited") {
			t.Fatalf("got %v, want an error with the log tail", err)
		}
		t.Logf("launch error: %v", err)
	})
	t.Run("never answers", func(t *testing.T) {
		o := launchOpts(t, "f2")
		o.Exe = writeScript(t, "#!/bin/sh\necho \"fakepid=$$ waiting\"\nexec sleep 100\n")
		o.StartTimeout = 500 * time.Millisecond
		_, err := Launch(ctxT(t), o)
		if err == nil || !strings.Contains(err.Error(), "did not answer") || !strings.Contains(err.Error(), "waiting") {
			t.Fatalf("got %v, want a timeout with the log tail", err)
		}
		t.Logf("launch error: %v", err)
		var pid int
		fmt.Sscanf(err.Error()[strings.Index(err.Error(), "fakepid="):], "fakepid=%d", &pid)
		if pid == 0 || !pidGone(pid) {
			t.Errorf("the unresponsive agent (pid %d) was not killed", pid)
		}
	})
	t.Run("socket taken", func(t *testing.T) {
		o := launchOpts(t, "f3")
		first := launch(t, o)
		o.Log = filepath.Join(o.RunDir, "second.log")
		_, err := Launch(ctxT(t), o)
		if err == nil || !strings.Contains(err.Error(), "another process is serving") {
			t.Fatalf("got %v, want a refusal", err)
		}
		t.Logf("launch error: %v", err)
		if _, err := first.Client().Health(ctxT(t)); err != nil {
			t.Errorf("first agent hurt by the second: %v", err)
		}
	})
	t.Run("missing options", func(t *testing.T) {
		if _, err := Launch(ctxT(t), LaunchOptions{Node: "x"}); err == nil {
			t.Fatal("Launch without a socket succeeded")
		}
	})
}

func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(shortTempDir(t), "fake-dt")
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// startAgentProc starts the agent binary directly (not through Launch) with the given
// parent pid, and waits until it answers.
func startAgentProc(t *testing.T, parentPid int) (*exec.Cmd, *Client, Options) {
	t.Helper()
	dir := shortTempDir(t)
	o := Options{Socket: filepath.Join(dir, "a.sock"), RunDir: dir, RunID: "test-" + t.Name(), Node: "n1", ParentPid: parentPid}
	cmd := exec.Command(agentExe(t), append([]string{"agent"}, o.args()...)...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("agent log:\n%s", log.String())
		}
	})
	c := Dial(o.Socket)
	t.Cleanup(c.Close)
	waitFor(t, 10*time.Second, "agent answers", func() bool {
		_, err := c.Health(ctxT(t))
		return err == nil
	})
	return cmd, c, o
}

func waitExit(t *testing.T, cmd *exec.Cmd, within time.Duration) {
	t.Helper()
	waitFor(t, within, fmt.Sprintf("agent pid %d exits", cmd.Process.Pid), func() bool { return pidGone(cmd.Process.Pid) })
}

func TestAgentExitsWithParent(t *testing.T) {
	parent := exec.Command("sleep", "100")
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { parent.Process.Kill(); parent.Wait() })
	cmd, c, o := startAgentProc(t, parent.Process.Pid)
	st, err := c.Start(ctxT(t), ProcSpec{Name: "s", Argv: []string{"sleep", "100"}, Log: filepath.Join(o.RunDir, "s.log")})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * parentPollInterval)
	if pidGone(cmd.Process.Pid) {
		t.Fatal("agent exited while its parent was alive")
	}
	parent.Process.Kill()
	parent.Wait()
	waitExit(t, cmd, 3*time.Second)
	if !pidGone(st.Pid) {
		t.Errorf("child %d survived the agent", st.Pid)
	}
	if _, err := os.Stat(o.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestAgentExitsWhenParentAlreadyGone(t *testing.T) {
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dir := shortTempDir(t)
	o := Options{Socket: filepath.Join(dir, "a.sock"), RunDir: dir, RunID: "r", Node: "n1", ParentPid: gone.Process.Pid}
	cmd := exec.Command(agentExe(t), append([]string{"agent"}, o.args()...)...)
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Fatal("agent kept running although its parent was gone before it started")
	}
}

func TestAgentExitsOnSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd, c, o := startAgentProc(t, os.Getpid())
			st, err := c.Start(ctxT(t), ProcSpec{Name: "s", Argv: []string{"sleep", "100"}, Log: filepath.Join(o.RunDir, "s.log")})
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			waitExit(t, cmd, 5*time.Second)
			if !pidGone(st.Pid) {
				t.Errorf("child %d survived the agent", st.Pid)
			}
			if _, err := os.Stat(o.Socket); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket left behind: %v", err)
			}
		})
	}
}

func TestTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	for i := range 100 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	mustWrite(t, p, b.String(), 0o644)
	if got := tail(p, 3); got != "line 97\nline 98\nline 99" {
		t.Errorf("tail = %q", got)
	}
	if got := tail(filepath.Join(t.TempDir(), "none"), 3); !strings.Contains(got, "cannot read") {
		t.Errorf("tail of a missing file = %q", got)
	}
}
