package faults

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func randomOpts(seed int64, servers int) RandomOptions {
	o := RandomOptions{Seed: seed, Duration: 10 * time.Minute, MTBF: 10 * time.Second, ClientPort: 2379}
	for i := 1; i <= servers; i++ {
		o.Servers = append(o.Servers, fmt.Sprintf("s%d", i))
	}
	o.Nodes = append(slices.Clone(o.Servers), "c1", "c2")
	return o
}

func mustRandom(t *testing.T, o RandomOptions) []Step {
	t.Helper()
	steps, err := RandomSchedule(o)
	if err != nil {
		t.Fatalf("seed %d: %v", o.Seed, err)
	}
	return steps
}

func TestRandomScheduleSameSeedSameSchedule(t *testing.T) {
	js := func(seed int64) []byte {
		b, err := json.Marshal(mustRandom(t, randomOpts(seed, 5)))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := js(42), js(42)
	if !bytes.Equal(a, b) {
		t.Fatalf("seed 42 gave two schedules:\n%s\n%s", a, b)
	}
	if len(a) < 1000 {
		t.Fatalf("schedule suspiciously short: %s", a)
	}
	for _, seed := range []int64{0, 1, 43, -42} {
		if bytes.Equal(a, js(seed)) {
			t.Errorf("seeds 42 and %d gave the same schedule", seed)
		}
	}
}

// TestRandomScheduleMeanGap: the arrivals' mean gap is MTBF. Over ~1000 exponential gaps
// the standard error is ~3.2 % of MTBF, so ±10 % is a three-sigma bound (and the seeds are
// fixed, so the test cannot flake).
func TestRandomScheduleMeanGap(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		o := randomOpts(seed, 3)
		o.MTBF = 2 * time.Second
		o.Duration = 1000 * o.MTBF
		o.Faults = []string{"delay", "loss"} // never dropped: every arrival is a step
		steps := mustRandom(t, o)
		if len(steps) < 900 {
			t.Fatalf("seed %d: %d arrivals, want about 1000", seed, len(steps))
		}
		mean := steps[len(steps)-1].At.D() / time.Duration(len(steps))
		if mean < o.MTBF*9/10 || mean > o.MTBF*11/10 {
			t.Errorf("seed %d: mean gap %v over %d arrivals, want %v ±10%%", seed, mean, len(steps), o.MTBF)
		}
	}
}

