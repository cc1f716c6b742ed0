package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dtlab/dt/records"
)

// Engine runs steps against one Env: every source of faults — a run's timeline (named
// faults, scenario files, random schedules, replays) and the debug prompt's commands —
// goes through it, so targets resolve the same way and every effect is undone by the
// same rules. One engine serves a whole run or session; each timeline run on it is a
// scope that undoes what it did when it ends, and a Session is a scope fed one step at a
// time. Effects are shared: a heal heals what any scope cut, a restart ends any kill of
// that member.
type Engine struct {
	env   Env
	rngMu sync.Mutex

	mu     sync.Mutex
	active []*effect
}

// NewEngine returns an engine over env.
func NewEngine(env Env) *Engine { return &Engine{env: env} }

// Env is what the engine acts through.
func (e *Engine) Env() Env { return e.env }

// Cluster is what validation knows of the engine's env: its nodes, servers and
// capabilities.
func (e *Engine) Cluster() Cluster {
	return Cluster{Nodes: e.env.Nodes(), Servers: e.env.Servers(), Caps: Offers(e.env)}
}

// RunTimeline runs steps in order on the schedule's clock (Env.Since), then waits until
// end (the workload's length) and every timed undo is done. Each step's targets are
// resolved when it fires and recorded with it before it is applied. A step that fails is
// recorded as an error event and the timeline goes on; the errors are returned joined.
// Before returning — also when ctx ends early — everything still in place is undone,
// except kills and stops that no step undoes: those members stay down, as a crash would
// leave them.
func RunTimeline(ctx context.Context, env Env, steps []Step, end time.Duration) error {
	return NewEngine(env).Run(ctx, steps, end)
}

// Run runs a timeline as RunTimeline does, on the env's clock, in a scope of its own:
// what it leaves in place is undone when it ends.
func (e *Engine) Run(ctx context.Context, steps []Step, end time.Duration) error {
	return e.RunFrom(ctx, steps, end, e.env.Since())
}

// RunFrom runs a timeline as Run does on a clock that reads now at the call: the debug
// prompt fires a named fault with its schedule shifted so that its window opens at once.
func (e *Engine) RunFrom(ctx context.Context, steps []Step, end, now time.Duration) error {
	return e.runFrom(ctx, steps, end, now, nil)
}

func (e *Engine) runFrom(ctx context.Context, steps []Step, end, now time.Duration, notify func(records.Event)) error {
	sc := e.newScope(e.env.Since() - now)
	sc.notify = notify
	defer sc.close()
	var last time.Duration
	for i, s := range steps {
		due := last + s.After.D()
		if s.At != nil {
			due = s.At.D()
		}
		if !sc.sleepUntil(ctx, due) {
			return sc.err()
		}
		last = sc.since()
		label := s.ID
		if label == "" {
			label = fmt.Sprintf("%s#%d", s.Action, i+1)
		}
		sc.step(ctx, fmt.Sprintf("step %d (%s)", i+1, s.Action), label, s)
	}
	sc.sleepUntil(ctx, end)
	return sc.err()
}

// newScope opens a scope whose clock is the env's less base.
func (e *Engine) newScope(base time.Duration) *scope {
	sc := &scope{eng: e, base: base, resolved: map[string][]string{}}
	sc.bg, sc.cancelBg = context.WithCancel(context.Background())
	return sc
}

// Session is a scope fed steps one at a time as they are typed (the debug prompt). Its
// clock is the env's.
type Session struct {
	sc *scope
}

// Session opens a session on the engine; Close undoes what it left in place.
func (e *Engine) Session() *Session { return &Session{sc: e.newScope(0)} }

// Validate checks a step as a timeline's would be checked, against the engine's
// nodes and capabilities and the ids this session has fired.
func (s *Session) Validate(st Step) error {
	ids := map[string]bool{}
	s.sc.mu.Lock()
	for id := range s.sc.resolved {
		ids[id] = true
	}
	s.sc.mu.Unlock()
	for _, e := range s.sc.eng.Active() { // the prompt heals effects by their labels
		ids[e.Label] = true
	}
	var errs []error
	for _, fe := range validateStep(st, s.sc.eng.Cluster(), ids) {
		if fe.Field != "" {
			errs = append(errs, fmt.Errorf("%s: %w", fe.Field, fe.Err))
		} else {
			errs = append(errs, fe.Err)
		}
	}
	return errors.Join(errs...)
}

