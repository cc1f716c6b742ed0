package sweep

import (
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/dtlab/dt/results"
)

// column is one summary figure: a scalar of results.Summary by its JSON path
// ("windows.overall.latency_ms.p99"), or the length of a list ("faults.count").
type column struct {
	name  string
	index [][]int // field index path, one step per struct level
	count bool
}

// skipped are summary fields that are not figures (text, file lists, the echoed params).
var skipped = map[string]bool{
	"run_dir": true, "title": true, "params": true, "generated_at": true, "files": true,
	"skipped_lines": true, "spans": true, "detail": true, "note": true, "visualization": true,
}

// SummaryColumns lists every figure of results.Summary that sweep.csv has a column for,
// in the summary's own order. It depends on the type only, so every row has them all.
var SummaryColumns = sync.OnceValue(func() []string {
	var out []string
	for _, c := range summaryColumns() {
		out = append(out, c.name)
	}
	return out
})

var summaryColumns = sync.OnceValue(func() []column {
	var out []column
	var walk func(t reflect.Type, prefix string, index [][]int)
	walk = func(t reflect.Type, prefix string, index [][]int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" || !f.IsExported() || skipped[name] {
				continue
			}
			path := prefix + name
			idx := append(append([][]int(nil), index...), []int{i})
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch ft.Kind() {
			case reflect.Struct:
				walk(ft, path+".", idx)
			case reflect.Slice:
				out = append(out, column{name: path + ".count", index: idx, count: true})
			case reflect.Map:
			default:
				out = append(out, column{name: path, index: idx})
			}
		}
	}
	walk(reflect.TypeOf(results.Summary{}), "", nil)
	return out
})

// value reads column c of s as CSV text ("" when a pointer on the way is nil).
func (c column) value(s *results.Summary) string {
	if s == nil {
		return ""
	}
	v := reflect.ValueOf(s).Elem()
	for _, step := range c.index {
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return ""
			}
			v = v.Elem()
		}
		v = v.FieldByIndex(step)
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	if c.count {
		return strconv.Itoa(v.Len())
	}
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.String:
		return v.String()
	}
	return ""
}

// figureAliases are short names for the figures plots ask for most.
var figureAliases = map[string]string{
	"p50":                "windows.overall.latency_ms.p50",
	"p99":                "windows.overall.latency_ms.p99",
	"max-latency":        "windows.overall.latency_ms.max",
	"throughput":         "windows.overall.throughput_ops_s",
	"during-p99":         "windows.during.latency_ms.p99",
	"during-throughput":  "windows.during.throughput_ops_s",
	"unavailability":     "unavailability_s",
	"recovery":           "recovery_s.from_fault_start",
	"recovery-from-heal": "recovery_s.from_heal",
	"leader-changes":     "leader_changes",
	"failed":             "ops.failed",
	"seconds":            "seconds",
}

// figureLabels are axis labels of the common figures.
var figureLabels = map[string]string{
	"windows.overall.latency_ms.p50":   "p50 latency (ms)",
	"windows.overall.latency_ms.p99":   "p99 latency (ms)",
	"windows.overall.latency_ms.max":   "max latency (ms)",
	"windows.overall.throughput_ops_s": "throughput (ok ops/s)",
	"windows.during.latency_ms.p99":    "p99 latency during the fault (ms)",
	"windows.during.throughput_ops_s":  "throughput during the fault (ok ops/s)",
	"unavailability_s":                 "longest unavailability (s)",
	"recovery_s.from_fault_start":      "recovery from fault start (s)",
	"recovery_s.from_heal":             "recovery from heal (s)",
	"leader_changes":                   "leader changes",
	"ops.failed":                       "failed ops",
	"seconds":                          "wall time of the run (s)",
}

// resolveFigure maps an alias or column name to a column of sweep.csv.
func resolveFigure(y string) (string, bool) {
	if c, ok := figureAliases[y]; ok {
		return c, true
	}
	if y == "seconds" {
		return y, true
	}
	for _, c := range SummaryColumns() {
		if c == y {
			return c, true
		}
	}
	return "", false
}

func figureLabel(col string) string {
	if l, ok := figureLabels[col]; ok {
		return l
	}
	return col
}
