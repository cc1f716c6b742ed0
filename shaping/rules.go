package shaping

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"
)

// Rule is an impairment for the packets leaving an interface towards some destinations.
// An interface carries a list of rules and every packet gets the impairment of the first
// rule that matches its destination address, or none.
type Rule struct {
	// Dst lists the destination prefixes the rule applies to. Empty makes it the default
	// rule: it matches every packet, IP or not, and must come last.
	Dst []netip.Prefix `json:"dst,omitempty"`
	Impairment
}

// IsDefault reports whether r matches every packet.
func (r Rule) IsDefault() bool { return len(r.Dst) == 0 }

// String is the rule as "to 10.0.1.2/32,10.0.2.0/24: delay 20ms", or "default: ...".
func (r Rule) String() string {
	if r.IsDefault() {
		return "default: " + r.Impairment.String()
	}
	ps := make([]string, len(r.Dst))
	for i, p := range r.Dst {
		ps[i] = p.String()
	}
	return "to " + strings.Join(ps, ",") + ": " + r.Impairment.String()
}

// MaxPrefixes bounds the destination prefixes of one interface's rules: each becomes an
// iptables rule and a tc filter.
const MaxPrefixes = 4096

// ValidateRules checks a rule list for [Backend.ApplyRules]: every impairment valid, every
// prefix valid, no prefix twice, at most one default rule and that one last. The error
// wraps [ErrInvalidImpairment].
func ValidateRules(rules []Rule) error {
	var errs []error
	seen := map[netip.Prefix]int{}
	n := 0
	for i, r := range rules {
		if err := r.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("rule %d (%s): %w", i+1, r, err))
		}
		if r.IsDefault() && i != len(rules)-1 {
			errs = append(errs, fmt.Errorf("rule %d: a default rule (no destinations) must be the last", i+1))
		}
		for _, p := range r.Dst {
			if !p.IsValid() {
				errs = append(errs, fmt.Errorf("rule %d: invalid prefix %v", i+1, p))
				continue
			}
			p = p.Masked()
			if j, dup := seen[p]; dup {
				errs = append(errs, fmt.Errorf("prefix %s is in rules %d and %d", p, j, i+1))
			}
			seen[p] = i + 1
			n++
		}
	}
	if n > MaxPrefixes {
		errs = append(errs, fmt.Errorf("%d destination prefixes; at most %d", n, MaxPrefixes))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidImpairment, errors.Join(errs...))
	}
	return nil
}

// normalRules returns rules with masked prefixes, without rules that have neither an
// impairment nor a later rule they would shield their destinations from.
func normalRules(rules []Rule) []Rule {
	out := make([]Rule, 0, len(rules))
	for _, r := range rules {
		c := Rule{Impairment: r.Impairment}
		for _, p := range r.Dst {
			c.Dst = append(c.Dst, p.Masked())
		}
		out = append(out, c)
	}
	// A trailing rule without impairment changes nothing.
	for len(out) > 0 && out[len(out)-1].IsZero() {
		out = out[:len(out)-1]
	}
	return out
}

// Compose is the impairment of crossing a and then b: delays add, jitters add as
// independent variances (√(a²+b²), to the microsecond), losses compound
// (1-(1-a)(1-b)), and the slower rate wins.
func Compose(a, b Impairment) Impairment {
	c := Impairment{Delay: a.Delay + b.Delay}
	switch {
	case a.Jitter == 0:
		c.Jitter = b.Jitter
	case b.Jitter == 0:
		c.Jitter = a.Jitter
	default:
		j := math.Hypot(float64(a.Jitter), float64(b.Jitter))
		c.Jitter = time.Duration(math.Round(j/1e3)) * time.Microsecond
	}
	switch {
	case a.Loss == 0:
		c.Loss = b.Loss
	case b.Loss == 0:
		c.Loss = a.Loss
	default:
		l := (1 - (1-a.Loss/100)*(1-b.Loss/100)) * 100
		c.Loss = math.Round(l*1e9) / 1e9 // keeps 10 % split and composed again at 10 %
	}
	switch {
	case a.Rate == 0:
		c.Rate = b.Rate
	case b.Rate == 0:
		c.Rate = a.Rate
	default:
		c.Rate = min(a.Rate, b.Rate)
	}
	return c
}

// Mode says how a [Layer] combines with the others.
type Mode string

// Layer modes.
const (
	// ModeSet layers say what a path is: for each destination the most specific prefix
	// of all set layers decides (a tie goes to the layer of higher Priority), e.g. the
	// topology's links and, above them, `dt link`'s per-peer settings.
	ModeSet Mode = "set"
	// ModeAdd layers add their impairment on top (with [Compose]), e.g. faults.
	ModeAdd Mode = "add"
)

// Layer is a named set of rules on one interface, for [Combine]. Within a layer the most
// specific prefix that contains a destination decides; order does not matter.
type Layer struct {
	Name     string `json:"name"`
	Mode     Mode   `json:"mode"`
	Priority int    `json:"priority,omitempty"`
	Rules    []Rule `json:"rules"`
}

