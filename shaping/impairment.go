package shaping

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// MaxDelay bounds Delay+Jitter. netem stores the delay in 32-bit scheduler ticks (about
// 274 s here), and the userspace backend holds every packet in memory for that long.
const MaxDelay = time.Minute

// MinRate is the lowest non-zero Rate accepted, in bits/s: below it one full-size frame
// takes longer than any sane queue.
const MinRate = 8000

// ErrInvalidImpairment is wrapped by every validation error of an [Impairment].
var ErrInvalidImpairment = errors.New("invalid impairment")

// Impairment is what a link does to packets leaving one interface. The zero value is no
// impairment.
type Impairment struct {
	// Delay is the one-way delay added to every packet.
	Delay time.Duration `json:"delay,omitempty"`
	// Jitter widens Delay to a uniform distribution over [Delay-Jitter, Delay+Jitter],
	// clamped at zero. It needs a non-zero Delay, as in netem.
	Jitter time.Duration `json:"jitter,omitempty"`
	// Loss is the percentage (0-100) of packets dropped, each independently.
	Loss float64 `json:"loss,omitempty"`
	// Rate limits the interface to this many bits/s; 0 means unlimited.
	Rate uint64 `json:"rate,omitempty"`
}

// IsZero reports whether imp changes nothing.
func (imp Impairment) IsZero() bool { return imp == Impairment{} }

// Validate returns an error wrapping [ErrInvalidImpairment] when a field is out of range.
func (imp Impairment) Validate() error {
	var errs []error
	if imp.Delay < 0 {
		errs = append(errs, fmt.Errorf("delay %v is negative", imp.Delay))
	}
	if imp.Jitter < 0 {
		errs = append(errs, fmt.Errorf("jitter %v is negative", imp.Jitter))
	}
	if imp.Jitter > 0 && imp.Delay == 0 {
		errs = append(errs, fmt.Errorf("jitter %v needs a non-zero delay", imp.Jitter))
	}
	if imp.Delay+imp.Jitter > MaxDelay {
		errs = append(errs, fmt.Errorf("delay+jitter %v exceeds %v", imp.Delay+imp.Jitter, MaxDelay))
	}
	if math.IsNaN(imp.Loss) || imp.Loss < 0 || imp.Loss > 100 {
		errs = append(errs, fmt.Errorf("loss %v%% is not within 0-100", imp.Loss))
	}
	if imp.Rate != 0 && imp.Rate < MinRate {
		errs = append(errs, fmt.Errorf("rate %d bit/s is below %d bit/s", imp.Rate, MinRate))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidImpairment, errors.Join(errs...))
	}
	return nil
}

// String formats imp like tc would, e.g. "delay 20ms jitter 2ms loss 10% rate 10Mbit",
// or "none".
func (imp Impairment) String() string {
	var parts []string
	if imp.Delay > 0 {
		parts = append(parts, "delay "+imp.Delay.String())
	}
	if imp.Jitter > 0 {
		parts = append(parts, "jitter "+imp.Jitter.String())
	}
	if imp.Loss > 0 {
		parts = append(parts, fmt.Sprintf("loss %g%%", imp.Loss))
	}
	if imp.Rate > 0 {
		parts = append(parts, "rate "+formatRate(imp.Rate))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

func formatRate(bits uint64) string {
	switch {
	case bits%1_000_000_000 == 0:
		return fmt.Sprintf("%dGbit", bits/1_000_000_000)
	case bits%1_000_000 == 0:
		return fmt.Sprintf("%dMbit", bits/1_000_000)
	case bits%1000 == 0:
		return fmt.Sprintf("%dKbit", bits/1000)
	}
	return fmt.Sprintf("%dbit", bits)
}

// Split divides an end-to-end impairment over hops shaped hops in series, so that a packet
// crossing all of them sees about e2e:
//
//   - delay: Delay/hops per hop;
//   - jitter: Jitter/√hops per hop, so that the variance of the sum of the hops' independent
//     jitters equals that of one hop with Jitter (the end-to-end distribution is then no
//     longer uniform but has the same spread);
//   - loss: 1-(1-L)^(1/hops) per hop, so that the chance of crossing every hop is 1-L;
//   - rate: unchanged, since a chain of links is as fast as its slowest.
//
// hops < 1 is treated as 1.
func Split(e2e Impairment, hops int) Impairment {
	if hops <= 1 {
		return e2e
	}
	n := float64(hops)
	per := Impairment{
		Delay:  e2e.Delay / time.Duration(hops),
		Jitter: time.Duration(float64(e2e.Jitter) / math.Sqrt(n)),
		Rate:   e2e.Rate,
	}
	if e2e.Loss > 0 {
		per.Loss = (1 - math.Pow(1-e2e.Loss/100, 1/n)) * 100
	}
	return per
}

// SplitEndToEnd is reckon's split of end-to-end values over the two shaped hops of a path
// (node → switch → node, each hop shaped on its sending side): half the latency per hop,
// per-hop loss 1-sqrt(1-L), and per-hop jitter jitter/√2 (the same variance split reckon
// applies; reckon's --link-jitter is a fraction of the latency, so convert it to a
// duration, jitter = fraction·latency, before calling). latency is one way: the round trip
// between the two nodes is 2·latency. lossPct is a percentage.
//
// Only use it where a path really crosses two shaped hops each way. If only the node side
// of each veth is shaped, a node-to-node path crosses one shaped egress per direction
// (the sender's), and that hop must get the whole end-to-end value: Split(e2e, 1).
func SplitEndToEnd(latency, jitter time.Duration, lossPct float64) Impairment {
	return Split(Impairment{Delay: latency, Jitter: jitter, Loss: lossPct}, 2)
}
