package faults

import "github.com/dtlab/dt/disk"

// disk-error: operations on the targets' data dirs fail with an errno.
func init() {
	Register(diskRuleAction{name: "disk-error", kind: disk.KindError,
		describe: "make operations (ops: open, read, write, fsync, rename...; default all) on the targets' data dirs fail with errno (EIO, ENOSPC, EROFS...), on paths matching path (a glob), with probability (default 1)",
		fields:   []string{"errno", "ops", "path", "probability"}})
}
