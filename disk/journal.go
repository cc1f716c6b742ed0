package disk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// Journal knows what the writers of a backing directory did since their last fsyncs, so
// that Revert can put the directory back as a power cut would leave it: for every file,
// the bytes it had when it was last synced (saved before they were first overwritten,
// an undo log) and its size then; for every directory, the entries created, removed or
// renamed in it since it was last synced. It is kept by the filesystem that serves the
// directory: every operation that changes a file's content or size calls the Touch
// methods before it acts, every fsync calls Synced or DirSynced once it succeeded.
//
// What counts as durable (the model): a file's data and size once the file is fsynced
// (fsync or fdatasync); a directory entry once its directory is fsynced, or once the
// file or directory it names is fsynced (ext4 and xfs commit the entry with the inode;
// POSIX alone would not). Data written to a file whose entry is not durable goes with the entry.
// Files are known by their inode in the backing filesystem, so a rename keeps a file's
// log. Files and directories that existed before the journal started are durable.
type Journal struct {
	root  string // the backing directory
	trash string // removed and replaced files, kept (hard links) until their removal is durable

	mu    sync.Mutex
	files map[uint64]*fileLog
	ops   []*entryOp
	seq   int   // names trash files
	opSeq int64 // numbers entry operations in order
	// lastSync is the opSeq of the last successful fsync (of any file or directory):
	// what a journaling filesystem commits with it (PowerOrdered).
	lastSync int64
}

// Power loss models: what a cut keeps of the directory entries.
const (
	// PowerStrict keeps an entry if its directory, or the file or directory it names,
	// was fsynced after it: what the model above says.
	PowerStrict = "strict"
	// PowerOrdered also keeps every entry made before any successful fsync, as one
	// journal committed with each fsync does (ext4 data=ordered, xfs): a system that
	// survives only this relies on its filesystem beyond POSIX.
	PowerOrdered = "ordered"
)

// PowerModels lists them.
var PowerModels = []string{PowerStrict, PowerOrdered}

// fileLog is one file's changes since it was last synced.
type fileLog struct {
	synced  int64   // size when last synced
	saved   []span  // ranges of [0, synced) whose synced bytes are in undo (sorted, merged)
	undo    []chunk // the synced bytes of those ranges
	written int64   // bytes written or cut since the sync
}

type span struct{ off, end int64 }

type chunk struct {
	off  int64
	data []byte
}

// Kinds of directory entry operation.
const (
	entryCreate = "create" // a file, node, symlink or hard link got a new name
	entryMkdir  = "mkdir"
	entryUnlink = "unlink"
	entryRmdir  = "rmdir"
	entryRename = "rename"
)

// entryOp is one change of directory entries not yet durable.
type entryOp struct {
	kind      string
	dir, dir2 uint64 // inodes of the directories involved (dir2: a rename's new parent)
	obj       uint64 // inode of the file or directory named
	rel, rel2 string // relative paths (a rename: from rel to rel2)
	trash     string // unlink, rename over a file: the removed file, kept in the trash
	overDir   bool   // a rename replaced an empty directory
	durable   bool
	seq       int64
}

