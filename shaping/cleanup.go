package shaping

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
)

// Inventory is what an owner has in one namespace.
type Inventory struct {
	Chains []string // "ipv4 mangle DT-1a2b3c4d-eth0"
	Rules  []string // rules outside those chains that jump to them or carry the owner's comment: "ipv4 mangle -A POSTROUTING ..."
	Qdiscs []string // "eth0 tbf d7ab: root"
	Queues []uint16 // bound NFQUEUE queues of the owner's block
}

// Empty reports whether the owner has nothing left.
func (inv Inventory) Empty() bool {
	return len(inv.Chains) == 0 && len(inv.Rules) == 0 && len(inv.Qdiscs) == 0 && len(inv.Queues) == 0
}

// String lists the objects one per line, or "none".
func (inv Inventory) String() string {
	var lines []string
	lines = append(lines, inv.Chains...)
	lines = append(lines, inv.Rules...)
	lines = append(lines, inv.Qdiscs...)
	for _, q := range inv.Queues {
		lines = append(lines, fmt.Sprintf("nfqueue %d", q))
	}
	if len(lines) == 0 {
		return "none"
	}
	return strings.Join(lines, "\n")
}

// List returns every object of owner in the namespace (the calling process's, or the one
// given with [InNamespace]).
//
// Equivalent to:
//
//	iptables-save -t mangle | grep -e DT-<hash>- -e dt:<owner>; ip6tables-save ... (the same)
//	tc qdisc show | grep 'd7XX: root'
//	cat /proc/net/netfilter/nfnetlink_queue   # queues of QueueRange(owner)
func List(ctx context.Context, owner string, opts ...Option) (Inventory, error) {
	var inv Inventory
	if err := validOwner(owner); err != nil {
		return inv, err
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return inv, err
	}
	defer cfg.close()
	ours := func(chain string) bool { return strings.HasPrefix(chain, chainPrefix(owner)) }

	fams, err := cfg.families()
	if err != nil {
		return inv, err
	}
	for _, f := range fams {
		st, err := cfg.saveMangle(ctx, f)
		if err != nil {
			return inv, err
		}
		for _, ch := range st.chains {
			if ours(ch) {
				inv.Chains = append(inv.Chains, f.name+" "+table+" "+ch)
			}
		}
		for _, r := range st.rules {
			if !ours(r.chain) && (ours(r.target) || r.comment == comment(owner)) {
				inv.Rules = append(inv.Rules, f.name+" "+table+" -A "+r.chain+" "+r.spec)
			}
		}
	}

	qd, err := ownedQdiscs(&cfg, QdiscHandle(owner))
	if err != nil {
		return inv, err
	}
	for _, q := range qd {
		inv.Qdiscs = append(inv.Qdiscs, fmt.Sprintf("%s %s %s root", q.iface, q.q.Type(), netlink.HandleStr(q.q.Attrs().Handle)))
	}

	queues, err := cfg.boundQueues()
	if err != nil {
		return inv, err
	}
	first, last := QueueRange(owner)
	for _, q := range queues {
		if q >= first && q <= last {
			inv.Queues = append(inv.Queues, q)
		}
	}
	return inv, nil
}

// CleanupNamespace removes every iptables chain and rule and every root qdisc of owner
// from the namespace (the calling process's, or the one given with [InNamespace]), e.g.
// after the process that applied them crashed. Queues need no removal: a queue lives only
// as long as the socket of the process reading it. Queues still bound by a live
// [Userspace] of this process are its business: Clear it first.
//
// Equivalent to:
//
//	iptables -t mangle -D POSTROUTING <each rule jumping to DT-<hash>-* or commented dt:<owner>>
//	iptables -t mangle -F DT-<hash>-<iface>; iptables -t mangle -X DT-<hash>-<iface>   # each chain
//	(the same with ip6tables)
//	tc qdisc del dev <iface> root handle d7XX:   # each interface that has it
func CleanupNamespace(ctx context.Context, owner string, opts ...Option) error {
	if err := validOwner(owner); err != nil {
		return err
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return err
	}
	defer cfg.close()
	ours := func(chain string) bool { return strings.HasPrefix(chain, chainPrefix(owner)) }

	var errs []error
	fams, err := cfg.families()
	if err != nil {
		return fmt.Errorf("shaping: cleanup %s: %w", owner, err)
	}
	for _, f := range fams {
		st, err := cfg.saveMangle(ctx, f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, cfg.restoreMangle(ctx, f, removalBody(st, ours, comment(owner))))
	}

	qd, err := ownedQdiscs(&cfg, QdiscHandle(owner))
	errs = append(errs, err)
	if len(qd) > 0 {
		h, err := cfg.handle()
		if err != nil {
			errs = append(errs, err)
		} else {
			for _, q := range qd {
				if err := h.QdiscDel(q.q); err != nil {
					errs = append(errs, fmt.Errorf("shaping: tc qdisc del dev %s root handle %s: %w", q.iface, netlink.HandleStr(q.q.Attrs().Handle), err))
				}
			}
			h.Close()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shaping: cleanup %s: %w", owner, err)
	}
	return nil
}

type ifaceQdisc struct {
	iface string
	q     netlink.Qdisc
}

// ownedQdiscs lists root qdiscs with handle on every interface of the namespace.
func ownedQdiscs(cfg *config, handle uint32) ([]ifaceQdisc, error) {
	h, err := cfg.handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("shaping: list links: %w", err)
	}
	var out []ifaceQdisc
	for _, l := range links {
		q, err := rootQdisc(h, l)
		if err != nil {
			return nil, err
		}
		if q != nil && q.Attrs().Handle == handle {
			out = append(out, ifaceQdisc{iface: l.Attrs().Name, q: q})
		}
	}
	return out, nil
}

// boundQueues lists the NFQUEUE queues that have a reader in the namespace.
//
// Equivalent to: cat /proc/net/netfilter/nfnetlink_queue
func (c *config) boundQueues() ([]uint16, error) {
	var queues []uint16
	err := c.do(func() error {
		// thread-self: /proc/self/net would show the main thread's namespace.
		f, err := os.Open("/proc/thread-self/net/netfilter/nfnetlink_queue")
		if errors.Is(err, os.ErrNotExist) {
			return nil // nfnetlink_queue not loaded: no queue can exist
		}
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) == 0 {
				continue
			}
			n, err := strconv.ParseUint(fields[0], 10, 16)
			if err == nil {
				queues = append(queues, uint16(n))
			}
		}
		return sc.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("shaping: list nfqueue queues: %w", err)
	}
	return queues, nil
}
