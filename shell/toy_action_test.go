package shell

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dtlab/dt/experiment"
	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/scenario"
	"github.com/dtlab/dt/topology"
)

// toyCut is an action registered by this test file alone: it cuts its target from every
// other node through the Network capability, and notes what it did. Random schedules can
// draw it. It shows that one Register call is all an action needs to be usable from a
// scenario file, the prompt and a random schedule.
type toyCut struct {
	mu      sync.Mutex
	applied []string // target per application
	undone  int
}

func (*toyCut) Name() string     { return "toy-cut" }
func (*toyCut) Describe() string { return "a test's action: cut the target from every other node" }
func (*toyCut) Form() faults.Form {
	return faults.Form{Targets: faults.TargetsRequired, Needs: []faults.Capability{faults.CapNetwork}}
}

func (a *toyCut) Prepare(_ context.Context, call *faults.Call) (faults.Change, error) {
	net, err := faults.Need[faults.Network](call, faults.CapNetwork)
	if err != nil {
		return faults.Change{}, err
	}
	n := call.Targets[0]
	var rest []string
	for _, m := range call.Env().Nodes() {
		if m != n {
			rest = append(rest, m)
		}
	}
	return faults.Change{Nodes: []string{n}, Text: "toy", Kind: faults.KindNetwork,
		Apply: func(ctx context.Context) (faults.Undo, error) {
			undo, err := net.Partition(ctx, []topology.Cut{{A: []string{n}, B: rest}}, call.Label)
			if err != nil {
				return nil, err
			}
			a.mu.Lock()
			a.applied = append(a.applied, n)
			a.mu.Unlock()
			return func(ctx context.Context) error {
				a.mu.Lock()
				a.undone++
				a.mu.Unlock()
				return undo(ctx)
			}, nil
		}}, nil
}

func (*toyCut) Draw(s *faults.Step, d faults.RandomDraw) { s.Targets = d.One() }
func (*toyCut) Unsupported(faults.RandomOptions) string  { return "" }
func (*toyCut) Drawn() bool                              { return true }

func (a *toyCut) counts() (int, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.applied), a.undone
}

// toyEvents reads the toy's fault windows from a run's events.jsonl: start and end
// counts, and the targets its windows named.
func toyEvents(t *testing.T, dir string) (starts, ends int, targets []string) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, records.EventsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e records.Event
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Action != "toy-cut" && e.Type != records.EventFaultEnd {
			continue
		}
		switch e.Type {
		case records.EventFaultStart:
			starts++
			targets = append(targets, e.Targets...)
		case records.EventFaultEnd:
			if e.Action == "heal" || e.Action == "toy-cut" {
				ends++
			}
		}
	}
	return starts, ends, targets
}

func toyConfig(t *testing.T) experiment.Config {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates namespaces, OVS and etcd processes (CI runs as root)")
	}
	for _, bin := range []string{"ovs-vswitchd", "etcd"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s: apt-get install openvswitch-switch etcd-server", bin)
		}
	}
	// A short, unique runtime dir: socket paths are limited to 107 bytes, and tests of
	// other checkouts may run at the same time.
	rt, err := os.MkdirTemp("/tmp", "dtrt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("DT_RUNTIME_DIR", rt)
	t.Cleanup(func() { os.RemoveAll(rt) })
	cfg := experiment.Defaults()
	cfg.Rate, cfg.Seed, cfg.CheckTimeout = 100, 5, 20
	cfg.ResultsRoot = t.TempDir()
	return cfg
}

// dtExe is a dt binary for the agents: $DT_BIN (make test sets it) or one built here.
func dtExe(t *testing.T) string {
	if b := os.Getenv("DT_BIN"); b != "" {
		return b
	}
	b := filepath.Join(t.TempDir(), "dt")
	if out, err := exec.Command("go", "build", "-o", b, "github.com/dtlab/dt/cmd/dt").CombinedOutput(); err != nil {
		t.Fatalf("build dt: %v\n%s", err, out)
	}
	return b
}