// NewJournal starts a journal of root; trash is a directory on the same filesystem,
// outside root, for the files whose removal is not durable yet (created if missing).
func NewJournal(root, trash string) (*Journal, error) {
	if err := os.MkdirAll(trash, 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return &Journal{root: root, trash: trash, files: map[uint64]*fileLog{}}, nil
}

// Root is the backing directory.
func (j *Journal) Root() string { return j.root }

// Ino is the inode of path (not following a last symlink), or 0.
func Ino(path string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

// fdIno is the inode and size of an open file.
func fdStat(fd int) (ino uint64, size int64, err error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return 0, 0, err
	}
	return st.Ino, st.Size, nil
}

// log returns the log of the file open at fd, starting one (its size now is its
// synced size) on the first change since its sync. j.mu is held.
func (j *Journal) log(fd int) (*fileLog, int64, error) {
	ino, size, err := fdStat(fd)
	if err != nil {
		return nil, 0, err
	}
	l := j.files[ino]
	if l == nil {
		l = &fileLog{synced: size}
		j.files[ino] = l
	}
	return l, size, nil
}

// save keeps the synced bytes of [off, end) that are not kept yet. j.mu is held.
func (l *fileLog) save(fd int, off, end int64) error {
	end = min(end, l.synced)
	if off >= end {
		return nil
	}
	for _, g := range gaps(l.saved, off, end) {
		buf := make([]byte, g.end-g.off)
		n, err := syscall.Pread(fd, buf, g.off)
		if err != nil {
			return fmt.Errorf("journal: save bytes %d-%d: %w", g.off, g.end, err)
		}
		// Past the file's end now (it was cut): zeros, which the truncate saved already.
		l.undo = append(l.undo, chunk{off: g.off, data: buf[:max(n, 0)]})
		l.saved = addSpan(l.saved, g)
	}
	return nil
}

// gaps are the parts of [off, end) that spans (sorted, merged) do not cover.
func gaps(spans []span, off, end int64) []span {
	var out []span
	at := off
	for _, s := range spans {
		if s.end <= at {
			continue
		}
		if s.off >= end {
			break
		}
		if s.off > at {
			out = append(out, span{at, s.off})
		}
		at = max(at, s.end)
		if at >= end {
			return out
		}
	}
	if at < end {
		out = append(out, span{at, end})
	}
	return out
}

// addSpan adds s to sorted, merged spans.
func addSpan(spans []span, s span) []span {
	spans = append(spans, s)
	sort.Slice(spans, func(a, b int) bool { return spans[a].off < spans[b].off })
	out := spans[:1]
	for _, x := range spans[1:] {
		last := &out[len(out)-1]
		if x.off <= last.end {
			last.end = max(last.end, x.end)
		} else {
			out = append(out, x)
		}
	}
	return out
}

// TouchWrite is called before n bytes are written at off to the file open at fd (also
// before a hole is punched or a range zeroed).
func (j *Journal) TouchWrite(fd int, off, n int64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	l, _, err := j.log(fd)
	if err != nil {
		return err
	}
	l.written += n
	return l.save(fd, off, off+n)
}

// TouchSize is called before the file open at fd changes size to size (truncate,
// fallocate).
func (j *Journal) TouchSize(fd int, size int64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	l, cur, err := j.log(fd)
	if err != nil {
		return err
	}
	if size < cur {
		l.written += cur - size
		return l.save(fd, size, cur)
	}
	return nil
}

// Synced is called once the file open at fd was fsynced: its content and size are
// durable, and so are the entries that name it. commit says whether the fsync counts
// as a journal commit for PowerOrdered (not the layer's own canary, which must not
// change what the cut keeps).
func (j *Journal) Synced(fd int, commit bool) {
	ino, _, err := fdStat(fd)
	if err != nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.files, ino)
	if commit {
		j.lastSync = j.opSeq
	}
	j.durable(func(op *entryOp) bool { return op.obj == ino && op.kind != entryUnlink && op.kind != entryRmdir })
}

// DirSynced is called once the directory at path (in the backing dir) was fsynced: the
// entries created, removed and renamed in it are durable, and so is its own. commit: as
// for Synced.
func (j *Journal) DirSynced(path string, commit bool) {
	ino := Ino(path)
	if ino == 0 {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if commit {
		j.lastSync = j.opSeq
	}
	j.durable(func(op *entryOp) bool {
		return op.dir == ino || (op.kind == entryRename && op.dir2 == ino) || (op.obj == ino && op.kind != entryRmdir)
	})
}

// durable marks the entry operations that match durable, and every earlier one on the
// same object (a rename cannot be durable without the create it moved), then forgets
// them: their trash is emptied. j.mu is held.
func (j *Journal) durable(match func(*entryOp) bool) {
	for i := len(j.ops) - 1; i >= 0; i-- {
		op := j.ops[i]
		if op.durable || !match(op) {
			continue
		}
		op.durable = true
		for _, earlier := range j.ops[:i] {
			if earlier.obj == op.obj {
				earlier.durable = true
			}
		}
	}
	j.ops = slices.DeleteFunc(j.ops, func(op *entryOp) bool {
		if op.durable && op.trash != "" {
			os.Remove(op.trash)
		}
		return op.durable
	})
}

// rel is path relative to the root ("" when outside it).
func (j *Journal) rel(path string) string {
	r, err := filepath.Rel(j.root, path)
	if err != nil || r == ".." || strings.HasPrefix(r, "../") {
		return ""
	}
	return r
}

// Created is called after path (in the backing dir) was created: a file, node, symlink,
// hard link (entryCreate) or a directory.
func (j *Journal) Created(path string, isDir bool) {
	kind := entryCreate
	if isDir {
		kind = entryMkdir
	}
	op := &entryOp{kind: kind, dir: Ino(filepath.Dir(path)), obj: Ino(path), rel: j.rel(path)}
	j.mu.Lock()
	j.add(op)
	j.mu.Unlock()
}

// keep hard-links the file at path into the trash and returns its name there ("" for a
// directory, a missing file, or when the link fails: its removal then cannot be undone).
// j.mu is held.
func (j *Journal) keep(path string) string {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil || st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		return ""
	}
	j.seq++
	t := filepath.Join(j.trash, fmt.Sprintf("%d", j.seq))
	if err := os.Link(path, t); err != nil {
		return ""
	}
	return t
}

