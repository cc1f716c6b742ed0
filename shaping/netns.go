package shaping

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/dtlab/dt/internal/nsrun"
)

// do runs fn in the configured namespace: directly when none is set, otherwise on a
// thread switched into it (nsrun). Processes fn starts inherit the namespace, which is how
// iptables runs there.
func (c *config) do(fn func() error) error {
	if c.ns < 0 {
		return fn()
	}
	if err := nsrun.Do(c.ns, fn); err != nil {
		return fmt.Errorf("shaping: %w", err)
	}
	return nil
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

// link is a netlink handle bound to the configured namespace (close it after use) and
// iface's link there. The error wraps netlink.LinkNotFoundError when iface does not exist.
func (c *config) link(iface string) (*netlink.Handle, netlink.Link, error) {
	h, err := c.handle()
	if err != nil {
		return nil, nil, err
	}
	l, err := linkByName(h, iface)
	if err != nil {
		h.Close()
		return nil, nil, err
	}
	return h, l, nil
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
