// Package shell is dt's debug prompt into a live topology: `dt up etcd simple`,
// `dt up simple` and `dt run ... --debug` open it. It owns the prompt and nothing below
// it: parsing a typed line, the command table and its help, tab completion, the
// interactive line editor on a terminal, and the scripted mode that reads commands from
// a pipe. Commands act through the live topology (package topology) and, when a system
// runs, through the cluster (package experiment); every line typed is recorded in the
// run's events.jsonl as a "command" event, and every action with its targets, so that a
// session can be analysed like a run.
package shell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dtlab/dt/experiment"
	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/records"
	"github.com/dtlab/dt/topology"
)

// Prompt is what the interactive prompt shows and what scripted mode echoes before each
// command.
const Prompt = "dt> "

// Options are what a shell acts on and how it talks.
type Options struct {
	// Live is the topology; required.
	Live *topology.Live
	// Cluster is the running system; nil for a topology without one (`dt up simple`),
	// where the system's commands say so.
	Cluster *experiment.Cluster
	// Load drives the client workload; nil without a system. The shell stops it at exit.
	Load *experiment.Load
	// Faults is the fault engine every fault command is a step of; nil: the cluster's
	// (Cluster.FaultEngine), or the topology's without one.
	Faults *faults.Engine
	// Params are the defaults of `fault`'s flags; Window the default of --duration.
	Params faults.Params
	Window time.Duration
	// Links impairs links for `link`; nil = Live (through the nodes' agents).
	Links LinkShaper
	// Out and Err receive the output (default os.Stdout and os.Stderr).
	Out, Err io.Writer
}

// Shell is one session at the prompt.
type Shell struct {
	live    *topology.Live
	cluster *experiment.Cluster
	load    *experiment.Load
	opts    Options

	// session is the context of the whole session: background work (faults, the load)
	// lives as long as it, not as long as the command that started it.
	session context.Context

	outMu sync.Mutex // serialises output: commands and background notes share it
	out   io.Writer  // the terminal at the prompt (it redraws the line being typed), else Options.Out
	err   io.Writer

	interactive  bool        // on a terminal: node commands get the terminal as stdin
	childOwnsTTY atomic.Bool // a node command runs in the foreground and gets Ctrl-C itself

	// eng runs every fault of the session; sess is the prompt's own scope on it: each
	// fault command is a step fired there, resolved and undone as in a timeline.
	eng  *faults.Engine
	sess *faults.Session

	mu      sync.Mutex
	running []*backgroundFault // faults fired with `fault`
	nfault  int
}

// backgroundFault is a fault fired with `fault`, running in its own goroutine.
type backgroundFault struct {
	id     int
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// New returns a shell over o.Live (and o.Cluster when set).
func New(o Options) *Shell {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Err == nil {
		o.Err = os.Stderr
	}
	eng := o.Faults
	if eng == nil {
		var links faults.Links
		if o.Links != nil {
			links = o.Links
		}
		if o.Cluster != nil {
			eng = o.Cluster.FaultEngine(links)
		} else {
			eng = experiment.NetworkEngine(o.Live, nil, links, 0)
		}
	}
	return &Shell{live: o.Live, cluster: o.Cluster, load: o.Load, opts: o, out: o.Out, err: o.Err,
		eng: eng, sess: eng.Session(), session: context.Background()}
}

// errExit is returned by `exit`.
var errExit = errors.New("exit")

// ErrCommandsFailed is wrapped by the error of a script in which some commands failed.
var ErrCommandsFailed = errors.New("commands failed")

// Exec parses and runs one line, recording it first. An empty line or a comment does
// nothing. It returns errExit for `exit`.
func (s *Shell) Exec(ctx context.Context, line string) error {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return nil
	}
	s.record(records.Event{Type: records.EventCommand, Detail: line})
	args, err := Split(line)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		return nil
	}
	err = s.dispatch(ctx, args)
	if err != nil && !errors.Is(err, errExit) {
		s.record(records.Event{Type: records.EventError, Detail: fmt.Sprintf("command %q: %v", line, err)})
	}
	return err
}

// dispatch runs a parsed command: a command of the table, else NODE CMD....
func (s *Shell) dispatch(ctx context.Context, args []string) error {
	if c, ok := s.find(args[0]); ok {
		if c.system && s.cluster == nil {
			return fmt.Errorf("%s: no system runs in this topology (start one with `dt up etcd %s`)", c.name, s.live.Spec.Name)
		}
		return c.run(s, ctx, args[1:])
	}
	if _, err := s.live.Spec.Node(args[0]); err == nil {
		if len(args) == 1 {
			return fmt.Errorf("%s: what should it run? e.g. `%s ip addr`", args[0], args[0])
		}
		return s.nodeCommand(ctx, args[0], args[1:])
	}
	return fmt.Errorf("unknown command %q: commands are %s; or a node name (%s) followed by a program",
		args[0], strings.Join(s.commandNames(), ", "), strings.Join(s.live.Spec.NodeNames(), ", "))
}

// record appends an event to the run's log; a topology without a system has none.
func (s *Shell) record(e records.Event) {
	if s.cluster != nil {
		s.cluster.Record(e)
	}
}

// printf writes command output.
func (s *Shell) printf(format string, a ...any) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	fmt.Fprintf(s.out, format, a...)
}

// Note writes a line about something that happened in the background (a fault's step,
// a failed client): on a terminal it appears above the prompt without disturbing what is
// being typed.
func (s *Shell) Note(format string, a ...any) {
	s.printf(format+"\n", a...)
}

// Close ends what the session started in the background: it cancels the faults fired
// with `fault` (each undoes what it did) and stops the load. It does not tear the
// topology down.
func (s *Shell) Close() error {
	s.mu.Lock()
	running := append([]*backgroundFault(nil), s.running...)
	s.mu.Unlock()
	for _, f := range running {
		f.cancel()
	}
	for _, f := range running {
		<-f.done
	}
	// What the prompt left in place is undone (members it took down stay down) and its
	// fault windows close in events.jsonl.
	s.sess.Close()
	if s.load != nil {
		if st := s.load.Status(); st.Running {
			s.printf("stopping the load\n")
		}
		return s.load.Stop()
	}
	return nil
}
