package faults

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
)

func TestScheduleRoundTrip(t *testing.T) {
	o := randomOpts(3, 5)
	steps := mustRandom(t, o)
	at := steps[len(steps)-1].At.D() + time.Second // steps fire in order
	steps = append(steps, Step{ID: "p", Action: "probe", At: at2(at), Probe: &Probe{URL: "http://s1:2379/health", From: "c1", Timeout: Duration(time.Second)}})
	in := ScheduleFile{Kind: "random", Name: "random", Seed: o.Seed, MTBF: Duration(o.MTBF),
		Faults: RandomKinds(), Duration: Duration(o.Duration), Steps: steps}
	dir := t.TempDir()
	path := filepath.Join(dir, records.ScheduleFile)
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteSchedule(path, in); err != nil {
		t.Fatal(err)
	}
	out, err := ReadSchedule(path)
	if err != nil {
		t.Fatal(err)
	}
	if out.Steps[1].Source != path+": step 2" {
		t.Errorf("source %q", out.Steps[1].Source)
	}
	for i := range out.Steps {
		out.Steps[i].Source = ""
	}
	in.Version = ScheduleVersion
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip changed the schedule:\n in %+v\nout %+v", in, out)
	}
	if err := ValidateTimeline(out.Steps, Cluster{Nodes: o.Nodes, Servers: o.Servers}); err != nil {
		t.Error(err)
	}

	b, _ := os.ReadFile(path)
	for _, key := range []string{`"version": 1`, `"kind": "random"`, `"seed": 3`, `"mtbf": "10s"`, `"duration": "10m0s"`, `"steps": [`, `"action": "kill"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("%s lacks %s:\n%s", path, key, b)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v: want 0644", fi.Mode(), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}

	// A named fault's schedule leaves the random knobs out.
	if err := WriteSchedule(path, ScheduleFile{Kind: "fault", Name: "leader", Duration: Duration(time.Minute), Steps: []Step{}}); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	if strings.Contains(string(b), "mtbf") || strings.Contains(string(b), "faults") {
		t.Errorf("fault schedule has random knobs:\n%s", b)
	}
}

func TestReadScheduleErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, text, want string
	}{
		{"unknown field", `{"version": 1, "kind": "fault", "name": "x", "seed": 0, "duration": "1s", "steps": [], "colour": 1}`, `unknown field "colour"`},
		{"unknown step field", `{"version": 1, "kind": "fault", "duration": "1s", "steps": [{"action": "kill", "targets": ["s1"], "durration": "1s"}]}`, `unknown field "durration"`},
		{"unknown version", `{"version": 2, "kind": "fault", "whatever": true}`, "unknown version 2: this dt reads version 1"},
		{"no version", `{"kind": "fault"}`, "no version"},
		{"unknown kind", `{"version": 1, "kind": "chaos"}`, `unknown kind "chaos": valid kinds are random, fault, scenario`},
		{"syntax", "{\"version\": 1,\n  \"kind\": \"fault\",,\n}", ".json:2:19: "},
		{"type", "{\"version\": 1,\n \"seed\": \"x\"}", ".json:2:"},
		{"bad duration", `{"version": 1, "kind": "fault", "duration": "soon"}`, `bad duration "soon"`},
		{"trailing data", `{"version": 1, "kind": "fault"} {}`, ".json:1:33: invalid character '{' after top-level value"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
		if err := os.WriteFile(path, []byte(tc.text), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadSchedule(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %v, want %q naming %s", tc.name, err, tc.want, path)
		}
	}
	if _, err := ReadSchedule(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file: %v", err)
	}
	if err := WriteSchedule(filepath.Join(dir, "w.json"), ScheduleFile{Kind: "chaos"}); err == nil || !strings.Contains(err.Error(), `unknown kind "chaos"`) {
		t.Errorf("write with a bad kind: %v", err)
	}
	if err := WriteSchedule(filepath.Join(dir, "w.json"), ScheduleFile{Version: 9, Kind: "fault"}); err == nil || !strings.Contains(err.Error(), "unknown version 9") {
		t.Errorf("write with a bad version: %v", err)
	}
}

func at2(d time.Duration) *Duration {
	v := Duration(d)
	return &v
}
