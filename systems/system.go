// Package systems knows how to run each system under test: the command that starts
// member i, the real client library behind a workloads.KV, and how to read a member's
// view of leader, term and raft index. It does not schedule faults.
package systems

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dtlab/dt/workloads"
)

// Member is one server node of the cluster as the system sees it.
type Member struct {
	Name string // node name, e.g. "s1"
	IP   string // address on the emulated network
}

// Cluster is everything needed to build members' command lines.
type Cluster struct {
	Members        []Member
	RunDir         string  // data dirs and logs live under it
	FailureTimeout float64 // seconds; etcd: election = 1000·t ms, heartbeat = 100·t ms; 0 = 1.0 as reckon
	PreVote        bool
	Bin            string // server binary; "" = the system's default
	// Version is a release to run instead of the default binary, which Prepare makes
	// and sets Bin to (etcd: built from the Go module proxy, "v3.6.16"); "" = none.
	Version string
	Token   string // unique per run, e.g. the run id
	// SnapshotCount is how many applied entries trigger a snapshot (etcd
	// --snapshot-count); 0 = the system's default.
	SnapshotCount int
	// SharedNetns says the members share one network namespace (tests, or a host without
	// root) instead of one namespace each. A member then listens for clients on its IP
	// only, since a 127.0.0.1 listener on the same port would collide, and LocalEndpoint
	// is its IP URL. Give each member its own loopback address (127.0.0.11, .12, ...).
	SharedNetns bool
}

// Command is a process for an agent to start: argv, never a shell string.
type Command struct {
	Argv    []string
	Env     []string // extra KEY=VALUE variables for the process
	Dir     string
	DataDir string // the member's persistent state (backed up / cleaned by the agent)
	Log     string // file for the process's stdout and stderr (its directory may not exist yet)
	// Files are written before every start (WriteFiles), for a system that reads its
	// configuration from disk (ZooKeeper's zoo.cfg and myid); they may lie in DataDir,
	// which a data fault may have deleted since the last start.
	Files []File
}

// File is one file a member reads when it starts.
type File struct {
	Path string
	Data []byte
}

// WriteFiles writes cmd's files, creating their directories.
func WriteFiles(cmd Command) error {
	for _, f := range cmd.Files {
		if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
			return fmt.Errorf("member file %s: %w", f.Path, err)
		}
		if err := writeDurable(f.Path, f.Data); err != nil {
			return fmt.Errorf("member file: %w", err)
		}
	}
	return nil
}

// writeDurable writes a file and fsyncs it and its directory: a member's configuration
// is on disk before the member starts, and a power loss under dt's disk layer (which
// discards what was not fsynced) must not take it away.
func writeDurable(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// MemberStatus is one member's own view, read locally inside its namespace.
type MemberStatus struct {
	Member   string `json:"member"`         // filled by the caller: Status only knows the endpoint
	ID       string `json:"id"`             // the system's member id (hex for etcd)
	LeaderID string `json:"leader_id"`      // "" when this member knows no leader
	Term     uint64 `json:"term"`           // etcd: raft term; ZooKeeper: the epoch
	Index    uint64 `json:"index"`          // the log position, growing across terms (etcd: raft commit index; ZooKeeper: the zxid)
	Role     string `json:"role,omitempty"` // leader, follower, candidate, pre-candidate
	Healthy  bool   `json:"healthy"`        // it answered and knows a leader
	Error    string `json:"error,omitempty"`
}

// System is one system under test.
type System interface {
	Name() string
	// MemberCommand returns how to start member i; rejoin means its data dir already
	// holds state from an earlier start (etcd: --initial-cluster-state existing).
	MemberCommand(c Cluster, i int, rejoin bool) Command
	// ClientEndpoints lists the client URLs of the members, in member order.
	ClientEndpoints(c Cluster) []string
	// LocalEndpoint is the member's client URL as seen from inside its own namespace.
	LocalEndpoint(c Cluster, i int) string
	// NewKV builds a real client for the workload.
	NewKV(endpoints []string, opTimeout time.Duration) (workloads.KV, error)
	// Status reads one member's view through endpoint (a member's local URL).
	Status(ctx context.Context, endpoint string) (MemberStatus, error)
	// ClientEnv is the environment for a shell that talks to the cluster (ETCDCTL_ENDPOINTS...).
	ClientEnv(c Cluster) []string
}

var (
	registryMu sync.RWMutex
	registry   = map[string]System{}
)

// The one place built-in systems are registered.
func init() {
	for _, s := range []System{
		newEtcd("etcd", false),
		newEtcd("etcd-pre-vote", true),
		newZooKeeper(),
	} {
		if err := Register(s); err != nil {
			panic(err)
		}
	}
}

// Register adds s under s.Name(); a name registered twice is an error.
func Register(s System) error {
	registryMu.Lock()
	defer registryMu.Unlock()
	name := s.Name()
	if name == "" {
		return fmt.Errorf("register system: empty name")
	}
	if _, dup := registry[name]; dup {
		return fmt.Errorf("register system %q: already registered", name)
	}
	registry[name] = s
	return nil
}

// Lookup returns the system called name; an unknown name is an error listing the valid ones.
func Lookup(name string) (System, error) {
	registryMu.RLock()
	s, ok := registry[name]
	registryMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("unknown system %q; valid: %s", name, strings.Join(Names(), ", "))
	}
	return s, nil
}