// BeforeRemove is called before path is unlinked (or, isDir, removed with rmdir); the
// returned function is called with whether it was.
func (j *Journal) BeforeRemove(path string, isDir bool) func(done bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	op := &entryOp{kind: entryUnlink, dir: Ino(filepath.Dir(path)), obj: Ino(path), rel: j.rel(path)}
	var st syscall.Stat_t
	lastName := syscall.Lstat(path, &st) == nil && st.Nlink <= 1
	if isDir {
		op.kind = entryRmdir
	} else {
		op.trash = j.keep(path)
	}
	return func(done bool) {
		j.mu.Lock()
		defer j.mu.Unlock()
		if !done {
			if op.trash != "" {
				os.Remove(op.trash)
			}
			return
		}
		// Removing what was created under this name since the last sync leaves nothing to
		// undo: neither existed durably (etcd's .touch files, a failed write's temporary).
		create := entryCreate
		if isDir {
			create = entryMkdir
		}
		if k := slices.IndexFunc(j.ops, func(o *entryOp) bool { return o.kind == create && o.obj == op.obj && o.rel == op.rel }); k >= 0 && op.obj != 0 {
			j.ops = slices.Delete(j.ops, k, k+1)
			if op.trash != "" {
				os.Remove(op.trash)
			}
			if lastName && !j.named(op.obj) {
				delete(j.files, op.obj) // the file is gone: nothing of it to revert
			}
			return
		}
		j.add(op)
	}
}

// add records an entry operation (j.mu is held).
func (j *Journal) add(op *entryOp) {
	j.opSeq++
	op.seq = j.opSeq
	j.ops = append(j.ops, op)
}

// named reports whether an entry operation not yet durable names obj (j.mu is held).
func (j *Journal) named(obj uint64) bool {
	return slices.ContainsFunc(j.ops, func(o *entryOp) bool { return o.obj == obj })
}

// BeforeRename is called before from is renamed to to (both in the backing dir); the
// returned function is called with whether it was.
func (j *Journal) BeforeRename(from, to string) func(done bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	op := &entryOp{kind: entryRename, dir: Ino(filepath.Dir(from)), dir2: Ino(filepath.Dir(to)), obj: Ino(from),
		rel: j.rel(from), rel2: j.rel(to)}
	var st syscall.Stat_t
	if err := syscall.Lstat(to, &st); err == nil {
		if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			op.overDir = true
		} else {
			op.trash = j.keep(to)
		}
	}
	return func(done bool) {
		j.mu.Lock()
		defer j.mu.Unlock()
		if !done {
			if op.trash != "" {
				os.Remove(op.trash)
			}
			return
		}
		j.add(op)
	}
}

// Pending says what a power cut now would discard.
type Pending struct {
	Files   int   `json:"files"`   // files with unsynced changes
	Bytes   int64 `json:"bytes"`   // bytes written or cut since their syncs
	Entries int   `json:"entries"` // directory entries created, removed or renamed since their syncs
}

// Pending says what Revert would discard now.
func (j *Journal) Pending() Pending {
	j.mu.Lock()
	defer j.mu.Unlock()
	p := Pending{Files: len(j.files), Entries: len(j.ops)}
	for _, l := range j.files {
		p.Bytes += l.written
	}
	return p
}

// RevertReport says what a Revert discarded.
type RevertReport struct {
	Pending
	// Reverted are the files put back to their synced content, Undone the entries taken
	// back ("create member/wal/0.tmp"), each list cut at a few.
	Reverted []string `json:"reverted,omitempty"`
	Undone   []string `json:"undone,omitempty"`
	Errors   []string `json:"errors,omitempty"`
}

