// Package layer is dt's disk layer: a passthrough FUSE filesystem (go-fuse's loopback,
// with hooks) that serves a member's data dir from a backing dir beside it, obeys the
// fault rules set on it (errors, latency, a full disk), keeps the journal of what was
// written since the last fsyncs so that a power cut can discard exactly that, and
// corrupts files while the member is down. An agent mounts one per member, over the
// member's data dir, before the member starts.
package layer

import (
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dtlab/dt/disk"
)

// Options say where a layer lives and whose it is.
type Options struct {
	// Mountpoint is the member's data dir; Backing holds the real files; Trash (on the
	// same filesystem as Backing, outside it) keeps removed files until their removal is
	// durable.
	Mountpoint, Backing, Trash string
	// RunID and Node name the mount (its FUSE source is disk.SourceName(RunID, Node)).
	RunID, Node string
	Logger      *slog.Logger
}

// Layer is one mounted disk layer.
type Layer struct {
	opts    Options
	log     *slog.Logger
	journal *disk.Journal

	mu    sync.Mutex // rules, armed
	rules *disk.Rules
	armed string // the operation a probe in progress may hit ("" none)

	probeMu sync.Mutex // one probe, power loss, corruption or clean at a time

	srvMu  sync.Mutex
	server *fuse.Server
	root   *node
}

// Probe and canary files live in these directories at the mount's root: the journal
// never records them and rules never hit them, but for the one operation a probe arms.
const (
	probeDir  = ".dt-probe"
	canaryDir = ".dt-canary"
)

// Mount serves opts.Backing at opts.Mountpoint, creating both directories if needed.
// The mount point must not be mounted already.
func Mount(opts Options) (*Layer, error) {
	for _, d := range []string{opts.Mountpoint, opts.Backing, opts.Trash} {
		if d == "" || !filepath.IsAbs(d) {
			return nil, fmt.Errorf("disk layer: mount point, backing and trash must be absolute paths (got %q)", d)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("disk layer: %w", err)
		}
	}
	if ms, err := disk.Mounts(); err == nil {
		for _, m := range ms {
			if filepath.Clean(m.Point) == filepath.Clean(opts.Mountpoint) {
				return nil, fmt.Errorf("disk layer: %s is mounted already (%s)", opts.Mountpoint, m.Source)
			}
		}
	}
	j, err := disk.NewJournal(opts.Backing, opts.Trash)
	if err != nil {
		return nil, err
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.Default()
	}
	l := &Layer{opts: opts, log: lg.With("disk", opts.Mountpoint), journal: j,
		rules: disk.NewRules(rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))}
	if err := l.mount(); err != nil {
		return nil, err
	}
	return l, nil
}

// mount starts a FUSE server on the mount point.
func (l *Layer) mount() error {
	lb, err := fs.NewLoopbackRoot(l.opts.Backing)
	if err != nil {
		return fmt.Errorf("disk layer: %w", err)
	}
	root := &node{LoopbackNode: lb.(*fs.LoopbackNode), l: l}
	second := time.Second
	opts := &fs.Options{
		EntryTimeout: &second,
		AttrTimeout:  &second,
		MountOptions: fuse.MountOptions{
			AllowOther: true,
			FsName:     disk.SourceName(l.opts.RunID, l.opts.Node),
			Name:       disk.Subtype,
			// mount(2) ourselves (we are root): no fusermount needed, and a failure says why.
			DirectMountStrict: true,
			Logger:            log.New(slogWriter{l.log}, "", 0),
		},
	}
	// go-fuse opens /dev/fuse with syscall.Open and sets close-on-exec only after mount(2):
	// a process the agent started meanwhile would inherit the descriptor, keep the FUSE
	// connection alive after the agent dies and hang on the mount. Holding ForkLock for
	// reading while descriptors are created is syscall's contract for exactly that.
	syscall.ForkLock.RLock()
	srv, err := fs.Mount(l.opts.Mountpoint, root, opts)
	syscall.ForkLock.RUnlock()
	if err != nil {
		return fmt.Errorf("disk layer: mount %s: %w", l.opts.Mountpoint, err)
	}
	l.srvMu.Lock()
	l.server, l.root = srv, root
	l.srvMu.Unlock()
	l.log.Info("disk layer mounted", "backing", l.opts.Backing, "source", opts.FsName)
	return nil
}

// slogWriter sends go-fuse's log lines to the agent's log.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn("fuse: " + strings.TrimSpace(string(p)))
	return len(p), nil
}

