package workloads

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/dtlab/dt/records"
)

// CASKV is optionally implemented by a KV whose system can compare-and-set. A workload
// with cas in its mix needs it (CheckKV says so before anything is sent).
type CASKV interface {
	KV
	// CompareAndSet puts new under key if key holds old ("" = the key is absent), in one
	// atomic step. old and new are the stored values (padded, as Put receives them).
	CompareAndSet(ctx context.Context, key, old, new string) (CASResult, error)
}

// CASResult is what one compare-and-set did.
type CASResult struct {
	// Swapped says the compare held and the new value was put.
	Swapped bool
	// Current is the value the key held when the compare failed, if the system read it in
	// the same atomic step (etcd: the Txn's Else branch); Known says it did ("" with Known
	// is an absent key). A system that learns only that the compare failed (ZooKeeper's
	// versioned setData answering BadVersion) leaves Known false: the checker then knows
	// only that the key did not hold old.
	Current string
	Known   bool
	// Target is the endpoint the operation went to; "" means KV.Target().
	Target string
}

// Read consistency levels a workload can ask reads for.
const (
	// ReadLinearizable reads see every write acknowledged before they began (etcd's default,
	// a quorum read).
	ReadLinearizable = "linearizable"
	// ReadSerializable reads are served by the member the client talks to from its own
	// state, without asking the others (etcd's WithSerializable): fast, and stale when that
	// member is behind or cut off.
	ReadSerializable = "serializable"
)

// ReadConsistencies lists the levels, strongest first.
func ReadConsistencies() []string { return []string{ReadLinearizable, ReadSerializable} }

// ReadConsistencyKV is optionally implemented by a KV that can read with a weaker
// guarantee than linearizable.
type ReadConsistencyKV interface {
	KV
	// ReadConsistencies lists the levels SetReadConsistency accepts, ReadLinearizable too.
	ReadConsistencies() []string
	// SetReadConsistency makes every later Get read at level.
	SetReadConsistency(level string) error
}

// Features is what a system's client offers beyond Put and a linearizable Get: a system
// declares them (systems.Features) so that a run asking for more is refused before
// anything is created, and FeaturesOf reads them off a client.
type Features struct {
	CAS bool `json:"cas"`
	// ReadConsistencies are the levels reads can be made at; empty means linearizable only.
	ReadConsistencies []string `json:"read_consistencies,omitempty"`
}

// FeaturesOf is what kv offers, from the optional interfaces it implements.
func FeaturesOf(kv KV) Features {
	var f Features
	_, f.CAS = kv.(CASKV)
	if rc, ok := kv.(ReadConsistencyKV); ok {
		f.ReadConsistencies = rc.ReadConsistencies()
	}
	return f
}

// ErrUnsupported is wrapped by the errors of Features.Check: the workload asks for
// something the system's client does not offer.
var ErrUnsupported = errors.New("not offered by the system's client")

// Check reports what spec asks for that f lacks, naming the system and the flag.
func (f Features) Check(spec Spec) error {
	var errs []error
	sys := spec.System
	if sys == "" {
		sys = "this system"
	}
	if spec.Mix.CAS > 0 && !f.CAS {
		errs = append(errs, fmt.Errorf("%w: the workload's mix has cas (--ops %s) but the %s client cannot compare-and-set; drop cas from --ops", ErrUnsupported, spec.Mix, sys))
	}
	if rc := spec.ReadConsistency; rc != "" && rc != ReadLinearizable {
		levels := f.ReadConsistencies
		if len(levels) == 0 {
			levels = []string{ReadLinearizable}
		}
		if !slices.Contains(levels, rc) {
			errs = append(errs, fmt.Errorf("%w: --read-consistency %s: the %s client reads %s only", ErrUnsupported, rc, sys, strings.Join(levels, ", ")))
		}
	}
	return errors.Join(errs...)
}

// CheckKV reports what spec asks for that kv does not offer (FeaturesOf(kv).Check).
func CheckKV(spec Spec, kv KV) error { return FeaturesOf(kv).Check(spec) }

// Mix is the weight of each operation kind: a kind is drawn with probability
// weight / Total. Only the ratios matter: read=40,write=40,cas=20 is read=2,write=2,cas=1.
type Mix struct {
	Read  float64 `json:"read"`
	Write float64 `json:"write"`
	CAS   float64 `json:"cas"`
}

