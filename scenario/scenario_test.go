package scenario

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dtlab/dt/faults"
	"gopkg.in/yaml.v3"
)

const full = `# a scenario
name: pause-and-ports
system: etcd
topology: net.yaml
workload: uniform
duration: 30s
seed: 7
options:
  rate: 200
  number-nodes: 5
  pre-vote: true
processes:
  - node: c1
    name: probe
    command: [dt, probe, etcd, --listen, "127.0.0.1:7070"]
    env: {A: "1"}
steps:
  - action: pause
    targets: leader
    at: 5s
    duration: 3s
    probe: {url: "http://127.0.0.1:7070/check", from: c1}
  - id: cut
    action: partition
    groups: [[s1], [s2, s3]]
    after: 1.5
  - action: heal
    targets: ["@cut"]
  - action: loss
    loss: 5%
    direction: in
`

func dur(d time.Duration) *faults.Duration { v := faults.Duration(d); return &v }

func TestParse(t *testing.T) {
	s, err := Parse("dir/s.yaml", []byte(full))
	if err != nil {
		t.Fatal(err)
	}
	seed := int64(7)
	want := &Scenario{
		File: "dir/s.yaml", Name: "pause-and-ports", System: "etcd", Topology: "dir/net.yaml", Workload: "uniform",
		Duration: faults.Duration(30 * time.Second), Seed: &seed,
		Options: []Option{{"rate", "200", 9}, {"number-nodes", "5", 10}, {"pre-vote", "true", 11}},
		Processes: []Process{{Node: "c1", Name: "probe", Command: []string{"dt", "probe", "etcd", "--listen", "127.0.0.1:7070"},
			Env: map[string]string{"A": "1"}, Line: 13}},
		Steps: []faults.Step{
			{Action: "pause", Targets: []string{"leader"}, At: dur(5 * time.Second), For: faults.Duration(3 * time.Second),
				Probe: &faults.Probe{URL: "http://127.0.0.1:7070/check", From: "c1"}, Source: "dir/s.yaml:18"},
			{ID: "cut", Action: "partition", Groups: [][]string{{"s1"}, {"s2", "s3"}}, After: faults.Duration(1500 * time.Millisecond), Source: "dir/s.yaml:23"},
			{Action: "heal", Targets: []string{"@cut"}, Source: "dir/s.yaml:27"},
			{Action: "loss", Loss: 5, Direction: "in", Source: "dir/s.yaml:29"},
		},
	}
	s.places = nil
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got  %+v\nwant %+v", s, want)
	}
}

