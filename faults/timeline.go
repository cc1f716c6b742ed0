package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dtlab/dt/results"
	"github.com/dtlab/dt/shaping"
	"github.com/dtlab/dt/topology"
)

// RunTimeline runs steps in order on the schedule's clock (Env.Since), then waits until
// end (the workload's length) and every timed undo is done. Each step's targets are
// resolved when it fires and recorded with it before it is applied. A step that fails is
// recorded as an error event and the timeline goes on; the errors are returned joined.
// Before returning — also when ctx ends early — everything still in place is undone,
// except kills and stops that no step undoes: those members stay down, as a crash would
// leave them.
func RunTimeline(ctx context.Context, env Env, steps []Step, end time.Duration) error {
	t := &timeline{env: env, resolved: map[string][]string{}}
	bg, cancelBg := context.WithCancel(ctx)
	defer func() {
		cancelBg()
		t.wg.Wait()
		t.finish()
	}()
	var last time.Duration
	for i, s := range steps {
		due := last + s.After.D()
		if s.At != nil {
			due = s.At.D()
		}
		if !sleepUntil(ctx, env, due) {
			return t.err()
		}
		last = env.Since()
		label := s.ID
		if label == "" {
			label = fmt.Sprintf("%s#%d", s.Action, i+1)
		}
		if err := t.fire(ctx, bg, label, s); err != nil {
			t.fail(label, fmt.Errorf("step %d (%s): %w", i+1, s.Action, err))
		}
		if s.Probe != nil && ctx.Err() == nil {
			t.probe(ctx, label, *s.Probe)
		}
	}
	sleepUntil(ctx, env, end)
	return t.err()
}

// timeline is the state of one run of RunTimeline.
type timeline struct {
	env      Env
	wg       sync.WaitGroup
	mu       sync.Mutex
	active   []*effect
	resolved map[string][]string // step id -> its resolved targets
	errs     []error
}

// effect is what one step left in place: per node for process faults and ports, or one
// undo ("" key) for a network shape.
type effect struct {
	label, action string
	targets       []string
	port          int
	proto         string
	undo          map[string]Undo
	window        bool // close the step's window (fault-end) when nothing is left
}

// kind groups actions by what undoes them.
func kindOf(action string) string {
	switch action {
	case "kill", "stop":
		return "down"
	case "pause":
		return "paused"
	}
	return "network"
}

func (t *timeline) fail(label string, err error) {
	t.mu.Lock()
	t.errs = append(t.errs, err)
	t.mu.Unlock()
	t.env.Record(results.Event{Type: results.EventError, Fault: label, Detail: err.Error()})
}

func (t *timeline) err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return errors.Join(t.errs...)
}

func (t *timeline) record(typ, label, action string, targets []string, detail string) {
	t.env.Record(results.Event{Type: typ, Fault: label, Action: action, Targets: targets, Detail: detail})
}

