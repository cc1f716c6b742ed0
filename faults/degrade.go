package faults

import (
	"fmt"
	"time"

	"github.com/dtlab/dt/shaping"
)

// Faults that degrade links instead of cutting them: from T/3 to 2T/3 they add a delay,
// a loss or a rate limit to every path to or from the servers (the -network ones) or the
// leader (the -leader ones), on top of the topology's links, and remove it after.

// Defaults of the amounts, when Params leaves them zero.
const (
	DefaultDelay = 100 * time.Millisecond
	DefaultLoss  = 10.0
	DefaultRate  = 1_000_000 // bit/s
)

func init() {
	for _, f := range []degrade{
		{kind: "slow", name: "slow-network"},
		{kind: "lossy", name: "lossy-network"},
		{kind: "limit", name: "bandwidth-limit"},
		{kind: "slow", name: "slow-leader", leader: true},
		{kind: "lossy", name: "lossy-leader", leader: true},
		{kind: "limit", name: "bandwidth-limit-leader", leader: true},
	} {
		RegisterFault(builtin{name: f.name, describe: f.describe(), from: 1.0 / 3, to: 2.0 / 3, steps: f.steps})
	}
}

type degrade struct {
	kind   string // slow | lossy | limit
	name   string
	leader bool
}

func (f degrade) describe() string {
	what := map[string]string{
		"slow":  "add --fault-delay (default 100ms; --fault-jitter) one way",
		"lossy": "lose --fault-loss % (default 10) of the packets",
		"limit": "limit to --fault-rate (default 1mbit) per sender",
	}[f.kind]
	whom := "every path to or from a server"
	if f.leader {
		whom = "every path to or from the leader"
	}
	return fmt.Sprintf("from T/3 to 2T/3, %s on %s", what, whom)
}

// impairment is what the fault adds, with the defaults filled in.
func (f degrade) impairment(p Params) shaping.Impairment {
	switch f.kind {
	case "slow":
		d := p.Delay
		if d == 0 {
			d = DefaultDelay
		}
		return shaping.Impairment{Delay: d, Jitter: p.Jitter}
	case "lossy":
		l := p.Loss
		if l == 0 {
			l = DefaultLoss
		}
		return shaping.Impairment{Loss: l}
	}
	r := p.Rate
	if r == 0 {
		r = DefaultRate
	}
	return shaping.Impairment{Rate: r}
}

// steps is the fault's one step: the impairment on the servers or the leader over
// [T/3, 2T/3].
func (f degrade) steps(p Params) []Step {
	imp := f.impairment(p)
	s := Step{ID: f.name, Targets: []string{"all"}, At: at(p.Duration / 3), For: Duration(p.Duration / 3)}
	if f.leader {
		s.Targets = []string{"leader"}
	}
	switch f.kind {
	case "slow":
		s.Action, s.Delay, s.Jitter = "delay", Duration(imp.Delay), Duration(imp.Jitter)
	case "lossy":
		s.Action, s.Loss = "loss", imp.Loss
	default:
		s.Action, s.Rate = "limitspeed", fmt.Sprintf("%dbit", imp.Rate)
	}
	return []Step{s}
}

// validateDegrade checks the amounts a degrading fault uses.
func validateDegrade(name string, p Params) error {
	var f degrade
	switch name {
	case "slow-network", "slow-leader":
		f.kind = "slow"
	case "lossy-network", "lossy-leader":
		f.kind = "lossy"
	case "bandwidth-limit", "bandwidth-limit-leader":
		f.kind = "limit"
	default:
		return nil
	}
	if p.Delay < 0 || p.Delay > shaping.MaxDelay {
		return fmt.Errorf("--fault-delay %v: want 0..%v", p.Delay, shaping.MaxDelay)
	}
	if p.Jitter < 0 || p.Jitter > shaping.MaxDelay {
		return fmt.Errorf("--fault-jitter %v: want 0..%v", p.Jitter, shaping.MaxDelay)
	}
	if p.Loss < 0 || p.Loss > 100 {
		return fmt.Errorf("--fault-loss %g: want 0..100 (percent)", p.Loss)
	}
	if p.Rate != 0 && p.Rate < shaping.MinRate {
		return fmt.Errorf("--fault-rate %d bit/s: want at least %d", p.Rate, shaping.MinRate)
	}
	if err := f.impairment(p).Validate(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
