package results

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dtlab/dt/records"
)

// maxBuckets bounds a series (64 bytes a bucket).
const maxBuckets = 2_000_000

// Series is a run cut into buckets of equal width, aligned to the run's start.
type Series struct {
	Width   time.Duration
	Buckets []Bucket
}

// Bucket is one time bucket. Counts are by completion time (overloads by due time);
// latencies (ms) are of the successful operations scheduled in the bucket, NaN when none.
type Bucket struct {
	Start    float64 // s from the run's start
	OK       int
	Failed   int
	Overload int
	N        int // successful operations scheduled in the bucket
	P50      float64
	P99      float64
	Max      float64
}

// Throughput is successful operations per second in b.
func (s *Series) Throughput(b Bucket) float64 { return float64(b.OK) / s.Width.Seconds() }

// SeriesOf cuts the run into buckets of the given width, aligned to the run's start: the
// figures of the timeseries_<width>.csv files, for callers that want them in memory.
func SeriesOf(r *records.Run, width time.Duration) *Series { return prepare(r).series(width) }

// series buckets the run from its first operation (or the workload start) to its last
// completion (or the workload end), with buckets aligned to the run's start.
func (a *analysis) series(width time.Duration) *Series { return a.seriesAt(0, width) }

// seriesAt is series with buckets aligned to origin (s from the run's start) instead.
func (a *analysis) seriesAt(origin float64, width time.Duration) *Series {
	s := &Series{Width: width}
	w := width.Seconds()
	if w <= 0 {
		return s
	}
	lo, hi := a.period.Start, a.period.End
	if len(a.byStart) > 0 {
		lo = min(lo, a.byStart[0].start)
	}
	if n := len(a.okDone); n > 0 {
		hi = max(hi, a.okDone[n-1])
	}
	if n := len(a.failDone); n > 0 {
		hi = max(hi, a.failDone[n-1])
	}
	first := int(math.Floor((lo - origin) / w))
	last := int(math.Floor((hi - origin) / w))
	if last < first || last-first > maxBuckets { // a corrupt timestamp must not allocate the world
		return s
	}
	s.Buckets = make([]Bucket, last-first+1)
	for i := range s.Buckets {
		s.Buckets[i] = Bucket{Start: origin + float64(first+i)*w, P50: math.NaN(), P99: math.NaN(), Max: math.NaN()}
	}
	idx := func(t float64) int {
		return min(max(int(math.Floor((t-origin)/w))-first, 0), len(s.Buckets)-1)
	}
	for _, t := range a.okDone {
		s.Buckets[idx(t)].OK++
	}
	for _, t := range a.failDone {
		s.Buckets[idx(t)].Failed++
	}
	// byStart is sorted, so each bucket's successes are one run of it.
	var lats []float64
	flush := func(b int) {
		if len(lats) == 0 {
			return
		}
		slices.Sort(lats)
		bk := &s.Buckets[b]
		bk.N = len(lats)
		bk.P50, bk.P99, bk.Max = quantile(lats, 0.5), quantile(lats, 0.99), lats[len(lats)-1]
		lats = lats[:0]
	}
	cur := -1
	for _, p := range a.byStart {
		b := idx(p.start)
		if b != cur {
			if cur >= 0 {
				flush(cur)
			}
			cur = b
		}
		switch p.state {
		case stOK:
			lats = append(lats, p.lat)
		case stOverload:
			s.Buckets[b].Overload++
		}
	}
	if cur >= 0 {
		flush(cur)
	}
	return s
}

// WriteCSV writes the series with a header row; empty cells mean no data. The fault column
// names the faults active during the bucket.
func (s *Series) WriteCSV(w io.Writer, faults []FaultWindow) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "t_start_s,t_end_s,ok,failed,overload,throughput_ok_per_s,failures_per_s,latency_n,latency_p50_ms,latency_p99_ms,latency_max_ms,fault")
	width := s.Width.Seconds()
	num := func(v float64) string {
		if math.IsNaN(v) {
			return ""
		}
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	for _, b := range s.Buckets {
		var active []string
		for _, f := range faults {
			end := math.Inf(1)
			if f.End != nil {
				end = *f.End
			}
			if f.Start < b.Start+width && end > b.Start {
				active = append(active, f.Name)
			}
		}
		fmt.Fprintf(bw, "%s,%s,%d,%d,%d,%s,%s,%d,%s,%s,%s,%s\n",
			num(round3(b.Start)), num(round3(b.Start+width)), b.OK, b.Failed, b.Overload,
			num(round3(float64(b.OK)/width)), num(round3(float64(b.Failed)/width)),
			b.N, num(round3(b.P50)), num(round3(b.P99)), num(round3(b.Max)), csvField(strings.Join(active, " ")))
	}
	return bw.Flush()
}

func csvField(s string) string {
	if strings.ContainsAny(s, ",\"\n") {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}
