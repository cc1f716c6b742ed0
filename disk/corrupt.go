package disk

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Corruption modes.
const (
	CorruptFlip     = "flip"     // flip one bit in each of Bytes bytes (default 1) at random offsets
	CorruptTruncate = "truncate" // cut the last Bytes bytes of the content (default: half of it)
	CorruptZero     = "zero"     // overwrite Bytes bytes (default 512) from a random offset with zeros
)

// CorruptModes lists the modes.
var CorruptModes = []string{CorruptFlip, CorruptTruncate, CorruptZero}

// Which file of those a glob matches.
const (
	PickNewest = "newest" // the one modified last (etcd's newest WAL segment)
	PickOldest = "oldest"
	PickRandom = "random"
)

// Picks lists the choices.
var Picks = []string{PickNewest, PickOldest, PickRandom}

// Corruption damages one file of a data dir.
type Corruption struct {
	// Glob (filepath.Match, relative to the data dir) names the candidates; Pick chooses
	// one (default newest).
	Glob  string `json:"glob"`
	Pick  string `json:"pick,omitempty"`
	Mode  string `json:"mode"`
	Bytes int64  `json:"bytes,omitempty"`
	// Seed chooses the offsets (and the file, for random).
	Seed uint64 `json:"seed"`
}

// Check validates c.
func (c Corruption) Check() error {
	var errs []error
	if c.Glob == "" {
		errs = append(errs, errors.New("corrupt needs a file (a glob relative to the data dir)"))
	} else if _, err := filepath.Match(c.Glob, ""); err != nil || filepath.IsAbs(c.Glob) || strings.Contains(c.Glob, "..") {
		errs = append(errs, fmt.Errorf("file %q: want a glob relative to the data dir", c.Glob))
	}
	if c.Pick != "" && !slices.Contains(Picks, c.Pick) {
		errs = append(errs, fmt.Errorf("pick %q: valid are %s", c.Pick, strings.Join(Picks, ", ")))
	}
	if !slices.Contains(CorruptModes, c.Mode) {
		errs = append(errs, fmt.Errorf("mode %q: valid are %s", c.Mode, strings.Join(CorruptModes, ", ")))
	}
	if c.Bytes < 0 {
		errs = append(errs, fmt.Errorf("bytes %d: must not be negative", c.Bytes))
	}
	return errors.Join(errs...)
}

// CorruptReport says what Corrupt did.
type CorruptReport struct {
	File    string  `json:"file"`    // relative to the data dir
	Size    int64   `json:"size"`    // the file's size before
	Content int64   `json:"content"` // up to its last non-zero byte (preallocated files are zero-filled)
	Mode    string  `json:"mode"`
	Offsets []int64 `json:"offsets,omitempty"` // flip: the bytes flipped (one bit each); zero: the first
	Bytes   int64   `json:"bytes"`             // bytes changed or cut
}

func (r CorruptReport) String() string {
	switch r.Mode {
	case CorruptFlip:
		offs := make([]string, 0, len(r.Offsets))
		for _, o := range r.Offsets[:min(len(r.Offsets), 8)] {
			offs = append(offs, fmt.Sprintf("%#x", o))
		}
		return fmt.Sprintf("%s (%s, %s of content): flipped one bit in %d byte(s) at %s", r.File, FormatBytes(r.Size), FormatBytes(r.Content), r.Bytes, strings.Join(offs, ", "))
	case CorruptTruncate:
		return fmt.Sprintf("%s (%s, %s of content): cut the last %s of its content", r.File, FormatBytes(r.Size), FormatBytes(r.Content), FormatBytes(r.Bytes))
	default:
		return fmt.Sprintf("%s (%s, %s of content): zeroed %s at %#x", r.File, FormatBytes(r.Size), FormatBytes(r.Content), FormatBytes(r.Bytes), r.Offsets[0])
	}
}

// Corrupt damages one file under root as c says. Nothing may use the file meanwhile.
func Corrupt(root string, c Corruption) (CorruptReport, error) {
	if err := c.Check(); err != nil {
		return CorruptReport{}, err
	}
	matches, err := filepath.Glob(filepath.Join(root, c.Glob))
	if err != nil {
		return CorruptReport{}, err
	}
	type cand struct {
		path string
		fi   os.FileInfo
	}
	var cands []cand
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
			cands = append(cands, cand{m, fi})
		}
	}
	if len(cands) == 0 {
		return CorruptReport{}, fmt.Errorf("no non-empty file matches %s in the data dir", c.Glob)
	}
	rng := rand.New(rand.NewPCG(c.Seed, 0x636f7272))
	sort.Slice(cands, func(i, j int) bool {
		if !cands[i].fi.ModTime().Equal(cands[j].fi.ModTime()) {
			return cands[i].fi.ModTime().Before(cands[j].fi.ModTime())
		}
		return cands[i].path < cands[j].path
	})
	pick := cands[len(cands)-1]
	switch c.Pick {
	case PickOldest:
		pick = cands[0]
	case PickRandom:
		pick = cands[rng.IntN(len(cands))]
	}
	f, err := os.OpenFile(pick.path, os.O_RDWR, 0)
	if err != nil {
		return CorruptReport{}, err
	}
	defer f.Close()
	content, err := contentEnd(f, pick.fi.Size())
	if err != nil {
		return CorruptReport{}, err
	}
	rel, _ := filepath.Rel(root, pick.path)
	r := CorruptReport{File: rel, Size: pick.fi.Size(), Content: content, Mode: c.Mode}
	if content == 0 {
		return r, fmt.Errorf("%s holds only zeros: nothing to corrupt", rel)
	}
	switch c.Mode {
	case CorruptFlip:
		n := max(c.Bytes, 1)
		seen := map[int64]bool{}
		for int64(len(r.Offsets)) < min(n, content) {
			off := rng.Int64N(content)
			if seen[off] {
				continue
			}
			seen[off] = true
			b := make([]byte, 1)
			if _, err := f.ReadAt(b, off); err != nil {
				return r, err
			}
			b[0] ^= 1 << rng.IntN(8)
			if _, err := f.WriteAt(b, off); err != nil {
				return r, err
			}
			r.Offsets = append(r.Offsets, off)
		}
		slices.Sort(r.Offsets)
		r.Bytes = int64(len(r.Offsets))
	case CorruptTruncate:
		cut := c.Bytes
		if cut == 0 {
			cut = content / 2
		}
		cut = min(max(cut, 1), content)
		// Cut the content, not the preallocated zeros after it: the size stays, the
		// tail becomes zeros, as a torn write leaves a preallocated segment.
		r.Bytes = cut
		if content == r.Size {
			if err := f.Truncate(content - cut); err != nil {
				return r, err
			}
		} else if _, err := f.WriteAt(make([]byte, cut), content-cut); err != nil {
			return r, err
		}
	case CorruptZero:
		n := c.Bytes
		if n == 0 {
			n = 512
		}
		n = min(n, content)
		off := rng.Int64N(content - n + 1)
		if _, err := f.WriteAt(make([]byte, n), off); err != nil {
			return r, err
		}
		r.Offsets, r.Bytes = []int64{off}, n
	}
	return r, f.Sync()
}

// contentEnd is the offset after the last non-zero byte of f (size bytes long).
func contentEnd(f *os.File, size int64) (int64, error) {
	const block = 64 << 10
	buf := make([]byte, block)
	for end := size; end > 0; {
		start := max(end-block, 0)
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := n - 1; i >= 0; i-- {
			if buf[i] != 0 {
				return start + int64(i) + 1, nil
			}
		}
		end = start
	}
	return 0, nil
}
