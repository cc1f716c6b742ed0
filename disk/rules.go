// Package disk is the vocabulary and the bookkeeping of dt's disk layer: the fault rules a
// member's filesystem obeys (errors, latency, a full disk), the journal that knows what a
// member wrote since its last fsync so that a power loss can discard exactly that, file
// corruption, the probes that check a rule's effect through the mount, and finding and
// detaching the run's mounts. The FUSE filesystem that serves a data dir through these
// rules is disk/layer; this package needs only the standard library and x/sys, so that
// faults and topology can use its names without pulling in FUSE.
package disk

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Operations a rule can hit, as the filesystem sees them.
const (
	OpOpen     = "open"     // open of an existing file (O_TRUNC included)
	OpCreate   = "create"   // open with O_CREAT of a new file, mknod
	OpRead     = "read"     // read(2), pread(2) that reach the filesystem (not the page cache)
	OpWrite    = "write"    // write(2), pwrite(2)
	OpFsync    = "fsync"    // fsync(2), fdatasync(2), of files and of directories
	OpRename   = "rename"   // rename(2)
	OpUnlink   = "unlink"   // unlink(2)
	OpMkdir    = "mkdir"    // mkdir(2)
	OpRmdir    = "rmdir"    // rmdir(2)
	OpTruncate = "truncate" // truncate(2), ftruncate(2), open with O_TRUNC
	OpAllocate = "allocate" // fallocate(2)
	OpReaddir  = "readdir"  // getdents(2)
	OpLink     = "link"     // link(2), symlink(2)
)

// Ops lists every operation, in the order `dt faults` shows them.
var Ops = []string{OpOpen, OpCreate, OpRead, OpWrite, OpFsync, OpRename, OpUnlink, OpMkdir, OpRmdir, OpTruncate, OpAllocate, OpReaddir, OpLink}

// SpaceOps are the operations that need free space: what a full disk refuses.
var SpaceOps = []string{OpCreate, OpWrite, OpMkdir, OpAllocate, OpLink}

// Errnos are the errors a rule may answer with, by name.
var Errnos = map[string]syscall.Errno{
	"EIO":     syscall.EIO,
	"ENOSPC":  syscall.ENOSPC,
	"EROFS":   syscall.EROFS,
	"EDQUOT":  syscall.EDQUOT,
	"EACCES":  syscall.EACCES,
	"EPERM":   syscall.EPERM,
	"ENOENT":  syscall.ENOENT,
	"EFBIG":   syscall.EFBIG,
	"ENOMEM":  syscall.ENOMEM,
	"EAGAIN":  syscall.EAGAIN,
	"EINTR":   syscall.EINTR,
	"EBADF":   syscall.EBADF,
	"EINVAL":  syscall.EINVAL,
	"EMFILE":  syscall.EMFILE,
	"ENOTDIR": syscall.ENOTDIR,
}

