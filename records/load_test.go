package records

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var opLines = []string{
	`{"client":"c1","kind":"write","key":"1","value":"c1-1","expected_start":1.5,"submitted":1.5001,"completed":1.52,"result":"ok","target":"10.0.0.1:2379"}`,
	`{"client":"c1","kind":"read","key":"1","expected_start":2,"submitted":2,"completed":2.1,"result":"ok","target":"t"}`,
	` { "client" : "c2" , "kind":"read", "key":"k", "value":"", "completed": 1e-3, "submitted": -0.5E+2, "result":"ok" } `,
	`{"client":"c\u00e9","kind":"write","key":"k","value":"a\"b","result":"etcdserver: request timed out","completed":3}`,
	`{"client":"c1","kind":"write","key":"k","value":"é","result":"ok"}`,
	`{"client":"c1","kind":"write","key":"k","extra":{"nested":[1,2]},"result":"ok"}`,
	`{"Client":"upper","KIND":"read","result":"ok"}`,
	`{}`,
	`{"client":"c1","client":"c2","result":"ok"}`,
	`{"client":null,"result":"ok"}`,
	// not valid records
	`{"client":"c1","kind":"write","key":"1","value":"c1-1","expected_start":1.5,"submitted":1.50`,
	`{"client":"c1",}`,
	`{"submitted":01}`,
	`{"submitted":1.}`,
	`{"submitted":.5}`,
	`{"submitted":1e}`,
	`{"submitted":"1"}`,
	`{"client":1}`,
	`{"client":"a"}x`,
	`[1,2]`,
	`{"client":"tab	inside"}`,
	`{"submitted":1e999}`,
}

// The hand-written fast path must agree with encoding/json on everything it accepts, and
// decodeOp must agree with encoding/json everywhere.
func TestDecodeOpMatchesEncodingJSON(t *testing.T) {
	for _, line := range opLines {
		var want Op
		wantErr := json.Unmarshal([]byte(line), &want)
		var got Op
		err := decodeOp([]byte(line), &got, interner{})
		if (err != nil) != (wantErr != nil) {
			t.Errorf("%s: error %v, encoding/json says %v", line, err, wantErr)
			continue
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", line, got, want)
		}
	}
}

func FuzzDecodeOp(f *testing.F) {
	for _, l := range opLines {
		f.Add([]byte(l))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var fast Op
		if !fastDecodeOp(line, &fast, interner{}) {
			return
		}
		var want Op
		if err := json.Unmarshal(line, &want); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json: %v", line, err)
		}
		if !reflect.DeepEqual(fast, want) {
			t.Fatalf("%q: fast %+v, encoding/json %+v", line, fast, want)
		}
	})
}

func TestLoadSkipsCorruptLines(t *testing.T) {
	dir := t.TempDir()
	writeTestRun(t, dir, 1000)
	ops := filepath.Join(dir, OpsFile)
	// A corrupt line in the middle, a very long garbage line (longer than the read buffer)
	// and a half-written last line, as a crash leaves it.
	b, _ := os.ReadFile(ops)
	lines := strings.SplitAfter(string(b), "\n")
	mid := len(lines) / 2
	lines = append(lines[:mid], append([]string{"{not json\n", strings.Repeat("x", 3<<20) + "\n"}, lines[mid:]...)...)
	body := strings.Join(lines, "") + `{"client":"c1","kind":"wri`
	if err := os.WriteFile(ops, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	// and a corrupt event
	f, _ := os.OpenFile(filepath.Join(dir, EventsFile), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"t":1,"type":` + "\n")
	f.Close()

	run, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if run.SkippedRecords != 4 || len(run.Skipped) != 4 {
		t.Fatalf("skipped %d %+v, want 4", run.SkippedRecords, run.Skipped)
	}
	if len(run.Ops) != 1000 {
		t.Errorf("ops = %d, want 1000", len(run.Ops))
	}
	last := run.Skipped[2]
	if last.File != OpsFile || last.Line != 1003 { // 1000 records, 2 inserted lines, then the half line
		t.Errorf("last skipped = %+v, want %s line 1003", last, OpsFile)
	}
	if run.Skipped[3].File != EventsFile {
		t.Errorf("skipped = %+v", run.Skipped)
	}
	if run.Config["system"] != "etcd" {
		t.Errorf("config = %v", run.Config)
	}
}

func TestLoadMissingFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty dir: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "nope")); err == nil {
		t.Error("missing dir loaded")
	}
	// events only (a run that crashed before the workload): loads, with warnings
	os.WriteFile(filepath.Join(dir, EventsFile), []byte(`{"t":0,"type":"run-start"}`+"\n"), 0o644)
	run, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Events) != 1 || len(run.Warnings) != 2 { // config.json and ops.jsonl missing
		t.Errorf("run = %+v", run)
	}
}

// writeTestRun writes a run directory as a run does: config.json, n operations through a
// JSONLWriter (successful writes and reads, reads of an absent key, failures and overloads)
// and the events of a run with a leader kill.
func writeTestRun(t *testing.T, dir string, n int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, LogsDir), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.MarshalIndent(map[string]any{"system": "etcd", "topology": "simple", "workload": "uniform", "fault": "leader", "seed": 1}, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	ow, err := CreateJSONL(filepath.Join(dir, OpsFile))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		at := 2 + float64(i)/200
		o := Op{Client: fmt.Sprintf("c%d", i%4), Key: fmt.Sprint(i % 7), ExpectedStart: at, Submitted: at + 0.0001,
			Completed: at + 0.003, Result: ResultOK, Target: fmt.Sprintf("10.0.0.%d:2379", 1+i%3)}
		switch i % 5 {
		case 0:
			o.Kind, o.Value = KindWrite, fmt.Sprintf("%s-%d", o.Client, i)
		case 1:
			o.Kind, o.Value = KindRead, fmt.Sprintf("c0-%d", i-1)
		case 2:
			o.Kind = KindRead // the key was absent
		case 3:
			o.Kind, o.Value, o.Result = KindWrite, fmt.Sprintf("%s-%d", o.Client, i), "context deadline exceeded"
		case 4:
			o.Kind, o.Result, o.Submitted, o.Completed = KindRead, ResultOverload, at, at
		}
		if err := ow.Append(o); err != nil {
			t.Fatal(err)
		}
	}
	ow.Close()
	ew, err := CreateJSONL(filepath.Join(dir, EventsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []Event{
		{T: 0, Type: EventRunStart},
		{T: 1, Type: EventLeader, Leader: "s1", Term: 2},
		{T: 1.5, Type: EventClusterReady},
		{T: 2, Type: EventWorkloadStart},
		{T: 3, Type: EventFaultStart, Fault: "leader", Targets: []string{"s1"}},
		{T: 3, Type: EventFaultAction, Fault: "leader", Action: "kill", Targets: []string{"s1"}},
		{T: 5, Type: EventFaultEnd, Fault: "leader", Targets: []string{"s1"}},
		{T: 7, Type: EventWorkloadEnd},
		{T: 8, Type: EventRunEnd},
	} {
		if err := ew.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	ew.Close()
}
