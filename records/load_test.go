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
	// cas records
	`{"client":"c1","kind":"cas","key":"0","value":"c1-9","expected":"c2-4","swapped":true,"expected_start":3,"submitted":3,"completed":3.01,"result":"ok","target":"t"}`,
	`{"client":"c1","kind":"cas","key":"0","value":"c1-9","expected":"c2-4","current":"c3-7","result":"ok"}`,
	`{"client":"c1","kind":"cas","key":"0","value":"c1-9","current":"","swapped":false,"result":"ok"}`,
	`{"kind":"cas","current":null,"swapped":null}`,
	`{"kind":"cas","current":"a","current":"b"}`,
	`{"swapped":tru}`,
	`{"swapped":truex}`,
	`{"swapped":"true"}`,
	`{"current":1}`,
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

// A run written before cas existed has no expected, swapped or current fields: its lines
// load as before, with the cas fields at their zero values.
func TestLoadOldOps(t *testing.T) {
	dir := t.TempDir()
	old := `{"client":"c1","kind":"write","key":"1","value":"c1-1","expected_start":1.5,"submitted":1.5001,"completed":1.52,"result":"ok","target":"10.0.0.1:2379"}
{"client":"c1","kind":"read","key":"1","value":"c1-1","expected_start":2,"submitted":2,"completed":2.1,"result":"ok","target":"10.0.0.2:2379"}
`
	if err := os.WriteFile(filepath.Join(dir, OpsFile), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	run, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Op{
		{Client: "c1", Kind: KindWrite, Key: "1", Value: "c1-1", ExpectedStart: 1.5, Submitted: 1.5001, Completed: 1.52, Result: ResultOK, Target: "10.0.0.1:2379"},
		{Client: "c1", Kind: KindRead, Key: "1", Value: "c1-1", ExpectedStart: 2, Submitted: 2, Completed: 2.1, Result: ResultOK, Target: "10.0.0.2:2379"},
	}
	if run.SkippedRecords != 0 || !reflect.DeepEqual(run.Ops, want) {
		t.Fatalf("ops %+v (skipped %d), want %+v", run.Ops, run.SkippedRecords, want)
	}
}

// A cas record survives the writer and Load unchanged, its Current too (absent, a value,
// or unknown).
func TestCASRoundTrip(t *testing.T) {
	dir := t.TempDir()
	w, err := CreateJSONL(filepath.Join(dir, OpsFile))
	if err != nil {
		t.Fatal(err)
	}
	absent, other := "", "c2-3"
	ops := []Op{
		{Client: "c1", Kind: KindCAS, Key: "0", Expected: "c1-1", Value: "c1-2", Swapped: true, Result: ResultOK},
		{Client: "c1", Kind: KindCAS, Key: "0", Expected: "c1-1", Value: "c1-3", Current: &other, Result: ResultOK},
		{Client: "c1", Kind: KindCAS, Key: "0", Value: "c1-4", Current: &absent, Result: ResultOK},
		{Client: "c1", Kind: KindCAS, Key: "0", Expected: "c1-1", Value: "c1-5", Result: ResultOK},
		{Client: "c1", Kind: KindCAS, Key: "0", Expected: "c1-1", Value: "c1-6", Result: "context deadline exceeded"},
	}
	for _, o := range ops {
		if err := w.Append(o); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	run, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(run.Ops, ops) {
		t.Fatalf("got %+v\nwant %+v", run.Ops, ops)
	}
	if run.Ops[2].Current == nil || *run.Ops[2].Current != "" || run.Ops[3].Current != nil {
		t.Errorf("absent and unknown current values mixed up: %v %v", run.Ops[2].Current, run.Ops[3].Current)
	}
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

// cas lines as the writer emits them take the fast path: a long history of them must not
// fall back to encoding/json.
func TestFastDecodeCAS(t *testing.T) {
	cur := "c3-7"
	for _, o := range []Op{
		{Client: "c1", Kind: KindCAS, Key: "0", Expected: "c2-4", Value: "c1-9", Swapped: true, Result: ResultOK},
		{Client: "c1", Kind: KindCAS, Key: "0", Expected: "c2-4", Value: "c1-9", Current: &cur, Result: ResultOK},
	} {
		b, _ := json.Marshal(o)
		var got Op
		if !fastDecodeOp(b, &got, interner{}) || !reflect.DeepEqual(got, o) {
			t.Errorf("%s: fast path %+v", b, got)
		}
	}
}
