package shaping

import (
	"errors"
	"fmt"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/dtlab/dt/internal/nsrun"
)

// Detect reports whether the kernel can run tc netem. It tries for real, on the loopback
// interface of a throwaway network namespace, so it neither touches the host's interfaces
// nor trusts module lists (netem may be built in, loadable or absent). The answer is
// computed once per process. It needs CAP_SYS_ADMIN and CAP_NET_ADMIN; without them the
// answer is false.
//
// Equivalent to: unshare -n tc qdisc add dev lo root netem delay 1ms
func Detect() bool { return detectNetem() == nil }

// detectNetem is Detect with the reason: nil, or an error wrapping ErrNetemUnavailable.
var detectNetem = sync.OnceValue(func() error {
	err := probeNetem()
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrNetemUnavailable, err)
})

func probeNetem() error {
	probe, err := nsrun.New()
	if err != nil {
		return fmt.Errorf("probe netns: %w", err)
	}
	defer probe.Close() // the last reference: the namespace goes with it

	h, err := netlink.NewHandleAt(probe)
	if err != nil {
		return fmt.Errorf("netlink handle in probe netns: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("probe netns loopback: %w", err)
	}
	q := buildNetem(lo.Attrs().Index, netlink.MakeHandle(1, 0), Impairment{Delay: 1e6})
	if err := h.QdiscAdd(q); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("tc qdisc add dev lo root netem: %w (kernel has no sch_netem)", err)
		}
		return fmt.Errorf("tc qdisc add dev lo root netem: %w", err)
	}
	return nil
}
