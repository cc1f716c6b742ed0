package shell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// command is one verb at the prompt.
type command struct {
	name    string
	aliases []string
	usage   string // arguments, e.g. "A B [--one-way]"
	summary string // one line for `help`
	help    string // more for `help NAME`
	system  bool   // needs a running system
	run     func(s *Shell, ctx context.Context, args []string) error
	// complete returns the candidates for the word being typed, given the words typed
	// before it after the command name; the caller keeps those that extend it.
	complete func(s *Shell, before []string, word string) []string
}

// table is every command in the order `help` lists them; set in init because `help`
// reads it.
var table []*command

func init() {
	table = []*command{
		{name: "help", usage: "[COMMAND]", summary: "list the commands, or explain one",
			run: (*Shell).cmdHelp, complete: func(s *Shell, before []string, _ string) []string {
				if len(before) > 0 {
					return nil
				}
				return s.commandNames()
			}},
		{name: "nodes", summary: "list the nodes: role, address, namespace (and the system's process)",
			run: (*Shell).cmdNodes},
		{name: "status", system: true, summary: "every member's view: leader, term, raft index, health; and the load",
			run: (*Shell).cmdStatus},
		{name: "leader", system: true, summary: "the current leader and its term",
			run: (*Shell).cmdLeader},
		{name: "pingall", usage: "[--timeout SECONDS]", summary: "ICMP reachability between every pair of nodes",
			help: "Each node sends an ICMP echo from its own namespace to every other node's address;\n" +
				"X marks a pair that got no reply. Partitions drop ICMP like any IP traffic.",
			run: (*Shell).cmdPingall, complete: flagsOnly("--timeout")},
		{name: "partition", usage: "A B [--one-way]", summary: "cut traffic between nodes or groups (s1,s2 s3); leader and follower work as names",
			help: "Both directions are cut unless --one-way, which drops only A -> B. `heal` undoes it.",
			run:  (*Shell).cmdPartition, complete: nodesThenFlags(2, "--one-way")},
		{name: "isolate", usage: "NODE", summary: "cut a node from every other node",
			run: (*Shell).cmdIsolate, complete: nodesThenFlags(1)},
		{name: "heal", usage: "[A [B]]", summary: "remove every partition; or those involving A; or the one between A and B",
			help: "heal alone removes every network fault of the run — cuts, links set with `link`, port\n" +
				"and link faults, including those of a running `fault` (which still ends on its own\n" +
				"schedule) — and the cuts of `dt partition` from another terminal.",
			run: (*Shell).cmdHeal, complete: nodesThenFlags(2)},
		{name: "link", usage: "A B [--delay D] [--jitter D] [--loss PCT] [--rate R] [--clear]", summary: "impair the link between two nodes (delay, jitter, loss, rate)",
			help: "D is a duration (50ms, 1.5s; a bare number is ms), PCT a percentage, R bits/s\n" +
				"(10mbit, 500kbit, 1gbit). --clear removes the impairment.",
			run: (*Shell).cmdLink, complete: nodesThenFlags(2, "--delay", "--jitter", "--loss", "--rate", "--clear")},
		{name: "kill", usage: "NODE|leader|follower...", system: true, summary: "SIGKILL the system's process on servers (`restart` brings it back)",
			run: (*Shell).cmdKill, complete: serversOnly},
		{name: "stop", usage: "NODE|leader|follower...", system: true, summary: "stop the system's process gracefully (SIGTERM, SIGKILL after 5 s)",
			run: (*Shell).cmdStop, complete: serversOnly},
		{name: "pause", usage: "NODE|leader|follower...", system: true, summary: "SIGSTOP the system's process (`continue` resumes it)",
			run: (*Shell).cmdPause, complete: serversOnly},
		{name: "continue", usage: "NODE|leader|follower...", system: true, summary: "SIGCONT a paused process",
			run: (*Shell).cmdContinue, complete: serversOnly},
		{name: "restart", usage: "NODE|leader|follower...", system: true, summary: "start a member again with its data (stopping it first if it runs)",
			run: (*Shell).cmdRestart, complete: serversOnly},
		{name: "fault", usage: "[NAME [--duration S] [--mtbf S] [--kill-n N] [--kill-target T] [--wait] | stop]", system: true,
			summary: "fire a registered fault now, with its heal; alone: list faults",
			help: "The fault's schedule is compressed: its window opens at once and lasts --duration\n" +
				"seconds, then the fault undoes what it did. It runs in the background (its steps are\n" +
				"printed as they happen) unless --wait; `fault stop` ends running faults early, `wait`\n" +
				"waits for them.",
			run: (*Shell).cmdFault, complete: completeFault},
		{name: "do", usage: "[ACTION [TARGET...] [FIELD=VALUE...]]",
			summary: "fire any step action now, as a scenario step (`do delay s1 delay=100ms duration=5s`); alone: list actions",
			help: "The step is the one a scenario file would run: the same action, fields and validation,\n" +
				"run by the same engine as kill, partition and fault. Targets are node names or selectors\n" +
				"(leader, follower, minority, random(2), @ID...); VALUE is read as YAML\n" +
				"(groups=[[s1],[s2,s3]]). With duration= the step undoes itself after it.",
			run: (*Shell).cmdDo, complete: completeDo},
		{name: "load", usage: "[start [RATE] | stop | rate N]", system: true, summary: "start, stop or re-rate the client workload (total ops/s); alone: show it",
			run: (*Shell).cmdLoad, complete: func(s *Shell, before []string, _ string) []string {
				if len(before) == 0 {
					return []string{"start", "stop", "rate"}
				}
				return nil
			}},
		{name: "events", usage: "[N] [-f]", system: true, summary: "the last N (20) events of the run's log; -f follows it until Ctrl-C",
			run: (*Shell).cmdEvents, complete: flagsOnly("-f")},
		{name: "wait", usage: "[faults|leader|healthy] [--timeout S]", summary: "wait for the running faults to end, for a leader, or for every member up to be healthy",
			run: (*Shell).cmdWait, complete: func(s *Shell, before []string, _ string) []string {
				if len(before) == 0 {
					return []string{"faults", "leader", "healthy", "--timeout"}
				}
				return []string{"--timeout"}
			}},
		{name: "sleep", usage: "SECONDS", summary: "pause a script",
			run: (*Shell).cmdSleep},
		{name: "exit", aliases: []string{"quit"}, summary: "tear everything down and leave (Ctrl-D too)",
			run: func(*Shell, context.Context, []string) error { return errExit }},
	}
}

