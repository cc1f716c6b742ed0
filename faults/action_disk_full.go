package faults

import "github.com/dtlab/dt/disk"

// disk-full: the targets' disks run out of space.
func init() {
	Register(diskRuleAction{name: "disk-full", kind: disk.KindFull,
		describe: "fill the targets' disks: writes, creates and mkdirs fail with ENOSPC once bytes (default 0: at once; e.g. 64KiB) more are written, on paths matching path",
		fields:   []string{"bytes", "path"}})
}
