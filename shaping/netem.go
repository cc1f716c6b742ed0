package shaping

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Netem is the backend for kernels with sch_netem: one netem qdisc at the root of each
// impaired interface, handle [QdiscHandle]. It holds no goroutines; the kernel does all.
type Netem struct {
	owned

	mu      sync.Mutex
	applied map[string][]Rule
}

// NewNetem returns the netem backend for owner. It does not check that the kernel has
// netem; [Select] does, and Apply fails with [ErrNetemUnavailable] if it has not.
func NewNetem(owner string, opts ...Option) (*Netem, error) {
	o, err := newOwned(owner, opts)
	if err != nil {
		return nil, err
	}
	return &Netem{owned: o, applied: map[string][]Rule{}}, nil
}

// Name returns "netem".
func (n *Netem) Name() string { return NameNetem }

// Apply makes iface's root qdisc a netem with imp, or removes it when imp is zero: ApplyRules
// with one default rule.
//
// Equivalent to: tc qdisc replace dev <iface> root handle d7XX: netem delay <Delay> <Jitter> loss <Loss>% rate <Rate>bit limit <n>
func (n *Netem) Apply(ctx context.Context, iface string, imp Impairment) error {
	return applyOne(ctx, iface, imp, n.ApplyRules)
}

// ApplyRules sets iface's rules. When every packet gets the same impairment the root is a
// single netem qdisc; otherwise an htb classifier with u32 filters per destination and a
// netem leaf per distinct impairment (see tree.go), changed make-before-break. Switching
// between the two replaces the root: for that moment packets pass unshaped. A root qdisc
// that is neither the kernel's default nor the owner's is left alone and reported as
// [ErrForeignQdisc]. If the change fails, the owner's root is removed and the error
// returned.
//
// Equivalent to: tc qdisc replace dev <iface> root handle d7XX: netem ... (one impairment), or
//
//	tc qdisc add dev <iface> root handle d7XX: htb
//	tc class add dev <iface> parent d7XX: classid d7XX:<m> htb rate 100gbit
//	tc qdisc add dev <iface> parent d7XX:<m> handle d8<m>: netem delay ... loss ... rate ...
//	tc filter add dev <iface> parent d7XX: protocol ip prio <p> u32 match ip dst <prefix> flowid d7XX:<m>
//	tc filter add dev <iface> parent d7XX: protocol all prio <last> u32 match u32 0 0 flowid d7XX:<default>
func (n *Netem) ApplyRules(ctx context.Context, iface string, rules []Rule) error {
	rules, err := checkRules(iface, rules)
	if err != nil {
		return err
	}
	if len(rules) == 0 {
		return n.Clear(ctx, iface)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	plan, err := planTree(rules, treeNetem)
	if err != nil {
		return fmt.Errorf("shaping: %s: %w", iface, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	h, link, err := n.cfg.link(iface)
	if err != nil {
		return err
	}
	defer h.Close()
	if leaf, uniform := plan.uniform(); uniform {
		err = replaceSingle(h, link, buildNetem(link.Attrs().Index, n.handle, leaf))
	} else {
		err = applyTree(h, link, n.handle, plan, treeNetem)
	}
	if err != nil {
		if errors.Is(err, unix.ENOENT) && !errors.Is(err, ErrNetemUnavailable) {
			err = fmt.Errorf("%w: %w", ErrNetemUnavailable, err)
		}
		if _, ferr := checkRoot(h, link, n.handle); !errors.Is(ferr, ErrForeignQdisc) {
			err = errors.Join(err, deleteRoot(h, link, n.handle))
		}
		delete(n.applied, iface)
		return fmt.Errorf("shaping: apply %s to %s: %w", rulesString(rules), iface, err)
	}
	n.applied[iface] = rules
	n.cfg.log.Debug("netem applied", "owner", n.owner, "iface", iface, "rules", rulesString(rules))
	return nil
}

// Rules returns iface's rules as last applied by this backend (nil when clear).
func (n *Netem) Rules(iface string) []Rule {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.applied[iface])
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
	h, link, err := n.cfg.link(iface)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			delete(n.applied, iface) // the interface, and its qdisc, are gone
			return nil
		}
		return err
	}
	defer h.Close()
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
