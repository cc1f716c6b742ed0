package shaping

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// do runs fn in the configured namespace: directly when none is set, otherwise on a
// fresh goroutine locked to its OS thread, switched into the namespace and back. Processes
// fn starts inherit the thread's namespace, which is how iptables runs there. A thread
// that cannot switch back stays locked, so the runtime discards it with the goroutine.
func (c *config) do(fn func() error) error {
	if c.ns < 0 {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("shaping: get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(c.ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("shaping: enter netns: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("shaping: return from netns: %w (thread discarded)", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// handle is a netlink handle bound to the configured namespace; close it after use.
func (c *config) handle() (*netlink.Handle, error) {
	var (
		h   *netlink.Handle
		err error
	)
	if c.ns < 0 {
		h, err = netlink.NewHandle()
	} else {
		h, err = netlink.NewHandleAt(c.ns)
	}
	if err != nil {
		return nil, fmt.Errorf("shaping: netlink handle: %w", err)
	}
	return h, nil
}

// nsFD is the namespace for sockets that take one (go-nfqueue's Config.NetNS): 0 = current.
func (c *config) nsFD() int {
	if c.ns < 0 {
		return 0
	}
	return int(c.ns)
}

// run executes argv in the configured namespace with stdin, returning stdout; stderr is
// folded into the error.
func (c *config) run(ctx context.Context, stdin string, argv ...string) (string, error) {
	var out string
	err := c.do(func() error {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
		}
		out = stdout.String()
		return nil
	})
	return out, err
}
