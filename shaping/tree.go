package shaping

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Per-destination rules need a classful root qdisc. This kernel has htb but no prio
// (measured: prio, drr, hfsc, ets, multiq are all missing), so both backends use htb as a
// classifier:
//
//	htb d7XX: root                              (no default class)
//	  class d7XX:<m>  rate = ceil = 100 Gbit    one per distinct leaf
//	    qdisc d8<m>:  tbf (userspace: the rate) or netem (netem backend); none when unimpaired
//	  u32 filters in rule order: ip dst P / ip6 dst P -> class; the last matches all -> the
//	  default rule's class
//
// htb cannot change its default class ("Change operation not supported"), so the default
// is a match-all filter instead, and a change is made before it is broken: the new
// classes, leaves and filters are added in the other generation of minors and filter
// priorities, then the old ones are removed. While both exist a packet is classified by
// one generation or the other, never by neither.

const (
	genMinor     = 0x80 // class minors: generation 0 uses 0x01-0x7f, generation 1 0x81-0xff
	maxClasses   = genMinor - 1
	leafMajor    = 0xd800 // a class's leaf qdisc is d8<minor>: (roots are d7XX:, so no clash)
	filterSpan   = 0x3f00 // filter priorities per generation; the last is the match-all
	unlimitedBit = 100e9  // an htb class that only classifies
	classQuantum = 60000  // no class borrows from another, so any sane quantum will do
	filterBase0  = 0x0100 // generation 0's first filter priority
	filterBase1  = 0x4100 // generation 1's
	treeMaxPrefs = filterSpan - 1
)

// treeKind is what a tree's leaves do.
type treeKind int

const (
	treeRate  treeKind = iota // userspace backend: tbf leaves for rates (delay and loss are iptables')
	treeNetem                 // netem backend: netem leaves with the whole impairment
)

// leafKey is the part of imp a tree's leaf implements.
func (k treeKind) leafKey(imp Impairment) Impairment {
	if k == treeRate {
		return Impairment{Rate: imp.Rate}
	}
	return imp
}

// treePlan is the shape of a tree, before any handle is chosen.
type treePlan struct {
	leaves  []Impairment // per class: what its leaf does (zero: no leaf)
	filters []treeFilter // in rule order
	def     int          // the class of packets no filter matched
}

type treeFilter struct {
	dst   netip.Prefix
	class int
}

// planTree groups rules by what their leaf must do. Unmatched packets go to the default
// rule's class, or to an unimpaired one.
func planTree(rules []Rule, kind treeKind) (treePlan, error) {
	var p treePlan
	index := map[Impairment]int{}
	classOf := func(imp Impairment) int {
		k := kind.leafKey(imp)
		i, ok := index[k]
		if !ok {
			i = len(p.leaves)
			index[k] = i
			p.leaves = append(p.leaves, k)
		}
		return i
	}
	p.def = -1
	for _, r := range rules {
		c := classOf(r.Impairment)
		if r.IsDefault() {
			p.def = c
			continue
		}
		for _, d := range r.Dst {
			p.filters = append(p.filters, treeFilter{dst: d.Masked(), class: c})
		}
	}
	if p.def < 0 {
		p.def = classOf(Impairment{})
	}
	if len(p.leaves) > maxClasses {
		return p, fmt.Errorf("%d distinct impairments on one interface; at most %d", len(p.leaves), maxClasses)
	}
	if len(p.filters) > treeMaxPrefs {
		return p, fmt.Errorf("%d destination prefixes on one interface; at most %d", len(p.filters), treeMaxPrefs)
	}
	return p, nil
}

// uniform returns the one leaf every packet gets when the tree would send all traffic to
// one class; then a single root qdisc does the job without a tree.
func (p treePlan) uniform() (Impairment, bool) {
	for _, f := range p.filters {
		if f.class != p.def {
			return Impairment{}, false
		}
	}
	return p.leaves[p.def], true
}

// treeObjects are the kernel objects of one generation of a tree.
type treeObjects struct {
	root    *netlink.Htb
	classes []*netlink.HtbClass
	leaves  []netlink.Qdisc
	filters []*netlink.U32
}

func classMinor(gen, i int) uint16 { return uint16(gen*genMinor + i + 1) }

func filterBase(gen int) uint16 {
	if gen == 0 {
		return filterBase0
	}
	return filterBase1
}

// genOfMinor is the generation a class minor belongs to.
func genOfMinor(minor uint16) int {
	if minor&genMinor != 0 {
		return 1
	}
	return 0
}

