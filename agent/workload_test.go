package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/systems"
	"github.com/dtlab/dt/workloads"
)

// fakeSystem is an in-memory system: its KV is a map and Status echoes the endpoint.
type fakeSystem struct {
	mu      sync.Mutex
	kvs     []*fakeKV
	failKV  bool
	latency time.Duration // each Put takes this long
}

func (f *fakeSystem) Name() string { return "fake" }
func (f *fakeSystem) MemberCommand(systems.Cluster, int, bool) systems.Command {
	return systems.Command{}
}
func (f *fakeSystem) ClientEndpoints(systems.Cluster) []string  { return nil }
func (f *fakeSystem) LocalEndpoint(systems.Cluster, int) string { return "" }
func (f *fakeSystem) ClientEnv(systems.Cluster) []string        { return nil }

func (f *fakeSystem) NewKV(endpoints []string, timeout time.Duration) (workloads.KV, error) {
	if f.failKV {
		return nil, errors.New("no route to cluster")
	}
	kv := &fakeKV{target: endpoints[0], data: map[string]string{}, latency: f.latency}
	f.mu.Lock()
	f.kvs = append(f.kvs, kv)
	f.mu.Unlock()
	return kv, nil
}

func (f *fakeSystem) Status(ctx context.Context, endpoint string) (systems.MemberStatus, error) {
	if strings.Contains(endpoint, "down") {
		return systems.MemberStatus{}, errors.New("connection refused")
	}
	return systems.MemberStatus{ID: "8e9e05c52164694d", LeaderID: "8e9e05c52164694d", Term: 7, Index: 42, Healthy: true}, nil
}

func (f *fakeSystem) lookup(name string) (systems.System, error) {
	if name != "fake" {
		return nil, fmt.Errorf("unknown system %q; valid: fake", name)
	}
	return f, nil
}

type fakeKV struct {
	latency time.Duration
	mu      sync.Mutex
	target  string
	data    map[string]string
	ops     atomic.Int64
	closed  atomic.Bool
}

