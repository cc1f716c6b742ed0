package shaping

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseDelay reads a delay or jitter: a Go duration ("50ms", "1.5s") or a bare number of
// milliseconds ("50"), as reckon's --link-latency. It must lie within 0..MaxDelay.
func ParseDelay(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var d time.Duration
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("%q is not a duration like 50ms", s)
		}
		d = time.Duration(f * float64(time.Millisecond))
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, fmt.Errorf("%q is not a duration like 50ms (a bare number is milliseconds)", s)
	}
	if d < 0 || d > MaxDelay {
		return 0, fmt.Errorf("%s: want 0..%v", s, MaxDelay)
	}
	return d, nil
}

// ParseLoss reads a loss percentage, "5%" or "5", within 0..100.
func ParseLoss(s string) (float64, error) {
	s = strings.TrimSpace(s)
	f, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(s, "%")), 64)
	if err != nil || math.IsNaN(f) {
		return 0, fmt.Errorf("%q is not a percentage like 5%%", s)
	}
	if f < 0 || f > 100 {
		return 0, fmt.Errorf("%s: want 0..100 (percent)", s)
	}
	return f, nil
}

// ParseRate reads a rate in bits/s with tc's units: bit, kbit, mbit, gbit (k, m, g for
// short; decimal multiples; case ignored), e.g. "10mbit", "1.5gbit". A bare number is
// refused unless bare says what it means (e.g. 1e6 for Mbit/s), and so are tc's
// bytes-per-second units (kbps, mbps), which are easily misread. Zero means unlimited;
// otherwise the rate must be at least MinRate.
func ParseRate(s string, bare float64) (uint64, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	if strings.HasSuffix(v, "bps") {
		return 0, fmt.Errorf("%q: bytes per second are not accepted; say 8mbit for 1 MB/s", s)
	}
	num, mult := v, bare
	for _, u := range []struct {
		suffix string
		mult   float64
	}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}, {"g", 1e9}, {"m", 1e6}, {"k", 1e3}} {
		if strings.HasSuffix(v, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0, fmt.Errorf("%q is not a rate like 10mbit", s)
	}
	if mult == 0 {
		return 0, fmt.Errorf("%q: give a unit, e.g. %smbit or %skbit", s, num, num)
	}
	r := f * mult
	if r > math.MaxUint64/2 {
		return 0, fmt.Errorf("%s: too fast", s)
	}
	bits := uint64(math.Round(r))
	if bits != 0 && bits < MinRate {
		return 0, fmt.Errorf("%s: want 0 (unlimited) or at least %dkbit", s, MinRate/1000)
	}
	return bits, nil
}
