package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// validName keeps process names safe in URL paths and file names.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// supervisor owns the agent's child processes. One mutex guards every state transition;
// signals are sent under it so that a signal never races the reaping of its target.
type supervisor struct {
	runID, node string
	log         *slog.Logger
	spawnc      chan spawnRequest

	mu     sync.Mutex
	procs  map[string]*proc
	closed bool // set by killAll: no new starts
}

// proc is one name: its spec and its latest incarnation.
type proc struct {
	spec     ProcSpec
	restarts int
	cur      *incarnation
}

// incarnation is one started process; it is replaced, not reused, on restart.
type incarnation struct {
	pid       int
	state     string
	intent    string // state recorded when it ends: StateStopped, StateKilled or "" (exited)
	exitCode  int
	signal    string
	startedAt time.Time
	exitedAt  time.Time
	done      chan struct{} // closed once reaped
}

func (inc *incarnation) alive() bool { return inc.state == StateRunning || inc.state == StatePaused }

type spawnRequest struct {
	cmd   *exec.Cmd
	reply chan error
}

func newSupervisor(runID, node string, log *slog.Logger) *supervisor {
	s := &supervisor{
		runID:  runID,
		node:   node,
		log:    log,
		spawnc: make(chan spawnRequest),
		procs:  make(map[string]*proc),
	}
	go s.spawner()
	return s
}

// spawner starts every child from one OS thread that stays locked for the supervisor's
// life: Pdeathsig fires when the *thread* that forked a child exits, and the Go runtime
// may retire an ordinary thread at any time. Returning with the thread still locked ends
// it, which takes any straggler children with it.
func (s *supervisor) spawner() {
	runtime.LockOSThread()
	for req := range s.spawnc {
		req.reply <- req.cmd.Start()
	}
}

// signalGroup signals the process group of inc; the caller holds s.mu.
func (s *supervisor) signalGroup(name string, inc *incarnation, sig syscall.Signal) error {
	if err := syscall.Kill(-inc.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("send %v to process group %d (%s): %w", sig, inc.pid, name, err)
	}
	s.log.Debug("signalled", "proc", name, "pid", inc.pid, "signal", sig.String())
	return nil
}

func validateSpec(spec ProcSpec) error {
	if !validName.MatchString(spec.Name) {
		return badRequest("process name %q: want 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", spec.Name)
	}
	if len(spec.Argv) == 0 || spec.Argv[0] == "" {
		return badRequest("process %s: argv is empty", spec.Name)
	}
	if spec.Log == "" {
		return badRequest("process %s: log path is empty", spec.Name)
	}
	if !filepath.IsAbs(spec.Log) {
		return badRequest("process %s: log path %q is not absolute", spec.Name, spec.Log)
	}
	if spec.Dir != "" && !filepath.IsAbs(spec.Dir) {
		return badRequest("process %s: dir %q is not absolute", spec.Name, spec.Dir)
	}
	for _, kv := range spec.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return badRequest("process %s: env entry %q is not KEY=VALUE", spec.Name, kv)
		}
	}
	return nil
}

// start starts spec. A name whose previous incarnation has ended is started again and
// counts as a restart; a name still alive is a conflict.
func (s *supervisor) start(spec ProcSpec) (ProcStatus, error) {
	if err := validateSpec(spec); err != nil {
		return ProcStatus{}, err
	}
	// Held across the fork so that two starts of one name cannot both succeed.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ProcStatus{}, unavailable("agent is shutting down")
	}
	p := s.procs[spec.Name]
	if p != nil && p.cur.alive() {
		return ProcStatus{}, conflict("process %s is already %s (pid %d)", spec.Name, p.cur.state, p.cur.pid)
	}
	inc, err := s.spawn(spec)
	if err != nil {
		return ProcStatus{}, err
	}
	if p == nil {
		p = &proc{}
		s.procs[spec.Name] = p
	} else {
		p.restarts++
	}
	p.spec, p.cur = spec, inc
	s.log.Info("started", "proc", spec.Name, "pid", inc.pid, "argv", spec.Argv, "restarts", p.restarts)
	return p.status(spec.Name), nil
}

