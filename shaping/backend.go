package shaping

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Backend applies impairments to the egress of interfaces in one network namespace.
type Backend interface {
	// Apply sets iface's impairment to imp, replacing any earlier one of this backend;
	// a zero imp clears it. It returns an error rather than leave the impairment off or
	// half-applied.
	Apply(ctx context.Context, iface string, imp Impairment) error
	// ApplyRules sets iface's rules: each packet gets the impairment of the first rule
	// whose destinations contain its destination address (see [Rule]), replacing any
	// earlier rules of this backend; no rules clears. It fails as Apply does.
	ApplyRules(ctx context.Context, iface string, rules []Rule) error
	// Rules returns iface's rules as this backend last applied them; nil when clear.
	Rules(iface string) []Rule
	// Clear removes the backend's impairment from iface; clearing a clean iface is a no-op.
	Clear(ctx context.Context, iface string) error
	// Name is the backend's name as given to Select: "netem" or "userspace".
	Name() string
}

// owned is what both backends are made of: the owner tag, the owner's root qdisc handle
// ([QdiscHandle]) and the options.
type owned struct {
	owner  string
	handle uint32
	cfg    config
}

// newOwned checks a backend constructor's owner and options.
func newOwned(owner string, opts []Option) (owned, error) {
	if err := validOwner(owner); err != nil {
		return owned{}, err
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return owned{}, err
	}
	return owned{owner: owner, handle: QdiscHandle(owner), cfg: cfg}, nil
}

// applyOne is every backend's Apply: imp checked, then applyRules (the backend's
// ApplyRules) with imp as the one default rule.
func applyOne(ctx context.Context, iface string, imp Impairment, applyRules func(context.Context, string, []Rule) error) error {
	if err := imp.Validate(); err != nil {
		return fmt.Errorf("shaping: %s: %w", iface, err)
	}
	return applyRules(ctx, iface, []Rule{{Impairment: imp}})
}

// Backend names accepted by [Select].
const (
	NameAuto      = "auto"
	NameNetem     = "netem"
	NameUserspace = "userspace"
)

// Names lists the names [Select] accepts.
func Names() []string { return []string{NameAuto, NameNetem, NameUserspace} }

// Errors a caller may test for with errors.Is.
var (
	// ErrNetemUnavailable: the kernel has no sch_netem (and cannot load it).
	ErrNetemUnavailable = errors.New("tc netem is not available in this kernel")
	// ErrUnknownBackend: Select got a name not in Names().
	ErrUnknownBackend = errors.New("unknown shaping backend")
	// ErrInvalidOwner: an owner tag is empty, too long or has characters iptables
	// comments and chain listings cannot carry unquoted.
	ErrInvalidOwner = errors.New("invalid owner tag")
	// ErrForeignQdisc: the interface's root qdisc belongs to someone else; dt does not
	// replace it.
	ErrForeignQdisc = errors.New("root qdisc is not dt's")
	// ErrNoQueue: every queue number of the owner's block is taken in the namespace.
	ErrNoQueue = errors.New("no free NFQUEUE queue in the owner's block")
)

// Select returns the backend called name for owner: "netem", "userspace", or "auto" (netem
// when [Detect] finds it, userspace otherwise). Asking for "netem" on a kernel without it
// is an error wrapping [ErrNetemUnavailable].
func Select(name, owner string, opts ...Option) (Backend, error) {
	switch name {
	case NameAuto:
		if Detect() {
			return NewNetem(owner, opts...)
		}
		return NewUserspace(owner, opts...)
	case NameNetem:
		if err := detectNetem(); err != nil {
			return nil, fmt.Errorf("shaping: backend %q: %w (choose %q or %q)", name, err, NameUserspace, NameAuto)
		}
		return NewNetem(owner, opts...)
	case NameUserspace:
		return NewUserspace(owner, opts...)
	}
	return nil, fmt.Errorf("shaping: %w %q (valid: %s)", ErrUnknownBackend, name, strings.Join(Names(), ", "))
}