// lookup finds a command by name or alias.
func lookup(name string) (*command, bool) {
	for _, c := range table {
		if c.name == name || slices.Contains(c.aliases, name) {
			return c, true
		}
	}
	return nil, false
}

// commandNames lists every command name and alias, and the system's client.
func (s *Shell) commandNames() []string {
	var out []string
	for _, c := range table {
		out = append(out, c.name)
		out = append(out, c.aliases...)
	}
	if c, ok := s.cliCommand(); ok {
		out = append(out, c.name)
	}
	return out
}

// find is lookup, and the system's client.
func (s *Shell) find(name string) (*command, bool) {
	if c, ok := lookup(name); ok {
		return c, true
	}
	if c, ok := s.cliCommand(); ok && c.name == name {
		return c, true
	}
	return nil, false
}

// flags returns a flag set for a command whose errors are returned, not printed.
func flags(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SetInterspersed(true)
	return fs
}

// parseFlags parses args and checks the number of positional arguments.
func parseFlags(fs *pflag.FlagSet, c string, args []string, minArgs, maxArgs int) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, usageError(c)
		}
		return nil, fmt.Errorf("%s: %w (%s)", c, err, usageOf(c))
	}
	pos := fs.Args()
	if len(pos) < minArgs || (maxArgs >= 0 && len(pos) > maxArgs) {
		return nil, usageError(c)
	}
	return pos, nil
}

func usageOf(name string) string {
	c, _ := lookup(name)
	return strings.TrimSpace("usage: " + c.name + " " + c.usage)
}

func usageError(name string) error { return errors.New(usageOf(name)) }

func (s *Shell) cmdHelp(_ context.Context, args []string) error {
	if len(args) > 0 {
		c, ok := s.find(args[0])
		if !ok {
			return fmt.Errorf("help: no command %q: commands are %s", args[0], strings.Join(s.commandNames(), ", "))
		}
		s.printf("%s %s\n  %s\n", c.name, c.usage, c.summary)
		if c.help != "" {
			s.printf("\n%s\n", indent(c.help, "  "))
		}
		if c.system && s.cluster == nil {
			s.printf("\n  (needs a system: this topology runs none)\n")
		}
		return nil
	}
	s.printf("Commands (Tab completes commands and node names; Ctrl-D or exit tears everything down):\n")
	for _, c := range table {
		if c.system && s.cluster == nil {
			continue
		}
		s.printf("  %-10s %-24s %s\n", c.name, shorten(c.usage, 24), c.summary)
	}
	if c, ok := s.cliCommand(); ok {
		s.printf("  %-10s %-24s %s\n", c.name, c.usage, c.summary)
	}
	s.printf("  %-10s %-24s %s\n", "NODE", "CMD [ARGS...]", "run a program in a node's namespace; node names in ARGS become addresses")
	if s.cluster == nil {
		s.printf("\nNo system runs here (`dt up etcd %s` starts one): status, kill, fault, load, events and\n"+
			"the system's own client (etcdctl, zkCli) need it.\n", s.live.Spec.Name)
	}
	s.printf("\nNodes: %s. `help COMMAND` says more.\n", strings.Join(s.live.Spec.NodeNames(), ", "))
	return nil
}

func indent(text, pre string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		lines[i] = pre + l
	}
	return strings.Join(lines, "\n")
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func (s *Shell) cmdSleep(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return usageError("sleep")
	}
	d, err := parseSeconds(args[0])
	if err != nil {
		return fmt.Errorf("sleep: %w", err)
	}
	return sleepCtx(ctx, d)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// parseSeconds reads "2", "0.5" (seconds) or a Go duration ("500ms", "1m").
func parseSeconds(v string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f < 0 {
			return 0, fmt.Errorf("%q: negative", v)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a number of seconds or a duration like 500ms", v)
	}
	return d, nil
}