// spawn forks spec and starts its reaper; the caller holds s.mu.
func (s *supervisor) spawn(spec ProcSpec) (*incarnation, error) {
	if err := os.MkdirAll(filepath.Dir(spec.Log), 0o755); err != nil {
		return nil, fmt.Errorf("create log dir for %s: %w", spec.Name, err)
	}
	logf, err := os.OpenFile(spec.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log for %s: %w", spec.Name, err)
	}
	// The child holds its own copy of the descriptor; ours is only for the banner.
	defer logf.Close()
	// A banner separates incarnations in a log that restarts append to.
	fmt.Fprintf(logf, "=== dt agent %s: %s start %s: %q\n", s.node, time.Now().UTC().Format(time.RFC3339Nano), spec.Name, spec.Argv)

	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Args = spec.Argv
	cmd.Dir = spec.Dir
	// exec keeps the last of duplicate keys, so the run markers cannot be overridden.
	cmd.Env = slices.Concat(os.Environ(), spec.Env, []string{EnvRunID + "=" + s.runID, EnvNode + "=" + s.node})
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	reply := make(chan error, 1)
	s.spawnc <- spawnRequest{cmd, reply}
	if err := <-reply; err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return nil, badRequest("start %s: %v", spec.Name, err)
		}
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	inc := &incarnation{
		pid:       cmd.Process.Pid,
		state:     StateRunning,
		startedAt: time.Now(),
		done:      make(chan struct{}),
	}
	go s.reap(spec.Name, inc, cmd)
	return inc, nil
}

// reap waits for one incarnation and records how it ended.
func (s *supervisor) reap(name string, inc *incarnation, cmd *exec.Cmd) {
	err := cmd.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	inc.exitedAt = time.Now()
	inc.exitCode = -1
	if ps := cmd.ProcessState; ps != nil {
		inc.exitCode = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			inc.signal = ws.Signal().String()
		}
	}
	inc.state = StateExited
	if inc.intent != "" {
		inc.state = inc.intent
	}
	s.log.Info("ended", "proc", name, "pid", inc.pid, "state", inc.state, "exit_code", inc.exitCode,
		"signal", inc.signal, "wait_error", errString(err))
	// Last: whoever waits on done (killAll at shutdown) may stop the logger once it is closed.
	close(inc.done)
}

func errString(err error) string {
	var ee *exec.ExitError
	if err == nil || errors.As(err, &ee) {
		return ""
	}
	return err.Error()
}

// lookup returns the named process's latest incarnation; the caller holds s.mu.
func (s *supervisor) lookup(name string) (*proc, error) {
	p := s.procs[name]
	if p == nil {
		return nil, notFound("no process named %q", name)
	}
	return p, nil
}

func (p *proc) status(name string) ProcStatus {
	inc := p.cur
	return ProcStatus{
		Name:      name,
		Pid:       inc.pid,
		State:     inc.state,
		ExitCode:  inc.exitCode,
		Signal:    inc.signal,
		StartedAt: inc.startedAt,
		ExitedAt:  inc.exitedAt,
		Restarts:  p.restarts,
	}
}

func (s *supervisor) status(name string) (ProcStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.lookup(name)
	if err != nil {
		return ProcStatus{}, err
	}
	return p.status(name), nil
}

func (s *supervisor) list() []ProcStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ProcStatus, 0, len(s.procs))
	for name, p := range s.procs {
		out = append(out, p.status(name))
	}
	slices.SortFunc(out, func(a, b ProcStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (s *supervisor) alive() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.procs {
		if p.cur.alive() {
			n++
		}
	}
	return n
}

// locked runs f on the name's current incarnation under s.mu and returns that
// incarnation; f checks and changes state and sends signals.
func (s *supervisor) locked(name string, f func(*incarnation) error) (*incarnation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	if err := f(p.cur); err != nil {
		return nil, err
	}
	return p.cur, nil
}

// waitEnded waits until inc is reaped and returns the name's status.
func (s *supervisor) waitEnded(ctx context.Context, name string, inc *incarnation) (ProcStatus, error) {
	select {
	case <-inc.done:
	case <-ctx.Done():
		return ProcStatus{}, fmt.Errorf("wait for %s (pid %d) to end: %w", name, inc.pid, ctx.Err())
	}
	return s.status(name)
}

// stop sends SIGTERM to the process group and SIGKILL once grace has passed. The
// escalation is armed independently of ctx: a caller that gives up waiting does not
// leave a process behind that ignores SIGTERM.
func (s *supervisor) stop(ctx context.Context, name string, grace time.Duration) (ProcStatus, error) {
	inc, err := s.locked(name, func(inc *incarnation) error {
		if !inc.alive() {
			return conflict("process %s is not running (state %s)", name, inc.state)
		}
		if inc.intent == "" {
			inc.intent = StateStopped
		}
		if err := s.signalGroup(name, inc, syscall.SIGTERM); err != nil {
			return err
		}
		if inc.state == StatePaused {
			// A stopped process acts on SIGTERM only once it runs again.
			inc.state = StateRunning
			return s.signalGroup(name, inc, syscall.SIGCONT)
		}
		return nil
	})
	if err != nil {
		return ProcStatus{}, err
	}
	timer := time.AfterFunc(grace, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		select {
		case <-inc.done:
		default:
			s.log.Info("grace period over, killing", "proc", name, "pid", inc.pid, "grace", grace)
			if err := s.signalGroup(name, inc, syscall.SIGKILL); err != nil {
				s.log.Error("kill after grace", "proc", name, "err", err)
			}
		}
	})
	st, err := s.waitEnded(ctx, name, inc)
	if err == nil {
		timer.Stop()
	}
	return st, err
}