// TestRandomScheduleInvariants checks, over many seeds and cluster sizes, what every
// random schedule promises.
func TestRandomScheduleInvariants(t *testing.T) {
	seen := map[string]int{}
	for _, n := range []int{1, 2, 3, 4, 5, 7} {
		for seed := int64(0); seed < 30; seed++ {
			o := randomOpts(seed, n)
			o.MTBF = time.Duration(1+seed%4) * 3 * time.Second
			o.Duration = time.Duration(60+seed*7) * time.Second
			steps := mustRandom(t, o)
			name := fmt.Sprintf("%d servers, seed %d", n, seed)
			if err := ValidateTimeline(steps, Cluster{Nodes: o.Nodes, Servers: o.Servers}); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			var windows []randomWindow
			for i, s := range steps {
				seen[s.Action]++
				if want := fmt.Sprintf("r%d-%s", i+1, s.Action); s.ID != want {
					t.Errorf("%s: step %d id %q, want %q", name, i+1, s.ID, want)
				}
				if s.At == nil || (i > 0 && s.At.D() < steps[i-1].At.D()) {
					t.Fatalf("%s: step %d at %v: want set and in order", name, i+1, s.At)
				}
				at, d := s.At.D(), s.For.D()
				if at+d > o.Duration-500*time.Millisecond {
					t.Errorf("%s: %s at %v for %v ends after T-0.5s (T=%v)", name, s.ID, at, d, o.Duration)
				}
				if s.Action == "restart" {
					if d != 0 {
						t.Errorf("%s: %s has a duration", name, s.ID)
					}
				} else if d < 500*time.Millisecond {
					t.Errorf("%s: %s lasts %v, want at least 0.5s", name, s.ID, d)
				}
				for _, tg := range append(slices.Concat(s.Groups...), s.Targets...) {
					if !slices.Contains(o.Servers, tg) {
						t.Errorf("%s: %s targets %q, want a server's name", name, s.ID, tg)
					}
				}
				switch s.Action {
				case "partition":
					if len(s.Groups) != 2 || len(s.Groups[0]) != n/2 || len(s.Groups[0])+len(s.Groups[1]) != n {
						t.Errorf("%s: %s groups %v, want two halves of the servers", name, s.ID, s.Groups)
					}
				case "delay":
					if ms := s.Delay.D().Milliseconds(); ms < 20 || ms > 200 || ms%10 != 0 {
						t.Errorf("%s: %s delay %v", name, s.ID, s.Delay)
					}
				case "loss":
					if s.Loss < 5 || s.Loss > 50 || int(s.Loss)%5 != 0 || s.Loss != float64(int(s.Loss)) {
						t.Errorf("%s: %s loss %v", name, s.ID, s.Loss)
					}
				case "dropport":
					if s.Port != o.ClientPort || s.Proto != "tcp" {
						t.Errorf("%s: %s port %d/%s", name, s.ID, s.Port, s.Proto)
					}
				}
				if !isProcessKind(s.Action) {
					continue
				}
				if len(s.Targets) != 1 {
					t.Fatalf("%s: %s targets %v, want one server", name, s.ID, s.Targets)
				}
				w := randomWindow{s.Targets[0], at, at + d + randomSettle}
				if s.Action == "restart" {
					w.to = at + randomSettle
				}
				windows = append(windows, w)
				// The count of servers under a process fault only rises when one starts,
				// so checking at each start checks every instant.
				var down []string
				for _, o := range windows {
					if o.from <= at && at < o.to {
						if slices.Contains(down, o.server) {
							t.Errorf("%s: %s hits %s, already under a process fault", name, s.ID, o.server)
						}
						down = append(down, o.server)
					}
				}
				if free := n - len(down); free < n/2+1 {
					t.Errorf("%s: at %v servers %v are under process faults: %d of %d free, no majority", name, at, down, free, n)
				}
			}
		}
	}
	for _, k := range RandomKinds() {
		if seen[k] == 0 {
			t.Errorf("kind %s never drawn (drawn: %v)", k, seen)
		}
	}
}

func TestRandomScheduleDefaultKinds(t *testing.T) {
	o := randomOpts(7, 1)
	o.ClientPort = 0
	for _, s := range mustRandom(t, o) {
		if isProcessKind(s.Action) || s.Action == "partition" || s.Action == "dropport" {
			t.Errorf("one server, no client port: drew %s", s.ID)
		}
	}
}

func TestRandomOptionsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*RandomOptions)
		want string
	}{
		{"unknown kind", func(o *RandomOptions) { o.Faults = []string{"kill", "explode"} },
			`unknown fault kind "explode": valid kinds are ` + strings.Join(RandomKinds(), ", ")},
		{"zero mtbf", func(o *RandomOptions) { o.MTBF = 0 }, "mtbf 0s: must be positive"},
		{"negative mtbf", func(o *RandomOptions) { o.MTBF = -time.Second }, "mtbf -1s: must be positive"},
		{"tiny mtbf", func(o *RandomOptions) { o.MTBF = time.Microsecond }, "raise mtbf"},
		{"zero duration", func(o *RandomOptions) { o.Duration = 0 }, "duration 0s: must be positive"},
		{"no servers", func(o *RandomOptions) { o.Servers = nil }, "no servers"},
		{"server twice", func(o *RandomOptions) { o.Servers = append(o.Servers, "s1") }, `server "s1" listed twice`},
		{"server not a node", func(o *RandomOptions) { o.Servers = append(o.Servers, "s9") }, `server "s9" is not a node`},
		{"kind twice", func(o *RandomOptions) { o.Faults = []string{"loss", "loss"} }, `"loss" listed twice`},
		{"dropport without port", func(o *RandomOptions) { o.ClientPort, o.Faults = 0, []string{"dropport"} }, "dropport needs the servers' client port"},
		{"bad port", func(o *RandomOptions) { o.ClientPort = 70000 }, "client port 70000"},
		{"kill on two servers", func(o *RandomOptions) { o.Servers, o.Faults = o.Servers[:2], []string{"kill"} }, "kill needs at least 3 servers"},
		{"partition on one server", func(o *RandomOptions) { o.Servers, o.Faults = o.Servers[:1], []string{"partition"} }, "partition needs at least 2 servers"},
	} {
		o := randomOpts(1, 5)
		tc.edit(&o)
		_, err := RandomSchedule(o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}
