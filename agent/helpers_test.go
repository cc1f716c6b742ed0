package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testAgent is an agent served in the test process.
type testAgent struct {
	*Client
	srv    *server
	runDir string
	socket string
	stop   func() // cancels serve and waits for it
}

// startTestAgent serves an agent in-process on a socket in a fresh run directory. mod,
// if not nil, adjusts the server (hooks) before it serves.
func startTestAgent(t *testing.T, mod func(*server)) *testAgent {
	t.Helper()
	runDir := t.TempDir()
	socket := filepath.Join(runDir, "agent.sock")
	srv, err := newServer(Options{
		Socket: socket, RunDir: runDir, RunID: "test-" + t.Name(), Node: "n1",
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.serve(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("agent did not stop within 15s")
		}
	}
	t.Cleanup(stop)
	c := Dial(socket)
	t.Cleanup(c.Close)
	waitFor(t, 5*time.Second, "agent answers", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.Health(ctx)
		return err == nil
	})
	return &testAgent{Client: c, srv: srv, runDir: runDir, socket: socket, stop: stop}
}

// testWriter sends log lines to t.Log, so they show up only for failing tests.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// pidGone reports whether pid no longer exists (or is a zombie nobody reaped yet).
func pidGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	st, err := procState(pid)
	return err != nil || st == 'Z'
}

// children lists the direct children of pid.
func children(t *testing.T, pid int) []int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		t.Fatalf("read children of %d: %v", pid, err)
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		var c int
		fmt.Sscan(f, &c)
		out = append(out, c)
	}
	return out
}

func wantStatus(t *testing.T, err error, code int) {
	t.Helper()
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("got error %v, want an *APIError with status %d", err, code)
	}
	if ae.StatusCode != code {
		t.Fatalf("got status %d (%s), want %d", ae.StatusCode, ae.Message, code)
	}
	if ae.Message == "" {
		t.Fatalf("status %d without a message", code)
	}
}

func waitLog(t *testing.T, path, text string) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("%s contains %q", path, text), func() bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), text)
	})
}