func TestDefaults(t *testing.T) {
	s, err := Parse("x/base.yml", []byte("system: etcd\ntopology: simple\nduration: 2\nsteps:\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "base" || s.Workload != "uniform" || s.Seed != nil || s.Duration.D() != 2*time.Second || len(s.Steps) != 0 {
		t.Errorf("defaults: %+v", s)
	}
	if s.Topology != "simple" {
		t.Errorf("topology %q: a builder's name is kept as it is", s.Topology)
	}
}

func TestTopologyPath(t *testing.T) {
	for _, c := range []struct{ file, topo, want string }{
		{"s.yaml", "net.yaml", "net.yaml"},
		{"s.yaml", "./net", "./net"},
		{"a/s.yaml", "net.yaml", "a/net.yaml"},
		{"a/s.yaml", "../t/net.yml", "t/net.yml"},
		{"a/s.yaml", "/abs/net.yaml", "/abs/net.yaml"},
	} {
		s, err := Parse(c.file, []byte("system: etcd\ntopology: "+c.topo+"\nduration: 1s\n"))
		if err != nil {
			t.Fatal(err)
		}
		if s.Topology != c.want {
			t.Errorf("%s with topology %s: got %q, want %q", c.file, c.topo, s.Topology, c.want)
		}
	}
}

// head is a valid beginning: lines 1-3.
const head = "system: etcd\ntopology: simple\nduration: 30s\n"

// The lines of a Parse error, each checked by its prefix: file:line:col and the start
// of the message. Lists of valid choices are checked by their own cases.
func TestParseErrors(t *testing.T) {
	validActions := "valid actions are " + strings.Join(faults.ActionNames(), ", ")
	for _, c := range []struct {
		name string
		src  string
		want []string
	}{
		// the three of the issue: unknown action, bad duration, unknown node (TestValidate)
		{"unknown action", head + "steps:\n  - action: paws\n    targets: leader\n",
			[]string{`s.yaml:5:13: step 1 (paws): action: unknown action "paws": ` + validActions}},
		{"bad step duration", head + "steps:\n  - action: pause\n    targets: leader\n    at: 5x\n",
			[]string{`s.yaml:7:9: step 1 (pause): at: bad duration "5x": want e.g. 500ms, 20s, 2m, or a number of seconds`}},
		{"bad duration", "system: etcd\ntopology: simple\nduration: soon\n",
			[]string{`s.yaml:3:11: duration: bad duration "soon": want e.g. 500ms, 20s, 2m, or a number of seconds`}},

		{"zero duration", "system: etcd\ntopology: simple\nduration: 0\n",
			[]string{`s.yaml:3:11: duration: the workload's length must be more than 0`}},
		{"negative", head + "steps:\n  - {action: pause, targets: leader, duration: -1s}\n",
			[]string{`s.yaml:5:48: step 1 (pause): duration: bad duration "-1s": must not be negative`}},
		{"unknown key", head + "dleay: 3\n",
			[]string{`s.yaml:4:1: unknown key "dleay" in the scenario; valid keys are name, system, topology, workload, duration, seed, options, processes, steps`}},
		{"unknown step key", head + "steps:\n  - action: pause\n    targets: leader\n    dleay: 3\n",
			[]string{`s.yaml:7:5: unknown key "dleay" in step 1 (pause); valid keys are id, action, targets, at, after, duration, every, until, groups, mode, port, proto, direction, delay, jitter, loss, rate, timeout, errno, ops, path, probability, bytes, file, pick, probe`}},
		{"unknown probe key", head + "steps:\n  - action: probe\n    probe: {url: \"http://a/\", form: c1}\n",
			[]string{`s.yaml:6:31: unknown key "form" in step 1 (probe): probe; valid keys are url, from, timeout`}},
		{"required", "name: x\n", []string{
			`s.yaml: system is required: dt run's SYSTEM (etcd, etcd-pre-vote, zookeeper)`,
			`s.yaml: topology is required: a topology builder (simple, wan) or a topology file`,
			`s.yaml: duration is required: the workload's length, e.g. 30s`}},
		{"empty", "# nothing\n", []string{`s.yaml: empty scenario: want a mapping with keys name, system,`}},
		{"not a mapping", "- a\n", []string{`s.yaml:1:1: a scenario is a mapping with keys name, system,`}},
		{"syntax", "system: [etcd\n", []string{`s.yaml:1: did not find expected ',' or ']'`}},
		{"two documents", head + "---\nname: x\n", []string{`s.yaml:4:1: a scenario file holds one YAML document; a second one starts here`}},
		{"unknown system", "system: etcdd\ntopology: simple\nduration: 1s\n",
			[]string{`s.yaml:1:9: system: unknown system "etcdd"; valid: etcd, etcd-pre-vote`}},
		{"unknown topology", "system: etcd\ntopology: simpel\nduration: 1s\n",
			[]string{`s.yaml:2:11: topology: unknown topology "simpel": valid topologies are simple, wan, or a topology file`}},
		{"unknown workload", head + "workload: zipf\n", []string{`s.yaml:4:11: workload: unknown workload "zipf"; valid: `}},
		{"bad name", head + "name: a/b\n", []string{`s.yaml:4:7: name "a/b": use letters, digits, '.', '_' and '-'`}},
		{"bad seed", head + "seed: x\n", []string{`s.yaml:4:7: seed: "x": want a whole number`}},
		{"null", "system:\ntopology: simple\nduration: 1s\n", []string{`s.yaml:1:8: system: want a single value, not an empty value`}},
		{"scalar as list", "system: [etcd]\ntopology: simple\nduration: 1s\n", []string{`s.yaml:1:9: system: want a single value, not a list`}},
		{"twice", head + "duration: 1s\n", []string{`s.yaml:4:1: the scenario: duration given twice (first on line 3)`}},

		{"steps mapping", head + "steps:\n  action: pause\n",
			[]string{`s.yaml:5:3: steps: want a list (one "- " line per item), not a mapping`}},
		{"step list", head + "steps:\n  - [pause, leader]\n  - 3\n", []string{
			`s.yaml:5:5: step 1: want a mapping (key: value), not a list`,
			`s.yaml:6:5: step 2: want a mapping (key: value), not "3"`}},
		{"targets mapping", head + "steps:\n  - action: pause\n    targets: {a: 1}\n",
			[]string{`s.yaml:6:14: step 1 (pause): targets: want a list or a single value, not a mapping`}},
		{"nested target", head + "steps:\n  - action: pause\n    targets: [[s1]]\n",
			[]string{`s.yaml:6:15: step 1 (pause): targets: want a single value, not a list`}},
		{"port word", head + "steps:\n  - action: dropport\n    targets: s1\n    port: http\n",
			[]string{`s.yaml:7:11: step 1 (dropport): port: "http": want a whole number`}},
		{"loss word", head + "steps:\n  - action: loss\n    loss: lots\n",
			[]string{`s.yaml:6:11: step 1 (loss): loss: "lots": want a number`}},
		{"loss NaN", head + "steps:\n  - action: loss\n    loss: .nan\n",
			[]string{`s.yaml:6:11: step 1 (loss): loss: ".nan": want a number`}},
		{"probe not a mapping", head + "steps:\n  - action: probe\n    probe: http://a/\n",
			[]string{`s.yaml:6:12: step 1 (probe): probe: want a mapping (key: value), not "http://a/"`}},
		{"null at", head + "steps:\n  - action: pause\n    targets: s1\n    at:\n",
			[]string{`s.yaml:7:8: step 1 (pause): at: want a single value, not an empty value`}},

		// faults' rules, each at the field it blames
		{"field of another action", head + "steps:\n  - action: pause\n    targets: leader\n    port: 2379\n",
			[]string{`s.yaml:7:5: step 1 (pause): port: pause takes no port; it takes duration, every, until`}},
		{"missing action", head + "steps:\n  - targets: leader\n",
			[]string{`s.yaml:5:5: step 1: action is required: ` + validActions}},
		{"missing targets", head + "steps:\n  - action: pause\n    at: 1s\n",
			[]string{`s.yaml:5:5: step 1 (pause): targets: pause needs targets: node names or leader, follower,`}},
		{"no earlier id", head + "steps:\n  - action: heal\n    targets: [s1, \"@nope\"]\n",
			[]string{`s.yaml:6:19: step 1 (heal): targets: @nope: no earlier step has id "nope"`}},
		{"unknown mode", head + "steps:\n  - action: partition\n    mode: halves\n",
			[]string{`s.yaml:6:11: step 1 (partition): mode: unknown mode "halves": valid are random-halves, majorities-ring, bridge`}},
		{"every without until", head + "steps:\n  - action: pause\n    targets: s1\n    every: 4s\n    duration: 1s\n",
			[]string{`s.yaml:5:5: step 1 (pause): until: every needs until`}},
		{"probe url", head + "steps:\n  - action: probe\n    probe: {url: \"ftp://a\"}\n",
			[]string{`s.yaml:6:18: step 1 (probe): probe: probe url "ftp://a": want an http:// or https:// URL`}},
		{"twice in a step", head + "steps:\n  - action: pause\n    action: kill\n", []string{
			`s.yaml:5:5: step 1 (pause): targets: pause needs targets`,
			`s.yaml:6:5: step 1 (pause): action given twice (first on line 5)`}},
		{"a field that failed is not judged again", head + "steps:\n  - action: dropport\n    targets: s1\n    port: x\n",
			[]string{`s.yaml:7:11: step 1 (dropport): port: "x": want a whole number`}},
		{"every problem, in file order", head + "steps:\n  - action: pause\n    at: 5x\n    targets: leader\n  - {action: kill, targets: s1, jitter: 1s}\n  - action: nap\n", []string{
			`s.yaml:6:9: step 1 (pause): at: bad duration "5x"`,
			`s.yaml:8:33: step 2 (kill): jitter: kill takes no jitter; it takes duration, every, until`,
			`s.yaml:9:13: step 3 (nap): action: unknown action "nap"`}},

		{"options list", head + "options: [rate]\n", []string{`s.yaml:4:10: options: want a mapping (key: value), not a list`}},
		{"option list value", head + "options:\n  rate: [1]\n", []string{`s.yaml:5:9: options: rate: want a single value, not a list`}},
		{"option null", head + "options:\n  rate:\n", []string{`s.yaml:5:8: options: rate: want a single value, not an empty value`}},
		{"option with its own key", head + "options:\n  duration: 5\n  seed: 1\n", []string{
			`s.yaml:5:3: options: duration: set it with the scenario's own duration: key`,
			`s.yaml:6:3: options: seed: set it with the scenario's own seed: key`}},
		{"option dashes", head + "options:\n  --rate: 5\n", []string{`s.yaml:5:3: options: "--rate": write the flag's long name without dashes`}},

		{"process missing", head + "processes:\n  - node: c1\n", []string{
			`s.yaml:5:5: process 1: name is required`,
			`s.yaml:5:5: process 1: command is required`}},
		{"process command string", head + "processes:\n  - {node: c1, name: p, command: dt probe}\n",
			[]string{`s.yaml:5:34: process 1: command: want a list (argv, run without a shell), e.g. [dt, probe, etcd], not "dt probe"`}},
		{"process command empty", head + "processes:\n  - {node: c1, name: p, command: []}\n",
			[]string{`s.yaml:5:34: process 1: command: empty: want at least the program`}},
		{"process env", head + "processes:\n  - {node: c1, name: p, command: [x], env: [A=1]}\n",
			[]string{`s.yaml:5:44: process 1: env: want a mapping (key: value), not a list`}},
		{"process env name", head + "processes:\n  - {node: c1, name: p, command: [x], env: {A=B: 1}}\n",
			[]string{`s.yaml:5:45: process 1: env: variable name "A=B": must be non-empty, without '='`}},
		{"process key", head + "processes:\n  - {node: c1, name: p, command: [x], argv: [x]}\n",
			[]string{`s.yaml:5:39: unknown key "argv" in process 1; valid keys are node, name, command, env`}},
		{"process twice", head + "processes:\n  - {node: c1, name: p, command: [x]}\n  - {node: c1, name: p, command: [y]}\n",
			[]string{`s.yaml:6:12: process 2: p on c1 is already process 1: names must differ on a node`}},
		{"process name", head + "processes:\n  - {node: c1, name: a/b, command: [x]}\n",
			[]string{`s.yaml:5:22: process 1: name "a/b": use letters, digits, '.', '_' and '-' (it names the process's log file)`}},
		{"processes mapping", head + "processes: {a: 1}\n",
			[]string{`s.yaml:4:12: processes: want a list (one "- " line per item), not a mapping`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("s.yaml", []byte(c.src))
			if err == nil {
				t.Fatalf("no error; want %q", c.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(c.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(lines), len(c.want), err)
			}
			for i, w := range c.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("error %d:\n got %s\nwant %s...", i+1, lines[i], w)
				}
			}
		})
	}
}

