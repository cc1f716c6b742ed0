package faults

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dtlab/dt/disk"
	"github.com/dtlab/dt/records"
)

// corrupt: damage a file of the targets' data dirs while they are down.
func init() { Register(corruptAction{}) }

// corruptAction kills each target's member, damages one file of its data dir (flipped
// bits, a cut tail, zeroed bytes), keeps it down for the step's duration, restarts it
// and records whether the system noticed: a member that refuses to start names the
// damage it found in its log.
type corruptAction struct{}

func (corruptAction) Name() string { return "corrupt" }
func (corruptAction) Describe() string {
	return "while the targets' members are down, damage one file of their data dirs (file: a name the system gives, e.g. wal, snap, db, or a glob; pick: newest|oldest|random; mode: flip|truncate|zero; bytes: how much), restart them, record whether they notice (timeout, default 20s)"
}
func (corruptAction) Form() Form {
	return Form{Targets: TargetsRequired, Fields: []string{"file", "pick", "mode", "bytes", "duration", "timeout"},
		Needs: []Capability{CapDisk, CapProcesses}}
}

func (corruptAction) Check(s Step, _ Cluster) []FieldError {
	var errs []FieldError
	if s.File == "" {
		errs = append(errs, fieldErrorf("file", "corrupt needs file: a name the system gives its files (etcd: wal, snap, db) or a glob in the data dir"))
	} else if _, err := filepath.Match(s.File, ""); err != nil || filepath.IsAbs(s.File) || strings.Contains(s.File, "..") {
		errs = append(errs, fieldErrorf("file", "file %q: want a name or a glob relative to the data dir", s.File))
	}
	if s.Pick != "" && !slices.Contains(disk.Picks, s.Pick) {
		errs = append(errs, fieldErrorf("pick", "pick %q: valid are %s", s.Pick, strings.Join(disk.Picks, ", ")))
	}
	if s.Mode != "" && !slices.Contains(disk.CorruptModes, s.Mode) {
		errs = append(errs, fieldErrorf("mode", "mode %q: valid are %s", s.Mode, strings.Join(disk.CorruptModes, ", ")))
	}
	if _, err := disk.ParseBytes(s.Bytes); err != nil {
		errs = append(errs, FieldError{"bytes", err})
	}
	return errs
}

func (corruptAction) Run(ctx context.Context, call *Call) error {
	p, err := Need[Processes](call, CapProcesses)
	if err != nil {
		return err
	}
	d, err := Need[Disk](call, CapDisk)
	if err != nil {
		return err
	}
	s := call.Step
	glob := s.File
	if named, ok := d.DiskFiles()[s.File]; ok {
		glob = named
	} else if !strings.ContainsAny(s.File, "*?[/") && !strings.Contains(s.File, ".") {
		names := slices.Sorted(maps.Keys(d.DiskFiles()))
		return fmt.Errorf("corrupt: file %q is neither a glob nor one of the system's files (%s)", s.File, strings.Join(names, ", "))
	}
	mode := s.Mode
	if mode == "" {
		mode = disk.CorruptFlip
	}
	n, _ := disk.ParseBytes(s.Bytes)
	c := disk.Corruption{Glob: glob, Pick: s.Pick, Mode: mode, Bytes: n}
	call.Rand(func(r *rand.Rand) { c.Seed = r.Uint64() })
	pick := c.Pick
	if pick == "" {
		pick = disk.PickNewest
	}
	targets := call.Targets
	call.Record(records.EventFaultStart, "corrupt", targets, fmt.Sprintf("%s (%s, %s): %s", s.File, glob, pick, mode))
	var errs []error
	var down []string
	for _, t := range targets {
		if err := p.Kill(ctx, t); err != nil {
			errs = append(errs, fmt.Errorf("kill %s: %w", t, err))
			continue
		}
		down = append(down, t)
		detail, err := d.Corrupt(ctx, t, c)
		if err != nil {
			errs = append(errs, fmt.Errorf("corrupt %s: %w", t, err))
			detail = "failed: " + err.Error()
		}
		call.Record(records.EventFaultAction, records.ActionCorrupt, []string{t}, detail)
	}
	call.Sleep(ctx, s.For.D())
	restartAndWatch(call, p, d, down, &errs)
	return errors.Join(errs...)
}
