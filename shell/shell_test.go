package shell

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/shaping"
	"github.com/dtlab/dt/topology"
)

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		line string
		want []string
		err  error
	}{
		{"", nil, nil},
		{"   ", nil, nil},
		{"status", []string{"status"}, nil},
		{"  partition  s1   s2 --one-way ", []string{"partition", "s1", "s2", "--one-way"}, nil},
		{`s1 sh -c 'ip -s link | head'`, []string{"s1", "sh", "-c", "ip -s link | head"}, nil},
		{`etcdctl put k "a b"`, []string{"etcdctl", "put", "k", "a b"}, nil},
		{`c1 echo "say \"hi\" \n"`, []string{"c1", "echo", `say "hi" \n`}, nil},
		{`c1 echo a\ b`, []string{"c1", "echo", "a b"}, nil},
		{`c1 echo ''`, []string{"c1", "echo", ""}, nil},
		{`c1 echo x#y # a comment`, []string{"c1", "echo", "x#y"}, nil},
		{"# only a comment", nil, nil},
		{`c1 echo 'open`, nil, ErrUnterminatedQuote},
		{`c1 echo "open`, nil, ErrUnterminatedQuote},
	} {
		got, err := Split(tc.line)
		if !errors.Is(err, tc.err) {
			t.Errorf("Split(%q) error = %v, want %v", tc.line, err, tc.err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Split(%q) = %q, want %q", tc.line, got, tc.want)
		}
	}
}

// fakeLive is a topology that was never realised: enough for parsing, completion and
// the commands that fail before they touch the kernel.
func fakeLive(t *testing.T) *topology.Live {
	t.Helper()
	spec, err := topology.Build("simple", topology.BuildOptions{Servers: 3, Clients: 1})
	if err != nil {
		t.Fatal(err)
	}
	return &topology.Live{Spec: spec, State: &topology.State{RunID: "abcdef", Spec: spec}}
}

func newTestShell(t *testing.T) (*Shell, *bytes.Buffer, *bytes.Buffer) {
	var out, errs bytes.Buffer
	return New(Options{Live: fakeLive(t), Out: &out, Err: &errs}), &out, &errs
}

func TestComplete(t *testing.T) {
	s, _, _ := newTestShell(t)
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"pin", []string{"pingall"}},
		{"pa", []string{"partition", "pause"}},
		{"s", []string{"status", "stop", "sleep", "s1", "s2", "s3"}},
		{"partition s", []string{"s1", "s2", "s3"}},
		{"partition s1 c", []string{"c1"}},
		{"partition s1,s", []string{"s1,s1", "s1,s2", "s1,s3"}},
		{"partition s1 s2 --o", []string{"--one-way"}},
		{"partition s1 s2 ", []string{"--one-way"}},
		{"help he", []string{"help", "heal"}},
		{"link s1 s2 --d", []string{"--delay"}},
		{"c1 ping -c1 s", []string{"s1", "s2", "s3"}},
		{"c1 ", []string{}},   // the program: not completed
		{"kill ", []string{}}, // no system: nothing to kill
		{"zz ", []string{}},
	} {
		_, got := s.Complete(tc.line, len(tc.line))
		if got == nil {
			got = []string{}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Complete(%q) = %q, want %q", tc.line, got, tc.want)
		}
	}
}

func TestAutoCompleteTab(t *testing.T) {
	s, out, _ := newTestShell(t)
	for _, tc := range []struct {
		line     string
		wantLine string
		ok       bool
	}{
		{"pin", "pingall ", true},
		{"partition s1 s", "partition s1 s", false}, // ambiguous, nothing in common: listed
		{"isol", "isolate ", true},
		{"heal c", "heal c1 ", true},
		{"xyz", "", false},
	} {
		line, pos, ok := s.autoComplete(tc.line, len(tc.line), '\t')
		if ok != tc.ok || (ok && (line != tc.wantLine || pos != len(tc.wantLine))) {
			t.Errorf("Tab after %q = %q, %d, %v; want %q, %v", tc.line, line, pos, ok, tc.wantLine, tc.ok)
		}
	}
	if !strings.Contains(out.String(), "s1  s2  s3") {
		t.Errorf("an ambiguous Tab should list the candidates; output:\n%s", out.String())
	}
	if _, _, ok := s.autoComplete("pin", 3, 'x'); ok {
		t.Error("a key other than Tab must not complete")
	}
}

