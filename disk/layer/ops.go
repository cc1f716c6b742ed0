package layer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dtlab/dt/disk"
)

// Probe performs op through the mount count times, on a file of the layer's probe
// directory whose path (less the directory) matches pattern, so that the rules in force
// treat it as they would a member's file of that path, and reports what each returned
// and how long it took. The files it needs first are made through the mount with the
// rules off; only the probed operation is exposed to them, and a probe never counts
// against a full disk's space.
func (l *Layer) Probe(op, pattern string, count int) []disk.ProbeResult {
	l.probeMu.Lock()
	defer l.probeMu.Unlock()
	rel, _ := disk.ProbePath(pattern)
	root := filepath.Join(l.opts.Mountpoint, probeDir)
	target := filepath.Join(root, "p", filepath.FromSlash(rel))
	var out []disk.ProbeResult
	for i := range max(count, 1) {
		r := l.probeOnce(op, target, i)
		out = append(out, r)
	}
	if err := os.RemoveAll(root); err != nil {
		l.log.Warn("remove probe files", "err", err)
	}
	return out
}

// probeOnce makes one probe of op on target.
func (l *Layer) probeOnce(op, target string, i int) disk.ProbeResult {
	res := disk.ProbeResult{Op: op}
	fail := func(step string, err error) disk.ProbeResult {
		res.Setup, res.Errno = step, errnoOf(err)
		return res
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fail("mkdir "+filepath.Base(filepath.Dir(target)), err)
	}
	page := make([]byte, 4096)
	// The fixture: a file (a directory for rmdir and readdir) that exists, or nothing.
	_ = os.RemoveAll(target)
	_ = os.RemoveAll(target + ".dt2")
	switch op {
	case disk.OpCreate, disk.OpMkdir:
	case disk.OpRmdir, disk.OpReaddir:
		if err := os.Mkdir(target, 0o755); err != nil {
			return fail("mkdir", err)
		}
	default:
		if err := os.WriteFile(target, page, 0o644); err != nil {
			return fail("write fixture", err)
		}
	}
	var f *os.File
	openFirst := func(flag int) error {
		var err error
		f, err = os.OpenFile(target, flag, 0)
		return err
	}
	switch op {
	case disk.OpRead:
		if err := openFirst(os.O_RDONLY); err != nil {
			return fail("open", err)
		}
	case disk.OpWrite, disk.OpFsync, disk.OpAllocate:
		if err := openFirst(os.O_RDWR); err != nil {
			return fail("open", err)
		}
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	l.arm(op)
	start := time.Now()
	var err error
	switch op {
	case disk.OpOpen:
		var g *os.File
		if g, err = os.OpenFile(target, os.O_RDWR, 0); err == nil {
			l.arm("")
			g.Close()
		}
	case disk.OpCreate:
		var g *os.File
		if g, err = os.OpenFile(target, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644); err == nil {
			l.arm("")
			g.Close()
		}
	case disk.OpRead:
		_, err = f.ReadAt(page, 0)
	case disk.OpWrite:
		page[0] = byte(i)
		_, err = f.WriteAt(page[:512], 0)
	case disk.OpFsync:
		err = f.Sync()
	case disk.OpAllocate:
		err = unix.Fallocate(int(f.Fd()), 0, 0, 8192)
	case disk.OpTruncate:
		err = os.Truncate(target, 0)
	case disk.OpRename:
		err = os.Rename(target, target+".dt2")
	case disk.OpUnlink:
		err = os.Remove(target)
	case disk.OpMkdir:
		err = os.Mkdir(target, 0o755)
	case disk.OpRmdir:
		err = syscall.Rmdir(target)
	case disk.OpReaddir:
		_, err = os.ReadDir(target)
	case disk.OpLink:
		err = os.Link(target, target+".dt2")
	default:
		err = fmt.Errorf("unknown operation %q", op)
	}
	res.Seconds = time.Since(start).Seconds()
	l.arm("")
	res.Errno = errnoOf(err)
	return res
}

// arm exposes op on probe files to the rules ("" for none).
func (l *Layer) arm(op string) {
	l.mu.Lock()
	l.armed = op
	l.mu.Unlock()
}

// errnoOf names the errno in err: "ok", "EIO", or the error's text.
func errnoOf(err error) string {
	if err == nil {
		return "ok"
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return disk.ErrnoName(en)
	}
	return err.Error()
}

// Canary says whether a power cut discarded what it should have: the layer writes a
// canary through the mount just before the cut — a file synced, then appended to
// without a sync, and a new file never synced — and reads it back from the backing dir
// after.
type Canary struct {
	// Kept: the synced file has exactly its synced content; Dropped: the unsynced
	// append and the unsynced new file are gone.
	Kept    bool   `json:"kept"`
	Dropped bool   `json:"dropped"`
	Detail  string `json:"detail"`
}

const (
	canarySynced   = "synced by dt before the power cut\n"
	canaryUnsynced = "written by dt after the last fsync: lost at the power cut\n"
)

// PowerLoss cuts the power under the layer: it writes the canary, unmounts (whatever
// was not fsynced could only be lost while nothing runs: stop the member first),
// discards from the backing dir what was not durable under model
// (disk.Journal.Revert), checks the canary and mounts the layer again. The rules stay in force.
func (l *Layer) PowerLoss(model string) (disk.RevertReport, Canary, error) {
	l.probeMu.Lock()
	defer l.probeMu.Unlock()
	cerr := l.writeCanary()
	if err := l.unmount(); err != nil {
		return disk.RevertReport{}, Canary{}, err
	}
	rep := l.journal.Revert(model)
	c := l.checkCanary(cerr)
	for _, d := range []string{probeDir, canaryDir} {
		_ = os.RemoveAll(filepath.Join(l.opts.Backing, d))
	}
	if err := l.mount(); err != nil {
		return rep, c, err
	}
	l.log.Info("power loss", "report", rep.String(), "canary", c.Detail)
	return rep, c, nil
}

// writeCanary writes the canary through the mount.
func (l *Layer) writeCanary() error {
	dir := filepath.Join(l.opts.Mountpoint, canaryDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, "synced"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteString(canarySynced); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	if _, err := f.WriteString(canaryUnsynced); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "unsynced"), []byte(canaryUnsynced), 0o644)
}

