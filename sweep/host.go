package sweep

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dtlab/dt/topology"
)

// ErrHostDirty is returned when what a run left on the host could not be removed: every
// later point would run on a dirty host, so the sweep stops.
var ErrHostDirty = errors.New("host not clean")

// Host checks that a finished run left nothing on the host and removes what it finds.
type Host interface {
	// Check looks for anything of run runID, of any run this process started, and of
	// any run of the sweep directory whose owner died; it removes what it finds.
	// leftovers names what was found (nil: the host was clean); err (wrapping
	// ErrHostDirty) says what could not be removed.
	Check(ctx context.Context, runID string) (leftovers []string, err error)
}

// HostCheck is the real Host: it looks at /run/dt (topology.RuntimeRoot), the named
// network namespaces, the host's interfaces and the processes carrying a run id.
type HostCheck struct {
	SweepDir string // runs whose results go below it are this sweep's
}

// netnsDir is where named namespaces are bind-mounted (`ip netns`).
const netnsDir = "/var/run/netns"

// Check implements Host.
func (h HostCheck) Check(ctx context.Context, runID string) ([]string, error) {
	found, states := h.scan(runID)
	if len(found) == 0 {
		return nil, nil
	}
	var errs []error
	for _, st := range states {
		if err := topology.Teardown(ctx, st); err != nil {
			errs = append(errs, fmt.Errorf("tear down run %s: %w", st.RunID, err))
		}
	}
	if runID != "" { // what no state file lists any more
		st := &topology.State{RunID: runID}
		for _, f := range found {
			if ns, ok := strings.CutPrefix(f, "netns "); ok {
				st.Namespaces = append(st.Namespaces, ns)
			}
			if v, ok := strings.CutPrefix(f, "interface "); ok {
				st.Veths = append(st.Veths, v)
			}
			if d, ok := strings.CutPrefix(f, "runtime dir "); ok && st.Dir == "" {
				st.Dir = d
			}
		}
		if err := topology.Teardown(ctx, st); err != nil {
			errs = append(errs, err)
		}
	}
	if still, _ := h.scan(runID); len(still) > 0 {
		errs = append(errs, fmt.Errorf("still there: %s", strings.Join(still, ", ")))
	}
	if err := errors.Join(errs...); err != nil {
		return found, fmt.Errorf("%w: %w", ErrHostDirty, err)
	}
	return found, nil
}

// scan lists what is left, and the state files that describe it.
func (h HostCheck) scan(runID string) ([]string, []*topology.State) {
	var found []string
	var owned []*topology.State
	states, _ := topology.ListStates()
	for _, st := range states {
		mine := st.RunID == runID && runID != "" || st.Owner == os.Getpid() ||
			(h.SweepDir != "" && within(st.ResultsDir, h.SweepDir) && !st.OwnerAlive())
		if mine {
			found = append(found, "state of run "+st.RunID+" in "+st.Dir)
			owned = append(owned, st)
		}
	}
	if runID == "" {
		return found, owned
	}
	if m, _ := filepath.Glob(filepath.Join(topology.RuntimeRoot(), runID+"*")); len(m) > 0 {
		for _, d := range m {
			if !stateListed(owned, d) {
				found = append(found, "runtime dir "+d)
			}
		}
	}
	ents, _ := os.ReadDir(netnsDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "dt-"+runID+"-") {
			found = append(found, "netns "+e.Name())
		}
	}
	links, _ := os.ReadDir("/sys/class/net")
	for _, l := range links {
		if strings.HasPrefix(l.Name(), "dt"+runID) {
			found = append(found, "interface "+l.Name())
		}
	}
	if pids := topology.RunProcesses(runID); len(pids) > 0 {
		found = append(found, fmt.Sprintf("processes %v", pids))
	}
	return found, owned
}

func stateListed(states []*topology.State, dir string) bool {
	for _, st := range states {
		if st.Dir == dir {
			return true
		}
	}
	return false
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	if path == "" {
		return false
	}
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// noHost is the Host of a dry run or a test that has no real runs to check.
type noHost struct{}

func (noHost) Check(context.Context, string) ([]string, error) { return nil, nil }
