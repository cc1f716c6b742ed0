package shell

import (
	"context"
	"errors"
	"fmt"

	"github.com/dtlab/dt/faults"
	"github.com/dtlab/dt/shaping"
	"github.com/dtlab/dt/topology"
)

// LinkShaper impairs the traffic between two nodes, both ways; a zero Impairment removes
// the impairment. *topology.Live is one (through the nodes' agents); Options.Links
// replaces it.
type LinkShaper = faults.Links

var _ LinkShaper = (*topology.Live)(nil)

// linkShaper is what `link` acts through.
func (s *Shell) linkShaper() LinkShaper {
	if s.opts.Links != nil {
		return s.opts.Links
	}
	return s.live
}

func (s *Shell) cmdLink(ctx context.Context, args []string) error {
	fs := flags("link")
	delay := fs.String("delay", "", "one-way delay (50ms; a bare number is ms)")
	jitter := fs.String("jitter", "", "jitter around the delay")
	loss := fs.String("loss", "", "loss percentage (0-100)")
	rate := fs.String("rate", "", "rate limit in bits/s (10mbit, 500kbit, 1gbit)")
	clear := fs.Bool("clear", false, "remove the impairment")
	pos, err := parseFlags(fs, "link", args, 2, 2)
	if err != nil {
		return err
	}
	lf := shaping.LinkFlags(*delay, *jitter, *loss, *rate)
	lf.Sep = ": "
	imp, err := lf.Impairment()
	if err != nil {
		return fmt.Errorf("link: %w", err)
	}
	if *clear {
		if !imp.IsZero() {
			return errors.New("link: --clear takes no other impairment flag")
		}
	} else if imp.IsZero() {
		return fmt.Errorf("link: say what to do: --delay, --jitter, --loss, --rate or --clear (%s)", usageOf("link"))
	}
	a, err := s.resolve(ctx, pos[0])
	if err != nil {
		return fmt.Errorf("link: %w", err)
	}
	b, err := s.resolve(ctx, pos[1])
	if err != nil {
		return fmt.Errorf("link: %w", err)
	}
	if a == b {
		return fmt.Errorf("link: %s and %s are the same node", pos[0], pos[1])
	}
	name := "link " + a + " <-> " + b
	sameLink := func(e faults.Effect) bool { return e.Action == "link" && sameSet(e.Nodes, []string{a, b}) }
	if *clear {
		// A link set here is healed as a step; one set by `dt link` elsewhere is cleared.
		if len(s.eng.Heal(ctx, "link --clear", sameLink)) == 0 {
			if err := s.linkShaper().ShapeLink(ctx, a, b, imp); err != nil {
				return linkError(err)
			}
		}
		s.printf("cleared %s <-> %s\n", a, b)
		return nil
	}
	// The new setting replaces the one in place (a link has one setting at a time).
	s.eng.Heal(ctx, name, sameLink)
	st := faults.Step{Action: "link", Targets: []string{a, b}, Delay: faults.Duration(imp.Delay), Jitter: faults.Duration(imp.Jitter), Loss: imp.Loss}
	if imp.Rate > 0 {
		st.Rate = fmt.Sprintf("%dbit", imp.Rate)
	}
	if err := s.sess.Fire(ctx, name, st); err != nil {
		return linkError(err)
	}
	s.printf("%s <-> %s: %s\n", a, b, imp)
	return nil
}

// linkError explains the one failure a user can do something about.
func linkError(err error) error {
	if errors.Is(err, topology.ErrNoShapers) {
		return fmt.Errorf("link: links are shaped by the agents in the nodes, and this session has none: %w", err)
	}
	return fmt.Errorf("link: %w", err)
}
