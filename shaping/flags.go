package shaping

import (
	"errors"
	"fmt"
)

// Flag is one flag's value as the user typed it, and the flag's name for errors
// ("--delay"). An empty Value is a flag not given.
type Flag struct{ Name, Value string }

// Flags are the flags that give an impairment, read in one place for `dt link`, the
// prompt's `link`, the --fault-* amounts and --link-bandwidth. A flag not given leaves
// its field zero.
type Flags struct {
	Delay, Jitter, Loss, Rate Flag
	// BareRate is what a rate without a unit means (1e6: Mbit/s); 0 refuses it.
	BareRate float64
	// Sep goes between a flag's name and the reason in errors: "" is a space
	// ("--delay 50x: ..."), the prompt uses ": " ("link: --delay: 50x: ...").
	Sep string
}

// LinkFlags are the flags of `dt link` and of the prompt's `link`: --delay and --jitter
// (durations; a bare number is ms), --loss (a percentage) and --rate (with its unit).
func LinkFlags(delay, jitter, loss, rate string) Flags {
	return Flags{Delay: Flag{"--delay", delay}, Jitter: Flag{"--jitter", jitter},
		Loss: Flag{"--loss", loss}, Rate: Flag{"--rate", rate}}
}

// Parse reads every flag given and reports every bad one, each error naming its flag. It
// does not check how the values combine (see Impairment): a fault's zero delay takes its
// default later.
func (f Flags) Parse() (Impairment, error) {
	sep := f.Sep
	if sep == "" {
		sep = " "
	}
	var imp Impairment
	var errs []error
	bad := func(fl Flag, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s%s%w", fl.Name, sep, err))
		}
	}
	var err error
	if f.Delay.Value != "" {
		imp.Delay, err = ParseDelay(f.Delay.Value)
		bad(f.Delay, err)
	}
	if f.Jitter.Value != "" {
		imp.Jitter, err = ParseDelay(f.Jitter.Value)
		bad(f.Jitter, err)
	}
	if f.Loss.Value != "" {
		imp.Loss, err = ParseLoss(f.Loss.Value)
		bad(f.Loss, err)
	}
	if f.Rate.Value != "" {
		imp.Rate, err = ParseRate(f.Rate.Value, f.BareRate)
		bad(f.Rate, err)
	}
	return imp, errors.Join(errs...)
}

// Impairment is Parse, then a check that the values make one impairment (a jitter needs
// a delay, ...).
func (f Flags) Impairment() (Impairment, error) {
	imp, err := f.Parse()
	if err != nil {
		return imp, err
	}
	return imp, imp.Validate()
}