// fire runs one step. bg is the context of the step's timed undos: it ends with the run.
func (t *timeline) fire(ctx, bg context.Context, label string, s Step) error {
	env := t.env
	switch s.Action {
	case "sleep":
		t.record(results.EventFaultAction, label, s.Action, nil, s.For.String())
		sleepUntil(ctx, env, env.Since()+s.For.D())
		return nil
	case "wait-healthy", "init":
		timeout := s.Timeout.D()
		if timeout == 0 {
			timeout = 30 * time.Second
		}
		t.record(results.EventFaultAction, label, s.Action, nil, "")
		if s.Action == "init" {
			for _, n := range env.Servers() {
				if err := env.Start(ctx, n); err != nil {
					return fmt.Errorf("start %s: %w", n, err)
				}
				t.closeNode(n, "down")
			}
		}
		began := env.Since()
		if err := env.WaitHealthy(ctx, timeout); err != nil {
			return err
		}
		t.record(results.EventFaultAction, label, "healthy", nil, fmt.Sprintf("after %.2f s", (env.Since()-began).Seconds()))
		return nil
	case "probe":
		return nil
	case "shutdown":
		s.Action = "stop"
		return t.apply(ctx, bg, label, s, env.Servers())
	case "heal":
		return t.heal(ctx, label, s.Targets)
	}
	targets, err := t.resolve(ctx, s.Targets)
	if err != nil {
		return err
	}
	if s.ID != "" && s.Action != "partition" {
		t.remember(s.ID, targets)
	}
	switch s.Action {
	case "start", "restart", "continue":
		t.record(results.EventFaultAction, label, s.Action, targets, "")
		for _, n := range targets {
			var err error
			switch s.Action {
			case "start":
				err = env.Start(ctx, n)
			case "restart":
				err = env.Restart(ctx, n)
			default:
				err = env.Continue(ctx, n)
			}
			if err != nil {
				return fmt.Errorf("%s %s: %w", s.Action, n, err)
			}
			if s.Action == "continue" {
				t.closeNode(n, "paused")
			} else {
				t.closeNode(n, "down", "paused")
			}
		}
		return nil
	case "recoverport":
		t.record(results.EventFaultAction, label, s.Action, targets, fmt.Sprintf("port %d %s", s.Port, protoName(s.Proto)))
		return t.recoverPort(ctx, targets, s.Port, s.Proto)
	case "backup", "cleanup":
		for _, n := range targets {
			detail := ""
			if s.Action == "backup" {
				path, err := env.Backup(ctx, n, label)
				if err != nil {
					return fmt.Errorf("backup %s: %w", n, err)
				}
				detail = path
			} else if err := env.Cleanup(ctx, n); err != nil {
				return fmt.Errorf("cleanup %s: %w", n, err)
			}
			t.record(results.EventFaultAction, label, s.Action, []string{n}, detail)
		}
		return nil
	case "kill-until-snapshot":
		return t.killUntilSnapshot(ctx, label, targets, s.Timeout.D())
	}
	return t.apply(ctx, bg, label, s, targets)
}

// apply runs an undoable action on resolved targets and schedules its undo.
func (t *timeline) apply(ctx, bg context.Context, label string, s Step, targets []string) error {
	do, detail, err := t.action(ctx, label, s, targets)
	if err != nil {
		return err
	}
	if s.Action == "partition" && s.ID != "" {
		t.remember(s.ID, detail.nodes)
	}
	if s.Every == 0 {
		t.record(results.EventFaultStart, label, s.Action, detail.nodes, detail.text)
		e, err := do(ctx)
		if err != nil {
			t.record(results.EventFaultEnd, label, "", detail.nodes, "failed: "+err.Error())
			return err
		}
		t.add(e)
		if s.For > 0 {
			t.later(bg, s.For.D(), func(ctx context.Context) { t.undo(ctx, e, "") })
		}
		return nil
	}
	// Repeating: on for For, off until the next Every, until Until; one window.
	t.record(results.EventFaultStart, label, "", detail.nodes, fmt.Sprintf("%s every %v for %v until %v", detail.text, s.Every, s.For, s.Until))
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer t.record(results.EventFaultEnd, label, "", detail.nodes, "")
		for at := t.env.Since(); at < s.Until.D(); at += s.Every.D() {
			if !sleepUntil(bg, t.env, at) {
				return
			}
			t.record(results.EventFaultAction, label, s.Action, detail.nodes, detail.text)
			e, err := do(bg)
			if err != nil {
				t.fail(label, err)
				return
			}
			t.add(e)
			sleepUntil(bg, t.env, min(at+s.For.D(), s.Until.D()))
			cctx, cancel := cleanupCtx()
			t.undo(cctx, e, "")
			cancel()
			if bg.Err() != nil {
				return
			}
		}
	}()
	return nil
}

// shape is what a step does, for its events: the nodes involved and a description.
type shape struct {
	nodes []string
	text  string
}

