package shaping

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// undoTimeout bounds the cleanup after a failed Apply when the caller's context is done.
const undoTimeout = 10 * time.Second

// Userspace is the backend for kernels without netem. Per interface:
//
//   - delay and jitter: an NFQUEUE rule, and in this process a reader that copies each
//     packet and drops the original, and a scheduler that sends the copy out of iface
//     through a raw socket, marked [MarkSent], when its delay is over (see the package doc
//     for the distribution and ordering);
//   - loss: an iptables statistic rule that marks packets [MarkLost]; the reader drops
//     them silently, as netem does (an iptables DROP would tell a local TCP sender, which
//     then just sends again: see delayer.go);
//   - rate: a tbf root qdisc, handle [QdiscHandle].
//
// The reader lives as long as the process: in dt the node's agent owns the Userspace. If
// the process dies, the rules stay and, having no --queue-bypass, drop the delayed traffic
// rather than pass it undelayed until [CleanupNamespace] removes them.
//
// Its precision is that of a userspace process: tens of microseconds on an idle host,
// worse when the CPUs are saturated (a higher scheduling priority for the agent helps).
// It needs CAP_NET_ADMIN and CAP_NET_RAW.
type Userspace struct {
	owner  string
	handle uint32
	cfg    config

	mu    sync.Mutex
	fams  []family
	links map[string]*usLink
}

type usLink struct {
	imp Impairment
	d   *delayer
}