func TestToyActionFromScenarioPromptAndRandomSchedule(t *testing.T) {
	toy := &toyCut{}
	faults.Register(toy)
	t.Cleanup(func() { faults.Unregister("toy-cut") })
	if !slices.Contains(faults.RandomKinds(), "toy-cut") || !slices.Contains(faults.ActionNames(), "toy-cut") {
		t.Fatalf("registered toy-cut is not listed: actions %v, random kinds %v", faults.ActionNames(), faults.RandomKinds())
	}
	exe := dtExe(t)
	ctx := context.Background()

	t.Run("scenario", func(t *testing.T) {
		cfg := toyConfig(t)
		s, err := scenario.Parse("toy.yaml", []byte(`
name: toy
system: etcd
topology: simple
duration: 6s
steps:
  - {id: cut, action: toy-cut, targets: follower, at: 2s, duration: 2s}
`))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Fault, cfg.Duration, cfg.Scenario, cfg.Steps = s.Name, s.Duration.D().Seconds(), "toy.yaml", s.Steps
		before, _ := toy.counts()
		out, err := experiment.Run(ctx, cfg, experiment.Options{Exe: exe})
		if err != nil {
			t.Fatal(err)
		}
		applied, undone := toy.counts()
		if applied-before != 1 || undone != applied {
			t.Errorf("toy applied %d times (undone %d), want once, undone", applied-before, undone)
		}
		starts, ends, targets := toyEvents(t, out.RunDir)
		if starts != 1 || ends != 1 || len(targets) != 1 || targets[0] == "c1" {
			t.Errorf("events: %d toy-cut windows opened, %d closed, targets %v; want one of one server", starts, ends, targets)
		}
	})

	t.Run("prompt", func(t *testing.T) {
		cfg := toyConfig(t)
		cfg.Duration = 30
		plan, err := cfg.Plan()
		if err != nil {
			t.Fatal(err)
		}
		c, err := experiment.Start(ctx, plan.Session(), experiment.Options{Exe: exe})
		if c != nil {
			defer c.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		s := New(Options{Live: c.Live, Cluster: c, Out: &out, Err: &out})
		before, undoneBefore := toy.counts()
		if err := s.Exec(ctx, "do toy-cut s2 duration=500ms"); err != nil {
			t.Fatalf("do toy-cut: %v\n%s", err, out.String())
		}
		if applied, _ := toy.counts(); applied-before != 1 {
			t.Fatalf("do toy-cut applied it %d times", applied-before)
		}
		if err := s.Exec(ctx, "do toy-cut leader"); err != nil { // undone by heal
			t.Fatal(err)
		}
		if err := s.Exec(ctx, "heal"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for _, u := toy.counts(); u-undoneBefore < 2 && time.Now().Before(deadline); _, u = toy.counts() {
			time.Sleep(50 * time.Millisecond)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if applied, undone := toy.counts(); applied-before != 2 || undone-undoneBefore != 2 {
			t.Errorf("at the prompt the toy was applied %d and undone %d times, want 2 and 2\n%s", applied-before, undone-undoneBefore, out.String())
		}
		starts, ends, targets := toyEvents(t, c.RunDir)
		if starts != 2 || ends != 2 || targets[0] != "s2" {
			t.Errorf("events: %d toy-cut windows opened, %d closed, targets %v; want 2, 2, s2 first", starts, ends, targets)
		}
	})

	t.Run("random", func(t *testing.T) {
		cfg := toyConfig(t)
		cfg.Fault, cfg.Duration, cfg.MTBF = "random", 8, 2
		cfg.Schedule, cfg.RandomFaults = experiment.ScheduleRandom, []string{"toy-cut"}
		before, _ := toy.counts()
		out, err := experiment.Run(ctx, cfg, experiment.Options{Exe: exe})
		if err != nil {
			t.Fatal(err)
		}
		sf, err := faults.ReadSchedule(filepath.Join(out.RunDir, records.ScheduleFile))
		if err != nil {
			t.Fatal(err)
		}
		applied, undone := toy.counts()
		if len(sf.Steps) == 0 || applied-before != len(sf.Steps) || undone != applied {
			t.Errorf("schedule has %d toy-cut steps; applied %d, undone %d in all", len(sf.Steps), applied-before, undone)
		}
		for _, st := range sf.Steps {
			if st.Action != "toy-cut" || len(st.Targets) != 1 {
				t.Errorf("random step %+v: want a toy-cut of one node", st)
			}
		}
	})
}
