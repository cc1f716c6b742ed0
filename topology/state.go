package topology

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"
)

// RuntimeRoot is where every live topology keeps its state file, OVS sockets and agent
// sockets: short paths (unix sockets allow 107 bytes) in one well-known place, so that
// `dt clean` finds runs whose controller was killed. DT_RUNTIME_DIR overrides it.
func RuntimeRoot() string {
	if d := os.Getenv("DT_RUNTIME_DIR"); d != "" {
		return d
	}
	return "/run/dt"
}

// NewRunID returns a fresh 6-hex-digit run id; it appears in every name dt creates.
func NewRunID() string {
	b := make([]byte, 3)
	rand.Read(b) // never fails: since Go 1.24 the program crashes if the OS has no randomness
	return hex.EncodeToString(b)
}

// Names derived from the run id; every object dt creates carries it.
func NetnsName(runID, node string) string { return "dt-" + runID + "-" + node }

// SwitchNetnsName is the namespace holding the run's ovs-vswitchd and the switch ends of
// all veths ("switch" is longer than any node name may be, so it cannot collide).
func SwitchNetnsName(runID string) string { return "dt-" + runID + "-switch" }

// HostVethName is the switch end of a node's veth: "dt" + run id + node, ≤ 13 bytes.
func HostVethName(runID, node string) string { return "dt" + runID + node }

// BridgeName is the OVS bridge of a logical switch: "dt" + run id + "-" + switch (≤ 15).
func BridgeName(runID, sw string) string {
	n := "dt" + runID + "-" + sw
	if len(n) > 15 {
		n = n[:15]
	}
	return n
}

// VethAlias is written to the host veth's alias so cleanup can check ownership.
func VethAlias(runID string) string { return "dt-run-id=" + runID }

// State is what a topology is about to create and has created. It is written before
// anything is created and updated as things come up, so `dt clean` can remove exactly
// it after a crash.
type State struct {
	RunID      string            `json:"run_id"`
	Owner      int               `json:"owner_pid"` // the dt process that owns the topology
	Command    string            `json:"command"`   // what the owner is doing (up, run, ...)
	Created    time.Time         `json:"created"`
	Dir        string            `json:"dir"`         // runtime dir: RuntimeRoot()/run id
	ResultsDir string            `json:"results_dir"` // where records go, if any
	Spec       Spec              `json:"spec"`
	Datapath   string            `json:"datapath"`
	OVSDir     string            `json:"ovs_dir"`
	Bridges    []string          `json:"bridges"`
	Namespaces []string          `json:"namespaces"`
	Veths      []string          `json:"veths"`
	Agents     map[string]string `json:"agents,omitempty"` // node → agent socket
	Shaper     string            `json:"shaper,omitempty"` // link shaping backend in use (netem, userspace); set before the first impairment
	Extra      map[string]string `json:"extra,omitempty"`  // system, endpoints, ... for other verbs
}

// StatePath is the state file of a runtime dir.
func StatePath(dir string) string { return filepath.Join(dir, "state.json") }

// Save writes the state atomically.
func (s *State) Save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := StatePath(s.Dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, StatePath(s.Dir)); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// LoadState reads a runtime dir's state file.
func LoadState(dir string) (*State, error) {
	b, err := os.ReadFile(StatePath(dir))
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", StatePath(dir), err)
	}
	return &s, nil
}

// OwnerAlive reports whether the process that created the topology still runs.
func (s *State) OwnerAlive() bool {
	if s.Owner <= 0 {
		return false
	}
	err := syscall.Kill(s.Owner, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// ListStates returns the state of every topology under RuntimeRoot, newest first.
// Unreadable state files are returned as errors in the second result, not skipped silently.
func ListStates() ([]*State, []error) {
	ents, err := os.ReadDir(RuntimeRoot())
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, []error{err}
	}
	var out []*State
	var errs []error
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		s, err := LoadState(filepath.Join(RuntimeRoot(), e.Name()))
		if err != nil {
			if !os.IsNotExist(errors.Unwrap(err)) {
				errs = append(errs, err)
			}
			continue
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, errs
}

// FindLive picks the topology a verb acts on: the one with runID, or else the newest
// one whose owner is alive.
func FindLive(runID string) (*State, error) {
	states, _ := ListStates()
	for _, s := range states {
		if runID != "" && s.RunID == runID {
			return s, nil
		}
	}
	if runID != "" {
		return nil, fmt.Errorf("no topology with run id %q (see dt ls)", runID)
	}
	for _, s := range states {
		if s.OwnerAlive() {
			return s, nil
		}
	}
	return nil, errors.New("no live topology: start one with `dt up simple` (see dt ls)")
}
