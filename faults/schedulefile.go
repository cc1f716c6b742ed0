package faults

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ScheduleVersion is the version of the schedule file format WriteSchedule writes and
// ReadSchedule reads.
const ScheduleVersion = 1

// ScheduleKinds are where a schedule came from: a seeded random schedule, a named fault,
// a scenario file, or a debug session (dt up, dt run -d: no steps run).
var ScheduleKinds = []string{"random", "fault", "scenario", "session"}

// ScheduleFile is the concrete timeline a run executed, saved so that it can be replayed:
// steps with their times and, for a random schedule, the seed and knobs it was drawn from.
type ScheduleFile struct {
	Version int    `json:"version"`
	Kind    string `json:"kind"` // one of ScheduleKinds
	Name    string `json:"name"` // the fault's or the scenario's name
	Seed    int64  `json:"seed"`
	// MTBF and Faults are a random schedule's knobs.
	MTBF     Duration `json:"mtbf,omitempty"`
	Faults   []string `json:"faults,omitempty"`
	Duration Duration `json:"duration"`
	Steps    []Step   `json:"steps"`
}

func (s ScheduleFile) check() error {
	if s.Version != ScheduleVersion {
		return fmt.Errorf("unknown version %d: this dt reads version %d", s.Version, ScheduleVersion)
	}
	if !slices.Contains(ScheduleKinds, s.Kind) {
		return fmt.Errorf("unknown kind %q: valid kinds are %s", s.Kind, strings.Join(ScheduleKinds, ", "))
	}
	return nil
}

// WriteSchedule writes s to path as indented JSON, through a temporary file and a rename
// so that a reader never sees half a file. A zero Version is written as ScheduleVersion.
func WriteSchedule(path string, s ScheduleFile) error {
	if s.Version == 0 {
		s.Version = ScheduleVersion
	}
	if err := s.check(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	_, err = f.Write(append(b, '\n'))
	err = errors.Join(err, f.Chmod(0o644), f.Close())
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ReadSchedule reads a schedule file strictly: an unknown field, a version other than
// ScheduleVersion or an unknown kind is an error naming the file (and the line and
// column where the JSON is at fault). Each step's Source is set to "path: step N".
// Checking the steps against a cluster (ValidateTimeline) is the caller's job.
func ReadSchedule(path string) (ScheduleFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return ScheduleFile{}, fmt.Errorf("read schedule: %w", err)
	}
	// The version first, leniently (this also rejects data after the object): a newer file may have fields this dt does not know,
	// and "unknown version" says more than "unknown field".
	var v struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return ScheduleFile{}, fmt.Errorf("%s: %w", jsonPos(path, b, err), err)
	}
	if v.Version == nil {
		return ScheduleFile{}, fmt.Errorf("%s: no version: not a schedule file?", path)
	}
	if *v.Version != ScheduleVersion {
		return ScheduleFile{}, fmt.Errorf("%s: unknown version %d: this dt reads version %d", path, *v.Version, ScheduleVersion)
	}
	var s ScheduleFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return ScheduleFile{}, fmt.Errorf("%s: %w", jsonPos(path, b, err), err)
	}
	if err := s.check(); err != nil {
		return ScheduleFile{}, fmt.Errorf("%s: %w", path, err)
	}
	for i := range s.Steps {
		s.Steps[i].Source = fmt.Sprintf("%s: step %d", path, i+1)
	}
	return s, nil
}

// jsonPos is "path:line:col" where a JSON error has an offset, else path.
func jsonPos(path string, b []byte, err error) string {
	var off int64 = -1
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		off = syn.Offset
	case errors.As(err, &typ):
		off = typ.Offset
	}
	if off < 1 || off > int64(len(b)) {
		return path
	}
	// The error is in the last byte read, the Offset-th.
	before := b[:off-1]
	line := bytes.Count(before, []byte("\n")) + 1
	col := len(before) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return fmt.Sprintf("%s:%d:%d", path, line, col)
}