func syncDir(p string) error {
	d, err := os.Open(p)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// checkCanary reads the canary back from the backing dir.
func (l *Layer) checkCanary(werr error) Canary {
	if werr != nil {
		return Canary{Detail: "canary not written: " + werr.Error()}
	}
	dir := filepath.Join(l.opts.Backing, canaryDir)
	b, err := os.ReadFile(filepath.Join(dir, "synced"))
	_, uerr := os.Stat(filepath.Join(dir, "unsynced"))
	c := Canary{Kept: err == nil && string(b) == canarySynced, Dropped: errors.Is(uerr, fs.ErrNotExist) && err == nil && len(b) == len(canarySynced)}
	switch {
	case err != nil:
		c.Detail = "canary: the synced file is gone: " + err.Error()
	case c.Kept && c.Dropped:
		c.Detail = fmt.Sprintf("canary: the %d synced bytes kept, the %d unsynced appended bytes and the unsynced new file lost", len(canarySynced), len(canaryUnsynced))
	default:
		c.Detail = fmt.Sprintf("canary WRONG: synced file holds %d bytes (want %d), unsynced new file present: %v", len(b), len(canarySynced), uerr == nil)
	}
	return c
}

// Corrupt damages a file of the backing dir as c says, with the layer unmounted (so the
// kernel's caches do not hide it) and mounted again after. Stop the member first.
func (l *Layer) Corrupt(c disk.Corruption) (disk.CorruptReport, error) {
	l.probeMu.Lock()
	defer l.probeMu.Unlock()
	if err := l.unmount(); err != nil {
		return disk.CorruptReport{}, err
	}
	rep, cerr := disk.Corrupt(l.opts.Backing, c)
	if err := l.mount(); err != nil {
		return rep, errors.Join(cerr, err)
	}
	return rep, cerr
}

// Clean empties the data dir (its backing dir) and forgets the journal: what remains,
// nothing, is durable. Stop the member first.
func (l *Layer) Clean() error {
	l.probeMu.Lock()
	defer l.probeMu.Unlock()
	if err := l.unmount(); err != nil {
		return err
	}
	ents, err := os.ReadDir(l.opts.Backing)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(l.opts.Backing, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	l.journal.Reset()
	if err := l.mount(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