// Fire validates st and runs it now under label (its events' fault name; st.ID, when
// set, lets later steps name its targets as "@ID"). It returns once the step is applied;
// its timed undo runs in the background. A failing step is recorded as an error event.
func (s *Session) Fire(ctx context.Context, label string, st Step) error {
	if err := s.Validate(st); err != nil {
		return err
	}
	if label == "" {
		label = st.ID
	}
	if label == "" {
		label = st.Action
	}
	return s.sc.step(ctx, label, label, st)
}

// Resolve turns node names and selectors into node names, as a step's targets are.
func (s *Session) Resolve(ctx context.Context, sel []string) ([]string, error) {
	return s.sc.resolve(ctx, sel)
}

// Close undoes what the session left in place (members it killed or stopped stay down)
// once its timed undos are done.
func (s *Session) Close() { s.sc.close() }

// Effect describes one effect in place.
type Effect struct {
	Label, Action string
	Kind          Kind
	Tag           string
	Nodes         []string
}

// Active lists the effects in place, oldest first, of every scope.
func (e *Engine) Active() []Effect {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Effect
	for _, x := range e.active {
		out = append(out, x.info())
	}
	return out
}

// Down maps each node with a member under a process effect (killed, stopped, paused) to
// its kind.
func (e *Engine) Down() map[string]Kind {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]Kind{}
	for _, x := range e.active {
		if x.kind == KindDown || x.kind == KindPaused {
			for n := range x.undo {
				out[n] = x.kind
			}
		}
	}
	return out
}

// Heal undoes the network effects of every scope that match (all when match is nil)
// and returns their labels.
func (e *Engine) Heal(ctx context.Context, by string, match func(Effect) bool) []string {
	var todo []*effect
	e.mu.Lock()
	for _, x := range e.active {
		if x.kind == KindNetwork && (match == nil || match(x.info())) {
			todo = append(todo, x)
		}
	}
	e.mu.Unlock()
	var labels []string
	for _, x := range todo {
		if x.sc.undo(ctx, x, "", by) {
			labels = append(labels, x.label)
		}
	}
	return labels
}

// scope is one timeline (or session) running on an engine: its clock, its step ids, its
// timed undos and the effects it owns.
type scope struct {
	eng      *Engine
	base     time.Duration   // the scope's zero on the env's clock
	bg       context.Context // timed undos and repetitions: ends when the scope closes
	cancelBg context.CancelFunc
	wg       sync.WaitGroup

	notify func(records.Event) // sees every event the scope records, if set

	mu       sync.Mutex
	resolved map[string][]string // step id -> its resolved targets
	errs     []error
}

// effect is what one step left in place: per node for process faults and ports, or one
// undo ("" key) for a network shape.
type effect struct {
	sc            *scope
	label, action string
	kind          Kind
	verb, tag     string
	targets       []string
	undo          map[string]Undo
	window        bool // close the step's window (fault-end) when nothing is left
}

func (x *effect) info() Effect {
	return Effect{Label: x.label, Action: x.action, Kind: x.kind, Tag: x.tag, Nodes: slices.Clone(x.targets)}
}

func (sc *scope) env() Env             { return sc.eng.env }
func (sc *scope) since() time.Duration { return sc.env().Since() - sc.base }

// sleepUntil waits until the scope's clock reaches at; false when ctx ended first.
func (sc *scope) sleepUntil(ctx context.Context, at time.Duration) bool {
	d := at - sc.since()
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// step fires one step and then its probe; where names it in the returned error.
func (sc *scope) step(ctx context.Context, where, label string, s Step) error {
	err := sc.fire(ctx, label, s)
	if err != nil {
		err = fmt.Errorf("%s: %w", where, err)
		sc.fail(label, err)
	}
	if s.Probe != nil && ctx.Err() == nil {
		sc.probe(ctx, label, *s.Probe)
	}
	return err
}

func (sc *scope) fail(label string, err error) {
	sc.mu.Lock()
	sc.errs = append(sc.errs, err)
	sc.mu.Unlock()
	sc.emit(records.Event{Type: records.EventError, Fault: label, Detail: err.Error()})
}

// emit records an event and shows it to the scope's observer.
func (sc *scope) emit(e records.Event) {
	sc.env().Record(e)
	if sc.notify != nil {
		sc.notify(e)
	}
}

func (sc *scope) err() error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return errors.Join(sc.errs...)
}

func (sc *scope) record(typ, label, action string, targets []string, detail string) {
	sc.emit(records.Event{Type: typ, Fault: label, Action: action, Targets: targets, Detail: detail})
}