// action prepares an undoable action: do applies it and returns the effect to undo.
func (t *timeline) action(ctx context.Context, label string, s Step, targets []string) (func(context.Context) (*effect, error), shape, error) {
	env := t.env
	eff := func(undo map[string]Undo, nodes []string) *effect {
		return &effect{label: label, action: s.Action, targets: nodes, port: s.Port, proto: s.Proto, undo: undo, window: s.Every == 0}
	}
	perNode := func(apply func(ctx context.Context, n string) (Undo, error)) func(context.Context) (*effect, error) {
		return func(ctx context.Context) (*effect, error) {
			undo := map[string]Undo{}
			for _, n := range targets {
				u, err := apply(ctx, n)
				if err != nil {
					// Undo what was applied; the caller closes the window as failed.
					errs := []error{fmt.Errorf("%s %s: %w", s.Action, n, err)}
					cctx, cancel := cleanupCtx()
					defer cancel()
					for m, u := range undo {
						if err := u(cctx); err != nil {
							errs = append(errs, fmt.Errorf("undo %s %s: %w", s.Action, m, err))
						}
					}
					return nil, errors.Join(errs...)
				}
				undo[n] = u
			}
			return eff(undo, targets), nil
		}
	}
	switch s.Action {
	case "kill":
		return perNode(func(ctx context.Context, n string) (Undo, error) {
			return func(ctx context.Context) error { return env.Restart(ctx, n) }, env.Kill(ctx, n)
		}), shape{targets, ""}, nil
	case "stop":
		return perNode(func(ctx context.Context, n string) (Undo, error) {
			return func(ctx context.Context) error { return env.Start(ctx, n) }, env.Stop(ctx, n)
		}), shape{targets, ""}, nil
	case "pause":
		return perNode(func(ctx context.Context, n string) (Undo, error) {
			return func(ctx context.Context) error { return env.Continue(ctx, n) }, env.Pause(ctx, n)
		}), shape{targets, ""}, nil
	case "dropport":
		return perNode(func(ctx context.Context, n string) (Undo, error) {
			return env.DropPort(ctx, n, s.Proto, s.Port, label)
		}), shape{targets, fmt.Sprintf("port %d %s", s.Port, protoName(s.Proto))}, nil
	case "droppkg", "loss", "delay", "limitspeed":
		imp, err := impairmentOf(s)
		if err != nil {
			return nil, shape{}, err
		}
		dir := s.Direction
		if dir == "" {
			dir = topology.Both
		}
		where := "every path"
		if len(targets) > 0 {
			where = map[string]string{topology.In: "every path to ", topology.Out: "every path from ", topology.Both: "every path to or from "}[dir] + strings.Join(targets, ",")
		}
		return func(ctx context.Context) (*effect, error) {
			u, err := env.Impair(ctx, targets, imp, dir, label)
			if err != nil {
				return nil, err
			}
			return eff(map[string]Undo{"": u}, targets), nil
		}, shape{targets, fmt.Sprintf("%s on %s", imp, where)}, nil
	case "partition", "isolate":
		cuts, err := t.cuts(ctx, s, targets)
		if err != nil {
			return nil, shape{}, err
		}
		var texts []string
		var nodes []string
		for _, c := range cuts {
			texts = append(texts, c.String())
			for _, n := range append(append([]string{}, c.A...), c.B...) {
				if !slices.Contains(nodes, n) {
					nodes = append(nodes, n)
				}
			}
		}
		if s.Action == "isolate" {
			nodes = targets
		}
		return func(ctx context.Context) (*effect, error) {
			u, err := env.Partition(ctx, cuts, label)
			if err != nil {
				return nil, err
			}
			return eff(map[string]Undo{"": u}, nodes), nil
		}, shape{nodes, strings.Join(texts, "; ")}, nil
	}
	return nil, shape{}, fmt.Errorf("action %q cannot be applied here", s.Action)
}

func protoName(p string) string {
	if p == "" {
		return "tcp+udp"
	}
	return p
}

// impairmentOf is the shaping a link-degrading step adds.
func impairmentOf(s Step) (shaping.Impairment, error) {
	switch s.Action {
	case "droppkg", "loss":
		return shaping.Impairment{Loss: s.Loss}, nil
	case "delay":
		return shaping.Impairment{Delay: s.Delay.D(), Jitter: s.Jitter.D()}, nil
	}
	r, err := shaping.ParseRate(s.Rate, 1e6)
	return shaping.Impairment{Rate: r}, err
}