// buildTree makes generation gen of plan's tree on link under root handle.
//
// Equivalent to:
//
//	tc qdisc add dev <iface> root handle d7XX: htb
//	tc class add dev <iface> parent d7XX: classid d7XX:<m> htb rate 100gbit ceil 100gbit quantum 60000
//	tc qdisc add dev <iface> parent d7XX:<m> handle d8<m>: tbf ... | netem ...
//	tc filter add dev <iface> parent d7XX: protocol ip prio <p> u32 match ip dst <prefix> flowid d7XX:<m>
//	tc filter add dev <iface> parent d7XX: protocol all prio <last> u32 match u32 0 0 flowid d7XX:<default>
func buildTree(linkIndex, mtu int, handle uint32, gen int, plan treePlan, kind treeKind) treeObjects {
	major := uint16(handle >> 16)
	var o treeObjects
	o.root = netlink.NewHtb(netlink.QdiscAttrs{LinkIndex: linkIndex, Handle: handle, Parent: netlink.HANDLE_ROOT})
	for i, leaf := range plan.leaves {
		minor := classMinor(gen, i)
		class := netlink.MakeHandle(major, minor)
		o.classes = append(o.classes, netlink.NewHtbClass(
			netlink.ClassAttrs{LinkIndex: linkIndex, Parent: handle, Handle: class},
			netlink.HtbClassAttrs{Rate: unlimitedBit, Ceil: unlimitedBit, Quantum: classQuantum},
		))
		lh := netlink.MakeHandle(leafMajor|minor, 0)
		switch {
		case leaf.IsZero():
		case kind == treeRate:
			q := buildTbf(linkIndex, mtu, lh, leaf.Rate)
			q.Parent = class
			o.leaves = append(o.leaves, q)
		default:
			q := buildNetem(linkIndex, lh, leaf)
			q.Parent = class
			o.leaves = append(o.leaves, q)
		}
	}
	base := filterBase(gen)
	for i, f := range plan.filters {
		o.filters = append(o.filters, u32Dst(linkIndex, handle, base+uint16(i), f.dst, netlink.MakeHandle(major, classMinor(gen, f.class))))
	}
	o.filters = append(o.filters, u32All(linkIndex, handle, base+filterSpan-1, netlink.MakeHandle(major, classMinor(gen, plan.def))))
	return o
}

// u32Dst classifies packets to dst into class.
//
// Equivalent to: tc filter add dev <iface> parent d7XX: protocol ip prio <prio> u32 match ip dst <dst> flowid <class>
// (protocol ipv6 ... match ip6 dst for IPv6)
func u32Dst(linkIndex int, parent uint32, prio uint16, dst netip.Prefix, class uint32) *netlink.U32 {
	proto, off := uint16(unix.ETH_P_IP), int32(16) // IPv4 destination address
	if dst.Addr().Is6() {
		proto, off = unix.ETH_P_IPV6, 24
	}
	addr := dst.Addr().AsSlice()
	var keys []nl.TcU32Key
	for w := 0; w < len(addr)/4; w++ {
		bits := min(max(dst.Bits()-32*w, 0), 32)
		if bits == 0 && len(keys) > 0 {
			break
		}
		mask := uint32(0)
		if bits > 0 {
			mask = ^uint32(0) << (32 - bits)
		}
		val := binary.BigEndian.Uint32(addr[4*w:]) & mask
		keys = append(keys, nl.TcU32Key{Mask: mask, Val: val, Off: off + int32(4*w)})
		if bits < 32 {
			break
		}
	}
	return &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: linkIndex, Parent: parent, Priority: prio, Protocol: proto},
		ClassId:     class,
		Sel:         &nl.TcU32Sel{Flags: nl.TC_U32_TERMINAL, Keys: keys},
	}
}

// u32All classifies every packet, IP or not, into class.
//
// Equivalent to: tc filter add dev <iface> parent d7XX: protocol all prio <prio> u32 match u32 0 0 flowid <class>
func u32All(linkIndex int, parent uint32, prio uint16, class uint32) *netlink.U32 {
	return &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: linkIndex, Parent: parent, Priority: prio, Protocol: unix.ETH_P_ALL},
		ClassId:     class,
		Sel:         &nl.TcU32Sel{Flags: nl.TC_U32_TERMINAL, Keys: []nl.TcU32Key{{}}},
	}
}

