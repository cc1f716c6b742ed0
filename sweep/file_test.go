package sweep

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const example = `# the issue's example, with every feature
name: partial-vs-rate
base: {system: etcd, topology: simple, workload: uniform, fault: partial-partition, duration: 30}
axes:
  rate: [100, 1000, 10000]
  number-nodes: [3, 5]
repeats: 3
seed: 42
`

func mustParse(t *testing.T, src string) *Sweep {
	t.Helper()
	s, err := ParseBytes("t.yaml", []byte(src))
	if err != nil {
		t.Fatalf("parse:\n%s\nerror: %v", src, err)
	}
	return s
}

func labels(s *Sweep) []string {
	var out []string
	for _, p := range s.Points {
		out = append(out, p.ID+" "+p.Key())
	}
	return out
}

func TestParseExample(t *testing.T) {
	s := mustParse(t, example)
	if s.Name != "partial-vs-rate" || s.Repeats != 3 || s.Seed != 42 {
		t.Fatalf("name %q repeats %d seed %d", s.Name, s.Repeats, s.Seed)
	}
	if s.Base.Fault != "partial-partition" || s.Base.Duration != 30 || s.Base.Rate != 100 {
		t.Errorf("base: %+v", s.Base)
	}
	want := []string{
		"p1 rate=100,number-nodes=3", "p2 rate=100,number-nodes=5",
		"p3 rate=1000,number-nodes=3", "p4 rate=1000,number-nodes=5",
		"p5 rate=10000,number-nodes=3", "p6 rate=10000,number-nodes=5",
	}
	for i := range want {
		want[i] = strings.Replace(want[i], "p", "p0", 1)
	}
	if got := labels(s); !reflect.DeepEqual(got, want) {
		t.Errorf("points:\n got %q\nwant %q", got, want)
	}
	runs := s.Runs()
	if len(runs) != 18 || runs[4].Name() != "p02-r2" {
		t.Fatalf("runs: %d, runs[4] %s", len(runs), runs[4].Name())
	}
	cfg := s.Config(runs[4])
	if cfg.Rate != 100 || cfg.Nodes != 5 || cfg.Seed != runs[4].Seed || cfg.Fault != "partial-partition" {
		t.Errorf("config of %s: %+v", runs[4].Name(), cfg)
	}
	// Defaults fill in what the file leaves out.
	if cfg.Clients != 1 || cfg.KillTarget != "leader" {
		t.Errorf("defaults lost: %+v", cfg)
	}
	// Default plots: p99, throughput, unavailability vs rate (log: 2 decades) by number-nodes.
	if len(s.Plots) != 3 || s.Plots[0].X != "rate" || s.Plots[0].By != "number-nodes" || !s.Plots[0].LogX ||
		s.Plots[0].Y != "windows.overall.latency_ms.p99" {
		t.Errorf("default plots: %+v", s.Plots)
	}
	if s.Name != mustParse(t, example).Name || s.Hash() != mustParse(t, example).Hash() {
		t.Error("parsing twice differs")
	}
}