// cuts turns a partition or isolate step into cuts.
func (t *timeline) cuts(ctx context.Context, s Step, targets []string) ([]topology.Cut, error) {
	env := t.env
	if s.Action == "isolate" {
		var cuts []topology.Cut
		for _, n := range targets {
			cuts = append(cuts, topology.Cut{A: []string{n}, B: others(env, n)})
		}
		return cuts, nil
	}
	if len(s.Groups) > 0 {
		var groups [][]string
		seen := map[string]bool{}
		for _, g := range s.Groups {
			r, err := t.resolve(ctx, g)
			if err != nil {
				return nil, err
			}
			for _, n := range r {
				if seen[n] {
					return nil, fmt.Errorf("node %s is in two groups", n)
				}
				seen[n] = true
			}
			groups = append(groups, r)
		}
		var cuts []topology.Cut
		for i := range groups {
			for j := i + 1; j < len(groups); j++ {
				cuts = append(cuts, topology.Cut{A: groups[i], B: groups[j]})
			}
		}
		return cuts, nil
	}
	nodes := targets
	if len(nodes) == 0 {
		nodes = env.Servers()
	}
	return PartitionShape(s.Mode, nodes, env.Rand())
}

// add registers an effect in place.
func (t *timeline) add(e *effect) {
	t.mu.Lock()
	t.active = append(t.active, e)
	t.mu.Unlock()
}

// remember keeps a step's resolved targets for "@id".
func (t *timeline) remember(id string, targets []string) {
	t.mu.Lock()
	t.resolved[id] = targets
	t.mu.Unlock()
}

// later runs fn after d, or at once when bg ends first (the run is over: undo now).
func (t *timeline) later(bg context.Context, d time.Duration, fn func(ctx context.Context)) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-bg.Done():
		}
		ctx, cancel := cleanupCtx()
		defer cancel()
		fn(ctx)
	}()
}

// take removes e's undo for node (every node's when node is "") and reports what it took
// and whether nothing of e is left, in which case e is no longer in place. t.mu is held.
func (t *timeline) take(e *effect, node string) (nodes []string, todo []Undo, closed bool) {
	for n, u := range e.undo {
		if node == "" || n == node {
			nodes, todo = append(nodes, n), append(todo, u)
			delete(e.undo, n)
		}
	}
	closed = len(todo) > 0 && len(e.undo) == 0
	if closed {
		t.active = slices.DeleteFunc(t.active, func(x *effect) bool { return x == e })
	}
	return nodes, todo, closed
}

// undo reverses an effect on node (every node when node is ""), unless something else
// undid it first; the window closes when nothing of the effect is left. It reports
// whether there was anything to undo.
func (t *timeline) undo(ctx context.Context, e *effect, node string) bool {
	t.mu.Lock()
	nodes, todo, closed := t.take(e, node)
	t.mu.Unlock()
	if len(todo) == 0 {
		return false
	}
	slices.Sort(nodes)
	verb := map[string]string{"kill": "restart", "stop": "start", "pause": "continue", "dropport": "recoverport"}[e.action]
	if verb == "" {
		verb = "heal"
	}
	who := nodes
	if len(nodes) == 1 && nodes[0] == "" {
		who = e.targets
	}
	t.record(results.EventFaultAction, e.label, verb, who, "")
	for _, u := range todo {
		if err := u(ctx); err != nil {
			t.fail(e.label, fmt.Errorf("undo %s %v: %w", e.action, e.targets, err))
		}
	}
	if closed && e.window {
		t.record(results.EventFaultEnd, e.label, "", e.targets, "")
	}
	return true
}