func TestErrorsBeforeTheKernel(t *testing.T) {
	s, out, _ := newTestShell(t)
	ctx := context.Background()
	for _, tc := range []struct {
		line string
		want []string // substrings of the error
	}{
		{"bogus", []string{`unknown command "bogus"`, "pingall", "s1, s2, s3, c1"}},
		{"status", []string{"no system runs", "dt up etcd simple"}},
		{"kill leader", []string{"no system runs"}},
		{"partition s1", []string{"usage: partition A B [--one-way]"}},
		{"partition s1 s9", []string{`unknown node "s9"`, "s1, s2, s3, c1"}},
		{"partition s1 s2 --two-way", []string{"unknown flag: --two-way", "usage: partition"}},
		{"partition leader s2", []string{`"leader": no system runs here`}},
		{"isolate", []string{"usage: isolate NODE"}},
		{"link s1 s2", []string{"say what to do"}},
		{"link s1 s2 --loss 150", []string{"--loss: 150: want 0..100"}},
		{"link s1 s2 --rate 10", []string{"--rate", "give a unit"}},
		{"link s1 s2 --rate fast", []string{`"fast" is not a rate`}},
		{"link s1 s2 --delay 50ms", []string{"this session has none"}},
		{"s1", []string{"what should it run"}},
		{"sleep", []string{"usage: sleep SECONDS"}},
		{"sleep soon", []string{"not a number of seconds"}},
		{"help bogus", []string{`no command "bogus"`}},
		{`c1 echo "open`, []string{"unterminated quote"}},
	} {
		err := s.Exec(ctx, tc.line)
		if err == nil {
			t.Errorf("%q: no error", tc.line)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q does not say %q", tc.line, err, w)
			}
		}
	}
	if err := s.Exec(ctx, "exit"); !errors.Is(err, errExit) {
		t.Errorf("exit: %v", err)
	}
	if err := s.Exec(ctx, "   # nothing"); err != nil {
		t.Errorf("a comment: %v", err)
	}
	if out.Len() != 0 {
		t.Errorf("failing commands printed output:\n%s", out)
	}
}

type recordingShaper struct {
	a, b string
	imp  shaping.Impairment
}

func (r *recordingShaper) ShapeLink(_ context.Context, a, b string, imp shaping.Impairment) error {
	r.a, r.b, r.imp = a, b, imp
	return nil
}

