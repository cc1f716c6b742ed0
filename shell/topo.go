package shell

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/ovs"
	"github.com/dtlab/dt/topology"
)

// Names that stand for a node and are resolved when the command runs, by the fault
// engine, as a timeline's selectors are.
const (
	nameLeader   = "leader"   // the current leader
	nameFollower = "follower" // a follower (seeded), one no fault holds down if there is one
)

// leaderWait is how long a command naming the leader waits for one to be known.
const leaderWait = 5 * time.Second

// resolve maps a node argument to a node name.
func (s *Shell) resolve(ctx context.Context, arg string) (string, error) {
	switch arg {
	case nameLeader, nameFollower:
		if s.cluster == nil {
			return "", fmt.Errorf("%q: no system runs here, so there is no leader", arg)
		}
		l, err := s.cluster.Monitor.WaitLeader(ctx, leaderWait)
		if err != nil {
			return "", fmt.Errorf("%q: no leader known (%w); `wait leader` waits for one", arg, err)
		}
		if arg == nameLeader {
			return l, nil
		}
		r, err := s.sess.Resolve(ctx, []string{arg})
		if err != nil || len(r) == 0 {
			return "", fmt.Errorf("%q: no server besides the leader %s (%v)", arg, l, err)
		}
		return r[0], nil
	}
	if _, err := s.live.Spec.Node(arg); err != nil {
		return "", err
	}
	return arg, nil
}

// resolveGroup resolves "s1,leader" into node names.
func (s *Shell) resolveGroup(ctx context.Context, arg string) ([]string, error) {
	var out []string
	for _, p := range topology.SplitGroup(arg) {
		n, err := s.resolve(ctx, p)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty group %q", arg)
	}
	return out, nil
}

func (s *Shell) cmdNodes(ctx context.Context, args []string) error {
	if len(args) != 0 {
		return usageError("nodes")
	}
	s.printf("%-5s %-7s %-12s %-18s %s\n", "node", "role", "address", "namespace", "process")
	for _, n := range s.live.Spec.Nodes {
		proc := "-"
		if s.cluster != nil && n.Role == topology.Server {
			proc = s.procState(ctx, n.Name)
		}
		s.printf("%-5s %-7s %-12s %-18s %s\n", n.Name, n.Role, n.IP, topology.NetnsName(s.live.State.RunID, n.Name), proc)
	}
	return nil
}

// procState is the system process's state on a server, or why it is unknown.
func (s *Shell) procState(ctx context.Context, node string) string {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := s.cluster.ProcessState(ctx, node)
	if err != nil {
		return "unknown"
	}
	return st.State
}

func (s *Shell) cmdPartition(ctx context.Context, args []string) error {
	fs := flags("partition")
	oneWay := fs.Bool("one-way", false, "drop only A -> B")
	pos, err := parseFlags(fs, "partition", args, 2, 2)
	if err != nil {
		return err
	}
	a, err := s.resolveGroup(ctx, pos[0])
	if err != nil {
		return fmt.Errorf("partition: %w", err)
	}
	b, err := s.resolveGroup(ctx, pos[1])
	if err != nil {
		return fmt.Errorf("partition: %w", err)
	}
	cut := topology.Cut{A: a, B: b, OneWay: *oneWay}
	st := faults.Step{Action: "partition", Groups: [][]string{a, b}, OneWay: *oneWay}
	if err := s.sess.Fire(ctx, "partition "+cut.String(), st); err != nil {
		return err
	}
	s.printf("partitioned %s\n", cut)
	return nil
}

func (s *Shell) cmdIsolate(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return usageError("isolate")
	}
	n, err := s.resolve(ctx, args[0])
	if err != nil {
		return fmt.Errorf("isolate: %w", err)
	}
	var others []string
	for _, o := range s.live.Spec.NodeNames() {
		if o != n {
			others = append(others, o)
		}
	}
	cut := topology.Cut{A: []string{n}, B: others}
	if err := s.sess.Fire(ctx, "isolate "+n, faults.Step{Action: "isolate", Targets: []string{n}}); err != nil {
		return err
	}
	s.printf("isolated %s (%s)\n", n, cut)
	return nil
}

// isCut says an effect is a partition or an isolation.
func isCut(e faults.Effect) bool { return e.Action == "partition" || e.Action == "isolate" }

func (s *Shell) cmdHeal(ctx context.Context, args []string) error {
	if len(args) > 2 {
		return usageError("heal")
	}
	if len(args) == 0 {
		// Every network fault of the session (and of running faults) as a heal step, and
		// any cut made by `dt partition` from another terminal.
		if err := s.sess.Fire(ctx, "heal", faults.Step{Action: "heal"}); err != nil {
			return err
		}
		if err := s.live.HealAll(ctx); err != nil {
			return err
		}
		s.printf("healed all partitions\n")
		return nil
	}
	groups := make([][]string, len(args))
	for i, a := range args {
		g, err := s.resolveGroup(ctx, a)
		if err != nil {
			return fmt.Errorf("heal: %w", err)
		}
		groups[i] = g
	}
	match := func(e faults.Effect) bool {
		if !isCut(e) {
			return false
		}
		if len(groups) == 1 {
			for _, n := range groups[0] {
				if slices.Contains(e.Nodes, n) {
					return true
				}
			}
			return false
		}
		return sameSet(e.Nodes, append(slices.Clone(groups[0]), groups[1]...))
	}
	var labels []string
	for _, e := range s.eng.Active() {
		if match(e) {
			labels = append(labels, "@"+e.Label)
		}
	}
	var errs []error
	if len(labels) > 0 {
		if err := s.sess.Fire(ctx, "heal "+strings.Join(args, " "), faults.Step{Action: "heal", Targets: labels}); err != nil {
			errs = append(errs, err)
		}
		for _, l := range labels {
			s.printf("healed %s\n", strings.TrimPrefix(strings.TrimPrefix(l, "@partition "), "@"))
		}
	}
	if len(groups) == 2 {
		// A cut made by `dt partition` from another terminal has the same stable owner.
		a, b := groups[0], groups[1]
		for _, cut := range []topology.Cut{{A: a, B: b}, {A: a, B: b, OneWay: true}, {A: b, B: a, OneWay: true}} {
			if err := s.live.Heal(ctx, ovs.NewCookie(s.live.State.RunID, cut.Owner())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(labels) == 0 && len(errs) == 0 {
		if len(groups) == 2 {
			s.printf("no partition made here matches; healed any `dt partition %s`\n", strings.Join(args, " "))
		} else {
			s.printf("no partition made here involves %s\n", args[0])
		}
	}
	return errors.Join(errs...)
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// nodeCommand runs argv in node's namespace. Arguments naming a node become its address,
// as in Mininet: `c1 ping -c1 s1`.
func (s *Shell) nodeCommand(ctx context.Context, node string, argv []string) error {
	argv = append([]string(nil), argv...)
	for i := 1; i < len(argv); i++ {
		if n, err := s.live.Spec.Node(argv[i]); err == nil {
			argv[i] = n.IP
		}
	}
	return s.runIn(ctx, node, argv)
}
