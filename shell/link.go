package shell

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dtlab/dt/results"
	"github.com/dtlab/dt/shaping"
)

// LinkShaper impairs the traffic between two nodes, both ways; a zero Impairment removes
// the impairment. It is the seam between `link` and package shaping: pass one in
// Options.Links, or give *experiment.Cluster or *topology.Live a ShapeLink method and
// the shell finds it by type assertion.
type LinkShaper interface {
	ShapeLink(ctx context.Context, a, b string, imp shaping.Impairment) error
}

// ErrLinkShapingUnavailable is returned by `link` while nothing implements LinkShaper.
var ErrLinkShapingUnavailable = errors.New("link shaping is not available in dt yet: package shaping has no hook into a live topology (see shell.LinkShaper)")

// linkShaper finds the LinkShaper of this session, if any.
func (s *Shell) linkShaper() LinkShaper {
	if s.opts.Links != nil {
		return s.opts.Links
	}
	if s.cluster != nil {
		if l, ok := any(s.cluster).(LinkShaper); ok {
			return l
		}
	}
	if l, ok := any(s.live).(LinkShaper); ok {
		return l
	}
	return nil
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
	imp, err := parseImpairment(*delay, *jitter, *loss, *rate)
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
	ls := s.linkShaper()
	if ls == nil {
		return fmt.Errorf("link %s <-> %s %s: %w", a, b, imp, ErrLinkShapingUnavailable)
	}
	name := "link " + a + " <-> " + b
	if *clear {
		if err := ls.ShapeLink(ctx, a, b, imp); err != nil {
			return fmt.Errorf("link: %w", err)
		}
		s.record(results.Event{Type: results.EventFaultEnd, Fault: name, Action: "clear", Targets: []string{a, b}})
		s.printf("cleared %s <-> %s\n", a, b)
		return nil
	}
	s.record(results.Event{Type: results.EventFaultStart, Fault: name, Action: "shape", Targets: []string{a, b}, Detail: imp.String()})
	if err := ls.ShapeLink(ctx, a, b, imp); err != nil {
		s.record(results.Event{Type: results.EventFaultEnd, Fault: name, Detail: "failed: " + err.Error()})
		return fmt.Errorf("link: %w", err)
	}
	s.printf("%s <-> %s: %s\n", a, b, imp)
	return nil
}

// parseImpairment reads the flags of `link`; empty strings leave a field zero.
func parseImpairment(delay, jitter, loss, rate string) (shaping.Impairment, error) {
	var imp shaping.Impairment
	var err error
	if imp.Delay, err = parseDelay(delay); err != nil {
		return imp, fmt.Errorf("--delay: %w", err)
	}
	if imp.Jitter, err = parseDelay(jitter); err != nil {
		return imp, fmt.Errorf("--jitter: %w", err)
	}
	if loss != "" {
		if imp.Loss, err = strconv.ParseFloat(strings.TrimSuffix(loss, "%"), 64); err != nil {
			return imp, fmt.Errorf("--loss %q: not a percentage", loss)
		}
	}
	if imp.Rate, err = ParseRate(rate); err != nil {
		return imp, fmt.Errorf("--rate: %w", err)
	}
	return imp, imp.Validate()
}

// parseDelay reads a duration; a bare number is milliseconds, as in reckon's flags.
func parseDelay(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return time.Duration(f * float64(time.Millisecond)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration like 50ms", v)
	}
	return d, nil
}

// ParseRate reads a rate in bits/s as tc writes it: a number with an optional unit bit,
// kbit, mbit, gbit (or k, m, g; decimal multiples; case ignored). tc's bytes-per-second
// units (kbps...) are refused rather than misread.
func ParseRate(v string) (uint64, error) {
	if v == "" {
		return 0, nil
	}
	s := strings.ToLower(strings.TrimSpace(v))
	s = strings.TrimSuffix(s, "bit")
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1e3, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "m"):
		mult, s = 1e6, strings.TrimSuffix(s, "m")
	case strings.HasSuffix(s, "g"):
		mult, s = 1e9, strings.TrimSuffix(s, "g")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("%q is not a rate like 10mbit", v)
	}
	return uint64(f * mult), nil
}
