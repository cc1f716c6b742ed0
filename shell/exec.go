package shell

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/dtlab/dt/topology"
)

// nodeEnv is the environment of a program run in node: dt's own, the node's name, the
// cluster's client settings (ETCDCTL_ENDPOINTS, ...) and DT_RUN_ID, so that whatever it
// leaves running is found and killed when the topology is torn down.
func (s *Shell) nodeEnv(node string) []string {
	env := append(os.Environ(), "DT_NODE="+node, "DT_RUN_ID="+s.live.State.RunID)
	if e := s.live.State.Extra["client_env"]; e != "" {
		for _, l := range strings.Split(e, "\n") {
			if l != "" {
				env = append(env, l)
			}
		}
	}
	return env
}

// runIn runs argv in node's namespace with the output going straight to the shell's
// output. On a terminal the program gets the terminal as its stdin and Ctrl-C goes to it,
// as at a shell; in a script its stdin is empty so it cannot eat the script.
func (s *Shell) runIn(ctx context.Context, node string, argv []string) error {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("%s: %w", argv[0], err)
	}
	cmd := &exec.Cmd{Path: path, Args: argv, Env: s.nodeEnv(node), Stdout: s.opts.Out, Stderr: s.opts.Err}
	if s.interactive {
		cmd.Stdin = os.Stdin
		s.childOwnsTTY.Store(true)
		defer s.childOwnsTTY.Store(false)
	}
	if err := startInNetns(topology.NetnsName(s.live.State.RunID, node), cmd); err != nil {
		return fmt.Errorf("%s on %s: %w", argv[0], node, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		// Interrupted: how the program ended does not matter, only that it did.
		select {
		case <-waited:
		case <-time.After(2 * time.Second):
			_ = cmd.Process.Kill()
			<-waited
		}
		return fmt.Errorf("%s on %s: %w", argv[0], node, ctx.Err())
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return fmt.Errorf("%s on %s: %s", argv[0], node, exit.ProcessState)
	}
	return err
}

// startInNetns starts cmd from an OS thread switched into the named namespace (the child
// inherits it). The switch happens in a goroutine of its own, so that a thread that
// cannot be switched back is retired with it rather than reused.
func startInNetns(netnsName string, cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		errc <- topology.InNetns(netnsName, cmd.Start)
	}()
	return <-errc
}
