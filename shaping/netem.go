package shaping

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Netem is the backend for kernels with sch_netem: one netem qdisc at the root of each
// impaired interface, handle [QdiscHandle]. It holds no goroutines; the kernel does all.
type Netem struct {
	owner  string
	handle uint32
	cfg    config

	mu      sync.Mutex
	applied map[string]bool
}

// NewNetem returns the netem backend for owner. It does not check that the kernel has
// netem; [Select] does, and Apply fails with [ErrNetemUnavailable] if it has not.
func NewNetem(owner string, opts ...Option) (*Netem, error) {
	if err := validOwner(owner); err != nil {
		return nil, err
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Netem{owner: owner, handle: QdiscHandle(owner), cfg: cfg, applied: map[string]bool{}}, nil
}

// Name returns "netem".
func (n *Netem) Name() string { return NameNetem }

// Apply makes iface's root qdisc a netem with imp, or removes it when imp is zero. A root
// qdisc that is neither the kernel's default nor the owner's is left alone and reported
// as [ErrForeignQdisc].
//
// Equivalent to: tc qdisc replace dev <iface> root handle d7XX: netem delay <Delay> <Jitter> loss <Loss>% rate <Rate>bit limit <n>
func (n *Netem) Apply(ctx context.Context, iface string, imp Impairment) error {
	if err := validIface(iface); err != nil {
		return err
	}
	if err := imp.Validate(); err != nil {
		return fmt.Errorf("shaping: %s: %w", iface, err)
	}
	if imp.IsZero() {
		return n.Clear(ctx, iface)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	h, err := n.cfg.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := linkByName(h, iface)
	if err != nil {
		return err
	}
	if err := replaceRoot(h, link, buildNetem(link.Attrs().Index, n.handle, imp)); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("%w: %w", ErrNetemUnavailable, err)
		}
		return err
	}
	n.applied[iface] = true
	n.cfg.log.Debug("netem applied", "owner", n.owner, "iface", iface, "impairment", imp.String())
	return nil
}

// Clear removes the owner's root qdisc from iface, if there is one.
//
// Equivalent to: tc qdisc del dev <iface> root handle d7XX:
func (n *Netem) Clear(ctx context.Context, iface string) error {
	if err := validIface(iface); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	h, err := n.cfg.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := linkByName(h, iface)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			delete(n.applied, iface) // the interface, and its qdisc, are gone
			return nil
		}
		return err
	}
	if err := deleteRoot(h, link, n.handle); err != nil {
		return err
	}
	delete(n.applied, iface)
	return nil
}

// Close clears every interface this backend impaired and releases its namespace handle.
func (n *Netem) Close(ctx context.Context) error {
	n.mu.Lock()
	ifaces := make([]string, 0, len(n.applied))
	for i := range n.applied {
		ifaces = append(ifaces, i)
	}
	n.mu.Unlock()
	var errs []error
	for _, i := range ifaces {
		errs = append(errs, n.Clear(ctx, i))
	}
	n.cfg.close()
	return errors.Join(errs...)
}