// Default mixes. Reads are checked only against what a history's writes put, so a mix
// needs both; a cas both reads (its compare) and writes, and tests the system's atomic
// path (etcd: a Txn) that plain puts never reach. DefaultMixNoCAS is for systems whose
// client cannot compare-and-set.
var (
	DefaultMix      = Mix{Read: 40, Write: 40, CAS: 20}
	DefaultMixNoCAS = Mix{Read: 50, Write: 50}
)

// OpKinds lists the operation kinds a mix can weigh, in the order Mix.String writes them.
func OpKinds() []string { return []string{records.KindRead, records.KindWrite, records.KindCAS} }

// WriteMix is the mix of --write-ratio w: writes with probability w, reads otherwise.
func WriteMix(w float64) Mix { return Mix{Read: 1 - w, Write: w} }

// Total is the sum of the weights.
func (m Mix) Total() float64 { return m.Read + m.Write + m.CAS }

// Share is the fraction of operations of kind.
func (m Mix) Share(kind string) float64 {
	t := m.Total()
	if !(t > 0) {
		return 0
	}
	switch kind {
	case records.KindRead:
		return m.Read / t
	case records.KindWrite:
		return m.Write / t
	case records.KindCAS:
		return m.CAS / t
	}
	return 0
}

// String writes the mix as ParseMix reads it, leaving out kinds of weight 0:
// "read=40,write=40,cas=20".
func (m Mix) String() string {
	var parts []string
	for i, w := range []float64{m.Read, m.Write, m.CAS} {
		if w != 0 {
			parts = append(parts, OpKinds()[i]+"="+strconv.FormatFloat(w, 'g', -1, 64))
		}
	}
	if len(parts) == 0 {
		return "(none)"
	}
	return strings.Join(parts, ",")
}

// Validate reports a negative or non-finite weight, or a mix of no operation at all.
func (m Mix) Validate() error {
	var errs []error
	for i, w := range []float64{m.Read, m.Write, m.CAS} {
		if !(w >= 0) || math.IsInf(w, 0) {
			errs = append(errs, fmt.Errorf("weight of %s %v: must be a finite number >= 0", OpKinds()[i], w))
		}
	}
	if len(errs) == 0 && !(m.Total() > 0) {
		errs = append(errs, fmt.Errorf("every weight is 0: give at least one of %s a weight > 0", strings.Join(OpKinds(), ", ")))
	}
	return errors.Join(errs...)
}

// ParseMix reads "KIND=WEIGHT,..." (read=40,write=40,cas=20), strictly: every item has a
// known kind and a number, no kind twice, at least one weight above 0. Kinds left out
// weigh 0. Errors name the item and the valid kinds.
func ParseMix(s string) (Mix, error) {
	var m Mix
	if strings.TrimSpace(s) == "" {
		return m, fmt.Errorf("empty op mix: want KIND=WEIGHT,... with kinds %s, e.g. %s", strings.Join(OpKinds(), ", "), DefaultMix)
	}
	seen := map[string]bool{}
	var errs []error
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		kind, weight, ok := strings.Cut(item, "=")
		kind, weight = strings.TrimSpace(kind), strings.TrimSpace(weight)
		if !ok || kind == "" || weight == "" {
			errs = append(errs, fmt.Errorf("%q: want KIND=WEIGHT, e.g. read=40 (kinds: %s)", item, strings.Join(OpKinds(), ", ")))
			continue
		}
		var dst *float64
		switch kind {
		case records.KindRead:
			dst = &m.Read
		case records.KindWrite:
			dst = &m.Write
		case records.KindCAS:
			dst = &m.CAS
		default:
			errs = append(errs, fmt.Errorf("%q: unknown op kind %q; valid: %s", item, kind, strings.Join(OpKinds(), ", ")))
			continue
		}
		if seen[kind] {
			errs = append(errs, fmt.Errorf("%q: %s given twice", item, kind))
			continue
		}
		seen[kind] = true
		w, err := strconv.ParseFloat(weight, 64)
		if err != nil || !(w >= 0) || math.IsInf(w, 0) {
			errs = append(errs, fmt.Errorf("%q: weight %q: want a finite number >= 0", item, weight))
			continue
		}
		*dst = w
	}
	if len(errs) == 0 {
		errs = append(errs, m.Validate())
	}
	if err := errors.Join(errs...); err != nil {
		return Mix{}, fmt.Errorf("op mix %q: %w", s, err)
	}
	return m, nil
}
