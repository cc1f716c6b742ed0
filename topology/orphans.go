package topology

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/dtlab/dt/disk"
	"github.com/vishvananda/netlink"
)

var runNetnsRE = regexp.MustCompile(`^dt-([0-9a-f]{6})-([a-z][a-z0-9]*)$`)

// Orphans finds runs whose objects exist but whose state file is gone (its runtime dir
// was removed by hand, or it crashed under another DT_RUNTIME_DIR): namespaces named
// dt-<run id>-<node>, host veths whose alias names the run, processes carrying
// DT_RUN_ID=<run id>, disk layer mounts whose source names the run. Each comes back as a State that Teardown can remove. A run whose
// processes point at a state file in another runtime root is alive there and is left out;
// `dt clean` still removes orphans only when asked to.
func Orphans() []*State {
	known := map[string]bool{}
	states, _ := ListStates()
	for _, s := range states {
		known[s.RunID] = true
	}
	found := map[string]*State{}
	get := func(id string) *State {
		if found[id] == nil {
			found[id] = &State{RunID: id}
		}
		return found[id]
	}
	ents, _ := os.ReadDir("/var/run/netns")
	for _, e := range ents {
		if m := runNetnsRE.FindStringSubmatch(e.Name()); m != nil && !known[m[1]] {
			st := get(m[1])
			st.Namespaces = append(st.Namespaces, e.Name())
		}
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		alias := l.Attrs().Alias
		if len(alias) == len("dt-run-id=")+6 && alias[:len("dt-run-id=")] == "dt-run-id=" {
			if id := alias[len("dt-run-id="):]; !known[id] {
				st := get(id)
				st.Veths = append(st.Veths, l.Attrs().Name)
			}
		}
	}
	if ms, err := disk.Mounts(); err == nil {
		for _, m := range ms {
			if id := m.RunID(); id != "" && !known[id] {
				get(id)
			}
		}
	}
	var out []*State
	for _, st := range found {
		if liveElsewhere(st.RunID) {
			continue
		}
		sort.Strings(st.Namespaces)
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RunID < out[j].RunID })
	return out
}

// liveElsewhere reports whether a process of the run names a directory .../<run id>/
// that holds a state file: the run is managed under another runtime root.
func liveElsewhere(runID string) bool {
	seg := string(os.PathSeparator) + runID + string(os.PathSeparator)
	for _, pid := range RunProcesses(runID) {
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		for _, arg := range strings.Split(string(cmd), "\x00") {
			if i := strings.Index(arg, seg); i >= 0 {
				dir := arg[strings.LastIndex(arg[:i+1], "=")+1 : i+len(seg)]
				if _, err := os.Stat(StatePath(dir)); err == nil {
					return true
				}
			}
		}
	}
	return false
}
