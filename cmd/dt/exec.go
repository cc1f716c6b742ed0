package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/dtlab/dt/internal/nsrun"
	"github.com/dtlab/dt/topology"
	"github.com/spf13/cobra"
	"github.com/vishvananda/netns"
)

func newExecCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "exec NODE -- CMD [ARGS...]",
		Short: "Run a command in a node's network namespace",
		Example: `  dt exec s1 -- ip addr
  dt exec c1 -- ping -c 3 10.0.1.2`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return execInNode(args[0], args[1:], nil)
		},
	}
}

func newShellCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "shell NODE",
		Short: "Open an interactive shell in a node's network namespace (the prompt names the node)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := topology.FindLive(global.runID)
			if err != nil {
				return err
			}
			rc := filepath.Join(st.Dir, "shellrc-"+args[0])
			body := fmt.Sprintf("[ -f /etc/bash.bashrc ] && . /etc/bash.bashrc\n[ -f ~/.bashrc ] && . ~/.bashrc\nPS1='[dt %s %s] \\w\\$ '\n", st.RunID, args[0])
			if err := os.WriteFile(rc, []byte(body), 0o644); err != nil {
				return err
			}
			return execInNode(args[0], []string{"bash", "--rcfile", rc, "-i"}, nil)
		},
	}
}

// execInNode replaces dt with argv running in node's namespace, with the cluster's client
// environment (DT_NODE, DT_RUN_ID and what the system adds, e.g. ETCDCTL_ENDPOINTS).
func execInNode(node string, argv []string, extraEnv []string) error {
	if err := requireRoot(); err != nil {
		return err
	}
	st, err := topology.FindLive(global.runID)
	if err != nil {
		return err
	}
	if _, err := st.Spec.Node(node); err != nil {
		return err
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("command %q: %w", argv[0], err)
	}
	target, err := netns.GetFromName(topology.NetnsName(st.RunID, node))
	if err != nil {
		return fmt.Errorf("node %s of run %s: %w (is the topology still up? see dt ls)", node, st.RunID, err)
	}
	env := append(os.Environ(), "DT_NODE="+node, "DT_RUN_ID_OF_TOPOLOGY="+st.RunID)
	if e, ok := st.Extra["client_env"]; ok && e != "" {
		env = append(env, splitLines(e)...)
	}
	env = append(env, extraEnv...)
	defer target.Close()
	// execve keeps the namespace of the calling thread: exec from a thread switched into
	// the node's (nsrun), which goes back if the exec fails.
	if err := nsrun.Do(target, func() error { return syscall.Exec(path, argv, env) }); err != nil {
		return fmt.Errorf("exec %s in node %s: %w", argv[0], node, err)
	}
	return nil
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '\n' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}
