package records

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

// maxSkippedSamples bounds how many skipped lines Load describes individually; all are counted.
const maxSkippedSamples = 20

// Run is a run directory read back into memory.
type Run struct {
	Dir    string
	Config map[string]any // config.json as written; nil when missing or unreadable
	Ops    []Op           // in file order (roughly completion order)
	Events []Event        // sorted by T (stable, so equal times keep file order)

	// SkippedRecords counts lines of ops.jsonl and events.jsonl that could not be decoded,
	// typically the half-written last line of a run that crashed.
	SkippedRecords int
	// Skipped describes the first few skipped lines.
	Skipped []SkippedLine
	// Warnings are problems that did not stop the load (a missing file, an unreadable config).
	Warnings []string
}

// SkippedLine says where a record could not be decoded and why.
type SkippedLine struct {
	File  string `json:"file"`
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// Load reads a run directory tolerantly: a corrupt or half-written line is skipped and
// counted, a missing ops.jsonl or events.jsonl is read as empty (a warning says so), and an
// error is returned only when the directory holds neither log or a file cannot be read.
func Load(runDir string) (*Run, error) {
	st, err := os.Stat(runDir)
	if err != nil {
		return nil, fmt.Errorf("load run: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("load run: %s is not a directory", runDir)
	}
	r := &Run{Dir: runDir}
	// readLog reads one of the two logs; a missing one is a warning, counted in missing.
	missing := 0
	readLog := func(name string, decode func([]byte) error) error {
		err := readJSONL(filepath.Join(runDir, name), r, decode)
		if errors.Is(err, fs.ErrNotExist) {
			missing++
			r.Warnings = append(r.Warnings, name+" missing")
			return nil
		}
		if err != nil {
			return fmt.Errorf("load run: %w", err)
		}
		return nil
	}

	if b, err := os.ReadFile(filepath.Join(runDir, ConfigFile)); err == nil {
		if err := json.Unmarshal(b, &r.Config); err != nil {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s unreadable: %v", ConfigFile, err))
		}
	} else if errors.Is(err, fs.ErrNotExist) {
		r.Warnings = append(r.Warnings, ConfigFile+" missing")
	} else {
		return nil, fmt.Errorf("load run: %w", err)
	}

	in := interner{}
	if st, err := os.Stat(filepath.Join(runDir, OpsFile)); err == nil {
		// records are ~150-200 bytes; growing a million-op slice by doubling copies it twice over
		r.Ops = make([]Op, 0, min(st.Size()/150, 50_000_000))
	}
	if err := readLog(OpsFile, func(line []byte) error {
		var op Op
		if err := decodeOp(line, &op, in); err != nil {
			return err
		}
		r.Ops = append(r.Ops, op)
		return nil
	}); err != nil {
		return nil, err
	}
	if err := readLog(EventsFile, func(line []byte) error {
		var ev Event
		if err := json.Unmarshal(line, &ev); err != nil {
			return err
		}
		if ev.Type == "" {
			return errors.New("event without a type")
		}
		r.Events = append(r.Events, ev)
		return nil
	}); err != nil {
		return nil, err
	}
	if missing == 2 {
		return nil, fmt.Errorf("load run: %s has neither %s nor %s: %w", runDir, OpsFile, EventsFile, fs.ErrNotExist)
	}
	// Events are written in order by one process, but sort anyway: a re-analysis must not
	// depend on it and every consumer below assumes time order.
	sort.SliceStable(r.Events, func(i, j int) bool { return r.Events[i].T < r.Events[j].T })
	return r, nil
}

// readJSONL calls decode for every non-blank line of path; a line decode rejects is
// recorded as skipped in r. The error is fs.ErrNotExist (wrapped) when path is missing.
func readJSONL(path string, r *Run, decode func([]byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var long []byte // assembles a line longer than the buffer
	lineNo := 0
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, chunk...)
			continue
		}
		line := chunk
		if long != nil {
			long = append(long, chunk...)
			line, long = long, nil
		}
		if len(line) > 0 {
			lineNo++
			if t := bytes.TrimSpace(line); len(t) > 0 {
				if derr := decode(t); derr != nil {
					r.SkippedRecords++
					if len(r.Skipped) < maxSkippedSamples {
						r.Skipped = append(r.Skipped, SkippedLine{File: filepath.Base(path), Line: lineNo, Error: shorten(derr.Error(), 200)})
					}
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
	}
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// interner shares the few distinct strings (clients, keys, results, targets) that repeat on
// every line of a large history.
type interner map[string]string

func (in interner) get(b []byte) string {
	if s, ok := in[string(b)]; ok { // no allocation: the compiler special-cases this lookup
		return s
	}
	if len(in) > 1<<16 { // a field with unbounded distinct values; stop sharing
		return string(b)
	}
	s := string(b)
	in[s] = s
	return s
}

// decodeOp decodes one ops.jsonl line. The common case, a flat object with exactly the Op
// fields and no escapes, is parsed by hand (about ten times faster than encoding/json, which
// matters for million-op histories); anything else goes through encoding/json.
func decodeOp(line []byte, op *Op, in interner) error {
	if fastDecodeOp(line, op, in) {
		return nil
	}
	*op = Op{}
	if err := json.Unmarshal(line, op); err != nil {
		return err
	}
	return nil
}

// fastDecodeOp returns false, leaving op in an unspecified state, if line is not a flat JSON
// object of known Op fields with escape-free strings and plain numbers.
func fastDecodeOp(b []byte, op *Op, in interner) bool {
	*op = Op{}
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipWS(b, i+1) == len(b)
	}
	for {
		key, j, ok := scanString(b, i)
		if !ok {
			return false
		}
		i = skipWS(b, j)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipWS(b, i+1)
		if i >= len(b) {
			return false
		}
		var f *float64
		var s *string
		var sp **string
		var bl *bool
		intern := true
		switch string(key) {
		case "client":
			s = &op.Client
		case "kind":
			s = &op.Kind
		case "key":
			s = &op.Key
		case "value":
			s, intern = &op.Value, false
		case "expected":
			s, intern = &op.Expected, false
		case "current":
			sp = &op.Current
		case "swapped":
			bl = &op.Swapped
		case "result":
			s = &op.Result
		case "target":
			s = &op.Target
		case "expected_start":
			f = &op.ExpectedStart
		case "submitted":
			f = &op.Submitted
		case "completed":
			f = &op.Completed
		default:
			return false
		}
		switch {
		case s != nil:
			v, j, ok := scanString(b, i)
			if !ok {
				return false
			}
			if intern {
				*s = in.get(v)
			} else {
				*s = string(v)
			}
			i = j
		case sp != nil:
			v, j, ok := scanString(b, i) // null takes the slow path
			if !ok {
				return false
			}
			str := string(v)
			*sp = &str
			i = j
		case bl != nil:
			v, j, ok := scanBool(b, i)
			if !ok {
				return false
			}
			*bl = v
			i = j
		default:
			v, j, ok := scanNumber(b, i)
			if !ok {
				return false
			}
			*f = v
			i = j
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return skipWS(b, i+1) == len(b)
		default:
			return false
		}
	}
}

// scanBool reads true or false starting at b[i] (null takes the slow path).
func scanBool(b []byte, i int) (bool, int, bool) {
	switch {
	case bytes.HasPrefix(b[i:], []byte("true")):
		return true, i + 4, true
	case bytes.HasPrefix(b[i:], []byte("false")):
		return false, i + 5, true
	}
	return false, i, false
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString reads a JSON string without escapes or control characters starting at b[i].
func scanString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			// escapes and non-ASCII (which encoding/json validates and may replace) take the slow path
			return nil, i, false
		}
	}
	return nil, i, false
}

// scanNumber reads a JSON number starting at b[i], following the JSON grammar exactly so
// that the fast path accepts nothing encoding/json would reject.
func scanNumber(b []byte, i int) (float64, int, bool) {
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return 0, start, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return 0, start, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return 0, start, false
		}
	}
	v, err := parseFloat(b[start:i])
	if err != nil {
		return 0, start, false
	}
	return v, i, true
}

func parseFloat(b []byte) (float64, error) { return strconv.ParseFloat(string(b), 64) }
