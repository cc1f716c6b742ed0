package layer

import (
	"context"
	"os"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/dtlab/dt/disk"
)

// file is an open file of the layer: go-fuse's loopback file with the layer's hooks on
// reads, writes, fsync, truncation and allocation. It must not offer the kernel a
// passthrough fd (FilePassthroughFder): reads and writes would bypass the hooks.
type file struct {
	l      *Layer
	n      *node // its node: the rules match its path now, after renames
	f      *os.File
	lf     *fs.LoopbackFile
	fd     int
	logged bool // the journal records it (not one of the layer's own probe files)
	canary bool // one of the power loss's canary files: its fsync is no journal commit
}

func (l *Layer) newFile(n *node, f *os.File, rel string) *file {
	return &file{l: l, n: n, f: f, lf: fs.NewLoopbackFileFromOS(f), fd: int(f.Fd()), logged: journaled(rel), canary: isCanary(rel)}
}

// decide asks the rules about op on this file.
func (f *file) decide(ctx doner, op string, n int64) disk.Verdict {
	return f.l.decideFn(ctx, op, f.n.rel, n)
}

func (f *file) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if v := f.decide(ctx, disk.OpRead, 0); v.Errno != 0 {
		return nil, v.Errno
	}
	return f.lf.Read(ctx, dest, off)
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	v := f.decide(ctx, disk.OpWrite, int64(len(data)))
	if v.Errno != 0 {
		return 0, v.Errno
	}
	if v.Allow >= 0 && v.Allow < int64(len(data)) {
		if v.Allow == 0 {
			return 0, syscall.ENOSPC
		}
		data = data[:v.Allow] // a short write: the disk filled up in the middle of it
	}
	if f.logged {
		if err := f.l.journal.TouchWrite(f.fd, off, int64(len(data))); err != nil {
			return 0, fs.ToErrno(err)
		}
	}
	return f.lf.Write(ctx, data, off)
}

func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if v := f.decide(ctx, disk.OpFsync, 0); v.Errno != 0 {
		return v.Errno
	}
	if errno := f.lf.Fsync(ctx, flags); errno != 0 {
		return errno
	}
	if f.logged {
		f.l.journal.Synced(f.fd, !f.canary)
	}
	return 0
}

func (f *file) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	if v := f.decide(ctx, disk.OpAllocate, 0); v.Errno != 0 {
		return v.Errno
	}
	if f.logged {
		var err error
		switch {
		case mode&(unix.FALLOC_FL_COLLAPSE_RANGE|unix.FALLOC_FL_INSERT_RANGE) != 0:
			// Everything from off on moves.
			var st syscall.Stat_t
			if err = syscall.Fstat(f.fd, &st); err == nil && st.Size > int64(off) {
				err = f.l.journal.TouchWrite(f.fd, int64(off), st.Size-int64(off))
			}
		case mode&(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_ZERO_RANGE) != 0:
			err = f.l.journal.TouchWrite(f.fd, int64(off), int64(size))
		}
		if err == nil && mode&unix.FALLOC_FL_KEEP_SIZE == 0 {
			err = f.l.journal.TouchSize(f.fd, int64(off+size))
		}
		if err != nil {
			return fs.ToErrno(err)
		}
	}
	return f.lf.Allocate(ctx, off, size, mode)
}

// truncate cuts the file to size, journaled (open with O_TRUNC).
func (f *file) truncate(size int64) syscall.Errno {
	if f.logged {
		if err := f.l.journal.TouchSize(f.fd, size); err != nil {
			return fs.ToErrno(err)
		}
	}
	return fs.ToErrno(syscall.Ftruncate(f.fd, size))
}

// Setattr is called by the node's Setattr, which journaled a size change already.
func (f *file) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return f.lf.Setattr(ctx, in, out)
}

func (f *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return f.lf.Getattr(ctx, out)
}

func (f *file) Statx(ctx context.Context, flags uint32, mask uint32, out *fuse.StatxOut) syscall.Errno {
	return f.lf.Statx(ctx, flags, mask, out)
}

func (f *file) Flush(ctx context.Context) syscall.Errno { return f.lf.Flush(ctx) }

func (f *file) Release(ctx context.Context) syscall.Errno { return f.lf.Release(ctx) }

func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return f.lf.Lseek(ctx, off, whence)
}
