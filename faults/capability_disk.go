package faults

import (
	"context"
	"time"

	"github.com/dtlab/dt/disk"
)

// Disk acts on the disk layer under the members' data dirs (dt run --disk fuse): a FUSE
// passthrough per member whose rules make operations fail, slow down or run out of
// space, which can discard what a member did not fsync, and corrupt its files.
type Disk interface {
	// DiskRule puts r in force on node's disk layer and returns the probes (probes of
	// each operation) made through the mount before it (a slow rule's baseline) and
	// after, and its removal. owner names the step, for the events the env records about
	// the member meanwhile (it exiting on an error, say).
	DiskRule(ctx context.Context, node, owner string, r disk.Rule, probes int) (DiskProbes, Undo, error)
	// PowerLoss discards from node's data dir what its member wrote and did not fsync,
	// and the directory entries not synced (the member must be down), and says what
	// went; model (disk.PowerStrict, disk.PowerOrdered) says which entries count as
	// synced.
	PowerLoss(ctx context.Context, node, model string) (string, error)
	// Corrupt damages one file of node's data dir (the member must be down): c.Glob is
	// a glob in the data dir, or a name in DiskFiles.
	Corrupt(ctx context.Context, node string, c disk.Corruption) (string, error)
	// DiskFiles are the system's names for its files, for corrupt's file: field
	// (etcd: wal, snap, db), each a glob in the data dir.
	DiskFiles() map[string]string
	// Outcome watches node's member for up to within after it was restarted and says
	// what became of it; ok is false when it did not come back (its process ended, or
	// it never became healthy).
	Outcome(ctx context.Context, node string, within time.Duration) (detail string, ok bool)
}

// DiskProbes are the probes of a rule's operations through a mount: Baseline before it
// is in force (slow rules), After once it is.
type DiskProbes struct {
	Baseline []disk.ProbeResult
	After    []disk.ProbeResult
}
