package shell

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dtlab/dt/experiment"
	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/systems"
)

func (s *Shell) cmdStatus(ctx context.Context, args []string) error {
	if len(args) != 0 {
		return usageError("status")
	}
	c := s.cluster
	mon := c.Monitor
	if l := mon.Leader(); l != "" {
		s.printf("leader: %s (term %d)\n", l, mon.Term())
	} else {
		s.printf("leader: none known\n")
	}
	s.printf("%-6s %-8s %-6s %-6s %-7s %s\n", "member", "process", "leader", "term", "index", "health")
	sts := mon.Statuses()
	for i, m := range c.Members.Members {
		st := sts[i]
		leader := "-"
		if st.LeaderID != "" && st.LeaderID != "0" {
			if leader = mon.MemberName(st.LeaderID); leader == "" {
				leader = st.LeaderID
			}
		}
		health := "healthy"
		switch {
		case st.Member == "":
			health = "not polled yet"
		case st.Error != "":
			health = "error: " + tail(oneLine(st.Error), 70)
		case !st.Healthy:
			health = "unhealthy: knows no leader"
		}
		term, index := "-", "-"
		if st.Error == "" && st.Member != "" {
			term, index = strconv.FormatUint(st.Term, 10), strconv.FormatUint(st.Index, 10)
		}
		s.printf("%-6s %-8s %-6s %-6s %-7s %s\n", m.Name, s.procState(ctx, m.Name), leader, term, index, health)
	}
	if s.load != nil {
		s.printf("%s\n", loadLine(s.load.Status()))
	}
	return nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// tail keeps the end of a long error, where the cause is ("connection refused").
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n+1:]
}

func (s *Shell) cmdLeader(ctx context.Context, args []string) error {
	if len(args) != 0 {
		return usageError("leader")
	}
	if l := s.cluster.Monitor.Leader(); l != "" {
		s.printf("%s (term %d)\n", l, s.cluster.Monitor.Term())
		return nil
	}
	s.printf("none known: an election may be under way, or no majority is up (`wait leader` waits)\n")
	return nil
}

// process actions on servers ------------------------------------------------------------

// procAction fires the step action on each named server, one step per server labelled
// "ACTION NODE": the names are resolved first (leader, follower, as in a timeline), then
// each step is recorded before it is applied.
func (s *Shell) procAction(ctx context.Context, action, done string, args []string) error {
	if len(args) == 0 {
		return usageError(action)
	}
	var nodes []string
	for _, a := range args {
		n, err := s.resolve(ctx, a)
		if err != nil {
			return fmt.Errorf("%s: %w", action, err)
		}
		if !s.isServer(n) {
			return fmt.Errorf("%s: %s is not a server: servers are %s", action, n, strings.Join(s.servers(), ", "))
		}
		if !slices.Contains(nodes, n) {
			nodes = append(nodes, n)
		}
	}
	var errs []error
	for _, n := range nodes {
		was := ""
		if n == s.cluster.Monitor.Leader() {
			was = " (was the leader)"
		}
		if err := s.sess.Fire(ctx, action+" "+n, faults.Step{Action: action, Targets: []string{n}}); err != nil {
			errs = append(errs, err)
			continue
		}
		s.printf("%s %s%s\n", done, n, was)
	}
	return errors.Join(errs...)
}

func (s *Shell) isServer(n string) bool { return slices.Contains(s.servers(), n) }

func (s *Shell) servers() []string {
	var out []string
	for _, n := range s.live.Spec.Servers() {
		out = append(out, n.Name)
	}
	return out
}

func (s *Shell) cmdKill(ctx context.Context, args []string) error {
	return s.procAction(ctx, "kill", "killed", args)
}

func (s *Shell) cmdStop(ctx context.Context, args []string) error {
	return s.procAction(ctx, "stop", "stopped", args)
}

func (s *Shell) cmdPause(ctx context.Context, args []string) error {
	return s.procAction(ctx, "pause", "paused", args)
}