// applyTree makes link's root the tree of plan, replacing an earlier tree without a
// moment unclassified, or an earlier single qdisc of ours (briefly unshaped then). On
// error the caller removes the root.
func applyTree(h *netlink.Handle, link netlink.Link, handle uint32, plan treePlan, kind treeKind) error {
	name := link.Attrs().Name
	q, err := rootQdisc(h, link)
	if err != nil {
		return err
	}
	gen := 0
	switch {
	case q == nil || q.Attrs().Handle == 0:
		if _, err := checkRoot(h, link, handle); err != nil {
			return err
		}
	case q.Attrs().Handle != handle:
		return fmt.Errorf("shaping: %s: %w: %s %s", name, ErrForeignQdisc, q.Type(), netlink.HandleStr(q.Attrs().Handle))
	case q.Type() != "htb":
		// A single qdisc of ours (tbf, netem) cannot become an htb in place.
		if err := h.QdiscDel(q); err != nil {
			return fmt.Errorf("shaping: tc qdisc del dev %s root handle %s: %w", name, netlink.HandleStr(handle), err)
		}
		q = nil
	default:
		classes, err := h.ClassList(link, handle)
		if err != nil {
			return fmt.Errorf("shaping: tc class show dev %s: %w", name, err)
		}
		for _, c := range classes {
			if c.Attrs().Handle>>16 == handle>>16 && genOfMinor(uint16(c.Attrs().Handle)) == 0 {
				gen = 1 // the current tree is generation 0
			}
		}
	}
	o := buildTree(link.Attrs().Index, link.Attrs().MTU, handle, gen, plan, kind)
	if q == nil || q.Attrs().Handle == 0 {
		if err := h.QdiscReplace(o.root); err != nil {
			return fmt.Errorf("shaping: tc qdisc replace dev %s root handle %s htb: %w", name, netlink.HandleStr(handle), err)
		}
	}
	for _, c := range o.classes {
		if err := h.ClassReplace(c); err != nil {
			return fmt.Errorf("shaping: tc class replace dev %s classid %s htb: %w", name, netlink.HandleStr(c.Handle), err)
		}
	}
	for _, l := range o.leaves {
		if err := h.QdiscReplace(l); err != nil {
			if errors.Is(err, unix.ENOENT) && l.Type() == "netem" {
				err = fmt.Errorf("%w: %w", ErrNetemUnavailable, err)
			}
			return fmt.Errorf("shaping: tc qdisc replace dev %s parent %s %s: %w", name, netlink.HandleStr(l.Attrs().Parent), l.Type(), err)
		}
	}
	for _, f := range o.filters {
		if err := h.FilterAdd(f); err != nil {
			return fmt.Errorf("shaping: tc filter add dev %s prio %d u32: %w", name, f.Priority, err)
		}
	}
	return removeGeneration(h, link, handle, 1-gen)
}

// removeGeneration deletes the filters and classes (with their leaves) of generation gen.
//
// Equivalent to: tc filter del dev <iface> parent d7XX: prio <p> (each); tc class del dev <iface> classid d7XX:<m> (each)
func removeGeneration(h *netlink.Handle, link netlink.Link, handle uint32, gen int) error {
	name := link.Attrs().Name
	filters, err := h.FilterList(link, handle)
	if err != nil {
		return fmt.Errorf("shaping: tc filter show dev %s: %w", name, err)
	}
	base := filterBase(gen)
	done := map[[2]uint16]bool{}
	for _, f := range filters {
		a := f.Attrs()
		key := [2]uint16{a.Priority, a.Protocol}
		if a.Priority < base || a.Priority >= base+filterSpan || done[key] {
			continue
		}
		done[key] = true
		// Handle 0 removes the whole u32 instance at this priority and protocol.
		del := &netlink.U32{FilterAttrs: netlink.FilterAttrs{LinkIndex: a.LinkIndex, Parent: handle, Priority: a.Priority, Protocol: a.Protocol}}
		if err := h.FilterDel(del); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("shaping: tc filter del dev %s prio %d: %w", name, a.Priority, err)
		}
	}
	classes, err := h.ClassList(link, handle)
	if err != nil {
		return fmt.Errorf("shaping: tc class show dev %s: %w", name, err)
	}
	for _, c := range classes {
		a := c.Attrs()
		if a.Handle>>16 != handle>>16 || a.Handle&0xffff == 0 || genOfMinor(uint16(a.Handle)) != gen {
			continue
		}
		if err := h.ClassDel(c); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("shaping: tc class del dev %s classid %s: %w", name, netlink.HandleStr(a.Handle), err)
		}
	}
	return nil
}