// String is one line for events.
func (r RevertReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "discarded %s written since the last fsync in %d file(s), %d unsynced directory entr%s",
		FormatBytes(r.Bytes), r.Files, r.Entries, map[bool]string{true: "y", false: "ies"}[r.Entries == 1])
	if len(r.Reverted) > 0 {
		fmt.Fprintf(&b, "; reverted %s", strings.Join(r.Reverted, ", "))
	}
	if len(r.Undone) > 0 {
		fmt.Fprintf(&b, "; undid %s", strings.Join(r.Undone, ", "))
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(&b, "; errors: %s", strings.Join(r.Errors, "; "))
	}
	return b.String()
}

const reportCut = 8

// Revert puts the backing directory back to what was durable, as a power cut would
// leave it under model (PowerStrict, PowerOrdered), and starts the journal afresh.
// Nothing may use the directory meanwhile (unmount it first): the entries are undone
// newest first, then every file with unsynced changes gets its synced bytes back and
// its synced size.
func (j *Journal) Revert(model string) RevertReport {
	j.mu.Lock()
	defer j.mu.Unlock()
	if model == PowerOrdered {
		j.ops = slices.DeleteFunc(j.ops, func(op *entryOp) bool {
			if op.seq <= j.lastSync && op.trash != "" {
				os.Remove(op.trash)
			}
			return op.seq <= j.lastSync
		})
	}
	var r RevertReport
	r.Files, r.Entries = len(j.files), len(j.ops)
	for _, l := range j.files {
		r.Bytes += l.written
	}
	fail := func(err error) {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.Errors = append(r.Errors, err.Error())
		}
	}
	abs := func(rel string) string { return filepath.Join(j.root, rel) }
	for i := len(j.ops) - 1; i >= 0; i-- {
		op := j.ops[i]
		if op.rel == "" || (op.kind == entryRename && op.rel2 == "") {
			continue
		}
		switch op.kind {
		case entryCreate, entryMkdir:
			fail(os.RemoveAll(abs(op.rel)))
		case entryUnlink:
			if op.trash != "" {
				fail(os.Link(op.trash, abs(op.rel)))
			}
		case entryRmdir:
			fail(os.Mkdir(abs(op.rel), 0o755))
		case entryRename:
			fail(os.Rename(abs(op.rel2), abs(op.rel)))
			if op.trash != "" {
				fail(os.Link(op.trash, abs(op.rel2)))
			} else if op.overDir {
				fail(os.Mkdir(abs(op.rel2), 0o755))
			}
		}
		if len(r.Undone) < reportCut {
			what := op.kind + " " + op.rel
			if op.kind == entryRename {
				what += " → " + op.rel2
			}
			r.Undone = append(r.Undone, what)
		}
	}
	if len(j.files) > 0 {
		paths := map[uint64]string{}
		_ = filepath.WalkDir(j.root, func(p string, de fs.DirEntry, err error) error {
			if err != nil || !de.Type().IsRegular() {
				return nil
			}
			if ino := Ino(p); ino != 0 {
				if _, seen := paths[ino]; !seen {
					paths[ino] = p
				}
			}
			return nil
		})
		var names []string
		for ino, l := range j.files {
			p, ok := paths[ino]
			if !ok {
				continue // gone for good: its name was durable-ly removed, or never durable
			}
			if err := l.revert(p); err != nil {
				fail(err)
				continue
			}
			names = append(names, j.rel(p))
		}
		sort.Strings(names)
		r.Reverted = names[:min(len(names), reportCut)]
	}
	j.reset()
	return r
}

// revert writes l's synced bytes back into the file at p and cuts it to its synced size.
func (l *fileLog) revert(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	for i := len(l.undo) - 1; i >= 0; i-- {
		c := l.undo[i]
		if _, err := f.WriteAt(c.data, c.off); err != nil {
			return fmt.Errorf("revert %s: %w", p, err)
		}
	}
	if err := f.Truncate(l.synced); err != nil {
		return fmt.Errorf("revert %s: %w", p, err)
	}
	return nil
}

// Reset forgets everything: what is in the backing dir now is durable (after the
// directory was cleaned out, or before it is used).
func (j *Journal) Reset() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.reset()
}

func (j *Journal) reset() {
	j.files = map[uint64]*fileLog{}
	j.ops = nil
	if ents, err := os.ReadDir(j.trash); err == nil {
		for _, e := range ents {
			os.RemoveAll(filepath.Join(j.trash, e.Name()))
		}
	}
}
