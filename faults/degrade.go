package faults

import (
	"context"
	"fmt"
	"strings"
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
	for _, f := range []Fault{
		degrade{kind: "slow", name: "slow-network"},
		degrade{kind: "lossy", name: "lossy-network"},
		degrade{kind: "limit", name: "bandwidth-limit"},
		degrade{kind: "slow", name: "slow-leader", leader: true},
		degrade{kind: "lossy", name: "lossy-leader", leader: true},
		degrade{kind: "limit", name: "bandwidth-limit-leader", leader: true},
	} {
		Register(f)
	}
}

type degrade struct {
	kind   string // slow | lossy | limit
	name   string
	leader bool
}

func (f degrade) Name() string { return f.name }

func (f degrade) Describe() string {
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

func (f degrade) Run(ctx context.Context, env Env, p Params) error {
	imp := f.impairment(p)
	resolve := func(ctx context.Context) ([]string, string, error) {
		if f.leader {
			l, err := env.Leader(ctx)
			if err != nil {
				return nil, "", err
			}
			return []string{l}, fmt.Sprintf("%s on every path to or from %s", imp, l), nil
		}
		s := env.Servers()
		return s, fmt.Sprintf("%s on every path to or from %s", imp, strings.Join(s, ",")), nil
	}
	return windowed(ctx, env, p, f.name, f.kind, resolve, func(ctx context.Context, targets []string) (Undo, error) {
		return env.Impair(ctx, targets, imp, f.name)
	})
}

// validateDegrade checks the amounts a degrading fault uses.
func validateDegrade(name string, p Params) error {
	f, ok := registry[name].(degrade)
	if !ok {
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
