package shaping

import (
	"strings"
	"testing"
	"time"
)

// TestFlags: one parser for every flag that gives an impairment; each error names its
// flag the way its caller writes flags, and every bad flag is reported.
func TestFlags(t *testing.T) {
	imp, err := LinkFlags("20", "2ms", "1.5%", "10mbit").Impairment()
	if err != nil || imp != (Impairment{Delay: 20 * time.Millisecond, Jitter: 2 * time.Millisecond, Loss: 1.5, Rate: 10e6}) {
		t.Fatalf("LinkFlags: %+v, %v", imp, err)
	}
	if imp, err := LinkFlags("", "", "", "").Impairment(); err != nil || !imp.IsZero() {
		t.Errorf("no flags: %+v, %v", imp, err)
	}
	prompt := LinkFlags("", "", "150", "")
	prompt.Sep = ": "
	for _, tc := range []struct {
		f    Flags
		want []string
	}{
		{LinkFlags("", "", "120", ""), []string{"--loss 120: want 0..100"}},
		{LinkFlags("", "", "", "10"), []string{`--rate "10": give a unit`}},
		{prompt, []string{"--loss: 150: want 0..100"}},
		{LinkFlags("soon", "", "x", "fast"), []string{`--delay "soon" is not a duration`, `--loss "x" is not a percentage`, `--rate "fast" is not a rate`}},
		{LinkFlags("", "2ms", "", ""), []string{"jitter 2ms needs a non-zero delay"}},
	} {
		_, err := tc.f.Impairment()
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: %v, want %q", tc.f, err, w)
			}
		}
	}
	// A bare rate means what the caller says; Parse leaves the combination alone (a
	// fault's jitter without a delay takes the fault's default delay later).
	f := Flags{Jitter: Flag{"--fault-jitter", "5ms"}, Rate: Flag{"--fault-rate", "2"}, BareRate: 1e6}
	if imp, err := f.Parse(); err != nil || imp.Rate != 2e6 || imp.Jitter != 5*time.Millisecond {
		t.Errorf("fault flags: %+v, %v", imp, err)
	}
}
