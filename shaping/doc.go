// Package shaping owns link impairments — one-way delay, jitter, loss and rate — on the
// egress of one interface inside one network namespace, and every kernel object it creates
// for them: a root qdisc, an iptables chain with its jump rule, and NFQUEUE queues.
//
// Two backends implement [Backend]:
//
//   - [Netem]: one tc netem qdisc (delay, jitter, loss and rate). Used where the kernel has
//     sch_netem, which most distribution kernels do.
//   - [Userspace]: for kernels without netem. Delay and jitter: an iptables NFQUEUE rule and
//     a reader in the calling process that takes a copy of each packet, drops the original
//     and sends the copy on through a raw socket when its time has come (holding the
//     original instead would throttle TCP; see delayer.go). Loss: the iptables statistic
//     match marks packets, which the reader drops silently (a DROP rule would tell local
//     TCP senders, which then resend at once). Rate: a tc tbf qdisc.
//
// [Select] picks one by name ("auto", "netem", "userspace"); "auto" uses [Detect]. A backend
// that cannot apply an impairment returns an error: it never runs without it.
//
// # Semantics (both backends)
//
// An [Impairment] applies to packets leaving the interface. A path that crosses one shaped
// egress in each direction gets Delay one way and 2·Delay round trip. Jitter adds a
// uniformly distributed offset in [-Jitter, +Jitter] to each packet's delay (clamped at
// zero), which is netem's own distribution when no distribution table is given. Loss drops
// each packet independently with probability Loss/100, before it is delayed. Rate limits
// the interface to Rate bits/s of layer-2 bytes with a queue of about 50 ms, tail drop.
//
// The backends differ in one respect: netem reorders packets whose jittered delays cross,
// while the userspace backend keeps packets of one flow (protocol, addresses, ports) in
// order, by holding a packet at least until the previous one of its flow is released.
// Jitter therefore only ever delays a packet more within its flow, and a flow's mean delay
// is a little above Delay when packets are closer together than the jitter. Packets of
// different flows are independent and may overtake each other. The reason: etcd and most
// systems under test speak TCP, where reordering costs spurious retransmissions that a real
// WAN rarely inflicts.
//
// The userspace backend sees only IPv4 and IPv6 packets: ARP is not delayed or dropped,
// while netem impairs every frame. Its delayed packets are sent again through a raw
// socket, so they pass the OUTPUT chain a second time and lose their firewall mark and
// priority; the top byte of the mark (0xd6, 0xd7) is the backend's. Its precision is a
// userspace process's: about 0.2 ms added per shaped hop on an idle host, more when the
// CPUs are saturated.
//
// # Rules per destination
//
// [Backend.ApplyRules] takes a list of [Rule]s: each packet gets the impairment of the first
// rule whose destination prefixes contain its destination (a rule without prefixes is the
// default and comes last), or none. Apply is ApplyRules with one default rule. The
// userspace backend matches with iptables -d (a rule that does not queue a packet returns
// it, so no later rule sees it), with one NFQUEUE reader per distinct delay; the rates of
// the userspace backend and the whole impairment of the netem backend go under an htb root
// used as a classifier (u32 filters in rule order, a match-all last) with a tbf or netem
// leaf per distinct impairment — one single root qdisc when every packet gets the same.
// Changes to the tree are made before they are broken (see tree.go).
//
// [Layer]s and [Combine] build such lists from named parts: set layers say what a path is
// (the most specific prefix decides; a tie goes to the higher priority), add layers add
// their impairment on top ([Compose]). [Split] and [Compose] are inverse: a path split over
// hops and composed again is the path.
//
// # Ownership
//
// Every object is tagged with the owner string (dt's run id):
//
//   - the iptables chain DT-<hash>-<iface> in the mangle table, where <hash> is
//     [OwnerHash], and a jump to it first in POSTROUTING commented "dt:<owner>";
//   - the root qdisc handle [QdiscHandle] (major 0xd7XX; a tree's leaves are 0xd8XX under it);
//   - NFQUEUE queue numbers in the block [QueueRange].
//
// [Netem.Clear] and [Userspace.Clear] remove exactly their objects; [CleanupNamespace]
// removes every object of an owner from a namespace after a crash, and [List] shows them.
//
// # Namespaces
//
// By default everything happens in the calling process's namespace: in dt the agent, which
// runs inside the node's namespace, owns the backend. [InNamespace] points a backend at
// another namespace instead; its queue and raw sockets are then opened in that namespace
// and its goroutines still run in the calling process (tests do this).
package shaping