// closeNode forgets node in the effects of the given kinds: a later step (restart,
// continue, init) has undone them itself.
func (t *timeline) closeNode(node string, kinds ...string) {
	t.mu.Lock()
	var ended []*effect
	for _, e := range slices.Clone(t.active) {
		if !slices.Contains(kinds, kindOf(e.action)) {
			continue
		}
		if _, _, closed := t.take(e, node); closed {
			ended = append(ended, e)
		}
	}
	t.mu.Unlock()
	for _, e := range ended {
		if e.window {
			t.record(results.EventFaultEnd, e.label, "", e.targets, "")
		}
	}
}

// heal undoes the network effects in place: all of them, or those of the steps named
// "@id" in targets.
func (t *timeline) heal(ctx context.Context, label string, targets []string) error {
	t.mu.Lock()
	var todo []*effect
	for _, e := range t.active {
		if kindOf(e.action) != "network" {
			continue
		}
		if len(targets) == 0 || slices.Contains(targets, "@"+e.label) {
			todo = append(todo, e)
		}
	}
	t.mu.Unlock()
	var names []string
	for _, e := range todo {
		names = append(names, e.label)
	}
	t.record(results.EventFaultAction, label, "heal", nil, strings.Join(names, ", "))
	for _, e := range todo {
		t.undo(ctx, e, "")
	}
	return nil
}

