package shaping

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
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
	owned

	mu    sync.Mutex
	fams  []family
	links map[string]*usLink
}

type usLink struct {
	rules []Rule
	ds    []*delayer // one per distinct delay and jitter, or one for the loss alone
}

// NewUserspace returns the userspace backend for owner, working in the calling process's
// namespace unless [InNamespace] says otherwise. It changes nothing until Apply.
func NewUserspace(owner string, opts ...Option) (*Userspace, error) {
	o, err := newOwned(owner, opts)
	if err != nil {
		return nil, err
	}
	return &Userspace{owned: o, links: map[string]*usLink{}}, nil
}

// Name returns "userspace".
func (u *Userspace) Name() string { return NameUserspace }

// Apply sets iface's impairment to imp for every packet: ApplyRules with one default
// rule. A zero imp clears.
func (u *Userspace) Apply(ctx context.Context, iface string, imp Impairment) error {
	return applyOne(ctx, iface, imp, u.ApplyRules)
}

// ApplyRules sets iface's rules, replacing earlier ones without a moment unimpaired: new
// readers start before the rules that feed them, rule changes are atomic, a tree of
// rates is changed make-before-break, and a reader stops only after its rules are gone.
// No rules (or only unimpaired ones) clears. If any part fails, every part is removed and
// the error returned.
//
// Equivalent to (for each rule, each of its prefixes P; no -d for the default rule):
//
//	iptables -t mangle -N DT-<hash>-<iface>
//	iptables -t mangle -A DT-<hash>-<iface> -m mark --mark 0xd7000000/0xff000000 -m comment --comment dt:<owner> -j RETURN
//	iptables -t mangle -A DT-<hash>-<iface> -d P -m statistic --mode random --probability <Loss/100> -m comment --comment dt:<owner> -j MARK --set-xmark 0xd6000000/0xff000000
//	iptables -t mangle -A DT-<hash>-<iface> -d P -m comment --comment dt:<owner> -j NFQUEUE --queue-num <q of its delay>
//	    (loss only: -d P -m mark --mark 0xd6000000/0xff000000 ... -j NFQUEUE --queue-num <q>; -d P ... -j RETURN)
//	    (no impairment: -d P ... -j RETURN)
//	iptables -t mangle -I POSTROUTING 1 -o <iface> -m comment --comment dt:<owner> -j DT-<hash>-<iface>
//	tc qdisc replace dev <iface> root handle d7XX: tbf rate <Rate>bit burst <4 ms> latency 50ms   # one rate for all
//	    (rates per destination: an htb tree with tbf leaves, see tree.go)
//
// (and the same with ip6tables for IPv6 prefixes and the default rule), plus a reader of
// each queue in this process.
func (u *Userspace) ApplyRules(ctx context.Context, iface string, rules []Rule) error {
	rules, err := checkRules(iface, rules)
	if err != nil {
		return err
	}
	if len(rules) == 0 {
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
	if err := u.apply(ctx, iface, l, rules); err != nil {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
		defer cancel()
		undo := u.clearLocked(uctx, iface)
		return errors.Join(fmt.Errorf("shaping: apply %s to %s: %w", rulesString(rules), iface, err), undo)
	}
	u.links[iface] = l
	u.cfg.log.Debug("userspace shaping applied", "owner", u.owner, "iface", iface, "rules", rulesString(rules))
	return nil
}

// rulesString is "delay 20ms" for one default rule, else the rules joined by "; ".
func rulesString(rules []Rule) string {
	if len(rules) == 1 && rules[0].IsDefault() {
		return rules[0].Impairment.String()
	}
	s := make([]string, len(rules))
	for i, r := range rules {
		s[i] = r.String()
	}
	return strings.Join(s, "; ")
}

// Rules returns iface's rules as last applied by this backend (nil when clear).
func (u *Userspace) Rules(iface string) []Rule {
	u.mu.Lock()
	defer u.mu.Unlock()
	if l := u.links[iface]; l != nil {
		return slices.Clone(l.rules)
	}
	return nil
}

func (u *Userspace) apply(ctx context.Context, iface string, l *usLink, rules []Rule) error {
	// The link must exist here and now; otherwise iptables would happily match a name
	// that never carries traffic.
	h, link, err := u.cfg.link(iface)
	if err != nil {
		return err
	}
	defer h.Close()
	fams, err := u.families()
	if err != nil {
		return err
	}
	// Registered before a reader starts, so that a failure half-way is undone by Clear.
	u.links[iface] = l

	// One reader per distinct delay; lost packets of rules without a delay go to the
	// first reader, or to one without a delay when no rule has one.
	var need []delayParams
	index := map[delayParams]int{}
	queueOf := make([]int, len(rules)) // index into need, or -1
	lossQ := -1
	for i, r := range rules {
		queueOf[i] = -1
		if r.Delay > 0 {
			p := delayParams{delay: r.Delay, jitter: r.Jitter}
			j, ok := index[p]
			if !ok {
				j = len(need)
				index[p] = j
				need = append(need, p)
			}
			queueOf[i] = j
		}
	}
	for i, r := range rules {
		if r.Loss > 0 && r.Delay == 0 {
			if len(need) == 0 {
				need = append(need, delayParams{})
			}
			lossQ = 0
			queueOf[i] = lossQ
		}
	}
	ds, unused, err := u.assignDelayers(iface, l.ds, need)
	if err != nil {
		l.ds = unused // every reader this link has, for Clear to stop
		return err
	}
	l.ds = append(slices.Clone(ds), unused...)

	if len(ds) > 0 {
		byFam := map[string][]string{}
		for _, f := range fams {
			byFam[f.name] = chainRules(u.owner, iface, f, rules, func(i int) (uint16, bool) {
				if queueOf[i] < 0 {
					return 0, false
				}
				return ds[queueOf[i]].queue, true
			})
		}
		if err := u.cfg.installRules(ctx, fams, u.owner, iface, byFam); err != nil {
			return err
		}
	} else if err := u.cfg.removeRules(ctx, fams, u.owner, iface); err != nil {
		return err
	}

	plan, err := planTree(rules, treeRate)
	if err != nil {
		return err
	}
	switch leaf, uniform := plan.uniform(); {
	case uniform && leaf.Rate == 0:
		if err := deleteRoot(h, link, u.handle); err != nil {
			return err
		}
	case uniform:
		if err := replaceSingle(h, link, buildTbf(link.Attrs().Index, link.Attrs().MTU, u.handle, leaf.Rate)); err != nil {
			return err
		}
	default:
		if err := applyTree(h, link, u.handle, plan, treeRate); err != nil {
			return err
		}
	}

	var errs []error
	for _, d := range unused {
		errs = append(errs, d.stop(ctx))
	}
	l.ds = ds
	l.rules = rules
	return errors.Join(errs...)
}

// assignDelayers gives every needed delay a reader: one that has it already, else one
// whose delay is no longer needed (switched over), else a new one. It returns the readers
// in the order of need and the ones left over, which the caller stops once no rule feeds
// them any more.
func (u *Userspace) assignDelayers(iface string, have []*delayer, need []delayParams) (ds, unused []*delayer, err error) {
	ds = make([]*delayer, len(need))
	free := slices.Clone(have)
	for i, p := range need {
		for j, d := range free {
			if *d.params.Load() == p {
				ds[i] = d
				free = slices.Delete(free, j, j+1)
				break
			}
		}
	}
	for i, p := range need {
		if ds[i] != nil {
			continue
		}
		if len(free) > 0 {
			ds[i] = free[0]
			free = free[1:]
			ds[i].setParams(p)
			continue
		}
		d, err := u.startQueue(iface, p, ds, have)
		if err != nil {
			var started []*delayer
			for _, d := range ds {
				if d != nil && !slices.Contains(have, d) {
					started = append(started, d)
				}
			}
			return nil, append(slices.Clone(have), started...), err
		}
		ds[i] = d
	}
	return ds, free, nil
}

// startQueue binds the first free queue of the owner's block: not used by this backend
// on any interface, nor among taken, nor by another process in the namespace.
func (u *Userspace) startQueue(iface string, p delayParams, taken ...[]*delayer) (*delayer, error) {
	used := map[uint16]bool{}
	for _, l := range u.links {
		for _, d := range l.ds {
			used[d.queue] = true
		}
	}
	for _, ds := range taken {
		for _, d := range ds {
			if d != nil {
				used[d.queue] = true
			}
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

	h, link, err := u.cfg.link(iface)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf): // gone, and its qdisc with it
	case err != nil:
		errs = append(errs, err)
	default:
		errs = append(errs, deleteRoot(h, link, u.handle))
		h.Close()
	}

	if l := u.links[iface]; l != nil {
		for _, d := range l.ds {
			errs = append(errs, d.stop(ctx))
		}
		l.ds = nil
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

// Stats returns the delay readers' counters for iface, summed over its readers (Queue is
// the first reader's); false when iface has no reader.
func (u *Userspace) Stats(iface string) (QueueStats, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	l := u.links[iface]
	if l == nil || len(l.ds) == 0 {
		return QueueStats{}, false
	}
	var sum QueueStats
	for i, d := range l.ds {
		st := d.stats()
		if i == 0 {
			sum.Queue = st.Queue
		}
		sum.Received += st.Received
		sum.Lost += st.Lost
		sum.Sent += st.Sent
		sum.Held += st.Held
		sum.Overruns += st.Overruns
		sum.Overflows += st.Overflows
		sum.SendErrors += st.SendErrors
	}
	return sum, true
}

// Err reports readers that stopped on their own (their interface's delayed traffic is then
// dropped, never passed undelayed); nil when all run. An agent can poll it as a health
// check.
func (u *Userspace) Err() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	var errs []error
	for _, iface := range u.ifacesLocked() {
		for _, d := range u.links[iface].ds {
			if err := d.Err(); err != nil {
				errs = append(errs, fmt.Errorf("shaping: %s: nfqueue %d reader: %w", iface, d.queue, err))
			}
		}
	}
	return errors.Join(errs...)
}