func TestLinkUsesTheShaper(t *testing.T) {
	var out bytes.Buffer
	sh := &recordingShaper{}
	s := New(Options{Live: fakeLive(t), Out: &out, Links: sh})
	if err := s.Exec(context.Background(), "link s1 c1 --delay 20 --jitter 2ms --loss 1.5% --rate 10mbit"); err != nil {
		t.Fatal(err)
	}
	want := shaping.Impairment{Delay: 20 * time.Millisecond, Jitter: 2 * time.Millisecond, Loss: 1.5, Rate: 10_000_000}
	if sh.a != "s1" || sh.b != "c1" || sh.imp != want {
		t.Errorf("shaper got %s %s %+v, want s1 c1 %+v", sh.a, sh.b, sh.imp, want)
	}
	if err := s.Exec(context.Background(), "link s1 c1 --clear"); err != nil || !sh.imp.IsZero() {
		t.Errorf("link --clear: %v, impairment %+v", err, sh.imp)
	}
	if !strings.Contains(out.String(), "s1 <-> c1: delay 20ms jitter 2ms loss 1.5% rate 10Mbit") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestMatrixString(t *testing.T) {
	m := Matrix{Nodes: []string{"s1", "s2", "c1"}, Reached: map[string]map[string]bool{
		"s1": {"s2": true, "c1": false},
		"s2": {"s1": true, "c1": true},
		"c1": {"s1": false, "s2": true},
	}}
	want := "s1 -> s2 X \ns2 -> s1 c1\nc1 -> X  s2\n*** Results: 33% dropped (4/6 received)\n"
	if got := m.String(); got != want {
		t.Errorf("Matrix.String() =\n%s\nwant\n%s", got, want)
	}
}

func TestFormatEventLine(t *testing.T) {
	for _, tc := range []struct {
		ev   records.Event
		want string
	}{
		{records.Event{T: 1.5, Type: records.EventCommand, Detail: "kill leader"}, "    1.500s  command       kill leader"},
		{records.Event{T: 2, Type: records.EventFaultStart, Fault: "kill s1", Action: "kill", Targets: []string{"s1"}}, "    2.000s  fault-start   kill s1: kill s1"},
		{records.Event{T: 3, Type: records.EventFaultEnd, Fault: "partition s1 <-> s2", Action: "heal", Detail: "s1 <-> s2"}, "    3.000s  fault-end     partition s1 <-> s2: end heal s1 <-> s2"},
		{records.Event{T: 4, Type: records.EventLeader, Leader: "s2", Term: 3}, "    4.000s  leader        s2 term 3"},
		{records.Event{T: 5, Type: records.EventLeader}, "    5.000s  leader        none"},
		{records.Event{T: 6, Type: records.EventTerm, Node: "s3", Term: 9}, "    6.000s  term          s3 term 9"},
	} {
		line, _ := jsonLine(tc.ev)
		if got := formatEventLine(line); got != tc.want {
			t.Errorf("formatEventLine(%s)\n got %q\nwant %q", line, got, tc.want)
		}
	}
}

func jsonLine(e records.Event) (string, error) {
	b, err := json.Marshal(e)
	return string(b), err
}

func TestDetectMode(t *testing.T) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	file, err := os.CreateTemp(t.TempDir(), "script")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for _, tc := range []struct {
		name string
		in   *os.File
		want Mode
	}{
		{"/dev/null", devnull, ModeNone},
		{"a pipe", r, ModeScript},
		{"a file", file, ModeScript},
	} {
		if got := DetectMode(tc.in, w); got != tc.want {
			t.Errorf("stdin %s: mode %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestScriptMode: every command is echoed after the prompt, a failure is reported and
// counted without stopping the script, comments and blank lines are skipped, and exit
// ends it.
func TestScriptMode(t *testing.T) {
	s, out, errs := newTestShell(t)
	script := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(script, []byte("# a comment\n\nhelp isolate\nbogus\n  sleep 0.01  \nexit\nnodes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(script)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	err = s.Run(context.Background(), ModeScript, in, nil)
	if !errors.Is(err, ErrCommandsFailed) || !strings.Contains(err.Error(), "1 of 4") {
		t.Errorf("Run: %v, want 1 of 4 commands failed", err)
	}
	want := "dt> help isolate\nisolate NODE\n  cut a node from every other node\ndt> bogus\ndt> sleep 0.01\ndt> exit\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	if !strings.HasPrefix(errs.String(), `error: unknown command "bogus"`) {
		t.Errorf("errors:\n%s", errs)
	}
}

// `do` fires scenario steps; on a topology without a system it refuses what needs one,
// before doing anything, and bad fields are named with the valid ones.
func TestDoValidatesLikeAScenario(t *testing.T) {
	s, out, _ := newTestShell(t)
	ctx := context.Background()
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"do kill s1", []string{"kill needs processes (a system's processes), which this run does not have"}},
		{"do partition groups=[[leader],[s2]]", []string{"target leader needs cluster-view"}},
		{"do delay s1 dealy=10ms", []string{"field dealy not found", "fields of delay: delay, jitter, direction, duration, every, until"}},
		{"do delay s1 delay=10ms at=2s", []string{"at: a step at the prompt fires now"}},
		{"do explode s1", []string{`unknown action "explode"`, "valid actions are start, stop"}},
		{"do isolate s9", []string{`unknown target "s9"`}},
	} {
		err := s.Exec(ctx, tc.line)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %v, want it to say %q", tc.line, err, w)
			}
		}
	}
	if out.Len() != 0 {
		t.Errorf("refused steps printed:\n%s", out)
	}
	if err := s.Exec(ctx, "do"); err != nil || !strings.Contains(out.String(), "partition") {
		t.Errorf("do alone: %v, printed %q", err, out)
	}
}