// ErrnoNames lists the names of Errnos, sorted.
func ErrnoNames() []string {
	var out []string
	for n := range Errnos {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// ParseErrno reads an errno name ("EIO", "eio").
func ParseErrno(s string) (syscall.Errno, error) {
	if e, ok := Errnos[strings.ToUpper(strings.TrimSpace(s))]; ok {
		return e, nil
	}
	return 0, fmt.Errorf("unknown errno %q: valid are %s", s, strings.Join(ErrnoNames(), ", "))
}

// ErrnoName is the name of e ("EIO"), or its number.
func ErrnoName(e syscall.Errno) string {
	for n, x := range Errnos {
		if x == e {
			return n
		}
	}
	if e == 0 {
		return "ok"
	}
	return fmt.Sprintf("errno %d", int(e))
}

// ParseOps reads a list of operations; each element may itself be comma-separated
// ("fsync,write"), and "all" is every operation. Empty gives nil: the rule's default.
func ParseOps(words []string) ([]string, error) {
	var out []string
	var errs []error
	for _, w := range words {
		for _, op := range strings.Split(w, ",") {
			op = strings.ToLower(strings.TrimSpace(op))
			switch {
			case op == "":
			case op == "all":
				for _, o := range Ops {
					if !slices.Contains(out, o) {
						out = append(out, o)
					}
				}
			case !slices.Contains(Ops, op):
				errs = append(errs, fmt.Errorf("unknown operation %q: valid are %s, all", op, strings.Join(Ops, ", ")))
			case !slices.Contains(out, op):
				out = append(out, op)
			}
		}
	}
	return out, errors.Join(errs...)
}

// Kinds of rule.
const (
	KindError = "error" // the matching operations fail with Errno
	KindSlow  = "slow"  // the matching operations take Delay (± Jitter) longer
	KindFull  = "full"  // SpaceOps fail with ENOSPC once Bytes more bytes are written
)

// Rule is one fault of a disk layer. The zero Probability means always; Ops empty means
// every operation (a full disk: SpaceOps); Path empty means every file.
type Rule struct {
	// ID names the rule on its layer (the fault instance that owns it).
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Errno is the error of a KindError rule, by name ("EIO").
	Errno string   `json:"errno,omitempty"`
	Ops   []string `json:"ops,omitempty"`
	// Path is a glob (path.Match) of the paths the rule hits, relative to the data dir: a
	// pattern with a slash matches the whole path ("member/wal/*.wal"), one without
	// matches the file's name ("*.wal"). A directory's operations (fsync of a directory,
	// readdir, an entry created in it) match its own path.
	Path        string        `json:"path,omitempty"`
	Probability float64       `json:"probability,omitempty"`
	Delay       time.Duration `json:"delay,omitempty"`
	Jitter      time.Duration `json:"jitter,omitempty"`
	// Bytes is how many more bytes a KindFull disk accepts (0: none).
	Bytes int64 `json:"bytes,omitempty"`
}

// Check validates r's fields for its kind.
func (r Rule) Check() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if _, err := ParseOps(r.Ops); err != nil {
		errs = append(errs, err)
	}
	if r.Path != "" {
		if _, err := path.Match(r.Path, ""); err != nil {
			bad("path %q: not a valid glob: %v", r.Path, err)
		}
		if strings.HasPrefix(r.Path, "/") {
			bad("path %q: give it relative to the data dir", r.Path)
		}
	}
	if r.Probability < 0 || r.Probability > 1 {
		bad("probability %g: want 0 < p <= 1 (0: always)", r.Probability)
	}
	switch r.Kind {
	case KindError:
		if _, err := ParseErrno(r.Errno); err != nil {
			errs = append(errs, err)
		}
	case KindSlow:
		if r.Delay <= 0 {
			bad("a slow disk needs a delay > 0")
		}
		if r.Jitter < 0 || r.Jitter > r.Delay {
			bad("jitter %v: want 0..delay (%v)", r.Jitter, r.Delay)
		}
	case KindFull:
		if r.Bytes < 0 {
			bad("bytes %d: want 0 (full at once) or more", r.Bytes)
		}
	default:
		bad("rule kind %q: valid are %s, %s, %s", r.Kind, KindError, KindSlow, KindFull)
	}
	return errors.Join(errs...)
}

// OpsOrDefault is the operations r hits.
func (r Rule) OpsOrDefault() []string {
	ops, _ := ParseOps(r.Ops)
	if len(ops) > 0 {
		return ops
	}
	if r.Kind == KindFull {
		return SpaceOps
	}
	return Ops
}

// Hits reports whether r applies to op on rel (slash-separated, relative to the data dir).
func (r Rule) Hits(op, rel string) bool {
	if !slices.Contains(r.OpsOrDefault(), op) {
		return false
	}
	return MatchPath(r.Path, rel)
}

// MatchPath reports whether rel matches pattern as Rule.Path says.
func MatchPath(pattern, rel string) bool {
	if pattern == "" {
		return true
	}
	name := rel
	if !strings.Contains(pattern, "/") {
		name = path.Base(rel)
	}
	ok, _ := path.Match(pattern, name)
	return ok
}

// String describes r for events: "EIO on fsync of member/wal/*.wal (p=0.5)".
func (r Rule) String() string {
	ops := "every operation"
	if len(r.Ops) > 0 {
		o, _ := ParseOps(r.Ops)
		ops = strings.Join(o, ",")
	}
	where := ""
	if r.Path != "" {
		where = " of " + r.Path
	}
	p := ""
	if r.Probability > 0 && r.Probability < 1 {
		p = fmt.Sprintf(" (p=%g)", r.Probability)
	}
	switch r.Kind {
	case KindError:
		return fmt.Sprintf("%s on %s%s%s", strings.ToUpper(r.Errno), ops, where, p)
	case KindSlow:
		j := ""
		if r.Jitter > 0 {
			j = fmt.Sprintf(" ±%v", r.Jitter)
		}
		return fmt.Sprintf("+%v%s on %s%s%s", r.Delay, j, ops, where, p)
	case KindFull:
		if r.Bytes == 0 {
			return "full: ENOSPC at once" + where
		}
		return fmt.Sprintf("full: ENOSPC after %s more%s", FormatBytes(r.Bytes), where)
	}
	return r.Kind
}

// roll draws whether a rule of probability p fires.
func roll(p float64, rng *rand.Rand) bool {
	return p <= 0 || p >= 1 || rng.Float64() < p
}

// Verdict is what the rules say about one operation: wait Delay, then fail with Errno
// (0: go on; for a write, Allow bytes of it at most, -1 = all).
type Verdict struct {
	Delay time.Duration
	Errno syscall.Errno
	Allow int64
}

// Rules is the set of rules of one layer, safe for concurrent use by the caller's lock.
type Rules struct {
	list []*active
	rng  *rand.Rand
}

// active is a rule in force with its counters.
type active struct {
	Rule
	errno syscall.Errno
	left  int64 // KindFull: bytes still accepted
	hits  int64
}

// NewRules returns an empty rule set drawing with rng.
func NewRules(rng *rand.Rand) *Rules { return &Rules{rng: rng} }

// Add puts r in force; an ID in use is an error.
func (rs *Rules) Add(r Rule) error {
	if err := r.Check(); err != nil {
		return err
	}
	if r.ID == "" {
		return errors.New("rule has no id")
	}
	if slices.ContainsFunc(rs.list, func(a *active) bool { return a.ID == r.ID }) {
		return fmt.Errorf("rule %q is already in force", r.ID)
	}
	a := &active{Rule: r, left: r.Bytes}
	if r.Kind == KindError {
		a.errno, _ = ParseErrno(r.Errno)
	}
	if r.Kind == KindFull {
		a.errno = syscall.ENOSPC
	}
	rs.list = append(rs.list, a)
	return nil
}

// Remove takes rule id out of force and returns how often it fired (false: no such rule).
func (rs *Rules) Remove(id string) (int64, bool) {
	i := slices.IndexFunc(rs.list, func(a *active) bool { return a.ID == id })
	if i < 0 {
		return 0, false
	}
	hits := rs.list[i].hits
	rs.list = slices.Delete(rs.list, i, i+1)
	return hits, true
}

// Clear removes every rule.
func (rs *Rules) Clear() { rs.list = nil }

// Empty reports whether no rule is in force.
func (rs *Rules) Empty() bool { return len(rs.list) == 0 }

// List returns the rules in force with how often each fired.
func (rs *Rules) List() []RuleStatus {
	var out []RuleStatus
	for _, a := range rs.list {
		out = append(out, RuleStatus{Rule: a.Rule, Hits: a.hits, BytesLeft: a.left})
	}
	return out
}

// RuleStatus is a rule in force and its counters.
type RuleStatus struct {
	Rule
	Hits      int64 `json:"hits"`
	BytesLeft int64 `json:"bytes_left,omitempty"`
}

// Decide applies the rules to op on rel of n bytes (writes; 0 otherwise). Slow rules add
// their delays; the first error rule that fires decides the error; a full disk lets a
// write through up to what it has left (a short write) and refuses the next. charge says
// whether the bytes count against a full disk (probes do not).
func (rs *Rules) Decide(op, rel string, n int64, charge bool) Verdict {
	v := Verdict{Allow: -1}
	for _, a := range rs.list {
		if !a.Hits(op, rel) {
			continue
		}
		switch a.Kind {
		case KindSlow:
			if roll(a.Probability, rs.rng) {
				d := a.Delay
				if a.Jitter > 0 {
					d += time.Duration((rs.rng.Float64()*2 - 1) * float64(a.Jitter))
				}
				v.Delay += max(d, 0)
				a.hits++
			}
		case KindError:
			if v.Errno == 0 && roll(a.Probability, rs.rng) {
				v.Errno = a.errno
				a.hits++
			}
		case KindFull:
			if v.Errno != 0 {
				continue
			}
			switch {
			case a.left <= 0:
				v.Errno = syscall.ENOSPC
				a.hits++
			case op == OpWrite && n > 0:
				allow := min(n, a.left)
				if v.Allow < 0 || allow < v.Allow {
					v.Allow = allow
				}
				if charge {
					a.left -= allow
				}
			}
		}
	}
	return v
}

// FreeBytes is what the tightest full-disk rule has left (-1: no full disk).
func (rs *Rules) FreeBytes() int64 {
	free := int64(-1)
	for _, a := range rs.list {
		if a.Kind == KindFull && (free < 0 || a.left < free) {
			free = max(a.left, 0)
		}
	}
	return free
}

// ParseBytes reads a size: "64KiB", "10MB", "1g", "512", a bare number is bytes.
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	units := []struct {
		suffix string
		mult   int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1}}
	low := strings.ToLower(s)
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(low, u.suffix) {
			low, mult = strings.TrimSpace(strings.TrimSuffix(low, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(low, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("bad size %q: want e.g. 0, 4096, 64KiB, 10MB", s)
	}
	return int64(f * float64(mult)), nil
}

// FormatBytes writes n as "1.5 MiB".
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// ProbeResult is one probe of an operation through a layer's mount.
type ProbeResult struct {
	Op string `json:"op"`
	// Errno is what the operation returned: "ok" or its name ("EIO").
	Errno   string  `json:"errno"`
	Seconds float64 `json:"seconds"`
	// Setup, when set, says the probe could not be made: a step before the probed
	// operation failed (Errno is then that step's error).
	Setup string `json:"setup,omitempty"`
}

// ProbePath is a relative path that pattern matches (Rule.Path), for a probe that
// should hit a rule of that pattern: each wildcard is filled in with "dt-probe" (or
// one character). It reports false when no such path could be made.
func ProbePath(pattern string) (string, bool) {
	if pattern == "" {
		return "dt-probe", true
	}
	var b strings.Builder
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; c {
		case '*':
			b.WriteString("dt-probe")
		case '?':
			b.WriteByte('x')
		case '\\':
			if i+1 < len(pattern) {
				i++
				b.WriteByte(pattern[i])
			}
		case '[':
			end := strings.IndexByte(pattern[i+1:], ']')
			if end < 0 {
				return "dt-probe", false
			}
			class := pattern[i+1 : i+1+end]
			i += end + 1
			switch {
			case class == "" || class[0] == '^' || class[0] == '!':
				b.WriteByte('x')
			default:
				b.WriteByte(class[0])
			}
		default:
			b.WriteByte(c)
		}
	}
	p := strings.Trim(path.Clean(b.String()), "/")
	if p == "" || p == "." || strings.HasPrefix(p, "..") {
		return "dt-probe", false
	}
	return p, MatchPath(pattern, p)
}
