package shaping

import (
	"fmt"
	"math"
	"time"

	"github.com/vishvananda/netlink"
)

// tbfQueue is how long the tbf (and netem rate) queue may get before tail drop: about what
// a WAN router buffers, and the `latency` tc users usually give tbf.
const tbfQueue = 50 * time.Millisecond

// linkByName finds iface in the handle's namespace.
func linkByName(h *netlink.Handle, iface string) (netlink.Link, error) {
	l, err := h.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("shaping: interface %s: %w", iface, err)
	}
	return l, nil
}

// rootQdisc returns link's root qdisc, or nil when there is none listed.
func rootQdisc(h *netlink.Handle, link netlink.Link) (netlink.Qdisc, error) {
	qs, err := h.QdiscList(link)
	if err != nil {
		return nil, fmt.Errorf("shaping: list qdiscs of %s: %w", link.Attrs().Name, err)
	}
	for _, q := range qs {
		if q.Attrs().Parent == netlink.HANDLE_ROOT {
			return q, nil
		}
	}
	return nil, nil
}

// checkRoot reports whether link's root qdisc is ours (handle), and fails with
// ErrForeignQdisc when it is someone else's. A kernel default root (handle 0: noqueue,
// pfifo_fast, fq_codel, mq) is free to replace.
func checkRoot(h *netlink.Handle, link netlink.Link, handle uint32) (ours bool, err error) {
	q, err := rootQdisc(h, link)
	if err != nil || q == nil {
		return false, err
	}
	switch q.Attrs().Handle {
	case handle:
		return true, nil
	case 0:
		return false, nil
	}
	return false, fmt.Errorf("shaping: %s: %w: %s %s", link.Attrs().Name, ErrForeignQdisc, q.Type(), netlink.HandleStr(q.Attrs().Handle))
}

// replaceRoot installs q as link's root qdisc after checking the current root is ours or
// the kernel's default.
//
// Equivalent to: tc qdisc replace dev <iface> root handle d7XX: <kind> ...
func replaceRoot(h *netlink.Handle, link netlink.Link, q netlink.Qdisc) error {
	if _, err := checkRoot(h, link, q.Attrs().Handle); err != nil {
		return err
	}
	if err := h.QdiscReplace(q); err != nil {
		return fmt.Errorf("shaping: tc qdisc replace dev %s root handle %s %s: %w",
			link.Attrs().Name, netlink.HandleStr(q.Attrs().Handle), q.Type(), err)
	}
	return nil
}

// replaceSingle makes q link's root, first removing a root of ours of another kind (an
// htb tree, say), which tc cannot change in place: packets pass unshaped for that moment.
func replaceSingle(h *netlink.Handle, link netlink.Link, q netlink.Qdisc) error {
	cur, err := rootQdisc(h, link)
	if err != nil {
		return err
	}
	if cur != nil && cur.Attrs().Handle == q.Attrs().Handle && cur.Type() != q.Type() {
		if err := h.QdiscDel(cur); err != nil {
			return fmt.Errorf("shaping: tc qdisc del dev %s root handle %s: %w", link.Attrs().Name, netlink.HandleStr(q.Attrs().Handle), err)
		}
	}
	return replaceRoot(h, link, q)
}

// deleteRoot removes link's root qdisc if it carries handle; the kernel then puts its
// default back.
//
// Equivalent to: tc qdisc del dev <iface> root handle d7XX:
func deleteRoot(h *netlink.Handle, link netlink.Link, handle uint32) error {
	q, err := rootQdisc(h, link)
	if err != nil || q == nil || q.Attrs().Handle != handle {
		return err
	}
	if err := h.QdiscDel(q); err != nil {
		return fmt.Errorf("shaping: tc qdisc del dev %s root handle %s: %w", link.Attrs().Name, netlink.HandleStr(handle), err)
	}
	return nil
}

// buildTbf is the rate limiter of the userspace backend: rate bits/s, a burst of 4 ms at
// the rate (at least two full frames), and a queue of tbfQueue at the rate beyond it.
//
// Equivalent to: tc qdisc replace dev <iface> root handle d7XX: tbf rate <rate>bit burst <burst> limit <limit>
func buildTbf(linkIndex, mtu int, handle uint32, rateBits uint64) *netlink.Tbf {
	rate := rateBits / 8 // bytes/s, as the kernel counts
	frame := uint64(mtu + 14)
	burst := max(rate*4/1000, 2*frame)
	limit := burst + uint64(float64(rate)*tbfQueue.Seconds())
	return &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: linkIndex,
			Handle:    handle,
			Parent:    netlink.HANDLE_ROOT,
		},
		Rate:   rate,
		Limit:  uint32(min(limit, math.MaxUint32)),
		Buffer: netlink.Xmittime(rate, uint32(min(burst, math.MaxUint32))),
	}
}

// buildNetem is the single qdisc of the netem backend.
//
// Equivalent to: tc qdisc replace dev <iface> root handle d7XX: netem delay <d> <jitter> loss <l>% rate <r>bit limit <n>
func buildNetem(linkIndex int, handle uint32, imp Impairment) *netlink.Netem {
	return netlink.NewNetem(netlink.QdiscAttrs{
		LinkIndex: linkIndex,
		Handle:    handle,
		Parent:    netlink.HANDLE_ROOT,
	}, netlink.NetemQdiscAttrs{
		Latency: uint32(imp.Delay.Microseconds()),
		Jitter:  uint32(imp.Jitter.Microseconds()),
		Loss:    float32(imp.Loss),
		Rate64:  imp.Rate / 8,
		Limit:   netemLimit(imp),
	})
}

// netemLimit sizes netem's queue, in packets. netem holds every packet for its whole delay,
// so the default 1000 would tail-drop above 1000 packets per delay (50 kpkt/s at 20 ms).
// Allow 100 kpkt/s for delay+jitter; with a rate, queue at most tbfQueue of full frames
// beyond what the rate lets through during the delay, as the userspace backend's tbf does.
func netemLimit(imp Impairment) uint32 {
	hold := (imp.Delay + imp.Jitter).Seconds()
	if imp.Rate == 0 {
		return uint32(max(1000, math.Ceil(hold*100_000)))
	}
	pps := float64(imp.Rate) / 8 / 1514
	return uint32(max(64, math.Ceil((hold+tbfQueue.Seconds())*pps)))
}
