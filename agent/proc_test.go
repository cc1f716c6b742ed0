package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dtlab/dt/internal/procenv"
)

func sleepSpec(a *testAgent, name string) ProcSpec {
	return ProcSpec{Name: name, Argv: []string{"sleep", "100"}, Log: filepath.Join(a.runDir, "logs", name+".log")}
}

func TestStartStatusList(t *testing.T) {
	a := startTestAgent(t, nil)
	ctx := ctxT(t)
	// No exec in the script: the environment read below must be that of the program Start
	// exec'd (Start returns once it has), and a second exec would race the read (an
	// exec'ing process shows no environment, procenv.Read). The exit after sleep keeps a
	// shell from turning its last command into an exec.
	spec := ProcSpec{
		Name: "p1",
		Argv: []string{"sh", "-c", `echo "hello $FOO from $DT_NODE"; echo oops >&2; sleep 100; exit`},
		Env:  []string{"FOO=bar", EnvNode + "=spoofed"},
		Dir:  a.runDir,
		Log:  filepath.Join(a.runDir, "logs", "p1.log"),
	}
	st, err := a.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "p1" || st.State != StateRunning || st.Pid <= 0 || st.Restarts != 0 || st.StartedAt.IsZero() {
		t.Fatalf("start status = %+v", st)
	}
	waitLog(t, spec.Log, "hello bar from n1")
	waitLog(t, spec.Log, "oops")

	env, err := procenv.Read(st.Pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{EnvRunID + "=test-" + t.Name(), EnvNode + "=n1", "FOO=bar"} {
		if !procenv.Contains(env, want) {
			t.Errorf("environment of pid %d lacks %q", st.Pid, want)
		}
	}
	if pgid, err := syscall.Getpgid(st.Pid); err != nil || pgid != st.Pid {
		t.Errorf("pgid of %d = %d, %v; want its own group", st.Pid, pgid, err)
	}

	if _, err := a.Start(ctx, sleepSpec(a, "p2")); err != nil {
		t.Fatal(err)
	}
	got, err := a.Status(ctx, "p1")
	if err != nil || got.Pid != st.Pid || got.State != StateRunning {
		t.Fatalf("status = %+v, %v", got, err)
	}
	list, err := a.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "p1" || list[1].Name != "p2" {
		t.Fatalf("list = %+v", list)
	}
	h, err := a.Health(ctx)
	if err != nil || h.Node != "n1" || h.Pid != os.Getpid() || h.Procs != 2 || !strings.HasPrefix(h.Netns, "net:[") {
		t.Fatalf("health = %+v, %v", h, err)
	}
}

func TestBadRequests(t *testing.T) {
	a := startTestAgent(t, nil)
	ctx := ctxT(t)
	log := filepath.Join(a.runDir, "x.log")
	if _, err := a.Start(ctx, sleepSpec(a, "busy")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func() error
		code int
	}{
		{"empty argv", func() error { _, err := a.Start(ctx, ProcSpec{Name: "x", Log: log}); return err }, 400},
		{"empty argv0", func() error { _, err := a.Start(ctx, ProcSpec{Name: "x", Argv: []string{""}, Log: log}); return err }, 400},
		{"empty name", func() error { _, err := a.Start(ctx, ProcSpec{Argv: []string{"true"}, Log: log}); return err }, 400},
		{"slash in name", func() error {
			_, err := a.Start(ctx, ProcSpec{Name: "a/b", Argv: []string{"true"}, Log: log})
			return err
		}, 400},
		{"no log", func() error { _, err := a.Start(ctx, ProcSpec{Name: "x", Argv: []string{"true"}}); return err }, 400},
		{"relative log", func() error { // the Client makes paths absolute; the agent refuses them
			return a.call(ctx, http.MethodPost, "/procs", nil, ProcSpec{Name: "x", Argv: []string{"true"}, Log: "x.log"}, nil)
		}, 400},
		{"bad env", func() error {
			_, err := a.Start(ctx, ProcSpec{Name: "x", Argv: []string{"true"}, Env: []string{"NOEQUALS"}, Log: log})
			return err
		}, 400},
		{"no such program", func() error {
			_, err := a.Start(ctx, ProcSpec{Name: "x", Argv: []string{"/nonexistent/prog"}, Log: log})
			return err
		}, 400},
		{"no such dir", func() error {
			_, err := a.Start(ctx, ProcSpec{Name: "x", Argv: []string{"true"}, Dir: "/nonexistent/dir", Log: log})
			return err
		}, 400},
		{"already running", func() error { _, err := a.Start(ctx, sleepSpec(a, "busy")); return err }, 409},
		{"status of unknown", func() error { _, err := a.Status(ctx, "ghost"); return err }, 404},
		{"stop unknown", func() error { _, err := a.Stop(ctx, "ghost", 0); return err }, 404},
		{"kill unknown", func() error { _, err := a.Kill(ctx, "ghost"); return err }, 404},
		{"pause unknown", func() error { _, err := a.Pause(ctx, "ghost"); return err }, 404},
		{"continue unknown", func() error { _, err := a.Continue(ctx, "ghost"); return err }, 404},
		{"restart unknown", func() error { _, err := a.Restart(ctx, "ghost", 0); return err }, 404},
		{"continue running", func() error { _, err := a.Continue(ctx, "busy"); return err }, 409},
		{"unknown action", func() error {
			return a.call(ctx, http.MethodPost, "/procs/busy/explode", nil, nil, nil)
		}, 404},
		{"unknown route", func() error { return a.call(ctx, http.MethodGet, "/nope", nil, nil, nil) }, 404},
		{"wrong method", func() error { return a.call(ctx, http.MethodGet, "/shutdown", nil, nil, nil) }, 405},
		{"bad grace", func() error {
			return a.call(ctx, http.MethodPost, "/procs/busy/stop", map[string][]string{"grace": {"soon"}}, nil, nil)
		}, 400},
		{"system status without params", func() error { _, err := a.SystemStatus(ctx, "", ""); return err }, 400},
		{"unknown system", func() error { _, err := a.SystemStatus(ctx, "nosuchsystem", "http://127.0.0.1:1"); return err }, 400},
	} {
		t.Run(tc.name, func(t *testing.T) { wantStatus(t, tc.call(), tc.code) })
	}
	if _, err := a.Status(ctx, "ghost"); !errors.Is(err, ErrNotFound) {
		t.Errorf("errors.Is(%v, ErrNotFound) = false", err)
	}
	if _, err := a.Start(ctx, sleepSpec(a, "busy")); !errors.Is(err, ErrConflict) {
		t.Errorf("errors.Is(%v, ErrConflict) = false", err)
	}

	// Raw bodies: unknown fields, not JSON, empty.
	for _, body := range []string{`{"name":"x","argv":["true"],"log":"/tmp/x","shell":"yes"}`, `not json`, ``} {
		resp := rawPost(t, a, "/procs", body)
		if resp.StatusCode != 400 || !strings.Contains(resp.Header.Get("Content-Type"), "json") {
			t.Errorf("POST /procs %q: status %d, content type %q", body, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var eb errorBody
		if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil || eb.Error == "" {
			t.Errorf("POST /procs %q: error body %+v, %v", body, eb, err)
		}
		resp.Body.Close()
	}
}

func rawPost(t *testing.T, a *testAgent, path, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, "http://agent"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestStop(t *testing.T) {
	a := startTestAgent(t, nil)
	ctx := ctxT(t)
	st, err := a.Start(ctx, sleepSpec(a, "s"))
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	got, err := a.Stop(ctx, "s", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StateStopped || got.Signal != "terminated" || got.ExitCode != -1 || got.ExitedAt.IsZero() {
		t.Fatalf("after stop: %+v", got)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("stop of a process that handles SIGTERM took %v", d)
	}
	if !pidGone(st.Pid) {
		t.Errorf("pid %d still there after stop", st.Pid)
	}
	if _, err := a.Stop(ctx, "s", 0); !errors.Is(err, ErrConflict) {
		t.Errorf("stop of a stopped process: %v, want 409", err)
	}
	if _, err := a.Kill(ctx, "s"); !errors.Is(err, ErrConflict) {
		t.Errorf("kill of a stopped process: %v, want 409", err)
	}
	if _, err := a.Pause(ctx, "s"); !errors.Is(err, ErrConflict) {
		t.Errorf("pause of a stopped process: %v, want 409", err)
	}
}

// TestStopEscalates checks SIGKILL after the grace period, for the whole group: the
// shell and its sleep both ignore SIGTERM.
func TestStopEscalates(t *testing.T) {
	a := startTestAgent(t, nil)
	ctx := ctxT(t)
	spec := ProcSpec{Name: "stubborn", Argv: []string{"sh", "-c", `trap "" TERM; echo ready; sleep 100; echo never`},
		Log: filepath.Join(a.runDir, "stubborn.log")}
	st, err := a.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	waitLog(t, spec.Log, "ready")
	var kids []int
	waitFor(t, 5*time.Second, "sh has started sleep", func() bool { kids = children(t, st.Pid); return len(kids) == 1 })

	const grace = 400 * time.Millisecond
	begin := time.Now()
	got, err := a.Stop(ctx, "stubborn", grace)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < grace {
		t.Errorf("stop returned after %v, before the grace period of %v", d, grace)
	}
	if got.State != StateStopped || got.Signal != "killed" {
		t.Fatalf("after stop: %+v, want stopped by SIGKILL", got)
	}
	waitFor(t, 5*time.Second, "the group's sleep is gone too", func() bool { return pidGone(kids[0]) })
}

func TestKill(t *testing.T) {
	a := startTestAgent(t, nil)
	ctx := ctxT(t)
	spec := ProcSpec{Name: "k", Argv: []string{"sh", "-c", `sleep 100 & sleep 100 & echo ready; wait`}, Log: filepath.Join(a.runDir, "k.log")}
	st, err := a.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	waitLog(t, spec.Log, "ready")
	kids := children(t, st.Pid)
	got, err := a.Kill(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StateKilled || got.Signal != "killed" {
		t.Fatalf("after kill: %+v", got)
	}
	for _, k := range append(kids, st.Pid) {
		waitFor(t, 5*time.Second, fmt.Sprintf("pid %d is gone", k), func() bool { return pidGone(k) })
	}
}

func TestPauseContinue(t *testing.T) {
	a := startTestAgent(t, nil)
	ctx := ctxT(t)
	st, err := a.Start(ctx, sleepSpec(a, "p"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Pause(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StatePaused {
		t.Fatalf("after pause: %+v", got)
	}
	if s, err := procState(st.Pid); err != nil || s != 'T' {
		t.Fatalf("/proc/%d/stat state %c, %v; want T", st.Pid, s, err)
	}
	if _, err := a.Pause(ctx, "p"); !errors.Is(err, ErrConflict) {
		t.Errorf("pause of a paused process: %v, want 409", err)
	}
	if got, err = a.Continue(ctx, "p"); err != nil || got.State != StateRunning {
		t.Fatalf("continue: %+v, %v", got, err)
	}
	waitFor(t, 2*time.Second, "process left state T", func() bool {
		s, err := procState(st.Pid)
		return err == nil && s != 'T'
	})
	if _, err := a.Continue(ctx, "p"); !errors.Is(err, ErrConflict) {
		t.Errorf("continue of a running process: %v, want 409", err)
	}

	// A paused process is stopped promptly: it gets SIGCONT after SIGTERM.
	if _, err := a.Pause(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if got, err = a.Stop(ctx, "p", 20*time.Second); err != nil || got.State != StateStopped || got.Signal != "terminated" {
		t.Fatalf("stop of a paused process: %+v, %v", got, err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("stop of a paused process took %v", d)
	}
}

func TestRestart(t *testing.T) {
	a := startTestAgent(t, nil)
	ctx := ctxT(t)
	spec := ProcSpec{Name: "r", Argv: []string{"sh", "-c", `echo run; exec sleep 100`}, Log: filepath.Join(a.runDir, "r.log")}
	runs := func(n int) {
		t.Helper()
		waitFor(t, 5*time.Second, fmt.Sprintf("%d runs logged", n), func() bool {
			b, _ := os.ReadFile(spec.Log)
			return strings.Count(string(b), "run\n") == n
		})
	}
	first, err := a.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	runs(1)
	if _, err := a.Kill(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	second, err := a.Restart(ctx, "r", 0)
	if err != nil {
		t.Fatal(err)
	}
	if second.State != StateRunning || second.Restarts != 1 || second.Pid == first.Pid {
		t.Fatalf("after restart of a killed process: %+v (first pid %d)", second, first.Pid)
	}
	runs(2)
	// Restarting a live process stops it first.
	third, err := a.Restart(ctx, "r", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if third.State != StateRunning || third.Restarts != 2 || third.Pid == second.Pid || !pidGone(second.Pid) {
		t.Fatalf("after restart of a running process: %+v (previous pid %d)", third, second.Pid)
	}
	runs(3)
	// Start over an ended name counts as a restart too.
	if _, err := a.Stop(ctx, "r", time.Second); err != nil {
		t.Fatal(err)
	}
	fourth, err := a.Start(ctx, spec)
	if err != nil || fourth.Restarts != 3 {
		t.Fatalf("start over a stopped process: %+v, %v", fourth, err)
	}
	runs(4)
}

func TestExitedOnItsOwn(t *testing.T) {
	a := startTestAgent(t, nil)
	ctx := ctxT(t)
	if _, err := a.Start(ctx, ProcSpec{Name: "e", Argv: []string{"sh", "-c", "exit 3"}, Log: filepath.Join(a.runDir, "e.log")}); err != nil {
		t.Fatal(err)
	}
	var st ProcStatus
	waitFor(t, 5*time.Second, "process exited", func() bool {
		var err error
		st, err = a.Status(ctx, "e")
		return err == nil && !st.Alive()
	})
	if st.State != StateExited || st.ExitCode != 3 || st.Signal != "" {
		t.Fatalf("status = %+v, want exited with code 3", st)
	}
	if _, err := a.Stop(ctx, "e", 0); !errors.Is(err, ErrConflict) {
		t.Errorf("stop of an exited process: %v, want 409", err)
	}
	if st, err := a.Restart(ctx, "e", 0); err != nil || st.Restarts != 1 {
		t.Errorf("restart of an exited process: %+v, %v", st, err)
	}
}

// TestConcurrentOps hammers one name with racing operations; run with -race. Every
// answer must be a status or a 404/409, and the process must end up reaped.
func TestConcurrentOps(t *testing.T) {
	a := startTestAgent(t, nil)
	ctx := ctxT(t)
	if _, err := a.Start(ctx, sleepSpec(a, "c")); err != nil {
		t.Fatal(err)
	}
	ops := []func() error{
		func() error { _, err := a.Pause(ctx, "c"); return err },
		func() error { _, err := a.Continue(ctx, "c"); return err },
		func() error { _, err := a.Kill(ctx, "c"); return err },
		func() error { _, err := a.Restart(ctx, "c", 100*time.Millisecond); return err },
		func() error { _, err := a.Stop(ctx, "c", 100*time.Millisecond); return err },
		func() error { _, err := a.Status(ctx, "c"); return err },
		func() error { _, err := a.List(ctx); return err },
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 70 {
		wg.Go(func() {
			if err := ops[i%len(ops)](); err != nil && !errors.Is(err, ErrConflict) {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st, err := a.Status(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if st.Alive() {
		if st, err = a.Kill(ctx, "c"); err != nil && !errors.Is(err, ErrConflict) {
			t.Fatal(err)
		}
	}
	if !pidGone(st.Pid) {
		t.Errorf("pid %d not reaped", st.Pid)
	}
}

func TestShutdownKillsChildren(t *testing.T) {
	a := startTestAgent(t, nil)
	ctx := ctxT(t)
	st, err := a.Start(ctx, sleepSpec(a, "victim"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	a.stop()
	if !pidGone(st.Pid) {
		t.Errorf("child %d survived the agent's shutdown", st.Pid)
	}
	if _, err := os.Stat(a.socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after shutdown: %v", err)
	}
	if _, err := a.Health(ctx); err == nil {
		t.Errorf("health answered after shutdown")
	}
}

func TestAPIErrorMessage(t *testing.T) {
	e := &APIError{Method: "POST", Path: "/procs/x/stop", StatusCode: 409, Message: "process x is not running (state exited)"}
	want := "agent POST /procs/x/stop: 409 Conflict: process x is not running (state exited)"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", e), ErrConflict) || errors.Is(e, ErrNotFound) {
		t.Errorf("errors.Is does not map statuses")
	}
}

func TestProcState(t *testing.T) {
	st, err := procState(os.Getpid())
	if err != nil || (st != 'R' && st != 'S') {
		t.Fatalf("procState(self) = %c, %v", st, err)
	}
}