func (s *Shell) cmdContinue(ctx context.Context, args []string) error {
	return s.procAction(ctx, "continue", "continued", args)
}

func (s *Shell) cmdRestart(ctx context.Context, args []string) error {
	return s.procAction(ctx, "restart", "restarted", args)
}

// faults -----------------------------------------------------------------------------

func (s *Shell) cmdFault(ctx context.Context, args []string) error {
	if len(args) == 0 {
		s.printf("Faults (`fault NAME --duration S` fires one now):\n%s", faults.Help())
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, f := range s.running {
			s.printf("running: #%d %s\n", f.id, f.name)
		}
		return nil
	}
	if args[0] == "stop" {
		if len(args) != 1 {
			return errors.New("usage: fault stop")
		}
		s.mu.Lock()
		running := append([]*backgroundFault(nil), s.running...)
		s.mu.Unlock()
		if len(running) == 0 {
			s.printf("no fault is running\n")
			return nil
		}
		for _, f := range running {
			f.cancel()
		}
		for _, f := range running {
			<-f.done
			s.printf("stopped #%d %s (undone)\n", f.id, f.name)
		}
		return nil
	}
	fs := flags("fault")
	p := s.opts.Params
	window := s.opts.Window
	if window <= 0 {
		window = 10 * time.Second
	}
	durationArg := fs.String("duration", strconv.FormatFloat(window.Seconds(), 'g', -1, 64), "seconds the fault's window lasts")
	mtbfArg := fs.String("mtbf", strconv.FormatFloat(p.MTBF.Seconds(), 'g', -1, 64), "seconds between toggles of intermittent faults")
	fs.IntVar(&p.KillN, "kill-n", p.KillN, "kill-n: how many members")
	fs.StringVar(&p.KillTarget, "kill-target", p.KillTarget, "kill-n: leader | follower | any")
	wait := fs.Bool("wait", false, "wait until the fault is over")
	pos, err := parseFlags(fs, "fault", args, 1, 1)
	if err != nil {
		return err
	}
	name := pos[0]
	if _, err := faults.Lookup(name); err != nil {
		return fmt.Errorf("fault: %w", err)
	}
	if window, err = parseSeconds(*durationArg); err != nil || window <= 0 {
		return fmt.Errorf("fault: --duration %q: want a positive number of seconds", *durationArg)
	}
	if p.MTBF, err = parseSeconds(*mtbfArg); err != nil {
		return fmt.Errorf("fault: --mtbf: %w", err)
	}
	fctx, cancel := context.WithCancel(s.session)
	s.mu.Lock()
	s.nfault++
	f := &backgroundFault{id: s.nfault, name: name, cancel: cancel, done: make(chan struct{})}
	s.running = append(s.running, f)
	s.mu.Unlock()
	tag := fmt.Sprintf("[fault #%d %s]", f.id, name)
	go func() {
		defer close(f.done)
		defer cancel()
		f.err = s.eng.RunNow(fctx, name, window, p, func(e records.Event) {
			s.Note("%s %s", tag, describeEvent(e))
		})
		s.mu.Lock()
		s.running = slices.DeleteFunc(s.running, func(x *backgroundFault) bool { return x == f })
		s.mu.Unlock()
		switch {
		case f.err != nil:
			s.record(records.Event{Type: records.EventError, Fault: name, Detail: f.err.Error()})
			s.Note("%s failed: %v", tag, f.err)
		case !*wait:
			s.Note("%s over", tag)
		}
	}()
	s.printf("%s fired: window %s, then undone; `fault stop` ends it early\n", tag, window)
	if !*wait {
		return nil
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		cancel()
		<-f.done
		return fmt.Errorf("fault %s: interrupted and undone", name)
	}
	if f.err != nil {
		return fmt.Errorf("fault %s: %w", name, f.err)
	}
	s.printf("%s over\n", tag)
	return nil
}

