package faults

import "github.com/dtlab/dt/disk"

// disk-slow: operations on the targets' data dirs take longer.
func init() {
	Register(diskRuleAction{name: "disk-slow", kind: disk.KindSlow, random: true,
		describe: "add delay (± jitter) to operations (ops; default all) on the targets' data dirs, on paths matching path, with probability (default 1)",
		fields:   []string{"delay", "jitter", "ops", "path", "probability"}})
}
