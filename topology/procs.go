package topology

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/dtlab/dt/internal/procenv"
)

// RunProcesses lists the pids of processes whose environment carries DT_RUN_ID=runID:
// agents, the systems they started, private OVS daemons. A process in the middle of an
// exec has no environment to read and is not listed (procenv.Read).
func RunProcesses(runID string) []int {
	want := "DT_RUN_ID=" + runID
	var pids []int
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := procenv.Read(pid)
		if err != nil {
			continue
		}
		if procenv.Contains(env, want) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// KillRunProcesses SIGKILLs every process of the run (never the caller, nor the pids in
// spare) and waits briefly for them to go. Every look kills what it finds, so a process
// that one look missed (it was in the middle of an exec) is killed at the next.
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
	kill := func() []int {
		pids := keep(RunProcesses(runID))
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		return pids
	}
	pids := kill()
	deadline := time.Now().Add(3 * time.Second)
	for len(pids) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		pids = kill()
	}
	if len(pids) > 0 {
		return fmt.Errorf("processes of run %s survive SIGKILL: %v", runID, pids)
	}
	return nil
}