// Option configures a backend or a cleanup.
type Option func(*config)

type config struct {
	ns  netns.NsHandle // -1: the calling process's namespace
	log *slog.Logger
}

// InNamespace makes the backend work in ns instead of the calling process's namespace:
// iptables and tc run there and NFQUEUE sockets are opened there. The handle is
// duplicated, so the caller may close its own; the backend's Close releases the copy.
func InNamespace(ns netns.NsHandle) Option {
	return func(c *config) { c.ns = ns }
}

// WithLogger sets the logger; actions are logged at debug level, anomalies (queue
// overruns, reader errors) at warn. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.log = l }
}

func newConfig(opts []Option) (config, error) {
	c := config{ns: -1}
	for _, o := range opts {
		o(&c)
	}
	if c.log == nil {
		c.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.ns >= 0 {
		fd, err := unix.FcntlInt(uintptr(c.ns), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return c, fmt.Errorf("shaping: duplicate namespace handle: %w", err)
		}
		c.ns = netns.NsHandle(fd)
	}
	return c, nil
}

func (c *config) close() {
	if c.ns >= 0 {
		_ = c.ns.Close()
		c.ns = -1
	}
}

// maxOwnerLen keeps "dt:"+owner within iptables' 256-byte comment.
const maxOwnerLen = 200

func validOwner(owner string) error {
	if owner == "" || len(owner) > maxOwnerLen {
		return fmt.Errorf("shaping: %w %q: want 1-%d characters", ErrInvalidOwner, owner, maxOwnerLen)
	}
	for _, r := range owner {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			strings.ContainsRune("._:@+=/-", r)
		if !ok {
			return fmt.Errorf("shaping: %w %q: only letters, digits and ._:@+=/- are allowed", ErrInvalidOwner, owner)
		}
	}
	return nil
}

// OwnerHash is the 8-hex-digit FNV-1a hash of owner that names its iptables chains.
func OwnerHash(owner string) string {
	h := fnv.New32a()
	h.Write([]byte(owner))
	return fmt.Sprintf("%08x", h.Sum32())
}

// chainPrefix is "DT-<hash>-": every chain of the owner starts with it.
func chainPrefix(owner string) string { return "DT-" + OwnerHash(owner) + "-" }

// ChainName is the mangle-table chain holding owner's rules for iface: "DT-<hash>-<iface>",
// at most 27 characters (iptables allows 28).
func ChainName(owner, iface string) string { return chainPrefix(owner) + iface }

// comment is the iptables comment on every rule of owner.
func comment(owner string) string { return "dt:" + owner }

// QdiscHandle is the root qdisc handle dt uses on owner's interfaces: major 0xd700 plus
// the low byte of the owner's hash, minor 0 ("d7XX:" in tc). The fixed 0xd7 prefix marks
// dt's qdiscs; the low byte keeps two owners sharing a namespace apart (mostly).
func QdiscHandle(owner string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(owner))
	major := 0xd700 | h.Sum32()&0xff
	return major << 16
}

// queueBlock is the number of queues an owner can use in one namespace, i.e. how many
// interfaces it can delay there.
const queueBlock = 16

// QueueRange is the block of NFQUEUE queue numbers owner's delays use, first to last
// inclusive: 16 numbers at a multiple of 16 derived from the owner's hash, never 0-15.
func QueueRange(owner string) (first, last uint16) {
	h := fnv.New32a()
	h.Write([]byte("queue:" + owner))
	const blocks = 1<<16/queueBlock - 1 // block 0 (queues 0-15) is left to others
	first = uint16((1 + h.Sum32()%blocks) * queueBlock)
	return first, first + queueBlock - 1
}

func validIface(iface string) error {
	if iface == "" || len(iface) >= unix.IFNAMSIZ || strings.ContainsAny(iface, " /\t\n") {
		return fmt.Errorf("shaping: invalid interface name %q", iface)
	}
	return nil
}
