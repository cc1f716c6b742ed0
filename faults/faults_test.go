package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/shaping"
	"github.com/dtlab/dt/topology"
)

// fakeEnv records what a fault does. The real Env is exercised end to end in
// experiment's tests; this checks the schedules' logic quickly.
type fakeEnv struct {
	mu      sync.Mutex
	start   time.Time
	leader  string
	rng     *rand.Rand
	log     []string
	events  []records.Event
	cuts    int // currently installed
	paused  map[string]bool
	killed  map[string]bool
	servers []string
	nodes   []string
	snap    uint64 // CompactedIndex grows by 60 a call
	// probeStatus is what Probe answers.
	probeStatus int
}

func newFake(seed uint64) *fakeEnv {
	return &fakeEnv{start: time.Now(), leader: "s2", rng: rand.New(rand.NewPCG(seed, 1)),
		paused: map[string]bool{}, killed: map[string]bool{}, probeStatus: 200,
		servers: []string{"s1", "s2", "s3", "s4", "s5"}, nodes: []string{"s1", "s2", "s3", "s4", "s5", "c1"}}
}

func (f *fakeEnv) add(s string)      { f.mu.Lock(); f.log = append(f.log, s); f.mu.Unlock() }
func (f *fakeEnv) Servers() []string { return f.servers }
func (f *fakeEnv) Nodes() []string   { return f.nodes }
func (f *fakeEnv) Leader(context.Context) (string, error) {
	return f.leader, nil
}
func (f *fakeEnv) Partition(_ context.Context, cuts []topology.Cut, owner string) (Undo, error) {
	for _, c := range cuts {
		f.add("partition " + c.String())
	}
	f.mu.Lock()
	f.cuts++
	f.mu.Unlock()
	return func(context.Context) error {
		for _, c := range cuts {
			f.add("heal " + c.String())
		}
		f.mu.Lock()
		f.cuts--
		f.mu.Unlock()
		return nil
	}, nil
}
func (f *fakeEnv) Kill(_ context.Context, n string) error {
	f.add("kill " + n)
	f.killed[n] = true
	return nil
}
func (f *fakeEnv) Restart(_ context.Context, n string) error {
	f.add("restart " + n)
	delete(f.killed, n)
	return nil
}
func (f *fakeEnv) Pause(_ context.Context, n string) error {
	f.add("pause " + n)
	f.paused[n] = true
	return nil
}
func (f *fakeEnv) Continue(_ context.Context, n string) error {
	f.add("continue " + n)
	delete(f.paused, n)
	return nil
}
func (f *fakeEnv) Record(e records.Event) {
	f.mu.Lock()
	f.events = append(f.events, e)
	f.log = append(f.log, "event "+e.Type+" "+e.Action)
	f.mu.Unlock()
}
func (f *fakeEnv) Stop(_ context.Context, n string) error {
	f.add("stop " + n)
	f.killed[n] = true
	return nil
}
func (f *fakeEnv) Start(_ context.Context, n string) error {
	f.add("start " + n)
	delete(f.killed, n)
	return nil
}
func (f *fakeEnv) DropPort(_ context.Context, n, proto string, port int, owner string) (Undo, error) {
	f.add(fmt.Sprintf("dropport %s %d%s", n, port, proto))
	f.mu.Lock()
	f.cuts++
	f.mu.Unlock()
	return func(context.Context) error {
		f.add(fmt.Sprintf("recoverport %s %d%s", n, port, proto))
		f.mu.Lock()
		f.cuts--
		f.mu.Unlock()
		return nil
	}, nil
}
func (f *fakeEnv) Backup(_ context.Context, n, label string) (string, error) {
	f.add("backup " + n)
	return "backup/" + label + "/" + n, nil
}
func (f *fakeEnv) Cleanup(_ context.Context, n string) error { f.add("cleanup " + n); return nil }
func (f *fakeEnv) WaitHealthy(context.Context, time.Duration) error {
	f.add("wait-healthy")
	return nil
}
func (f *fakeEnv) AppliedIndex(context.Context, string) (uint64, error) { return 100, nil }
func (f *fakeEnv) CompactedIndex(context.Context, string) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snap += 60
	return f.snap, nil
}
func (f *fakeEnv) Probe(_ context.Context, node string, p Probe) (ProbeResult, error) {
	f.add("probe " + node + " " + p.URL)
	return ProbeResult{Status: f.probeStatus, Body: "ok"}, nil
}
func (f *fakeEnv) Impair(_ context.Context, targets []string, imp shaping.Impairment, dir, owner string) (Undo, error) {
	f.add(fmt.Sprintf("impair %v %s %s %s", targets, imp, dir, owner))
	f.mu.Lock()
	f.cuts++
	f.mu.Unlock()
	return func(context.Context) error {
		f.add(fmt.Sprintf("unimpair %v %s", targets, owner))
		f.mu.Lock()
		f.cuts--
		f.mu.Unlock()
		return nil
	}, nil
}
func (f *fakeEnv) Since() time.Duration { return time.Since(f.start) }
func (f *fakeEnv) Rand() *rand.Rand     { return f.rng }