// Validate checks the layer's name, mode and rules: at most one default rule, no prefix
// twice, every impairment valid.
func (l Layer) Validate() error {
	var errs []error
	if l.Name == "" || len(l.Name) > 200 || strings.ContainsAny(l.Name, " \t\n/") {
		errs = append(errs, fmt.Errorf("layer name %q: want 1-200 characters without spaces or slashes", l.Name))
	}
	if l.Mode != ModeSet && l.Mode != ModeAdd {
		errs = append(errs, fmt.Errorf("layer %s: mode %q: valid are %s, %s", l.Name, l.Mode, ModeSet, ModeAdd))
	}
	defaults := 0
	seen := map[netip.Prefix]bool{}
	for i, r := range l.Rules {
		if err := r.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("layer %s rule %d: %w", l.Name, i+1, err))
		}
		if r.IsDefault() {
			defaults++
		}
		for _, p := range r.Dst {
			if !p.IsValid() {
				errs = append(errs, fmt.Errorf("layer %s rule %d: invalid prefix", l.Name, i+1))
				continue
			}
			if seen[p.Masked()] {
				errs = append(errs, fmt.Errorf("layer %s: prefix %s twice", l.Name, p.Masked()))
			}
			seen[p.Masked()] = true
		}
	}
	if defaults > 1 {
		errs = append(errs, fmt.Errorf("layer %s: %d default rules; at most one", l.Name, defaults))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidImpairment, errors.Join(errs...))
	}
	return nil
}

// match returns the impairment of the layer's most specific rule containing key (the
// default rule for the default key), its prefix length (-1 for the default rule) and
// whether any rule matched.
func (l Layer) match(key layerKey) (Impairment, int, bool) {
	best, bits, ok := Impairment{}, -2, false
	for _, r := range l.Rules {
		if r.IsDefault() {
			if bits < -1 {
				best, bits, ok = r.Impairment, -1, true
			}
			continue
		}
		if key.def {
			continue
		}
		for _, p := range r.Dst {
			p = p.Masked()
			if p.Bits() <= key.p.Bits() && p.Contains(key.p.Addr()) && p.Bits() > bits {
				best, bits, ok = r.Impairment, p.Bits(), true
			}
		}
	}
	return best, bits, ok
}

// layerKey is a destination prefix, or the default (everything else).
type layerKey struct {
	p   netip.Prefix
	def bool
}

// Combine flattens layers into the first-match rule list that gives every destination
// the impairment of the set layers' most specific match composed with every add layer's
// most specific match. Rules come out most specific first, the default last; adjacent
// rules with equal impairments are merged, and rules without impairment are kept only
// where they shield their destinations from a less specific impaired rule.
func Combine(layers []Layer) ([]Rule, error) {
	for _, l := range layers {
		if err := l.Validate(); err != nil {
			return nil, err
		}
	}
	// Higher priority first, then by name, so that ties are decided the same every time.
	sets := []Layer{}
	var adds []Layer
	for _, l := range layers {
		if l.Mode == ModeSet {
			sets = append(sets, l)
		} else {
			adds = append(adds, l)
		}
	}
	slices.SortStableFunc(sets, func(a, b Layer) int {
		return cmp.Or(cmp.Compare(b.Priority, a.Priority), strings.Compare(a.Name, b.Name))
	})
	sort.SliceStable(adds, func(i, j int) bool { return adds[i].Name < adds[j].Name })

	keySet := map[netip.Prefix]bool{}
	for _, l := range layers {
		for _, r := range l.Rules {
			for _, p := range r.Dst {
				keySet[p.Masked()] = true
			}
		}
	}
	keys := make([]layerKey, 0, len(keySet)+1)
	for p := range keySet {
		keys = append(keys, layerKey{p: p})
	}
	slices.SortFunc(keys, func(a, b layerKey) int {
		return cmp.Or(cmp.Compare(b.p.Bits(), a.p.Bits()), a.p.Addr().Compare(b.p.Addr()))
	})
	keys = append(keys, layerKey{def: true})

	imps := make([]Impairment, len(keys))
	for i, k := range keys {
		var base Impairment
		bestBits := -2
		for _, l := range sets {
			if imp, bits, ok := l.match(k); ok && bits > bestBits {
				base, bestBits = imp, bits
			}
		}
		for _, l := range adds {
			if imp, _, ok := l.match(k); ok {
				base = Compose(base, imp)
			}
		}
		if err := base.Validate(); err != nil {
			return nil, fmt.Errorf("combined impairment towards %s: %w", keyString(k), err)
		}
		imps[i] = base
	}

	var out []Rule
	for i, k := range keys {
		if k.def {
			if !imps[i].IsZero() {
				out = append(out, Rule{Impairment: imps[i]})
			}
			continue
		}
		if imps[i].IsZero() && !shields(keys, imps, i) {
			continue
		}
		if n := len(out); n > 0 && !out[n-1].IsDefault() && out[n-1].Impairment == imps[i] {
			out[n-1].Dst = append(out[n-1].Dst, k.p)
			continue
		}
		out = append(out, Rule{Dst: []netip.Prefix{k.p}, Impairment: imps[i]})
	}
	return out, nil
}

// shields reports whether a later (less specific) key containing keys[i], or the
// default, is impaired: then the unimpaired rule for keys[i] is needed.
func shields(keys []layerKey, imps []Impairment, i int) bool {
	for j := i + 1; j < len(keys); j++ {
		if imps[j].IsZero() {
			continue
		}
		if keys[j].def || keys[j].p.Bits() <= keys[i].p.Bits() && keys[j].p.Contains(keys[i].p.Addr()) {
			return true
		}
	}
	return false
}

func keyString(k layerKey) string {
	if k.def {
		return "every other destination"
	}
	return k.p.String()
}

// checkRules validates iface and rules for ApplyRules and returns the rules normalised
// (see normalRules); no rules left means clear.
func checkRules(iface string, rules []Rule) ([]Rule, error) {
	if err := validIface(iface); err != nil {
		return nil, err
	}
	if err := ValidateRules(rules); err != nil {
		return nil, fmt.Errorf("shaping: %s: %w", iface, err)
	}
	return normalRules(rules), nil
}