func TestParseDefaultsNameFromFile(t *testing.T) {
	s, err := ParseBytes("dir/my-sweep.yaml", []byte("base: {fault: leader}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "my-sweep" || len(s.Points) != 1 || s.Points[0].Key() != "" || s.Repeats != 1 || s.Plots != nil {
		t.Errorf("got name %q, %d points, key %q, repeats %d, plots %v", s.Name, len(s.Points), s.Points[0].Key(), s.Repeats, s.Plots)
	}
}

// TestParseErrors: every problem is reported at its line and column, all at once.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string // substrings, each must appear
	}{
		{"unknown top key", "name: x\nbse: {}\n", []string{`t.yaml:2:1: unknown key "bse" (did you mean "base"?): valid are name, base, axes`}},
		{"unknown param", "base:\n  fault: leader\n  duraton: 3\n", []string{`t.yaml:3:3: base: unknown parameter "duraton" (did you mean "duration"?): valid are system,`}},
		{"reserved seed", "base: {seed: 3}\n", []string{`t.yaml:1:8: base: "seed" cannot be set in a sweep file`}},
		{"reserved results", "axes: {results: [a, b]}\n", []string{`t.yaml:1:8: axes: "results" cannot be set`}},
		{"int type", "axes:\n  number-nodes: [3, 5.5, x]\n", []string{
			"t.yaml:2:21: axes.number-nodes: 5.5 is not an integer", `t.yaml:2:26: axes.number-nodes: "x" is not an integer`}},
		{"bool type", "base: {pre-vote: 1}\n", []string{`t.yaml:1:18: base.pre-vote: "1" is not a boolean`}},
		{"float from string", "base: {rate: '100'}\n", []string{`t.yaml:1:14: base.rate: "100" is not a number`}},
		{"axis scalar", "axes:\n  rate: 100\n", []string{"t.yaml:2:9: axes.rate: give a list"}},
		{"empty list", "axes:\n  rate: []\n", []string{"t.yaml:2:9: axes.rate: empty list"}},
		{"duplicate value", "axes:\n  rate: [100, 1e2]\n", []string{"t.yaml:2:15: axes.rate: 100 listed twice"}},
		{"base and axis", "base: {rate: 5}\naxes: {rate: [1, 2]}\n", []string{`t.yaml:2:8: axes: "rate" is also set in base`}},
		{"range unknown key", "axes:\n  rate: {from: 1, to: 5, stp: 1}\n", []string{`t.yaml:2:26: unknown key "stp" in range axes.rate (did you mean "step"?)`}},
		{"range both", "axes:\n  rate: {from: 1, to: 5, step: 1, steps: 3}\n", []string{"t.yaml:2:9: axes.rate: a range needs exactly one of step"}},
		{"range direction", "axes:\n  rate: {from: 5, to: 1, step: 1}\n", []string{"t.yaml:2:9: axes.rate: step 1 never gets from 5 to 1"}},
		{"range string", "axes:\n  fault: {from: 1, to: 2, step: 1}\n", []string{"t.yaml:2:10: axes.fault: a range needs a numeric parameter"}},
		{"log zero", "axes:\n  rate: {from: 0, to: 100, steps: 3, log: true}\n", []string{"a log range needs from and to > 0"}},
		{"range too big", "axes:\n  rate: {from: 0, to: 1e9, step: 1}\n", []string{"more than 10000"}},
		{"zip unknown", "axes: {rate: [1, 2]}\nzip: [[rate, kill-n]]\n", []string{`t.yaml:2:14: zip: "kill-n" is not an axis: axes are rate`}},
		{"zip lengths", "axes:\n  number-nodes: [3, 5]\n  kill-n: [1, 2, 3]\nzip:\n  - [number-nodes, kill-n]\n", []string{
			"t.yaml:5:20: zip: axis kill-n has 3 values, number-nodes has 2"}},
		{"zip twice", "axes: {rate: [1, 2], mtbf: [1, 2], max-key: [1, 2]}\nzip: [[rate, mtbf], [mtbf, max-key]]\n", []string{
			`t.yaml:2:22: zip: axis "mtbf" is in more than one group`}},
		{"repeats", "repeats: 0\n", []string{"t.yaml:1:10: repeats 0: must be at least 1"}},
		{"repeats type", "repeats: many\n", []string{"t.yaml:1: cannot unmarshal !!str `many` into int"}},
		{"bad name", "name: ../x\n", []string{`t.yaml:1:7: name "../x": use letters`}},
		{"plot axis", "axes: {rate: [1, 2]}\nplots:\n  - {x: rte, y: p99}\n", []string{`t.yaml:3:9: plots: x "rte" is not an axis: axes are rate`}},
		{"plot figure", "axes: {rate: [1, 2]}\nplots:\n  - {x: rate, y: p999}\n", []string{`t.yaml:3:18: plots: y "p999" is not a figure`}},
		{"plot key", "axes: {rate: [1, 2]}\nplots:\n  - {x: rate, y: p99, colour: red}\n", []string{`t.yaml:3:23: unknown key "colour" in a plot`}},
		{"plot by=x", "axes: {rate: [1, 2]}\nplots:\n  - {x: rate, y: p99, by: rate}\n", []string{`plots: by and x are both "rate"`}},
		{"two documents", "name: a\n---\nname: b\n", []string{"t.yaml:2:1: a sweep file holds one YAML document"}},
		{"not a mapping", "- a\n", []string{"t.yaml:1:1: a sweep file is a mapping"}},
		{"syntax", "axes: {rate: [1, 2}\n", []string{"t.yaml:1: did not find expected"}},
		{"invalid experiment", "base: {fault: kill-n}\naxes:\n  kill-n: [1, 4]\n", []string{"point p02 (kill-n=4): --kill-n 4: want 1..3"}},
		{"several at once", "nme: x\nrepeats: 0\naxes: {rate: [a]}\n", []string{"t.yaml:1:1: unknown key", "t.yaml:2:10: repeats 0", `t.yaml:3:15: axes.rate: "a" is not a number`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseBytes("t.yaml", []byte(tc.src))
			if err == nil {
				t.Fatalf("no error for:\n%s", tc.src)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestParseErrorType(t *testing.T) {
	_, err := ParseBytes("t.yaml", []byte("base:\n  duraton: 3\n"))
	var fe *Error
	if !errors.As(err, &fe) || fe.Line != 2 || fe.Column != 3 || fe.File != "t.yaml" {
		t.Fatalf("want an *Error at t.yaml:2:3, got %#v", err)
	}
}

func TestRanges(t *testing.T) {
	for _, tc := range []struct {
		axis string
		want string
	}{
		{"rate: {from: 100, to: 400, step: 100}", "100 200 300 400"},
		{"rate: {from: 100, to: 450, step: 100}", "100 200 300 400"},
		{"write-ratio: {from: 0, to: 1, step: 0.1}", "0 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9 1"},
		{"rate: {from: 1, to: 2, steps: 5}", "1 1.25 1.5 1.75 2"},
		{"rate: {from: 10, to: 1, steps: 4}", "10 7 4 1"},
		{"rate: {from: 1, to: 10000, steps: 5, log: true}", "1 10 100 1000 10000"},
		{"rate: {from: 1, to: 30000, step: 10, log: true}", "1 10 100 1000 10000"},
		{"mtbf: {from: 0.5, to: 4, steps: 4, log: true}", "0.5 1 2 4"},
		{"number-nodes: {from: 3, to: 9, step: 2}", "3 5 7 9"},
		{"max-key: {from: 1, to: 100, steps: 4, log: true}", "1 5 22 100"}, // ints round
		{"max-key: {from: 1, to: 3, steps: 6}", "1 2 3"},                   // and deduplicate
		{"rate: {from: 7, to: 7, steps: 1}", "7"},
	} {
		s := mustParse(t, "axes:\n  "+tc.axis+"\n")
		var got []string
		for _, v := range s.Axes[0].Values {
			got = append(got, FormatValue(v))
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%s: got %v, want %s", tc.axis, got, tc.want)
		}
	}
	if s := mustParse(t, "axes:\n  rate: {from: 1, to: 100, steps: 3, log: true}\n  mtbf: [1, 2]\n"); !s.Axes[0].Log || s.Axes[1].Log || !s.Plots[0].LogX {
		t.Errorf("log flags: %+v, plot %+v", s.Axes, s.Plots[0])
	}
}

func TestZip(t *testing.T) {
	_, err := ParseBytes("t.yaml", []byte("axes: {rate: [10, 20], kill-n: [1, 2], mtbf: [1, 2, 3]}\nzip: [[kill-n, mtbf, rate]]\n"))
	if err == nil || !strings.Contains(err.Error(), "has 3 values") {
		t.Fatalf("unequal zip lengths: %v", err)
	}
	// rate, kill-n and mtbf vary together at rate's place (the group's first axis); kill-target crosswise.
	s := mustParse(t, `
base: {fault: kill-n, number-nodes: 5}
axes:
  rate: [10, 20]
  kill-target: [leader, follower]
  kill-n: [1, 2]
  mtbf: [1, 2]
zip:
  - [kill-n, mtbf, rate]
`)
	want := []string{
		"p01 rate=10,kill-target=leader,kill-n=1,mtbf=1",
		"p02 rate=10,kill-target=follower,kill-n=1,mtbf=1",
		"p03 rate=20,kill-target=leader,kill-n=2,mtbf=2",
		"p04 rate=20,kill-target=follower,kill-n=2,mtbf=2",
	}
	if got := labels(s); !reflect.DeepEqual(got, want) {
		t.Errorf("zip points:\n got %q\nwant %q", got, want)
	}
	// Zip is part of what the results depend on.
	crossed := mustParse(t, "base: {fault: kill-n, number-nodes: 5}\naxes: {rate: [10, 20], kill-target: [leader, follower], kill-n: [1, 2], mtbf: [1, 2]}\n")
	if len(crossed.Points) != 16 || crossed.Hash() == s.Hash() {
		t.Errorf("crossed: %d points, same hash %v", len(crossed.Points), crossed.Hash() == s.Hash())
	}
}

func TestSeeds(t *testing.T) {
	s := mustParse(t, example)
	seen := map[int64]string{}
	for _, r := range s.Runs() {
		if r.Seed <= 0 || r.Seed >= 1<<53 {
			t.Errorf("%s: seed %d out of (0, 2^53)", r.Name(), r.Seed)
		}
		if prev, dup := seen[r.Seed]; dup {
			t.Errorf("%s and %s share seed %d", prev, r.Name(), r.Seed)
		}
		seen[r.Seed] = r.Name()
		if r.Seed != DeriveSeed(42, r.Point.Key(), r.Repeat) {
			t.Errorf("%s: seed not derived from (base, point, repeat)", r.Name())
		}
	}
	// Deterministic across parses and processes: a fixed value guards the derivation.
	if got := DeriveSeed(42, "rate=100,number-nodes=3", 1); got != DeriveSeed(42, "rate=100,number-nodes=3", 1) || got != 453792349124189 {
		t.Errorf("DeriveSeed(42, rate=100,number-nodes=3, 1) = %d; changing the derivation changes every sweep's seeds", got)
	}
	if DeriveSeed(43, "rate=100", 1) == DeriveSeed(42, "rate=100", 1) {
		t.Error("the base seed does not matter")
	}
	// A point keeps its seeds when another value is added to an axis (seeds follow the
	// point's parameters, not its index).
	bigger := mustParse(t, strings.Replace(example, "[100, 1000, 10000]", "[10, 100, 1000, 10000]", 1))
	byKey := map[string]int64{}
	for _, r := range bigger.Runs() {
		byKey[r.Name()+"@"+r.Point.Key()] = r.Seed
	}
	for _, r := range s.Runs() {
		found := false
		for _, b := range bigger.Runs() {
			if b.Point.Key() == r.Point.Key() && b.Repeat == r.Repeat {
				found = true
				if b.Seed != r.Seed {
					t.Errorf("%s: seed changed from %d to %d when the rate axis grew", r.Point.Key(), r.Seed, b.Seed)
				}
			}
		}
		if !found {
			t.Errorf("%s missing from the bigger sweep", r.Point.Key())
		}
	}
}

func TestHashIgnoresCosmetics(t *testing.T) {
	a := mustParse(t, example)
	b := mustParse(t, "# a comment\n"+strings.Replace(example, "name: partial-vs-rate", "name: other", 1)+"plots:\n  - {x: rate, y: throughput}\n")
	if a.Hash() != b.Hash() {
		t.Error("comments, name or plots changed the hash")
	}
	for _, change := range []struct{ from, to string }{
		{"duration: 30", "duration: 31"},
		{"repeats: 3", "repeats: 4"},
		{"seed: 42", "seed: 43"},
		{"[3, 5]", "[3, 5, 7]"},
		{"[3, 5]", "[5, 3]"},
	} {
		c := mustParse(t, strings.Replace(example, change.from, change.to, 1))
		if c.Hash() == a.Hash() {
			t.Errorf("%s → %s kept the hash", change.from, change.to)
		}
	}
}

func TestFilter(t *testing.T) {
	s := mustParse(t, example+"zip: []\n")
	count := func(exprs ...string) int {
		t.Helper()
		f, err := ParseFilter(s, exprs...)
		if err != nil {
			t.Fatalf("%q: %v", exprs, err)
		}
		n := 0
		for _, r := range s.Runs() {
			if f.Match(r) {
				n++
			}
		}
		return n
	}
	for _, tc := range []struct {
		exprs []string
		want  int
	}{
		{nil, 18},
		{[]string{""}, 18},
		{[]string{"rate=1000"}, 6},
		{[]string{"rate=1e3"}, 6},
		{[]string{"rate=1000,number-nodes=5"}, 3},
		{[]string{"rate=100|10000"}, 12},
		{[]string{"rate=100|10000", "number-nodes=3"}, 6},
		{[]string{"repeat=2"}, 6},
		{[]string{" point = p03 , repeat=1|3"}, 2},
	} {
		if got := count(tc.exprs...); got != tc.want {
			t.Errorf("%q selects %d runs, want %d", tc.exprs, got, tc.want)
		}
	}
	for _, tc := range []struct{ expr, want string }{
		{"fault=leader", `"fault" is not an axis of this sweep: valid keys are rate, number-nodes, repeat, point`},
		{"rate=5", "rate=5 is not a value of the axis: its values are 100, 1000, 10000"},
		{"rate=fast", `rate: "fast" is not a number`},
		{"repeat=4", "repeats are 1..3"},
		{"point=p9", `no point "p9": points are p01..p06`},
		{"rate", "each term is key=value"},
	} {
		_, err := ParseFilter(s, tc.expr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.expr, err, tc.want)
		}
	}
}

// system-opt.KEY is a sweep axis: each point's config has its own copy of the options,
// and the system checks the key and value when the file is read.
func TestSystemOptAxis(t *testing.T) {
	s := mustParse(t, "base: {fault: leader, system-opt.pre-vote: true}\naxes:\n  system-opt.version: [3.5.17, 3.6.16]\n")
	runs := s.Runs()
	if len(runs) != 2 {
		t.Fatalf("runs: %d", len(runs))
	}
	a, b := s.Config(runs[0]), s.Config(runs[1])
	if a.SystemOpts["version"] != "3.5.17" || b.SystemOpts["version"] != "3.6.16" ||
		a.SystemOpts["pre-vote"] != "true" || b.SystemOpts["pre-vote"] != "true" {
		t.Errorf("options: %v, %v", a.SystemOpts, b.SystemOpts)
	}
	_, err := ParseBytes("t.yaml", []byte("base: {fault: leader}\naxes:\n  system-opt.version: [3.4.23, 3.6.16]\n"))
	if err == nil || !strings.Contains(err.Error(), `etcd version "3.4.23"`) {
		t.Errorf("version 3.4.23 in a sweep: %v", err)
	}
}
