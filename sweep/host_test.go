package sweep

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/topology"
)

// deadPID is the pid of a process that has exited.
func deadPID(t *testing.T) int {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("no `true` to make a dead pid:", err)
	}
	return cmd.Process.Pid
}

func writeState(t *testing.T, st *topology.State) {
	t.Helper()
	if err := os.MkdirAll(st.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := st.Save(); err != nil {
		t.Fatal(err)
	}
}

// TestHostCheckRemovesStaleRuns: state files only (no namespaces, so no root needed) —
// the check finds the runs of this sweep whose owner died and what a run id left without
// a state file, removes them, and leaves other runs alone.
func TestHostCheckRemovesStaleRuns(t *testing.T) {
	rt := t.TempDir()
	t.Setenv("DT_RUNTIME_DIR", rt)
	sweepDir := t.TempDir()
	dead := deadPID(t)
	mine := &topology.State{RunID: "a1b2c3", Owner: dead, Created: time.Now(), Dir: filepath.Join(rt, "a1b2c3"),
		ResultsDir: filepath.Join(sweepDir, "runs", "p01-r1", "etcd-simple-uniform-leader", "x")}
	othersDead := &topology.State{RunID: "d4e5f6", Owner: dead, Created: time.Now(), Dir: filepath.Join(rt, "d4e5f6"),
		ResultsDir: filepath.Join(t.TempDir(), "elsewhere")}
	mineAlive := &topology.State{RunID: "0a0b0c", Owner: os.Getppid(), Created: time.Now(), Dir: filepath.Join(rt, "0a0b0c"),
		ResultsDir: filepath.Join(sweepDir, "runs", "p02-r1", "x")}
	for _, st := range []*topology.State{mine, othersDead, mineAlive} {
		writeState(t, st)
	}
	h := HostCheck{SweepDir: sweepDir}
	found, err := h.Check(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || !strings.Contains(found[0], "state of run a1b2c3") {
		t.Errorf("found %q", found)
	}
	for dir, want := range map[string]bool{mine.Dir: false, othersDead.Dir: true, mineAlive.Dir: true} {
		if _, err := os.Stat(dir); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", dir, err == nil, want)
		}
	}
	// A runtime dir left by a run id, without a state file.
	left := filepath.Join(rt, "fedcba")
	os.MkdirAll(filepath.Join(left, "ovs"), 0o755)
	found, err = h.Check(context.Background(), "fedcba")
	if err != nil || len(found) != 1 || found[0] != "runtime dir "+left {
		t.Errorf("found %q, %v", found, err)
	}
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s not removed", left)
	}
	// Clean: nothing found.
	if found, err := h.Check(context.Background(), "fedcba"); len(found) != 0 || err != nil {
		t.Errorf("clean host: %q %v", found, err)
	}
}

func TestWithin(t *testing.T) {
	for _, tc := range []struct {
		path, dir string
		want      bool
	}{
		{"/a/b/c", "/a/b", true},
		{"/a/b", "/a/b", true},
		{"/a/bc", "/a/b", false},
		{"/a", "/a/b", false},
		{"", "/a", false},
	} {
		if got := within(tc.path, tc.dir); got != tc.want {
			t.Errorf("within(%q, %q) = %v", tc.path, tc.dir, got)
		}
	}
}
