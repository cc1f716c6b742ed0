package shaping

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Rules live in the mangle table's POSTROUTING chain: it sees both locally generated and
// forwarded packets after routing has chosen the output interface, once per packet.
const (
	table    = "mangle"
	hookName = "POSTROUTING"
)

// family is one iptables flavour. Rules go through *-restore so that each change is one
// atomic transaction: a chain is never seen half-filled, so no packet slips through
// unimpaired while the rules change.
type family struct {
	name    string
	save    string
	restore string
}

var (
	familyIPv4 = family{name: "ipv4", save: "iptables-save", restore: "iptables-restore"}
	familyIPv6 = family{name: "ipv6", save: "ip6tables-save", restore: "ip6tables-restore"}
)

// families lists the IP families the namespace carries: IPv4 always, IPv6 when the kernel
// has it. Impairing IPv4 only would let IPv6 traffic pass untouched.
func (c *config) families() ([]family, error) {
	fams := []family{familyIPv4}
	var v6 bool
	err := c.do(func() error {
		v6 = hasIPv6()
		return nil
	})
	if v6 {
		fams = append(fams, familyIPv6)
	}
	return fams, err
}

// savedRule is one "-A CHAIN ..." line of iptables-save.
type savedRule struct {
	chain   string
	spec    string // everything after "-A CHAIN "
	target  string // -j argument
	comment string // --comment argument, unquoted
}

type mangleState struct {
	chains []string
	rules  []savedRule
}

// parseSave reads the *mangle section of iptables-save output.
func parseSave(out string) mangleState {
	var s mangleState
	in := false
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "*"):
			in = line == "*"+table
		case !in:
		case strings.HasPrefix(line, ":"):
			if f := strings.Fields(line[1:]); len(f) > 0 {
				s.chains = append(s.chains, f[0])
			}
		case strings.HasPrefix(line, "-A "):
			f := splitQuoted(line)
			if len(f) < 2 {
				continue
			}
			r := savedRule{chain: f[1], spec: strings.TrimSpace(strings.TrimPrefix(line[3:], f[1]))}
			for i := 2; i+1 < len(f); i++ {
				switch f[i] {
				case "-j", "--jump":
					r.target = f[i+1]
				case "--comment":
					r.comment = f[i+1]
				}
			}
			s.rules = append(s.rules, r)
		}
	}
	return s
}