// describeEvent is one event in a line: "partition s1 <-> s3", "end heal", "leader s2 term 4".
func describeEvent(e records.Event) string {
	var parts []string
	add := func(p ...string) {
		for _, x := range p {
			if x != "" {
				parts = append(parts, x)
			}
		}
	}
	fault := false
	switch e.Type {
	case records.EventFaultStart, records.EventFaultAction:
		fault = true
		add(e.Action)
	case records.EventFaultEnd:
		fault = true
		add("end", e.Action)
	case records.EventLeader:
		add(e.Type, cmp.Or(e.Leader, "none"))
		if e.Term != 0 {
			add("term " + strconv.FormatUint(e.Term, 10))
		}
	default:
		add(e.Type, e.Node, e.Leader)
		if e.Term != 0 {
			add("term " + strconv.FormatUint(e.Term, 10))
		}
	}
	if e.Detail != "" {
		add(e.Detail)
	} else if fault {
		add(strings.Join(e.Targets, ","))
	}
	return strings.Join(parts, " ")
}

// load -------------------------------------------------------------------------------

func loadLine(st experiment.LoadStatus) string {
	if !st.Running {
		return fmt.Sprintf("load: stopped (next start: %g ops/s over %d client(s))", st.Rate, st.Clients)
	}
	return fmt.Sprintf("load: running at %g ops/s over %d client(s); last second %.0f ok ops/s, p99 %.1f ms",
		st.Rate, st.Clients, st.OKRate, st.P99ms)
}

func (s *Shell) cmdLoad(ctx context.Context, args []string) error {
	if s.load == nil {
		return errors.New("load: this session has no workload")
	}
	if len(args) == 0 {
		s.printf("%s\n", loadLine(s.load.Status()))
		return nil
	}
	rateArg := func(v string) (float64, error) {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || !(r > 0) {
			return 0, fmt.Errorf("load: rate %q: want ops/s > 0", v)
		}
		return r, nil
	}
	switch args[0] {
	case "start":
		if len(args) > 2 {
			return usageError("load")
		}
		var rate float64
		if len(args) == 2 {
			r, err := rateArg(args[1])
			if err != nil {
				return err
			}
			rate = r
		}
		if err := s.load.Start(s.session, rate); err != nil {
			return fmt.Errorf("load: %w", err)
		}
	case "stop":
		if len(args) != 1 {
			return usageError("load")
		}
		if err := s.load.Stop(); err != nil {
			return fmt.Errorf("load: %w", err)
		}
	case "rate":
		if len(args) != 2 {
			return usageError("load")
		}
		r, err := rateArg(args[1])
		if err != nil {
			return err
		}
		if err := s.load.SetRate(s.session, r); err != nil {
			return fmt.Errorf("load: %w", err)
		}
	default:
		return usageError("load")
	}
	s.printf("%s\n", loadLine(s.load.Status()))
	return nil
}

// events -----------------------------------------------------------------------------

func (s *Shell) cmdEvents(ctx context.Context, args []string) error {
	fs := flags("events")
	follow := fs.BoolP("follow", "f", false, "keep printing new events until Ctrl-C")
	pos, err := parseFlags(fs, "events", args, 0, 1)
	if err != nil {
		return err
	}
	n := 20
	if len(pos) == 1 {
		if n, err = strconv.Atoi(pos[0]); err != nil || n < 0 {
			return fmt.Errorf("events: %q is not a number of events", pos[0])
		}
	}
	path := filepath.Join(s.cluster.RunDir, records.EventsFile)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	defer f.Close()
	var lines []string
	r := bufio.NewReader(f)
	var partial string
	readLines := func() {
		for {
			l, err := r.ReadString('\n')
			if err != nil { // io.EOF: keep the partial line for later
				partial += l
				return
			}
			lines = append(lines, partial+l)
			partial = ""
		}
	}
	readLines()
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for _, l := range lines {
		s.printf("%s\n", formatEventLine(l))
	}
	if !*follow {
		return nil
	}
	for {
		lines = lines[:0]
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return nil // Ctrl-C ends following
		}
		readLines()
		for _, l := range lines {
			s.printf("%s\n", formatEventLine(l))
		}
	}
}