// NewUserspace returns the userspace backend for owner, working in the calling process's
// namespace unless [InNamespace] says otherwise. It changes nothing until Apply.
func NewUserspace(owner string, opts ...Option) (*Userspace, error) {
	if err := validOwner(owner); err != nil {
		return nil, err
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Userspace{owner: owner, handle: QdiscHandle(owner), cfg: cfg, links: map[string]*usLink{}}, nil
}

// Name returns "userspace".
func (u *Userspace) Name() string { return NameUserspace }

// Apply sets iface's impairment to imp, replacing an earlier one without a moment
// unimpaired: a delay's reader starts before its rule, rule changes are atomic, and a
// reader stops only after its rule is gone. A zero imp clears. If any part fails, every
// part is removed and the error returned.
//
// Equivalent to:
//
//	iptables -t mangle -N DT-<hash>-<iface>
//	iptables -t mangle -A DT-<hash>-<iface> -m mark --mark 0xd7000000/0xff000000 -m comment --comment dt:<owner> -j RETURN
//	iptables -t mangle -A DT-<hash>-<iface> -m statistic --mode random --probability <Loss/100> -m comment --comment dt:<owner> -j MARK --set-xmark 0xd6000000/0xff000000
//	iptables -t mangle -A DT-<hash>-<iface> -m comment --comment dt:<owner> -j NFQUEUE --queue-num <q>
//	    (loss only: -m mark --mark 0xd6000000/0xff000000 ... -j NFQUEUE --queue-num <q>)
//	iptables -t mangle -I POSTROUTING 1 -o <iface> -m comment --comment dt:<owner> -j DT-<hash>-<iface>
//	tc qdisc replace dev <iface> root handle d7XX: tbf rate <Rate>bit burst <4 ms> latency 50ms
//
// (and the same with ip6tables), plus a reader of queue q in this process.
func (u *Userspace) Apply(ctx context.Context, iface string, imp Impairment) error {
	if err := validIface(iface); err != nil {
		return err
	}
	if err := imp.Validate(); err != nil {
		return fmt.Errorf("shaping: %s: %w", iface, err)
	}
	if imp.IsZero() {
		return u.Clear(ctx, iface)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	l := u.links[iface]
	if l == nil {
		l = &usLink{}
	}
	if err := u.apply(ctx, iface, l, imp); err != nil {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
		defer cancel()
		undo := u.clearLocked(uctx, iface)
		return errors.Join(fmt.Errorf("shaping: apply %q to %s: %w", imp.String(), iface, err), undo)
	}
	u.links[iface] = l
	u.cfg.log.Debug("userspace shaping applied", "owner", u.owner, "iface", iface, "impairment", imp.String())
	return nil
}

func (u *Userspace) apply(ctx context.Context, iface string, l *usLink, imp Impairment) error {
	// The link must exist here and now; otherwise iptables would happily match a name
	// that never carries traffic.
	h, err := u.cfg.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := linkByName(h, iface)
	if err != nil {
		return err
	}
	fams, err := u.families()
	if err != nil {
		return err
	}
	// Registered before the reader starts, so that a failure half-way is undone by Clear.
	u.links[iface] = l

	delay := imp.Delay > 0
	queued := delay || imp.Loss > 0 // lost packets are dropped by the delayer too
	params := delayParams{delay: imp.Delay, jitter: imp.Jitter}
	switch {
	case queued && l.d == nil:
		d, err := u.startQueue(iface, params)
		if err != nil {
			return err
		}
		l.d = d
	case queued:
		l.d.setParams(params)
	}

	var queue uint16
	if l.d != nil {
		queue = l.d.queue
	}
	if queued {
		rules := chainRules(u.owner, iface, imp.Loss, queue, delay)
		if err := u.cfg.installRules(ctx, fams, u.owner, iface, rules); err != nil {
			return err
		}
	} else if err := u.cfg.removeRules(ctx, fams, u.owner, iface); err != nil {
		return err
	}

	if imp.Rate > 0 {
		if err := replaceRoot(h, link, buildTbf(link.Attrs().Index, link.Attrs().MTU, u.handle, imp.Rate)); err != nil {
			return err
		}
	} else if err := deleteRoot(h, link, u.handle); err != nil {
		return err
	}

	if !queued && l.d != nil {
		err := l.d.stop(ctx)
		l.d = nil
		if err != nil {
			return err
		}
	}
	l.imp = imp
	return nil
}

// startQueue binds the first free queue of the owner's block.
func (u *Userspace) startQueue(iface string, p delayParams) (*delayer, error) {
	used := map[uint16]bool{}
	for _, l := range u.links {
		if l.d != nil {
			used[l.d.queue] = true
		}
	}
	first, last := QueueRange(u.owner)
	for q := int(first); q <= int(last); q++ {
		if used[uint16(q)] {
			continue
		}
		d, err := startDelayer(&u.cfg, iface, uint16(q), p)
		if errors.Is(err, unix.EBUSY) {
			continue // bound by another process in this namespace
		}
		return d, err
	}
	return nil, fmt.Errorf("shaping: queues %d-%d: %w", first, last, ErrNoQueue)
}

func (u *Userspace) families() ([]family, error) {
	if u.fams == nil {
		fams, err := u.cfg.families()
		if err != nil {
			return nil, err
		}
		u.fams = fams
	}
	return u.fams, nil
}

// Clear removes the owner's rules, qdisc and reader for iface. Packets held by the reader
// are still released on time, unless ctx ends first: then at once.
//
// Equivalent to:
//
//	iptables -t mangle -D POSTROUTING -o <iface> -m comment --comment dt:<owner> -j DT-<hash>-<iface>
//	iptables -t mangle -F DT-<hash>-<iface>; iptables -t mangle -X DT-<hash>-<iface>
//	tc qdisc del dev <iface> root handle d7XX:
func (u *Userspace) Clear(ctx context.Context, iface string) error {
	if err := validIface(iface); err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.clearLocked(ctx, iface)
}

func (u *Userspace) clearLocked(ctx context.Context, iface string) error {
	var errs []error
	// Rules first, so that the reader has nothing more coming when it stops.
	fams, err := u.families()
	if err == nil {
		err = u.cfg.removeRules(ctx, fams, u.owner, iface)
	}
	errs = append(errs, err)

	if h, err := u.cfg.handle(); err != nil {
		errs = append(errs, err)
	} else {
		link, err := linkByName(h, iface)
		var nf netlink.LinkNotFoundError
		switch {
		case errors.As(err, &nf): // gone, and its qdisc with it
		case err != nil:
			errs = append(errs, err)
		default:
			errs = append(errs, deleteRoot(h, link, u.handle))
		}
		h.Close()
	}

	if l := u.links[iface]; l != nil && l.d != nil {
		errs = append(errs, l.d.stop(ctx))
		l.d = nil
	}
	delete(u.links, iface)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shaping: clear %s: %w", iface, err)
	}
	return nil
}

// Close clears every interface this backend impaired and releases its namespace handle.
func (u *Userspace) Close(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	var errs []error
	for _, iface := range u.ifacesLocked() {
		errs = append(errs, u.clearLocked(ctx, iface))
	}
	u.cfg.close()
	return errors.Join(errs...)
}

func (u *Userspace) ifacesLocked() []string {
	ifaces := make([]string, 0, len(u.links))
	for i := range u.links {
		ifaces = append(ifaces, i)
	}
	sort.Strings(ifaces)
	return ifaces
}

// Stats returns the delay reader's counters for iface; false when iface has no delay.
func (u *Userspace) Stats(iface string) (QueueStats, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if l := u.links[iface]; l != nil && l.d != nil {
		return l.d.stats(), true
	}
	return QueueStats{}, false
}

// Err reports readers that stopped on their own (their interface's delayed traffic is then
// dropped, never passed undelayed); nil when all run. An agent can poll it as a health
// check.
func (u *Userspace) Err() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	var errs []error
	for _, iface := range u.ifacesLocked() {
		if d := u.links[iface].d; d != nil {
			if err := d.Err(); err != nil {
				errs = append(errs, fmt.Errorf("shaping: %s: nfqueue %d reader: %w", iface, d.queue, err))
			}
		}
	}
	return errors.Join(errs...)
}