// splitQuoted splits on spaces, keeping double-quoted words (quotes removed) together.
func splitQuoted(s string) []string {
	var (
		out   []string
		cur   strings.Builder
		quote bool
		have  bool
	)
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\\' && quote && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case ch == '"':
			quote = !quote
			have = true
		case ch == ' ' && !quote:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(ch)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

func (c *config) saveMangle(ctx context.Context, f family) (mangleState, error) {
	out, err := c.run(ctx, "", f.save, "-t", table)
	if err != nil {
		return mangleState{}, fmt.Errorf("shaping: list %s rules: %w", f.name, err)
	}
	return parseSave(out), nil
}

func (c *config) restoreMangle(ctx context.Context, f family, body []string) error {
	if len(body) == 0 {
		return nil
	}
	in := "*" + table + "\n" + strings.Join(body, "\n") + "\nCOMMIT\n"
	if _, err := c.run(ctx, in, f.restore, "--noflush", "--wait", "10"); err != nil {
		return fmt.Errorf("shaping: %s rules: %w", f.name, err)
	}
	return nil
}

// chainRules is the body of owner's chain for iface in family f: let through what a
// delayer sent on (it was impaired already), then for each rule and each of its prefixes
// of the family (the default rule: every packet) mark the packets to lose and queue what
// a delayer must see: everything when the rule has a delay, else only the marked packets;
// what the rule does not queue returns, so that no later rule sees it (first match
// wins). The delayer drops marked packets silently (see delayer.go for why not DROP
// here). No --queue-bypass: without a reader bound, the kernel drops queued packets
// instead of passing them unimpaired. queue gives rule i's queue, if it has one.
//
// Equivalent to:
//
//	iptables -t mangle -A DT-<hash>-<iface> -m mark --mark 0xd7000000/0xff000000 -m comment --comment dt:<owner> -j RETURN
//	iptables -t mangle -A DT-<hash>-<iface> [-d P] -m statistic --mode random --probability <Loss/100> -m comment --comment dt:<owner> -j MARK --set-xmark 0xd6000000/0xff000000
//	iptables -t mangle -A DT-<hash>-<iface> [-d P] -m comment --comment dt:<owner> -j NFQUEUE --queue-num <q>   # with a delay
//	iptables -t mangle -A DT-<hash>-<iface> [-d P] -m mark --mark 0xd6000000/0xff000000 -m comment --comment dt:<owner> -j NFQUEUE --queue-num <q>   # loss only
//	iptables -t mangle -A DT-<hash>-<iface> -d P -m comment --comment dt:<owner> -j RETURN   # loss only, or no impairment
func chainRules(owner, iface string, f family, rules []Rule, queue func(i int) (uint16, bool)) []string {
	chain := ChainName(owner, iface)
	tag := "-m comment --comment " + comment(owner)
	mark := func(m int) string { return fmt.Sprintf("%#x/%#x", m, MarkMask) }
	out := []string{fmt.Sprintf("-A %s -m mark --mark %s %s -j RETURN", chain, mark(MarkSent), tag)}
	for i, r := range rules {
		var dsts []string
		if r.IsDefault() {
			dsts = []string{""}
		}
		for _, p := range r.Dst {
			if p.Addr().Is4() == (f.name == familyIPv4.name) {
				dsts = append(dsts, "-d "+p.Masked().String()+" ")
			}
		}
		q, queued := queue(i)
		for _, d := range dsts {
			switch {
			case r.Loss >= 100:
				out = append(out, fmt.Sprintf("-A %s %s%s -j MARK --set-xmark %s", chain, d, tag, mark(MarkLost)))
			case r.Loss > 0:
				p := strconv.FormatFloat(r.Loss/100, 'f', -1, 64)
				out = append(out, fmt.Sprintf("-A %s %s-m statistic --mode random --probability %s %s -j MARK --set-xmark %s", chain, d, p, tag, mark(MarkLost)))
			}
			switch {
			case r.Delay > 0 && queued:
				out = append(out, fmt.Sprintf("-A %s %s%s -j NFQUEUE --queue-num %d", chain, d, tag, q))
				continue
			case r.Loss > 0 && queued:
				out = append(out, fmt.Sprintf("-A %s %s-m mark --mark %s %s -j NFQUEUE --queue-num %d", chain, d, mark(MarkLost), tag, q))
			}
			if d != "" { // the default rule is last: the chain ends there anyway
				out = append(out, fmt.Sprintf("-A %s %s%s -j RETURN", chain, d, tag))
			}
		}
	}
	return out
}

// jumpRule sends iface's egress to owner's chain; it goes first in POSTROUTING so that no
// earlier ACCEPT lets packets skip it.
//
// Equivalent to: iptables -t mangle -I POSTROUTING 1 -o <iface> -m comment --comment dt:<owner> -j DT-<hash>-<iface>
func jumpRule(owner, iface string) string {
	return fmt.Sprintf("-o %s -m comment --comment %s -j %s", iface, comment(owner), ChainName(owner, iface))
}

// installRules makes owner's chain for iface hold exactly rules[family name] and jumps to
// it, in one transaction per family.
func (c *config) installRules(ctx context.Context, fams []family, owner, iface string, rules map[string][]string) error {
	chain := ChainName(owner, iface)
	for _, f := range fams {
		st, err := c.saveMangle(ctx, f)
		if err != nil {
			return err
		}
		// Declaring the chain in a --noflush restore creates it or flushes it.
		body := append([]string{":" + chain + " - [0:0]"}, rules[f.name]...)
		if !hasJump(st, chain) {
			body = append(body, "-I "+hookName+" 1 "+jumpRule(owner, iface))
		}
		if err := c.restoreMangle(ctx, f, body); err != nil {
			return fmt.Errorf("install %s: %w", chain, err)
		}
	}
	return nil
}

func hasJump(st mangleState, chain string) bool {
	for _, r := range st.rules {
		if r.target == chain {
			return true
		}
	}
	return false
}

// removeRules deletes owner's chain for iface and every jump to it.
func (c *config) removeRules(ctx context.Context, fams []family, owner, iface string) error {
	var errs []error
	for _, f := range fams {
		st, err := c.saveMangle(ctx, f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		body := removalBody(st, func(chain string) bool { return chain == ChainName(owner, iface) }, "")
		if err := c.restoreMangle(ctx, f, body); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removalBody deletes the chains ours selects, every rule jumping to them, and every
// other rule commented tag (when tag is not empty).
func removalBody(st mangleState, ours func(chain string) bool, tag string) []string {
	var body []string
	for _, r := range st.rules {
		if ours(r.chain) {
			continue // goes with its chain
		}
		if ours(r.target) || tag != "" && r.comment == tag {
			body = append(body, "-D "+r.chain+" "+r.spec)
		}
	}
	for _, ch := range st.chains {
		if ours(ch) {
			body = append(body, "-F "+ch, "-X "+ch)
		}
	}
	return body
}