// kill sends SIGKILL to the process group and waits until it is reaped.
func (s *supervisor) kill(ctx context.Context, name string) (ProcStatus, error) {
	inc, err := s.locked(name, func(inc *incarnation) error {
		if !inc.alive() {
			return conflict("process %s is not running (state %s)", name, inc.state)
		}
		inc.intent = StateKilled
		return s.signalGroup(name, inc, syscall.SIGKILL)
	})
	if err != nil {
		return ProcStatus{}, err
	}
	return s.waitEnded(ctx, name, inc)
}

// pause sends SIGSTOP to the process group and waits until its leader is stopped, so
// that a fault window starts when the process really froze.
func (s *supervisor) pause(ctx context.Context, name string) (ProcStatus, error) {
	inc, err := s.locked(name, func(inc *incarnation) error {
		if inc.state != StateRunning {
			return conflict("process %s is not running (state %s)", name, inc.state)
		}
		if err := s.signalGroup(name, inc, syscall.SIGSTOP); err != nil {
			return err
		}
		inc.state = StatePaused
		return nil
	})
	if err != nil {
		return ProcStatus{}, err
	}
	if err := waitProcState(ctx, inc, 'T', time.Second); err != nil {
		s.log.Warn("pause not yet visible", "proc", name, "pid", inc.pid, "err", err)
	}
	return s.status(name)
}

// resume sends SIGCONT to a paused process group.
func (s *supervisor) resume(name string) (ProcStatus, error) {
	if _, err := s.locked(name, func(inc *incarnation) error {
		if inc.state != StatePaused {
			return conflict("process %s is not paused (state %s)", name, inc.state)
		}
		if err := s.signalGroup(name, inc, syscall.SIGCONT); err != nil {
			return err
		}
		inc.state = StateRunning
		return nil
	}); err != nil {
		return ProcStatus{}, err
	}
	return s.status(name)
}

// restart starts the name's last spec again, stopping it first (with grace) if alive.
func (s *supervisor) restart(ctx context.Context, name string, grace time.Duration) (ProcStatus, error) {
	s.mu.Lock()
	p, err := s.lookup(name)
	if err != nil {
		s.mu.Unlock()
		return ProcStatus{}, err
	}
	spec, alive := p.spec, p.cur.alive()
	s.mu.Unlock()
	if alive {
		// It may end on its own meanwhile: a conflict here is the wanted outcome.
		if _, err := s.stop(ctx, name, grace); err != nil && statusCode(err) != http.StatusConflict {
			return ProcStatus{}, err
		}
	}
	return s.start(spec)
}

// killAll refuses new starts, SIGKILLs every live process group and waits up to timeout
// for them to be reaped.
func (s *supervisor) killAll(timeout time.Duration) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.spawnc)
	var pending []*incarnation
	for name, p := range s.procs {
		if inc := p.cur; inc.alive() {
			inc.intent = StateKilled
			if err := s.signalGroup(name, inc, syscall.SIGKILL); err != nil {
				s.log.Error("kill on shutdown", "proc", name, "err", err)
			}
			pending = append(pending, inc)
		}
	}
	s.mu.Unlock()
	deadline := time.After(timeout)
	for _, inc := range pending {
		select {
		case <-inc.done:
		case <-deadline:
			s.log.Error("processes not reaped before shutdown", "timeout", timeout)
			return
		}
	}
}

// waitProcState polls /proc/PID/stat until the process is in state want, it ends, or
// timeout passes.
func waitProcState(ctx context.Context, inc *incarnation, want byte, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := procState(inc.pid)
		if err != nil {
			return err
		}
		if st == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d in state %c, want %c after %v", inc.pid, st, want, timeout)
		}
		select {
		case <-inc.done:
			return fmt.Errorf("pid %d ended", inc.pid)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// procState returns the state letter of /proc/PID/stat (R, S, D, T, Z, ...).
func procState(pid int) (byte, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read process state: %w", err)
	}
	// The command name in parentheses may itself contain ") ", so split at the last one.
	i := strings.LastIndex(string(b), ") ")
	if i < 0 || i+2 >= len(b) {
		return 0, fmt.Errorf("parse /proc/%d/stat: %q", pid, b)
	}
	return b[i+2], nil
}