// formatEventLine renders one line of events.jsonl: the time, the type and what happened.
func formatEventLine(line string) string {
	var e records.Event
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		return strings.TrimSpace(line)
	}
	var what string
	switch e.Type {
	case records.EventFaultStart, records.EventFaultAction, records.EventFaultEnd:
		what = e.Fault + ": " + describeEvent(e)
	case records.EventCommand:
		what = e.Detail
	default:
		what = strings.TrimSpace(strings.TrimPrefix(describeEvent(e), e.Type))
	}
	return fmt.Sprintf("%9.3fs  %-13s %s", e.T, e.Type, what)
}

// the system's own client -------------------------------------------------------------

// cliCommand is the command that runs the system's own client (etcdctl, zkCli), when it
// has one (systems.CLIer).
func (s *Shell) cliCommand() (*command, bool) {
	if s.cluster == nil {
		return nil, false
	}
	cl, ok := s.cluster.Sys.(systems.CLIer)
	if !ok {
		return nil, false
	}
	cli := cl.CLI(s.cluster.Members)
	return &command{name: cli.Name, usage: "ARGS...", system: true, summary: cli.Summary,
		run: func(s *Shell, ctx context.Context, args []string) error {
			return s.runIn(ctx, s.clientNode(), append(slices.Clone(cli.Argv), args...))
		},
		complete: func(_ *Shell, before []string, _ string) []string {
			if len(before) == 0 {
				return cli.Complete
			}
			return nil
		}}, true
}

// clientNode is where the system's client runs: the first client node, else the first
// server.
func (s *Shell) clientNode() string {
	if cs := s.live.Spec.Clients(); len(cs) > 0 {
		return cs[0].Name
	}
	return s.live.Spec.Servers()[0].Name
}

// wait -------------------------------------------------------------------------------

func (s *Shell) cmdWait(ctx context.Context, args []string) error {
	fs := flags("wait")
	timeoutArg := fs.String("timeout", "", "give up after this many seconds (default: faults never, leader/healthy 30)")
	pos, err := parseFlags(fs, "wait", args, 0, 1)
	if err != nil {
		return err
	}
	what := "faults"
	if len(pos) == 1 {
		what = pos[0]
	}
	var timeout time.Duration
	if *timeoutArg != "" {
		if timeout, err = parseSeconds(*timeoutArg); err != nil {
			return fmt.Errorf("wait: --timeout: %w", err)
		}
	} else if what != "faults" {
		timeout = 30 * time.Second
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	start := time.Now()
	switch what {
	case "faults":
		s.mu.Lock()
		running := append([]*backgroundFault(nil), s.running...)
		s.mu.Unlock()
		for _, f := range running {
			select {
			case <-f.done:
			case <-ctx.Done():
				return fmt.Errorf("wait: fault #%d %s still running: %w", f.id, f.name, ctx.Err())
			}
		}
		s.printf("no fault running\n")
		return nil
	case "leader", "healthy":
		if s.cluster == nil {
			return errors.New("wait: no system runs here")
		}
		for {
			l, ok := s.ready(what == "healthy")
			if ok {
				s.printf("leader %s (term %d) after %.1fs\n", l, s.cluster.Monitor.Term(), time.Since(start).Seconds())
				return nil
			}
			if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
				return fmt.Errorf("wait %s: %w", what, err)
			}
		}
	default:
		return usageError("wait")
	}
}

// ready reports a leader that is up (not taken down at the prompt, answering) and, with
// all, whether every member not taken down is healthy too.
func (s *Shell) ready(all bool) (string, bool) {
	mon := s.cluster.Monitor
	l := mon.Leader()
	if l == "" {
		return "", false
	}
	down := s.eng.Down()
	if down[l] != "" {
		return "", false
	}
	for _, st := range mon.Statuses() {
		if down[st.Member] != "" {
			continue
		}
		if st.Member == l && (st.Error != "" || !st.Healthy) {
			return "", false
		}
		if all && (st.Member == "" || !st.Healthy) {
			return "", false
		}
	}
	return l, true
}
