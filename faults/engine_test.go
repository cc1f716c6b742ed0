package faults

import (
	"context"
	"strings"
	"testing"
	"time"
)

// The prompt and a timeline resolve selectors through the same engine code: with the same
// seed and cluster state, "follower" is the same node in both.
func TestSameSelectorSameNodeInTimelineAndSession(t *testing.T) {
	kills := func(f *fakeEnv) []string {
		var out []string
		for _, l := range f.log {
			if strings.HasPrefix(l, "kill ") {
				out = append(out, l)
			}
		}
		return out
	}
	seen := map[string]bool{}
	for seed := uint64(1); seed <= 20; seed++ {
		steps := []Step{{Action: "kill", Targets: []string{"follower"}}, {Action: "pause", Targets: []string{"random(2)"}}}
		timeline := newFake(seed)
		if err := RunTimeline(context.Background(), timeline, steps, 0); err != nil {
			t.Fatal(err)
		}
		prompt := newFake(seed)
		sess := NewEngine(prompt).Session()
		for _, s := range steps {
			if err := sess.Fire(context.Background(), s.Action, s); err != nil {
				t.Fatal(err)
			}
		}
		sess.Close()
		a, b := kills(timeline), kills(prompt)
		if len(a) != 1 || strings.Join(a, ",") != strings.Join(b, ",") || strings.Join(timeline.log, ",") != strings.Join(prompt.log, ",") {
			t.Errorf("seed %d: timeline did %q, the prompt %q", seed, timeline.log, prompt.log)
		}
		seen[a[0]] = true
	}
	if len(seen) < 2 {
		t.Errorf("20 seeds always picked %v: the follower is not drawn from the seed", seen)
	}
}

// netOnly is an Env with the network and nothing of a system.
type netOnly struct{ *fakeEnv }

func (n netOnly) Capabilities() []Capability { return []Capability{CapNetwork} }

// A plan that needs a capability the run lacks is refused at validation, naming it.
func TestValidationRefusesMissingCapabilities(t *testing.T) {
	c := NewEngine(netOnly{newFake(1)}).Cluster()
	if len(c.Caps) != 1 || c.Caps[0] != CapNetwork {
		t.Fatalf("caps %v, want [network]", c.Caps)
	}
	for _, tc := range []struct {
		step Step
		want string
	}{
		{Step{Action: "kill", Targets: []string{"s1"}}, "kill needs processes (a system's processes)"},
		{Step{Action: "partition", Groups: [][]string{{"leader"}, {"s2"}}}, "target leader needs cluster-view"},
		{Step{Action: "wait-healthy"}, "wait-healthy needs cluster-view"},
		{Step{Action: "isolate", Targets: []string{"s1"}, Probe: &Probe{URL: "http://127.0.0.1:1/"}}, "a probe needs probe"},
	} {
		err := ValidateTimeline([]Step{tc.step}, c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error saying %q", tc.step, err, tc.want)
		}
	}
	if err := ValidateTimeline([]Step{{Action: "isolate", Targets: []string{"s1"}, For: Duration(time.Second)}}, c); err != nil {
		t.Errorf("isolate needs only the network: %v", err)
	}
	// The session refuses it the same way, before doing anything.
	f := newFake(1)
	sess := NewEngine(netOnly{f}).Session()
	if err := sess.Fire(context.Background(), "k", Step{Action: "kill", Targets: []string{"s1"}}); err == nil || len(f.log) != 0 {
		t.Errorf("kill on a network-only env: %v, did %q", err, f.log)
	}
}