// Node names and selectors are Validate's: Parse takes any word.
func TestParseLeavesNodesToValidate(t *testing.T) {
	src := head + "processes:\n  - {node: c9, name: p, command: [x]}\nsteps:\n" +
		"  - {action: pause, targets: [s9, random(0)], probe: {url: \"http://a/\", from: c9}}\n" +
		"  - {action: partition, groups: [[x], [y]]}\n"
	if _, err := Parse("s.yaml", []byte(src)); err != nil {
		t.Fatal(err)
	}
}

var simple3 = faults.Cluster{Nodes: []string{"s1", "s2", "s3", "c1"}, Servers: []string{"s1", "s2", "s3"}}

func TestValidate(t *testing.T) {
	src := head + `processes:
  - {node: c9, name: probe, command: [dt]}
  - {node: c1, name: probe, command: [dt]}
steps:
  - action: dropport
    targets: [s1,
      s9]
    port: 2379
  - action: partition
    groups: [[s1], [s2, nope]]
  - action: pause
    targets: random(9)
    probe: {url: "http://x/", from: c7}
  - action: kill
    targets: followers(3)
`
	s, err := Parse("s.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	nodes := "nodes are s1, s2, s3, c1"
	selectors := "; selectors are " + strings.Join(faults.Selectors, ", ") + ", @ID"
	want := []string{
		`s.yaml:5:12: process 1 (probe): node: unknown node "c9": ` + nodes,
		`s.yaml:10:7: step 1 (dropport): targets: unknown target "s9": ` + nodes + selectors,
		`s.yaml:13:25: step 2 (partition): groups: unknown target "nope": ` + nodes + selectors,
		`s.yaml:15:14: step 3 (pause): targets: random(9): want 1..3 (the number of servers)`,
		`s.yaml:16:37: step 3 (pause): probe: probe from "c7": unknown node; ` + nodes,
		`s.yaml:18:14: step 4 (kill): targets: followers(3): want 1..2 (the number of followers)`,
	}
	err = s.Validate(simple3)
	if err == nil {
		t.Fatal("no error")
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	servers := []string{"s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"}
	every := faults.Cluster{Nodes: append(servers, "nope", "c1", "c7", "c9"), Servers: servers}
	if err := s.Validate(every); err != nil {
		t.Errorf("with every node: %v", err)
	}
}

// A Scenario built in code has no positions: errors give the step's Source line.
func TestValidateBuilt(t *testing.T) {
	s := &Scenario{File: "gen", Steps: []faults.Step{{Action: "kill", Targets: []string{"s7"}, Source: "gen:4"}},
		Processes: []Process{{Node: "c2", Name: "p", Line: 2}}}
	want := `gen:2: process 1 (p): node: unknown node "c2": nodes are s1, s2, s3, c1` + "\n" +
		`gen:4: step 1 (kill): targets: unknown target "s7": nodes are s1, s2, s3, c1; selectors are `
	if err := s.Validate(simple3); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v\nwant %s...", err, want)
	}
}

func TestAliases(t *testing.T) {
	src := head + "steps:\n  - {action: pause, targets: leader, probe: &p {url: \"http://a/\", from: c1}}\n  - {action: continue, targets: leader, probe: *p}\n"
	s, err := Parse("s.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if s.Steps[1].Probe == nil || *s.Steps[1].Probe != *s.Steps[0].Probe || s.Steps[1].Probe == s.Steps[0].Probe {
		t.Errorf("probes %+v, %+v: want equal copies", s.Steps[0].Probe, s.Steps[1].Probe)
	}
}

// stripped is s without what only parsing sets: positions and lines.
func stripped(s *Scenario) *Scenario {
	c := *s
	c.places = nil
	c.Options = append([]Option(nil), s.Options...)
	for i := range c.Options {
		c.Options[i].Line = 0
	}
	c.Processes = append([]Process(nil), s.Processes...)
	for i := range c.Processes {
		c.Processes[i].Line = 0
	}
	c.Steps = append([]faults.Step(nil), s.Steps...)
	for i := range c.Steps {
		c.Steps[i].Source = ""
	}
	return &c
}

func TestRoundTrip(t *testing.T) {
	s, err := Parse("s.yaml", []byte(strings.Replace(full, "net.yaml", "simple", 1)))
	if err != nil {
		t.Fatal(err)
	}
	s.Options = append(s.Options, Option{Name: "empty", Value: ""}, Option{Name: "etcd-bin", Value: "/opt/etcd v3/etcd"})
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("s.yaml", b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if got, want := stripped(back), stripped(s); !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n%s\ngot  %+v\nwant %+v", b, got, want)
	}
}

// A topology file is written with an absolute path: the copy may be read elsewhere.
func TestRoundTripTopologyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.yaml")
	if err := os.WriteFile(path, []byte("system: etcd\ntopology: net.yaml\nduration: 1m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("elsewhere/copy.yaml", b)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "net.yaml"); back.Topology != want || s.Topology != want {
		t.Errorf("topology: read %q, read back %q; want %q", s.Topology, back.Topology, want)
	}
}

// Every field of faults.Step is written and read back, so that a field added there is
// not silently dropped here.
func TestEveryStepField(t *testing.T) {
	st := faults.Step{
		ID: "a", Action: "b", Targets: []string{"c", "d"}, At: dur(0), After: 1, For: faults.Duration(time.Second),
		Every: faults.Duration(time.Minute), Until: faults.Duration(time.Hour), Groups: [][]string{{"e"}, {"f", "g"}},
		Mode: "h", Port: 9, Proto: "i", Direction: "j", Delay: faults.Duration(time.Millisecond),
		Jitter: faults.Duration(time.Microsecond), Loss: 0.5, Rate: "1mbit", Timeout: faults.Duration(2 * time.Second),
		Probe: &faults.Probe{URL: "k", From: "l", Timeout: faults.Duration(3 * time.Second)}, OneWay: true,
		Errno: "m", Ops: faults.Words{"n", "o"}, Path: "p", Probability: 0.25, Bytes: "q", File: "r", Pick: "s",
	}
	v := reflect.ValueOf(st)
	for _, f := range stepFields {
		if v.Field(f.index).IsZero() {
			t.Errorf("the test leaves faults.Step's %s unset: set it", f.name)
		}
	}
	n, err := encode(v)
	if err != nil {
		t.Fatal(err)
	}
	b, err := yaml.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	p := &parser{file: "t"}
	var back faults.Step
	p.decode(doc.Content[0], reflect.ValueOf(&back).Elem(), "step")
	if err := p.err(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, st) {
		t.Errorf("%s\ngot  %+v\nwant %+v", b, back, st)
	}
}

// A one-way partition reads from a scenario; a bool field takes only true or false.
func TestOneWayPartition(t *testing.T) {
	head := "name: t\nsystem: etcd\ntopology: simple\nduration: 10s\nsteps:\n"
	s, err := Parse("s.yaml", []byte(head+"  - {action: partition, groups: [[s1], [s2, s3]], one-way: true, at: 1s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Steps[0].OneWay {
		t.Errorf("one-way not read: %+v", s.Steps[0])
	}
	_, err = Parse("s.yaml", []byte(head+"  - {action: partition, groups: [[s1], [s2]], one-way: yes}\n"))
	if err == nil || !strings.Contains(err.Error(), `one-way: "yes": want true or false`) {
		t.Errorf("one-way: yes: %v", err)
	}
	_, err = Parse("s.yaml", []byte(head+"  - {action: isolate, targets: s1, one-way: true}\n"))
	if err == nil || !strings.Contains(err.Error(), "isolate takes no one-way") {
		t.Errorf("isolate with one-way: %v", err)
	}
}
