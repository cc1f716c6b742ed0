package topology

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// RunProcesses lists the pids of processes whose environment carries DT_RUN_ID=runID:
// agents, the systems they started, private OVS daemons.
func RunProcesses(runID string) []int {
	want := []byte("DT_RUN_ID=" + runID + "\x00")
	var pids []int
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		if bytes.HasPrefix(env, want) || bytes.Contains(env, append([]byte{0}, want...)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// KillRunProcesses SIGKILLs every process of the run (never the caller, nor the pids in
// spare) and waits briefly for them to go.
func KillRunProcesses(runID string, spare ...int) error {
	keep := func(pids []int) []int {
		var out []int
		for _, p := range pids {
			if !slices.Contains(spare, p) {
				out = append(out, p)
			}
		}
		return out
	}
	pids := keep(RunProcesses(runID))
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(pids) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		pids = keep(RunProcesses(runID))
	}
	if len(pids) > 0 {
		return fmt.Errorf("processes of run %s survive SIGKILL: %v", runID, pids)
	}
	return nil
}
