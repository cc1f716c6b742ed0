package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dtlab/dt/internal/nsrun"
)

// LaunchOptions says where and how to start an agent process.
type LaunchOptions struct {
	Netns  string // named netns (/var/run/netns/NAME) or a path to one; "" = the current namespace
	Socket string // the agent's unix socket
	RunDir string
	Log    string // the agent's stdout and stderr are appended here
	RunID  string
	Node   string
	Exe    string // the dt binary; "" = os.Executable()

	// StartTimeout bounds the wait for the agent to answer; 0 = 10s.
	StartTimeout time.Duration
}

// Agent is a running agent process started by Launch.
type Agent struct {
	cmd    *exec.Cmd
	client *Client
	log    string
	done   chan struct{} // closed once the process is reaped
	state  *os.ProcessState

	closeOnce sync.Once
	closeErr  error
}

// Launch starts `EXE agent ...` inside the named network namespace and waits until it
// answers on its socket. The agent watches our pid and exits, killing its children,
// when we are gone.
func Launch(ctx context.Context, o LaunchOptions) (*Agent, error) {
	for _, f := range []struct{ name, v string }{{"Socket", o.Socket}, {"RunDir", o.RunDir}, {"Log", o.Log}, {"RunID", o.RunID}, {"Node", o.Node}} {
		if f.v == "" {
			return nil, fmt.Errorf("launch agent %s: LaunchOptions.%s is empty", o.Node, f.name)
		}
	}
	exe := o.Exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("launch agent %s: find own executable: %w", o.Node, err)
		}
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 10 * time.Second
	}
	if err := os.MkdirAll(filepath.Dir(o.Log), 0o755); err != nil {
		return nil, fmt.Errorf("launch agent %s: create log dir: %w", o.Node, err)
	}
	logf, err := os.OpenFile(o.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("launch agent %s: open log: %w", o.Node, err)
	}
	defer logf.Close() // the child has its own copy

	opts := Options{Socket: o.Socket, RunDir: o.RunDir, RunID: o.RunID, Node: o.Node, ParentPid: os.Getpid()}
	cmd := exec.Command(exe, append([]string{"agent"}, opts.args()...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), EnvRunID+"="+o.RunID, EnvNode+"="+o.Node)
	// Its own process group keeps a Ctrl-C at the controller's terminal away from the
	// agents, so the controller can tear down in order. No Pdeathsig: it would fire when
	// the forking *thread* exits, which Go may do at any time; --parent-pid covers it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := startInNetns(o.Netns, cmd); err != nil {
		return nil, fmt.Errorf("launch agent %s: %w", o.Node, err)
	}
	a := &Agent{cmd: cmd, client: Dial(o.Socket), log: o.Log, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		a.state = cmd.ProcessState
		close(a.done)
	}()
	slog.Debug("agent launched", "node", o.Node, "pid", cmd.Process.Pid, "netns", o.Netns, "socket", o.Socket)

	if err := a.waitReady(ctx, o.StartTimeout); err != nil {
		a.kill()
		return nil, fmt.Errorf("launch agent %s: %w\n--- tail of %s ---\n%s", o.Node, err, o.Log, tail(o.Log, 20))
	}
	return a, nil
}

// startInNetns starts cmd inside the named namespace (a name under /var/run/netns or an
// absolute path; "" = ours); the child inherits it.
func startInNetns(name string, cmd *exec.Cmd) error {
	start := cmd.Start
	if name != "" {
		start = func() error { return nsrun.Start(name, cmd) }
	}
	if err := start(); err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	return nil
}

// waitReady polls Health until the agent we started answers.
func (a *Agent) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	delay := 10 * time.Millisecond
	var lastErr error
	for {
		hctx, hcancel := context.WithTimeout(ctx, time.Second)
		h, err := a.client.Health(hctx)
		hcancel()
		switch {
		case err == nil && h.Pid == a.Pid():
			return nil
		case err == nil:
			// Another agent is on the socket; ours will refuse it and exit.
			lastErr = fmt.Errorf("socket %s is served by pid %d, not by our agent (pid %d)", a.client.socket, h.Pid, a.Pid())
		default:
			lastErr = err
		}
		select {
		case <-a.done:
			return fmt.Errorf("agent exited during startup (%v)", a.state)
		case <-ctx.Done():
			return fmt.Errorf("agent did not answer within %v: %w (last error: %v)", timeout, ctx.Err(), lastErr)
		case <-time.After(delay):
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// Pid is the agent process's pid.
func (a *Agent) Pid() int { return a.cmd.Process.Pid }

// Client is the client for the agent's socket.
func (a *Agent) Client() *Client { return a.client }

// Done is closed once the agent process has exited.
func (a *Agent) Done() <-chan struct{} { return a.done }

// Close asks the agent to shut down (killing its processes), waits for it to exit until
// ctx ends (or 10s without a deadline), and SIGKILLs it if it is still there. Its
// children then die by their Pdeathsig.
func (a *Agent) Close(ctx context.Context) error {
	a.closeOnce.Do(func() { a.closeErr = a.close(ctx) })
	return a.closeErr
}

func (a *Agent) close(ctx context.Context) error {
	defer a.client.Close()
	select {
	case <-a.done:
		return nil
	default:
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	if err := a.client.Shutdown(ctx); err != nil {
		slog.Warn("agent shutdown request failed", "pid", a.Pid(), "err", err)
	}
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
	}
	a.kill()
	return fmt.Errorf("close agent pid %d: did not exit in time, killed: %w", a.Pid(), ctx.Err())
}

// kill SIGKILLs the agent and waits for it to be reaped.
func (a *Agent) kill() {
	if err := a.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		slog.Warn("kill agent", "pid", a.Pid(), "err", err)
	}
	<-a.done
}

// tail returns the last n lines of the file at path, for error messages.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read: %v)", err)
	}
	defer f.Close()
	const window = 8 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		if _, err := f.Seek(-window, io.SeekEnd); err != nil {
			return fmt.Sprintf("(cannot read: %v)", err)
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