// fire runs one step.
func (sc *scope) fire(ctx context.Context, label string, s Step) error {
	a, err := LookupAction(s.Action)
	if err != nil {
		return err
	}
	call := &Call{Label: label, Step: s, sc: sc}
	if a.Form().RawTargets {
		call.Targets = s.Targets
	} else if call.Targets, err = sc.resolve(ctx, s.Targets); err != nil {
		return err
	}
	switch a := a.(type) {
	case Instant:
		if s.ID != "" && !a.Form().RawTargets {
			sc.remember(s.ID, call.Targets)
		}
		return a.Run(ctx, call)
	case Undoable:
		ch, err := a.Prepare(ctx, call)
		if err != nil {
			return err
		}
		if s.ID != "" {
			sc.remember(s.ID, ch.Nodes)
		}
		return sc.apply(ctx, call, ch)
	}
	return fmt.Errorf("action %q is neither instant nor undoable", s.Action)
}

// apply applies an undoable step's change and schedules its undo.
func (sc *scope) apply(ctx context.Context, call *Call, ch Change) error {
	s, label := call.Step, call.Label
	do := func(ctx context.Context) (*effect, error) {
		x := &effect{sc: sc, label: label, action: s.Action, kind: ch.Kind, verb: ch.UndoVerb, tag: ch.Tag,
			targets: ch.Nodes, undo: map[string]Undo{}, window: s.Every == 0}
		if x.verb == "" {
			x.verb = "heal"
		}
		if ch.Each == nil {
			u, err := ch.Apply(ctx)
			if err != nil {
				return nil, err
			}
			x.undo[""] = u
			return x, nil
		}
		for _, n := range ch.Nodes {
			u, err := ch.Each(ctx, n)
			if err != nil {
				// Undo what was applied; the caller closes the window as failed.
				errs := []error{fmt.Errorf("%s %s: %w", s.Action, n, err)}
				cctx, cancel := cleanupCtx()
				defer cancel()
				for m, u := range x.undo {
					if err := u(cctx); err != nil {
						errs = append(errs, fmt.Errorf("undo %s %s: %w", s.Action, m, err))
					}
				}
				return nil, errors.Join(errs...)
			}
			x.undo[n] = u
		}
		return x, nil
	}
	if s.Every == 0 {
		sc.record(records.EventFaultStart, label, s.Action, ch.Nodes, ch.Text)
		x, err := do(ctx)
		if err != nil {
			sc.record(records.EventFaultEnd, label, "", ch.Nodes, "failed: "+err.Error())
			return err
		}
		sc.add(x)
		if s.For > 0 {
			sc.later(s.For.D(), func(ctx context.Context) { sc.undo(ctx, x, "", "") })
		}
		return nil
	}
	// Repeating: on for For, off until the next Every, until Until; one window.
	sc.record(records.EventFaultStart, label, "", ch.Nodes, fmt.Sprintf("%s every %v for %v until %v", ch.Text, s.Every, s.For, s.Until))
	sc.wg.Add(1)
	go func() {
		defer sc.wg.Done()
		defer sc.record(records.EventFaultEnd, label, "", ch.Nodes, "")
		for at := sc.since(); at < s.Until.D(); at += s.Every.D() {
			if !sc.sleepUntil(sc.bg, at) {
				return
			}
			sc.record(records.EventFaultAction, label, s.Action, ch.Nodes, ch.Text)
			x, err := do(sc.bg)
			if err != nil {
				sc.fail(label, err)
				return
			}
			sc.add(x)
			sc.sleepUntil(sc.bg, min(at+s.For.D(), s.Until.D()))
			cctx, cancel := cleanupCtx()
			sc.undo(cctx, x, "", "")
			cancel()
			if sc.bg.Err() != nil {
				return
			}
		}
	}()
	return nil
}

// add registers an effect in place.
func (sc *scope) add(x *effect) {
	sc.eng.mu.Lock()
	sc.eng.active = append(sc.eng.active, x)
	sc.eng.mu.Unlock()
}

// remember keeps a step's resolved targets for "@id".
func (sc *scope) remember(id string, targets []string) {
	sc.mu.Lock()
	sc.resolved[id] = targets
	sc.mu.Unlock()
}

// later runs fn after d, or at once when the scope closes first (undo now).
func (sc *scope) later(d time.Duration, fn func(ctx context.Context)) {
	sc.wg.Add(1)
	go func() {
		defer sc.wg.Done()
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-sc.bg.Done():
		}
		ctx, cancel := cleanupCtx()
		defer cancel()
		fn(ctx)
	}()
}

