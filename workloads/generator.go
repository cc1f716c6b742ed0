package workloads

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/dtlab/dt/records"
)

// Request is the next operation a generator asks for. Values are not the generator's
// business: Run makes every written value unique so that histories can be checked for
// linearizability.
type Request struct {
	Kind string // records.KindRead, KindWrite or KindCAS
	Key  string
}

// Generator yields one client's operations in order. It is used from one goroutine.
type Generator interface {
	Next() Request
}

// NewGenerator builds a generator for one client from its validated spec. rng is
// seeded from the spec, so the same spec yields the same operations.
type NewGenerator func(s Spec, rng *rand.Rand) (Generator, error)

// generators is the registry, filled in this one place.
var generators = map[string]NewGenerator{
	"uniform": newUniform,
	"zipfian": newZipfian,
}

// Lookup returns the generator registered under name; an unknown name is an error that
// lists the valid ones.
func Lookup(name string) (NewGenerator, error) {
	g, ok := generators[name]
	if !ok {
		return nil, fmt.Errorf("unknown workload %q; valid: %s", name, strings.Join(Names(), ", "))
	}
	return g, nil
}

// Names lists the registered generators, sorted.
func Names() []string {
	return slices.Sorted(maps.Keys(generators))
}

// mix draws an op kind by the weights of ops on a key chosen by pick. Writes take the
// lowest slice of the draw, so a mix of writes and reads only (--write-ratio w) draws
// exactly the operations the write ratio drew before cas existed.
type mix struct {
	rng    *rand.Rand
	ops    Mix
	total  float64
	maxKey int
	pick   func() int // key index in [0, maxKey]
}

func newMix(s Spec, rng *rand.Rand, pick func() int) *mix {
	return &mix{rng: rng, ops: s.Mix, total: s.Mix.Total(), maxKey: s.MaxKey, pick: pick}
}

func (m *mix) Next() Request {
	kind := records.KindRead
	switch u := m.rng.Float64() * m.total; {
	case u < m.ops.Write:
		kind = records.KindWrite
	case u < m.ops.Write+m.ops.CAS:
		kind = records.KindCAS
	}
	return Request{Kind: kind, Key: KeyName(m.pick(), m.maxKey)}
}

// newUniform draws keys uniformly from [0, MaxKey], as reckon's uniform workload.
func newUniform(s Spec, rng *rand.Rand) (Generator, error) {
	n := s.MaxKey + 1
	return newMix(s, rng, func() int { return rng.IntN(n) }), nil
}

// newZipfian draws key i with probability proportional to 1/(i+1)^theta (YCSB's
// zipfian, unscrambled: key 0 is the hottest).
func newZipfian(s Spec, rng *rand.Rand) (Generator, error) {
	theta := s.ZipfTheta
	if theta == 0 {
		theta = DefaultZipfTheta
	}
	if !(theta > 0 && theta < 1) {
		return nil, fmt.Errorf("%w: zipf_theta %v: must be in (0, 1)", ErrInvalidSpec, theta)
	}
	z := newZipf(uint64(s.MaxKey)+1, theta)
	return newMix(s, rng, func() int { return int(z.next(rng.Float64())) }), nil
}

// zipf is the generator of Gray et al., "Quickly generating billion-record synthetic
// databases" (SIGMOD 1994), as used by YCSB. math/rand/v2's Zipf needs s > 1, which
// rules out YCSB's usual theta of 0.99.
type zipf struct {
	n                        uint64
	theta, alpha, zetan, eta float64
	half                     float64 // 1 + 0.5^theta
}

func newZipf(n uint64, theta float64) *zipf {
	var zetan float64
	for i := uint64(1); i <= n; i++ {
		zetan += 1 / math.Pow(float64(i), theta)
	}
	zeta2 := 1 + math.Pow(0.5, theta)
	return &zipf{
		n:     n,
		theta: theta,
		alpha: 1 / (1 - theta),
		zetan: zetan,
		// Only used when n > 2; for n <= 2 the first two branches of next cover every u.
		eta:  (1 - math.Pow(2/float64(n), 1-theta)) / (1 - zeta2/zetan),
		half: zeta2,
	}
}

// next maps u uniform in [0,1) to a rank in [0, n).
func (z *zipf) next(u float64) uint64 {
	uz := u * z.zetan
	if uz < 1 || z.n == 1 {
		return 0
	}
	if uz < z.half || z.n == 2 {
		return 1
	}
	r := uint64(float64(z.n) * math.Pow(z.eta*u-z.eta+1, z.alpha))
	return min(r, z.n-1)
}

// KeyName formats key index i zero-padded to the width of maxKey, as reckon does
// (max key 1: "0", "1"; max key 10: "00" ... "10").
func KeyName(i, maxKey int) string {
	k := strconv.Itoa(i)
	if w := len(strconv.Itoa(maxKey)); len(k) < w {
		k = strings.Repeat("0", w-len(k)) + k
	}
	return k
}

// valuePad fills a written value up to the payload size. A value id always ends in a
// digit, so trimming the pad from the right recovers it whatever the client name holds.
const valuePad = '.'

// ValueID names the seq-th operation of client; it is unique within a run as long as
// client names are.
func ValueID(client string, seq int) string {
	return client + "-" + strconv.Itoa(seq)
}

// EncodeValue pads id to size bytes; an id longer than size is written whole.
func EncodeValue(id string, size int) string {
	if len(id) >= size {
		return id
	}
	return id + strings.Repeat(string(valuePad), size-len(id))
}

// DecodeValue recovers the id from a value written by EncodeValue.
func DecodeValue(v string) string {
	return strings.TrimRight(v, string(valuePad))
}
