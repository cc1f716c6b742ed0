package workloads

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
)

// Arrival yields, call after call, the offsets in seconds from the schedule's start at
// which successive operations are due. Offsets never decrease; the first is 0.
type Arrival interface {
	Next() float64
}

var arrivals = map[string]func(rate float64, rng *rand.Rand) Arrival{
	// uniform: evenly spaced at 1/rate, as reckon's uniform workload.
	"uniform": func(rate float64, _ *rand.Rand) Arrival { return &uniformArrival{rate: rate} },
	// poisson: exponential gaps of mean 1/rate, as reckon's PoissonArrival.
	"poisson": func(rate float64, rng *rand.Rand) Arrival { return &poissonArrival{rate: rate, rng: rng} },
}

// NewArrival builds the arrival process called name at rate ops/s.
func NewArrival(name string, rate float64, rng *rand.Rand) (Arrival, error) {
	f, ok := arrivals[name]
	if !ok {
		return nil, fmt.Errorf("unknown arrival %q; valid: %s", name, strings.Join(ArrivalNames(), ", "))
	}
	return f(rate, rng), nil
}

// ArrivalNames lists the arrival processes, sorted.
func ArrivalNames() []string {
	return slices.Sorted(maps.Keys(arrivals))
}

func validArrival(name string) bool {
	_, ok := arrivals[name]
	return ok
}

type uniformArrival struct {
	rate float64
	k    int
}

// Next computes k/rate rather than summing gaps, so rounding never drifts the schedule.
func (a *uniformArrival) Next() float64 {
	t := float64(a.k) / a.rate
	a.k++
	return t
}

type poissonArrival struct {
	rate    float64
	rng     *rand.Rand
	t       float64
	started bool
}

func (a *poissonArrival) Next() float64 {
	if a.started {
		a.t += a.rng.ExpFloat64() / a.rate
	}
	a.started = true
	return a.t
}
