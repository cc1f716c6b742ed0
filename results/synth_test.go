package results

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/dtlab/dt/records"
)

// synth describes a synthetic run: an open-loop workload against registers that are
// linearizable by construction (each operation takes effect at a random instant inside its
// interval), with an optional outage in which every operation fails.
type synth struct {
	seed         uint64
	start        float64 // workload start (s)
	duration     float64 // workload length (s)
	rate         float64 // ops/s over all clients
	keys         int
	clients      int
	readRatio    float64
	casRatio     float64 // of the rest, cas (compared with the value now or the one before)
	latencyMS    float64 // mean latency of a successful op
	faultStart   float64 // 0: no fault
	faultEnd     float64
	outageFrom   float64 // every op sent in [outageFrom, outageTo) fails after timeoutS
	outageTo     float64
	timeoutS     float64
	appliedRatio float64 // fraction of failed writes that nevertheless took effect
	overloadFrom float64 // ops due in [overloadFrom, overloadTo) are not sent
	overloadTo   float64
}

type synthOp struct {
	records.Op
	point float64 // linearization point; NaN-free, +Inf when the write never took effect
}

// ops generates the history, in completion order (as the controller appends it).
func (s synth) ops() []records.Op {
	rng := rand.New(rand.NewPCG(s.seed, 99))
	n := int(s.duration * s.rate)
	all := make([]synthOp, 0, n)
	for i := 0; i < n; i++ {
		t := s.start + float64(i)/s.rate
		c := fmt.Sprintf("c%d", i%max(s.clients, 1))
		o := synthOp{Op: records.Op{
			Client: c, Key: fmt.Sprint(rng.IntN(max(s.keys, 1))),
			ExpectedStart: t, Submitted: t + 0.0001, Target: fmt.Sprintf("10.0.0.%d:2379", 1+i%3),
		}}
		switch u := rng.Float64(); {
		case u < s.readRatio:
			o.Kind = records.KindRead
		case u < s.readRatio+s.casRatio:
			o.Kind = records.KindCAS
			o.Value = fmt.Sprintf("%s-%d", c, i)
		default:
			o.Kind = records.KindWrite
			o.Value = fmt.Sprintf("%s-%d", c, i)
		}
		switch {
		case t >= s.overloadFrom && t < s.overloadTo:
			o.Result = records.ResultOverload
			o.Submitted, o.Completed = t, t
			o.point = inf
		case t >= s.outageFrom && t < s.outageTo:
			o.Completed = o.Submitted + s.timeoutS
			o.Result = "context deadline exceeded"
			o.point = inf
			if o.Kind == records.KindWrite && rng.Float64() < s.appliedRatio {
				// took effect when the outage ended, or before the client gave up
				o.point = max(o.Submitted, min(s.outageTo, o.Completed)-1e-4)
			}
		default:
			lat := s.latencyMS / 1000 * (0.5 + rng.ExpFloat64()*0.5)
			o.Completed = o.Submitted + lat
			o.Result = records.ResultOK
			o.point = o.Submitted + rng.Float64()*lat
		}
		all = append(all, o)
	}
	// Reads return the value of the last write before their point, per key.
	byPoint := make([]int, len(all))
	for i := range byPoint {
		byPoint[i] = i
	}
	sort.SliceStable(byPoint, func(i, j int) bool { return all[byPoint[i]].point < all[byPoint[j]].point })
	state, previous := map[string]string{}, map[string]string{}
	crng := rand.New(rand.NewPCG(s.seed, 100))
	for _, i := range byPoint {
		o := &all[i]
		if o.Kind == records.KindCAS {
			o.Expected = state[o.Key]
			if crng.IntN(3) == 0 {
				o.Expected = previous[o.Key]
			}
		}
		if o.point == inf {
			continue
		}
		switch o.Kind {
		case records.KindWrite:
			previous[o.Key], state[o.Key] = state[o.Key], o.Value
		case records.KindRead:
			o.Value = state[o.Key]
		case records.KindCAS:
			cur := state[o.Key]
			if cur == o.Expected {
				previous[o.Key], state[o.Key] = cur, o.Value
				o.Swapped = o.OK()
			} else if o.OK() {
				o.Current = &cur
			}
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Completed < all[j].Completed })
	out := make([]records.Op, len(all))
	for i := range all {
		out[i] = all[i].Op
		if out[i].Kind == records.KindRead && !out[i].OK() {
			out[i].Value = ""
		}
	}
	return out
}

var inf = 1e300

func (s synth) events() []records.Event {
	end := s.start + s.duration
	ev := []records.Event{
		{T: 0, Type: records.EventRunStart},
		{T: s.start - 1, Type: records.EventLeader, Leader: "s1", Term: 2},
		{T: s.start - 0.5, Type: records.EventClusterReady},
		{T: s.start, Type: records.EventWorkloadStart},
	}
	if s.faultStart > 0 {
		ev = append(ev,
			records.Event{T: s.faultStart, Type: records.EventFaultStart, Fault: "leader", Targets: []string{"s1"}},
			records.Event{T: s.faultStart, Type: records.EventFaultAction, Fault: "leader", Action: "kill", Targets: []string{"s1"}},
		)
		if s.outageTo > 0 {
			ev = append(ev, records.Event{T: s.outageTo - 0.05, Type: records.EventLeader, Leader: "s2", Term: 3})
		}
		ev = append(ev,
			records.Event{T: s.faultEnd, Type: records.EventFaultAction, Fault: "leader", Action: "restart", Targets: []string{"s1"}},
			records.Event{T: s.faultEnd, Type: records.EventFaultEnd, Fault: "leader", Targets: []string{"s1"}},
		)
	}
	ev = append(ev, records.Event{T: end, Type: records.EventWorkloadEnd}, records.Event{T: end + 1, Type: records.EventRunEnd})
	return ev
}

// write writes the run directory.
func (s synth) write(t testing.TB, dir string) {
	t.Helper()
	writeRun(t, dir, s.config(), s.ops(), s.events())
}

func (s synth) config() map[string]any {
	fault := "none"
	if s.faultStart > 0 {
		fault = "leader"
	}
	return map[string]any{
		"system": "etcd", "topology": "simple", "workload": "uniform", "fault": fault,
		"rate": s.rate, "number_nodes": 3, "duration": s.duration, "seed": s.seed,
		"versions": map[string]any{"etcd": "3.4.23"},
	}
}

func writeRun(t testing.TB, dir string, cfg map[string]any, ops []records.Op, events []records.Event) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, records.LogsDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		b, _ := json.MarshalIndent(cfg, "", "  ")
		if err := os.WriteFile(filepath.Join(dir, records.ConfigFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ow, err := records.CreateJSONL(filepath.Join(dir, records.OpsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ops {
		if err := ow.Append(o); err != nil {
			t.Fatal(err)
		}
	}
	ow.Close()
	ew, err := records.CreateJSONL(filepath.Join(dir, records.EventsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if err := ew.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	ew.Close()
	os.WriteFile(filepath.Join(dir, records.LogsDir, "s1.log"), []byte("etcd log\n"), 0o644)
}

// leaderRun is the standard synthetic run: 30 s at 200 ops/s, a leader kill at 12 s, no
// successful operation from 12 s to 14.5 s, healed at 20 s.
func leaderRun() synth {
	return synth{
		seed: 1, start: 2, duration: 30, rate: 200, keys: 4, clients: 4, readRatio: 0.5, latencyMS: 3,
		faultStart: 12, faultEnd: 20, outageFrom: 12, outageTo: 14.5, timeoutS: 0.4, appliedRatio: 0.5,
	}
}