// take removes x's undo for node (every node's when node is "") and reports what it took
// and whether nothing of x is left, in which case x is no longer in place. eng.mu is held.
func (e *Engine) take(x *effect, node string) (nodes []string, todo []Undo, closed bool) {
	for _, n := range slices.Sorted(maps.Keys(x.undo)) { // in node order: replays undo alike
		if node == "" || n == node {
			nodes, todo = append(nodes, n), append(todo, x.undo[n])
			delete(x.undo, n)
		}
	}
	closed = len(todo) > 0 && len(x.undo) == 0
	if closed {
		e.active = slices.DeleteFunc(e.active, func(y *effect) bool { return y == x })
	}
	return nodes, todo, closed
}

// undo reverses an effect on node (every node when node is ""), unless something else
// undid it first; the window closes when nothing of the effect is left. by names the
// step that asked for it ("" for the effect's own timed undo). It reports whether there
// was anything to undo.
func (sc *scope) undo(ctx context.Context, x *effect, node, by string) bool {
	sc.eng.mu.Lock()
	nodes, todo, closed := sc.eng.take(x, node)
	sc.eng.mu.Unlock()
	if len(todo) == 0 {
		return false
	}
	who := nodes
	if len(nodes) == 1 && nodes[0] == "" {
		who = x.targets
	}
	detail := ""
	if by != "" && by != x.label {
		detail = "by " + by
	}
	sc.record(records.EventFaultAction, x.label, x.verb, who, detail)
	for _, u := range todo {
		if err := u(ctx); err != nil {
			sc.fail(x.label, fmt.Errorf("undo %s %v: %w", x.action, x.targets, err))
		}
	}
	if closed && x.window {
		sc.record(records.EventFaultEnd, x.label, x.verb, x.targets, "")
	}
	return true
}

// ended forgets node in the effects of the given kinds, in every scope: a later step
// (restart, continue, init) has undone them itself; action names it in the fault-end.
func (e *Engine) ended(node, action string, kinds ...Kind) {
	e.mu.Lock()
	var closedFx []*effect
	for _, x := range slices.Clone(e.active) {
		if !slices.Contains(kinds, x.kind) {
			continue
		}
		if _, _, closed := e.take(x, node); closed {
			closedFx = append(closedFx, x)
		}
	}
	e.mu.Unlock()
	for _, x := range closedFx {
		if x.window {
			x.sc.record(records.EventFaultEnd, x.label, action, x.targets, "")
		}
	}
}

// close waits for the scope's timed undos (cut short: the scope is over), then undoes
// what it still has in place, but for members that are down: nothing undid their kill or
// stop, and they stay down.
func (sc *scope) close() {
	sc.cancelBg()
	sc.wg.Wait()
	sc.eng.mu.Lock()
	var mine []*effect
	for _, x := range sc.eng.active {
		if x.sc == sc {
			mine = append(mine, x)
		}
	}
	sc.eng.mu.Unlock()
	ctx, cancel := cleanupCtx()
	defer cancel()
	for _, x := range mine {
		if x.kind == KindDown {
			if x.window {
				sc.record(records.EventFaultEnd, x.label, "", x.targets, "end of run; the killed or stopped members stay down")
			}
			continue
		}
		sc.undo(ctx, x, "", "")
	}
}

// probe calls a step's probe and records its outcome.
func (sc *scope) probe(ctx context.Context, label string, p Probe) {
	env := sc.env()
	from := p.From
	if from == "" {
		if cl := clients(env); len(cl) > 0 {
			from = cl[0]
		} else {
			from = env.Servers()[0]
		}
	}
	var r ProbeResult
	pr, err := capabilityOf[Prober](env, CapProbe)
	if err == nil {
		r, err = pr.Probe(ctx, from, p)
	}
	if err != nil {
		r.Error = err.Error()
	}
	out := ProbeOutcome{URL: p.URL, OK: r.OK(), ProbeResult: r}
	b, _ := json.Marshal(out)
	sc.emit(records.Event{Type: records.EventProbe, Fault: label, Node: from, Detail: string(b)})
}

// ProbeOutcome is the Detail of a probe event (JSON).
type ProbeOutcome struct {
	URL string `json:"url"`
	OK  bool   `json:"ok"`
	ProbeResult
}

// pick chooses k distinct elements with the engine's seeded source.
func (e *Engine) pick(from []string, k int) []string {
	e.rngMu.Lock()
	defer e.rngMu.Unlock()
	return pick(e.env.Rand(), from, k)
}