// recoverPort undoes the dropport of port/proto on targets.
func (t *timeline) recoverPort(ctx context.Context, targets []string, port int, proto string) error {
	t.mu.Lock()
	var todo []*effect
	for _, e := range t.active {
		if e.action == "dropport" && e.port == port && e.proto == proto {
			todo = append(todo, e)
		}
	}
	t.mu.Unlock()
	found := map[string]bool{}
	for _, e := range todo {
		for _, n := range targets {
			if t.undo(ctx, e, n) {
				found[n] = true
			}
		}
	}
	var missing []string
	for _, n := range targets {
		if !found[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("no dropport of port %d %s in place on %s", port, protoName(proto), strings.Join(missing, ", "))
	}
	return nil
}

// killUntilSnapshot kills each target and keeps it down until the leader has compacted
// its log past the index the member had applied, so that it must catch up from a
// snapshot rather than from the log (etcd's functional tester's
// SIGTERM_*_UNTIL_TRIGGER_SNAPSHOT), or until timeout; then restarts it.
func (t *timeline) killUntilSnapshot(ctx context.Context, label string, targets []string, timeout time.Duration) error {
	env := t.env
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	applied := map[string]uint64{}
	for _, n := range targets {
		a, err := env.AppliedIndex(ctx, n)
		if err != nil {
			return fmt.Errorf("applied index of %s: %w", n, err)
		}
		applied[n] = a
	}
	t.record(results.EventFaultStart, label, "kill", targets, fmt.Sprintf("applied index %v", applied))
	for _, n := range targets {
		if err := env.Kill(ctx, n); err != nil {
			t.record(results.EventFaultEnd, label, "", targets, "failed")
			return fmt.Errorf("kill %s: %w", n, err)
		}
	}
	need := slices.Max(slices.Collect(maps.Values(applied)))
	// The indexes above are as last polled; a member may have applied a little more before
	// the kill. The leader's commit index a moment after the kill bounds it.
	sleepUntil(ctx, env, env.Since()+500*time.Millisecond)
	if l, err := env.Leader(ctx); err == nil {
		if c, err := env.AppliedIndex(ctx, l); err == nil {
			need = max(need, c)
		}
	}
	began := env.Since()
	detail := ""
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for detail == "" {
		leader, err := env.Leader(ctx)
		if err == nil {
			if snap, err := env.CompactedIndex(ctx, leader); err == nil && snap > need {
				detail = fmt.Sprintf("leader %s compacted its log to index %d > %d after %.1f s", leader, snap, need, (env.Since() - began).Seconds())
				break
			}
		}
		if env.Since()-began > timeout {
			detail = fmt.Sprintf("timeout %v: the leader did not compact its log past index %d", timeout, need)
			break
		}
		select {
		case <-ctx.Done():
			detail = "run ended first"
		case <-tick.C:
		}
	}
	t.record(results.EventFaultAction, label, "restart", targets, detail)
	cctx, cancel := cleanupCtx()
	defer cancel()
	var errs []error
	for _, n := range targets {
		if err := env.Restart(cctx, n); err != nil {
			errs = append(errs, fmt.Errorf("restart %s: %w", n, err))
		}
	}
	t.record(results.EventFaultEnd, label, "", targets, detail)
	if strings.HasPrefix(detail, "timeout") {
		errs = append(errs, errors.New(detail))
	}
	return errors.Join(errs...)
}

// probe calls a step's probe and records its outcome.
func (t *timeline) probe(ctx context.Context, label string, p Probe) {
	from := p.From
	if from == "" {
		if cl := clients(t.env); len(cl) > 0 {
			from = cl[0]
		} else {
			from = t.env.Servers()[0]
		}
	}
	r, err := t.env.Probe(ctx, from, p)
	if err != nil {
		r.Error = err.Error()
	}
	out := ProbeOutcome{URL: p.URL, OK: r.OK(), ProbeResult: r}
	b, _ := json.Marshal(out)
	t.env.Record(results.Event{Type: results.EventProbe, Fault: label, Node: from, Detail: string(b)})
}

// ProbeOutcome is the Detail of a probe event (JSON).
type ProbeOutcome struct {
	URL string `json:"url"`
	OK  bool   `json:"ok"`
	ProbeResult
}

// finish undoes what is still in place when the timeline ends, but for members that are
// down: nothing undid their kill or stop, and the run ends with them down.
func (t *timeline) finish() {
	t.mu.Lock()
	active := slices.Clone(t.active)
	t.mu.Unlock()
	ctx, cancel := cleanupCtx()
	defer cancel()
	for _, e := range active {
		if kindOf(e.action) == "down" {
			if !e.window {
				continue
			}
			t.record(results.EventFaultEnd, e.label, "", e.targets, "end of run; the killed or stopped members stay down")
			continue
		}
		t.undo(ctx, e, "")
	}
}

// clients are the nodes that are not servers.
func clients(env Env) []string {
	var out []string
	for _, n := range env.Nodes() {
		if !slices.Contains(env.Servers(), n) {
			out = append(out, n)
		}
	}
	return out
}

// resolve turns node names and selectors into node names, in order, without repeats.
func (t *timeline) resolve(ctx context.Context, sel []string) ([]string, error) {
	env := t.env
	var out []string
	add := func(ns ...string) {
		for _, n := range ns {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	servers := env.Servers()
	leader := func() (string, error) { return env.Leader(ctx) }
	for _, s := range sel {
		if strings.HasPrefix(s, "@") {
			t.mu.Lock()
			r, ok := t.resolved[s[1:]]
			t.mu.Unlock()
			if !ok {
				return nil, fmt.Errorf("%s: that step has not resolved its targets (yet)", s)
			}
			add(r...)
			continue
		}
		if slices.Contains(env.Nodes(), s) {
			add(s)
			continue
		}
		switch s {
		case "all":
			add(servers...)
		case "nodes":
			add(env.Nodes()...)
		case "clients":
			add(clients(env)...)
		case "minority":
			add(pick(env.Rand(), servers, (len(servers)-1)/2)...)
		case "majority":
			add(pick(env.Rand(), servers, len(servers)/2+1)...)
		case "leader", "follower", "followers":
			l, err := leader()
			if err != nil {
				return nil, err
			}
			switch s {
			case "leader":
				add(l)
			case "follower":
				add(pick(env.Rand(), followers(env, l), 1)...)
			default:
				add(followers(env, l)...)
			}
		default:
			if k, ok := countSelector(s, "random"); ok && k > 0 {
				add(pick(env.Rand(), servers, k)...)
			} else if k, ok := countSelector(s, "followers"); ok && k > 0 {
				l, err := leader()
				if err != nil {
					return nil, err
				}
				add(pick(env.Rand(), followers(env, l), k)...)
			} else {
				return nil, fmt.Errorf("unknown target %q", s)
			}
		}
	}
	if len(sel) > 0 && len(out) == 0 {
		return nil, fmt.Errorf("targets %v resolved to no node", sel)
	}
	return out, nil
}