func params() Params {
	return Params{Duration: 300 * time.Millisecond, MTBF: 20 * time.Millisecond, KillN: 2, KillTarget: "leader"}
}

func run(t *testing.T, name string, f *fakeEnv, p Params, ctx context.Context) {
	t.Helper()
	ft, err := Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := ft.Run(ctx, f, p); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func TestEveryActionIsRecordedBeforeItIsApplied(t *testing.T) {
	for _, name := range []string{"leader", "leader-recovery", "partial-partition", "pause-leader", "kill-n",
		"slow-network", "lossy-network", "bandwidth-limit", "slow-leader", "lossy-leader", "bandwidth-limit-leader"} {
		t.Run(name, func(t *testing.T) {
			f := newFake(1)
			run(t, name, f, params(), context.Background())
			if len(f.log) < 2 || !strings.HasPrefix(f.log[0], "event fault-start") {
				t.Fatalf("first thing done must be recording fault-start; log: %v", f.log)
			}
			if last := f.log[len(f.log)-1]; !strings.HasPrefix(last, "event fault-end") {
				t.Errorf("last thing done must be fault-end; log: %v", f.log)
			}
			start := f.events[0]
			if len(start.Targets) == 0 {
				t.Errorf("fault-start names no targets: %+v", start)
			}
		})
	}
}

func TestWindowsFollowReckon(t *testing.T) {
	p := params()
	p.Duration = 600 * time.Millisecond
	rec := &timedEnv{fakeEnv: newFake(1), times: map[string]time.Duration{}}
	ft, _ := Lookup("partial-partition")
	if err := ft.Run(context.Background(), rec, p); err != nil {
		t.Fatal(err)
	}
	startAt, endAt := rec.times["fault-start"], rec.times["fault-end"]
	near := func(got, want time.Duration) bool { return got >= want && got < want+60*time.Millisecond }
	if !near(startAt, p.Duration/3) || !near(endAt, 2*p.Duration/3) {
		t.Errorf("window %v–%v, want T/3=%v – 2T/3=%v", startAt, endAt, p.Duration/3, 2*p.Duration/3)
	}
}

// timedEnv notes when each event type was recorded, on the schedule's clock.
type timedEnv struct {
	*fakeEnv
	times map[string]time.Duration
}

func (e *timedEnv) Record(ev records.Event) {
	e.times[ev.Type] = e.Since()
	e.fakeEnv.Record(ev)
}

func TestPartialPartitionCutsLeaderFromAFollower(t *testing.T) {
	f := newFake(3)
	run(t, "partial-partition", f, params(), context.Background())
	tg := f.events[0].Targets
	if len(tg) != 2 || tg[0] != "s2" || tg[1] == "s2" {
		t.Fatalf("targets %v: want the leader s2 and one follower", tg)
	}
	if f.cuts != 0 {
		t.Errorf("%d cuts left installed", f.cuts)
	}
}

func TestIntermittentTogglesAndAlwaysHeals(t *testing.T) {
	for _, name := range []string{"intermittent-partial", "intermittent-full"} {
		t.Run(name, func(t *testing.T) {
			f := newFake(1)
			run(t, name, f, params(), context.Background())
			var parts, heals int
			for _, l := range f.log {
				if strings.HasPrefix(l, "partition") {
					parts++
				}
				if strings.HasPrefix(l, "heal") {
					heals++
				}
			}
			if parts < 2 || heals != parts || f.cuts != 0 {
				t.Errorf("partitions %d, heals %d, left %d: want toggling and every cut healed; log %v", parts, heals, f.cuts, f.log)
			}
			if name == "intermittent-full" {
				for _, l := range f.log {
					if strings.HasPrefix(l, "partition") && !strings.Contains(l, "c1") {
						t.Errorf("full cut must isolate the follower from every node, clients too: %s", l)
					}
				}
			}
		})
	}
}

func TestCancelledFaultStillUndoes(t *testing.T) {
	for _, name := range []string{"partial-partition", "intermittent-full", "pause-leader", "leader-recovery"} {
		t.Run(name, func(t *testing.T) {
			f := newFake(1)
			p := params()
			p.Duration = 3 * time.Second
			ctx, cancel := context.WithCancel(context.Background())
			go func() { time.Sleep(1200 * time.Millisecond); cancel() }()
			run(t, name, f, p, ctx)
			if f.cuts != 0 || len(f.paused) != 0 || len(f.killed) != 0 {
				t.Errorf("after cancel: cuts %d, paused %v, killed %v; log %v", f.cuts, f.paused, f.killed, f.log)
			}
		})
	}
}

func TestKillNTargets(t *testing.T) {
	cases := []struct {
		target       string
		wantLeader   bool
		forbidLeader bool
	}{{"leader", true, false}, {"follower", false, true}, {"any", false, false}}
	for _, c := range cases {
		f := newFake(5)
		p := params()
		p.KillTarget = c.target
		run(t, "kill-n", f, p, context.Background())
		v := f.events[0].Targets
		if len(v) != 2 {
			t.Fatalf("%s: killed %v, want 2", c.target, v)
		}
		hasLeader := v[0] == "s2" || v[1] == "s2"
		if c.wantLeader && !hasLeader || c.forbidLeader && hasLeader {
			t.Errorf("kill-target %s killed %v (leader s2)", c.target, v)
		}
	}
}

func TestSameSeedSameTargets(t *testing.T) {
	pickWith := func(seed uint64) []string {
		f := newFake(seed)
		p := params()
		p.KillTarget = "any"
		run(t, "kill-n", f, p, context.Background())
		return f.events[0].Targets
	}
	a, b := pickWith(42), pickWith(42)
	if strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("same seed chose %v then %v", a, b)
	}
	differs := false
	for s := uint64(1); s < 20 && !differs; s++ {
		differs = strings.Join(pickWith(s), ",") != strings.Join(a, ",")
	}
	if !differs {
		t.Errorf("20 seeds all chose %v: the seed is not used", a)
	}
}

func TestLookupAndValidation(t *testing.T) {
	if _, err := Lookup("nope"); err == nil || !strings.Contains(err.Error(), "partial-partition") {
		t.Errorf("unknown fault error must list valid faults: %v", err)
	}
	bad := []struct {
		name string
		p    Params
		want string
	}{
		{"kill-n", Params{Duration: time.Second, KillN: 4, KillTarget: "any"}, "--kill-n 4"},
		{"kill-n", Params{Duration: time.Second, KillN: 1, KillTarget: "primary"}, "leader, follower, any"},
		{"kill-n", Params{Duration: time.Second, KillN: 3, KillTarget: "follower"}, "only 2 followers"},
		{"intermittent-full", Params{Duration: time.Second}, "--mtbf"},
		{"leader", Params{}, "--duration"},
	}
	for _, b := range bad {
		if err := ValidateParams(b.name, b.p, 3); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s %+v: error %v, want mention of %q", b.name, b.p, err, b.want)
		}
	}
}