// withRand runs fn with the seeded source, serialised.
func (e *Engine) withRand(fn func(r *rand.Rand)) {
	e.rngMu.Lock()
	defer e.rngMu.Unlock()
	fn(e.env.Rand())
}

// resolve turns node names and selectors into node names, in order, without repeats.
// "follower" and "followers(k)" pick among the followers no process effect holds down
// when there are enough of them.
func (sc *scope) resolve(ctx context.Context, sel []string) ([]string, error) {
	env := sc.env()
	var out []string
	add := func(ns ...string) {
		for _, n := range ns {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	servers := env.Servers()
	leader := func() (string, error) {
		cv, err := capabilityOf[ClusterView](env, CapClusterView)
		if err != nil {
			return "", err
		}
		return cv.Leader(ctx)
	}
	upFollowers := func(l string, k int) []string {
		all := followers(env, l)
		down := sc.eng.Down()
		up := slices.DeleteFunc(slices.Clone(all), func(n string) bool { return down[n] != "" })
		if len(up) >= k {
			return up
		}
		return all
	}
	for _, s := range sel {
		if strings.HasPrefix(s, "@") {
			sc.mu.Lock()
			r, ok := sc.resolved[s[1:]]
			sc.mu.Unlock()
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
			add(sc.eng.pick(servers, (len(servers)-1)/2)...)
		case "majority":
			add(sc.eng.pick(servers, len(servers)/2+1)...)
		case "leader", "follower", "followers":
			l, err := leader()
			if err != nil {
				return nil, err
			}
			switch s {
			case "leader":
				add(l)
			case "follower":
				add(sc.eng.pick(upFollowers(l, 1), 1)...)
			default:
				add(followers(env, l)...)
			}
		default:
			if k, ok := countSelector(s, "random"); ok && k > 0 {
				add(sc.eng.pick(servers, k)...)
			} else if k, ok := countSelector(s, "followers"); ok && k > 0 {
				l, err := leader()
				if err != nil {
					return nil, err
				}
				add(sc.eng.pick(upFollowers(l, k), k)...)
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

// Call is one firing of a step, as an action sees it.
type Call struct {
	// Label names the step in events; Step is the step; Targets its resolved targets
	// (as written for an action with RawTargets).
	Label   string
	Step    Step
	Targets []string
	sc      *scope
}

// Env is the engine's env; the capabilities an action declared are on it.
func (c *Call) Env() Env { return c.sc.env() }

// Record appends an event of the step.
func (c *Call) Record(typ, action string, targets []string, detail string) {
	c.sc.record(typ, c.Label, action, targets, detail)
}

// Resolve resolves more selectors (a partition's groups).
func (c *Call) Resolve(ctx context.Context, sel []string) ([]string, error) {
	return c.sc.resolve(ctx, sel)
}

// Since is the timeline's clock.
func (c *Call) Since() time.Duration { return c.sc.since() }

// Sleep waits d on the timeline's clock; false when ctx ended first.
func (c *Call) Sleep(ctx context.Context, d time.Duration) bool {
	return c.sc.sleepUntil(ctx, c.sc.since()+d)
}

// Rand runs fn with the engine's seeded source (serialised: scopes run concurrently).
func (c *Call) Rand(fn func(r *rand.Rand)) { c.sc.eng.withRand(fn) }

// Ended says the step itself ended node's effects of these kinds (a restart ends a kill).
func (c *Call) Ended(node string, kinds ...Kind) { c.sc.eng.ended(node, c.Step.Action, kinds...) }

// Heal undoes the network effects that match (all when match is nil), in every scope,
// and returns their labels.
func (c *Call) Heal(ctx context.Context, match func(Effect) bool) []string {
	return c.sc.eng.Heal(ctx, c.Label, match)
}

// UndoOn undoes node's part of the effects that match and reports whether there was any.
func (c *Call) UndoOn(ctx context.Context, node string, match func(Effect) bool) bool {
	var todo []*effect
	c.sc.eng.mu.Lock()
	for _, x := range c.sc.eng.active {
		if match(x.info()) {
			todo = append(todo, x)
		}
	}
	c.sc.eng.mu.Unlock()
	found := false
	for _, x := range todo {
		if x.sc.undo(ctx, x, node, c.Label) {
			found = true
		}
	}
	return found
}

// Need returns the call's env as capability T (declared in the action's Form.Needs).
func Need[T any](c *Call, cp Capability) (T, error) { return capabilityOf[T](c.Env(), cp) }
