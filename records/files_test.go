package records

import (
	"testing"
	"time"
)

func TestSeriesFile(t *testing.T) {
	for w, want := range map[time.Duration]string{100 * time.Millisecond: "timeseries_100ms.csv", time.Second: "timeseries_1s.csv"} {
		if got := SeriesFile(w); got != want {
			t.Errorf("SeriesFile(%v) = %q, want %q", w, got, want)
		}
	}
}