func (k *fakeKV) Put(ctx context.Context, key, value string) error {
	k.ops.Add(1)
	if k.latency > 0 {
		select {
		case <-time.After(k.latency):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.data[key] = value
	return nil
}

func (k *fakeKV) Get(ctx context.Context, key string) (string, bool, error) {
	k.ops.Add(1)
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.data[key]
	return v, ok, nil
}

func (k *fakeKV) Target() string { return k.target }
func (k *fakeKV) Close() error   { k.closed.Store(true); return nil }

func fakeSpec(client string, rate, duration float64) workloads.Spec {
	s := workloads.DefaultSpec()
	s.Client = client
	s.Rate = rate
	s.Duration = duration
	s.Mix = workloads.WriteMix(0.5)
	s.MaxKey = 10
	s.Seed = 1
	s.System = "fake"
	s.Endpoints = []string{"http://10.0.0.1:2379"}
	s.StartUnixNano = time.Now().UnixNano()
	return s
}

// TestWorkloadStream runs the real workloads.Run against an in-memory KV and checks
// that every operation arrives, and that the stream ends with an ok status.
func TestWorkloadStream(t *testing.T) {
	fs := &fakeSystem{}
	a := startTestAgent(t, func(s *server) { s.lookupSystem = fs.lookup })
	ctx := ctxT(t)
	var ops []records.Op
	if err := a.RunWorkload(ctx, fakeSpec("c1", 200, 0.5), func(op records.Op) error {
		ops = append(ops, op)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(ops) < 90 || len(ops) > 110 {
		t.Fatalf("got %d ops for 200 ops/s over 0.5 s", len(ops))
	}
	kinds := map[string]int{}
	for _, op := range ops {
		if op.Client != "c1" || !op.OK() || op.Target != "http://10.0.0.1:2379" {
			t.Fatalf("bad op %+v", op)
		}
		kinds[op.Kind]++
	}
	if kinds[records.KindRead] == 0 || kinds[records.KindWrite] == 0 {
		t.Errorf("op kinds %v, want both reads and writes", kinds)
	}
	if n := fs.kvs[0].ops.Load(); n != int64(len(ops)) {
		t.Errorf("KV saw %d ops, stream carried %d", n, len(ops))
	}
	if !fs.kvs[0].closed.Load() {
		t.Errorf("KV not closed after the run")
	}
}

// TestWorkloadCancel stops a long run by cancelling the request.
func TestWorkloadCancel(t *testing.T) {
	fs := &fakeSystem{}
	a := startTestAgent(t, func(s *server) { s.lookupSystem = fs.lookup })
	ctx, cancel := context.WithCancel(ctxT(t))
	n := 0
	begin := time.Now()
	err := a.RunWorkload(ctx, fakeSpec("c2", 100, 3600), func(records.Op) error {
		if n++; n == 5 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("RunWorkload after cancel: %v, want context.Canceled", err)
	}
	if d := time.Since(begin); d > 10*time.Second {
		t.Fatalf("cancel took %v", d)
	}
	waitFor(t, 5*time.Second, "the agent's client is closed", func() bool { return fs.kvs[0].closed.Load() })
	stopped := fs.kvs[0].ops.Load()
	time.Sleep(200 * time.Millisecond)
	if fs.kvs[0].ops.Load() != stopped {
		t.Errorf("the agent kept sending operations after the request was cancelled")
	}
}

// TestWorkloadErrors covers errors before the stream (4xx/5xx), from onOp, and from the
// run itself (carried in the trailer).
func TestWorkloadErrors(t *testing.T) {
	fs := &fakeSystem{}
	var runErr error
	a := startTestAgent(t, func(s *server) {
		s.lookupSystem = fs.lookup
		s.runWorkload = func(ctx context.Context, spec workloads.Spec, kv workloads.KV, emit func(records.Op)) error {
			if runErr == nil {
				return workloads.Run(ctx, spec, kv, emit)
			}
			emit(records.Op{Client: spec.Client, Kind: records.KindWrite, Result: records.ResultOK})
			return runErr
		}
	})
	ctx := ctxT(t)
	none := func(records.Op) error { return nil }

	bad := fakeSpec("c1", 0, 1)
	wantStatus(t, a.RunWorkload(ctx, bad, none), 400)
	unknown := fakeSpec("c1", 10, 1)
	unknown.System = "nosuch"
	wantStatus(t, a.RunWorkload(ctx, unknown, none), 400)
	noEndpoints := fakeSpec("c1", 10, 1)
	noEndpoints.Endpoints = nil
	wantStatus(t, a.RunWorkload(ctx, noEndpoints, none), 400)
	cas := fakeSpec("c1", 10, 1) // the fake client cannot compare-and-set
	cas.Mix = workloads.DefaultMix
	wantStatus(t, a.RunWorkload(ctx, cas, none), 400)
	fs.failKV = true
	wantStatus(t, a.RunWorkload(ctx, fakeSpec("c1", 10, 1), none), 500)
	fs.failKV = false

	stop := errors.New("disk full")
	if err := a.RunWorkload(ctx, fakeSpec("c1", 100, 60), func(records.Op) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("onOp error: got %v", err)
	}

	runErr = errors.New("generator broke\non two lines")
	err := a.RunWorkload(ctx, fakeSpec("c1", 10, 1), none)
	if err == nil || !strings.Contains(err.Error(), "generator broke on two lines") {
		t.Errorf("run error: got %v", err)
	}
}

func TestSystemStatus(t *testing.T) {
	fs := &fakeSystem{}
	a := startTestAgent(t, func(s *server) { s.lookupSystem = fs.lookup })
	ctx := ctxT(t)
	st, err := a.SystemStatus(ctx, "fake", "http://127.0.0.1:2379")
	if err != nil {
		t.Fatal(err)
	}
	if st.Term != 7 || st.Index != 42 || !st.Healthy || st.LeaderID != "8e9e05c52164694d" {
		t.Errorf("status = %+v", st)
	}
	_, err = a.SystemStatus(ctx, "fake", "http://down:2379")
	wantStatus(t, err, 502)
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("502 without the cause: %v", err)
	}
	_, err = a.SystemStatus(ctx, "nosuch", "http://127.0.0.1:2379")
	wantStatus(t, err, 400)
}

// TestWorkloadStopKeepsInflight: a stopped workload issues nothing new, but every
// operation already sent is still recorded and the stream ends cleanly.
func TestWorkloadStopKeepsInflight(t *testing.T) {
	fs := &fakeSystem{latency: 300 * time.Millisecond}
	a := startTestAgent(t, func(s *server) { s.lookupSystem = fs.lookup })
	ctx := ctxT(t)
	var mu sync.Mutex
	var recs []records.Op
	done := make(chan error, 1)
	go func() {
		done <- a.RunWorkload(ctx, fakeSpec("c7", 100, 3600), func(op records.Op) error {
			mu.Lock()
			recs = append(recs, op)
			mu.Unlock()
			return nil
		})
	}()
	time.Sleep(500 * time.Millisecond)
	if err := a.StopWorkload(ctx, "c7"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("RunWorkload after a stop: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RunWorkload did not return after the stop")
	}
	fs.mu.Lock()
	sent := fs.kvs[0].ops.Load()
	fs.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	if int64(len(recs)) != sent || sent < 20 {
		t.Fatalf("%d operations sent, %d recorded: every sent op must be recorded", sent, len(recs))
	}
	for _, op := range recs {
		if !op.OK() {
			t.Errorf("op %+v failed: in-flight ops must complete, not be cancelled", op)
		}
	}
	if err := a.StopWorkload(ctx, "c7"); !errors.Is(err, ErrNotFound) {
		t.Errorf("stopping a finished workload: %v, want 404", err)
	}
}