// unmount detaches the mount and waits (a while) for its server to end.
func (l *Layer) unmount() error {
	l.srvMu.Lock()
	srv := l.server
	l.server, l.root = nil, nil
	l.srvMu.Unlock()
	if srv == nil {
		return nil
	}
	if err := disk.Detach(l.opts.Mountpoint); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		// Something still holds a file open in the detached tree; it is gone from the
		// namespace, and its server ends when that file is closed.
		l.log.Warn("disk layer: server still busy 5s after detaching", "mountpoint", l.opts.Mountpoint)
	}
	return nil
}

// Close unmounts the layer (lazily: a file still open there keeps the server alive
// until it is closed) and leaves the backing dir as it is.
func (l *Layer) Close() error {
	l.probeMu.Lock()
	defer l.probeMu.Unlock()
	err := l.unmount()
	l.log.Info("disk layer unmounted", "err", err)
	return err
}

// Mountpoint is where the layer is mounted.
func (l *Layer) Mountpoint() string { return l.opts.Mountpoint }

// Backing is where its files are.
func (l *Layer) Backing() string { return l.opts.Backing }

// AddRule puts r in force.
func (l *Layer) AddRule(r disk.Rule) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rules.Add(r)
}

// RemoveRule takes rule id out of force; it reports how often it fired, and false if
// there was no such rule.
func (l *Layer) RemoveRule(id string) (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rules.Remove(id)
}

// Status is what a layer is doing.
type Status struct {
	Mountpoint string            `json:"mountpoint"`
	Backing    string            `json:"backing"`
	Mounted    bool              `json:"mounted"`
	Rules      []disk.RuleStatus `json:"rules,omitempty"`
	// Pending is what a power cut now would discard.
	Pending disk.Pending `json:"pending"`
}

// Status reports the layer's rules and what is not durable.
func (l *Layer) Status() Status {
	l.mu.Lock()
	rules := l.rules.List()
	l.mu.Unlock()
	l.srvMu.Lock()
	mounted := l.server != nil
	l.srvMu.Unlock()
	return Status{Mountpoint: l.opts.Mountpoint, Backing: l.opts.Backing, Mounted: mounted, Rules: rules, Pending: l.journal.Pending()}
}

// probeRel maps a path under the probe directory to the path rules match it as, and
// reports whether rel is exempt from the journal and the rules.
func splitProbe(rel string) (match string, probe, exempt bool) {
	switch {
	case rel == probeDir || rel == canaryDir:
		return rel, false, true
	case strings.HasPrefix(rel, probeDir+"/p/"):
		return strings.TrimPrefix(rel, probeDir+"/p/"), true, true
	case strings.HasPrefix(rel, probeDir+"/"), strings.HasPrefix(rel, canaryDir+"/"):
		return rel, false, true
	}
	return rel, false, false
}

// isCanary reports whether rel is the power loss's canary or in it.
func isCanary(rel string) bool { return rel == canaryDir || strings.HasPrefix(rel, canaryDir+"/") }

// exempt reports whether rel is one of the layer's own files, which the journal keeps
// no record of (the canary, which must be journaled, lives under canaryDir).
func exempt(rel string) bool {
	return rel == probeDir || strings.HasPrefix(rel, probeDir+"/")
}

// decide asks the rules about op on rel (n bytes for a write) and waits out the delay
// they add; the verdict's errno is what the operation returns.
func (l *Layer) decide(ctx doner, op, rel string, n int64) disk.Verdict {
	return l.decideFn(ctx, op, func() string { return rel }, n)
}

// doner is what decide needs of a request's context: its cancellation.
type doner interface{ Done() <-chan struct{} }

// decideFn is decide with the path computed only when some rule is in force.
func (l *Layer) decideFn(ctx doner, op string, rel func() string, n int64) disk.Verdict {
	l.mu.Lock()
	if l.rules.Empty() {
		l.mu.Unlock()
		return disk.Verdict{Allow: -1}
	}
	match, probe, ex := splitProbe(rel())
	var v disk.Verdict
	switch {
	case probe && l.armed == op:
		v = l.rules.Decide(op, match, n, false)
	case ex:
		v = disk.Verdict{Allow: -1}
	default:
		v = l.rules.Decide(op, match, n, true)
	}
	l.mu.Unlock()
	if v.Delay > 0 {
		t := time.NewTimer(v.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return disk.Verdict{Errno: syscall.EINTR}
		}
	}
	return v
}

// freeBytes is what a full disk has left (-1: not full).
func (l *Layer) freeBytes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rules.FreeBytes()
}