// Names lists the registered systems, sorted.
func Names() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	return slices.Sorted(maps.Keys(registry))
}

// Checker is implemented by systems that can tell before a run whether what they need is
// installed, with an error that says how to install it.
type Checker interface {
	Check(c Cluster) error
}

// Versioner is implemented by systems that can say which version of their server bin
// (Cluster.Bin; "" = the system's default) runs, for config.json; "" when unknown.
type Versioner interface {
	Version(bin string) string
}

// Option is one --system-opt KEY=VALUE that a system accepts.
type Option struct {
	Key  string
	Help string // one line: what VALUE is
}

// Optioner is implemented by systems that take --system-opt KEY=VALUE: Options lists
// the keys; SetOptions checks opts and applies them to c (Bin, PreVote, Version...),
// creating nothing. An unknown key is an error naming the valid ones.
type Optioner interface {
	Options() []Option
	SetOptions(c *Cluster, opts map[string]string) error
}

// SetOptions applies opts to c through s (an Optioner); a system that takes no options
// refuses any.
func SetOptions(s System, c *Cluster, opts map[string]string) error {
	if o, ok := s.(Optioner); ok {
		return o.SetOptions(c, opts)
	}
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		return fmt.Errorf("--system-opt %s: system %s takes no options", k, s.Name())
	}
	return nil
}

// UnknownOption is the error for a --system-opt key that s does not take.
func UnknownOption(s Optioner, key string) error {
	var keys []string
	for _, o := range s.Options() {
		keys = append(keys, o.Key)
	}
	return fmt.Errorf("--system-opt %s: unknown key; valid: %s", key, strings.Join(keys, ", "))
}

// Preparer is implemented by systems that must make something before their members
// can start (etcd: build Cluster.Version); Prepare sets c.Bin to what it made.
// progress (may be nil) gets a line for anything slow.
type Preparer interface {
	Prepare(ctx context.Context, c *Cluster, progress io.Writer) error
}

// CLI is a system's own command-line client, which the debug prompt offers as a command
// called Name: the words typed after it are appended to Argv, which runs in a client
// node's namespace with ClientEnv set.
type CLI struct {
	Name     string
	Argv     []string
	Summary  string   // one line for the prompt's help
	Complete []string // words offered for its first argument
}

// CLIer is implemented by systems that have a command-line client.
type CLIer interface {
	CLI(c Cluster) CLI
}

// Porter is implemented by systems that can list the TCP ports each member listens on
// at its address (tests look for a free set of loopback addresses with them).
type Porter interface {
	Ports() []int
}

// ClientFeatured is implemented by a System whose client (NewKV's) does more than Put
// and a linearizable Get: compare-and-set (workloads.CASKV), other read consistencies
// (workloads.ReadConsistencyKV). It declares them so that a run asking for one its
// system lacks is refused before anything is created; the agent checks the client itself
// again (workloads.CheckKV). A test per system keeps the two in step.
type ClientFeatured interface {
	ClientFeatures() workloads.Features
}

// Features is what sys's client offers beyond Put and a linearizable Get (nothing, for a
// System that does not implement ClientFeatured).
func Features(sys System) workloads.Features {
	if f, ok := sys.(ClientFeatured); ok {
		return f.ClientFeatures()
	}
	return workloads.Features{}
}

// Snapshotter is an optional capability of a System: the raft index of the newest
// snapshot in a member's data dir (0 when there is none), and how many entries the
// member keeps in its log after a snapshot for slow followers.
type Snapshotter interface {
	SnapshotIndex(dataDir string) (uint64, error)
	CatchUpEntries() uint64
}
