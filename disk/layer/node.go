package layer

import (
	"context"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/dtlab/dt/disk"
)

// node is go-fuse's loopback node with the layer's hooks on every operation that a rule
// can hit or that changes what is durable. Operations it does not override (lookup,
// getattr, xattrs, readlink) pass straight through.
type node struct {
	*fs.LoopbackNode
	l *Layer
}

var (
	_ fs.NodeWrapChilder    = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeMkdirer        = (*node)(nil)
	_ fs.NodeMknoder        = (*node)(nil)
	_ fs.NodeRmdirer        = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeSymlinker      = (*node)(nil)
	_ fs.NodeLinker         = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.NodeStatfser       = (*node)(nil)
	_ fs.NodeCopyFileRanger = (*node)(nil)
	_ fs.NodeTmpfiler       = (*node)(nil)
	_ fs.FileReader         = (*file)(nil)
	_ fs.FileWriter         = (*file)(nil)
	_ fs.FileFsyncer        = (*file)(nil)
	_ fs.FileAllocater      = (*file)(nil)
	_ fs.FileSetattrer      = (*file)(nil)
	_ fs.FileFsyncdirer     = (*dir)(nil)
	_ fs.FileReaddirenter   = (*dir)(nil)
	_ fs.FileReleasedirer   = (*dir)(nil)
	_ fs.FileSeekdirer      = (*dir)(nil)
	_ fs.InodeEmbedder      = (*node)(nil)
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeLookuper       = (*node)(nil)
	_ fs.FileReleaser       = (*file)(nil)
	_ fs.FileGetattrer      = (*file)(nil)
	_ fs.FileFlusher        = (*file)(nil)
	_ fs.FileLseeker        = (*file)(nil)
	_ fs.FileStatxer        = (*file)(nil)
	_ fs.NodeStatxer        = (*node)(nil)
)

// WrapChild gives every node of the tree the layer's hooks.
func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	if lb, ok := ops.(*fs.LoopbackNode); ok {
		return &node{LoopbackNode: lb, l: n.l}
	}
	return ops
}

// rel is the node's path relative to the mount's root ("" for the root).
func (n *node) rel() string { return n.Path(n.Root()) }

// child is the relative path of an entry of this directory.
func (n *node) child(name string) string {
	if r := n.rel(); r != "" {
		return r + "/" + name
	}
	return name
}

// backing is the node's path in the backing dir.
func (n *node) backing() string { return filepath.Join(n.RootData.Path, n.rel()) }

// journaled reports whether the journal records changes to rel.
func journaled(rel string) bool { return !exempt(rel) }

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	rel := n.rel()
	if v := n.l.decide(ctx, disk.OpOpen, rel, 0); v.Errno != 0 {
		return nil, 0, v.Errno
	}
	trunc := flags&syscall.O_TRUNC != 0
	if trunc {
		if v := n.l.decide(ctx, disk.OpTruncate, rel, 0); v.Errno != 0 {
			return nil, 0, v.Errno
		}
	}
	flags &^= syscall.O_APPEND | fuse.FMODE_EXEC | syscall.O_TRUNC
	f, err := os.OpenFile(n.backing(), readable(flags), 0)
	if err != nil {
		return nil, 0, fs.ToErrno(err)
	}
	fh := n.l.newFile(n, f, rel)
	if trunc {
		if errno := fh.truncate(0); errno != 0 {
			f.Close()
			return nil, 0, errno
		}
	}
	return fh, 0, 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	rel := n.child(name)
	if v := n.l.decide(ctx, disk.OpCreate, rel, 0); v.Errno != 0 {
		return nil, nil, 0, v.Errno
	}
	p := filepath.Join(n.backing(), name)
	_, statErr := os.Lstat(p)
	existed := statErr == nil
	trunc := flags&syscall.O_TRUNC != 0 && existed
	flags &^= syscall.O_APPEND | syscall.O_TRUNC
	f, err := os.OpenFile(p, readable(flags)|os.O_CREATE, os.FileMode(mode))
	if err != nil {
		return nil, nil, 0, fs.ToErrno(err)
	}
	chown(ctx, p)
	if !existed && journaled(rel) {
		n.l.journal.Created(p, false)
	}
	ch, errno := n.LoopbackNode.Lookup(ctx, name, out)
	if errno != 0 {
		f.Close()
		return nil, nil, 0, errno
	}
	cn, _ := ch.Operations().(*node)
	if cn == nil {
		f.Close()
		return nil, nil, 0, syscall.EIO
	}
	fh := n.l.newFile(cn, f, rel)
	if trunc {
		if errno := fh.truncate(0); errno != 0 {
			f.Close()
			return nil, nil, 0, errno
		}
	}
	return ch, fh, 0, 0
}

// readable opens a write-only file read-write in the backing dir: the journal reads
// what a write is about to overwrite. The kernel still holds the caller to its own
// access mode.
func readable(flags uint32) int {
	if flags&syscall.O_ACCMODE == syscall.O_WRONLY {
		flags = flags&^syscall.O_ACCMODE | syscall.O_RDWR
	}
	return int(flags)
}

// chown gives path to the caller, as the loopback does when it runs as root.
func chown(ctx context.Context, path string) {
	if os.Getuid() != 0 {
		return
	}
	if c, ok := fuse.FromContext(ctx); ok {
		_ = os.Lchown(path, int(c.Uid), int(c.Gid))
	}
}

// created journals a new entry after the loopback made it.
func (n *node) created(name string, isDir bool, errno syscall.Errno) {
	if errno == 0 && journaled(n.child(name)) {
		n.l.journal.Created(filepath.Join(n.backing(), name), isDir)
	}
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if v := n.l.decide(ctx, disk.OpMkdir, n.child(name), 0); v.Errno != 0 {
		return nil, v.Errno
	}
	ch, errno := n.LoopbackNode.Mkdir(ctx, name, mode, out)
	n.created(name, true, errno)
	return ch, errno
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if v := n.l.decide(ctx, disk.OpCreate, n.child(name), 0); v.Errno != 0 {
		return nil, v.Errno
	}
	ch, errno := n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
	n.created(name, false, errno)
	return ch, errno
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if v := n.l.decide(ctx, disk.OpLink, n.child(name), 0); v.Errno != 0 {
		return nil, v.Errno
	}
	ch, errno := n.LoopbackNode.Symlink(ctx, target, name, out)
	n.created(name, false, errno)
	return ch, errno
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if v := n.l.decide(ctx, disk.OpLink, n.child(name), 0); v.Errno != 0 {
		return nil, v.Errno
	}
	ch, errno := n.LoopbackNode.Link(ctx, target, name, out)
	n.created(name, false, errno)
	return ch, errno
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	rel := n.child(name)
	if v := n.l.decide(ctx, disk.OpRmdir, rel, 0); v.Errno != 0 {
		return v.Errno
	}
	if !journaled(rel) {
		return n.LoopbackNode.Rmdir(ctx, name)
	}
	done := n.l.journal.BeforeRemove(filepath.Join(n.backing(), name), true)
	errno := n.LoopbackNode.Rmdir(ctx, name)
	done(errno == 0)
	return errno
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	rel := n.child(name)
	if v := n.l.decide(ctx, disk.OpUnlink, rel, 0); v.Errno != 0 {
		return v.Errno
	}
	if !journaled(rel) {
		return n.LoopbackNode.Unlink(ctx, name)
	}
	done := n.l.journal.BeforeRemove(filepath.Join(n.backing(), name), false)
	errno := n.LoopbackNode.Unlink(ctx, name)
	done(errno == 0)
	return errno
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if flags&unix.RENAME_EXCHANGE != 0 {
		return syscall.ENOTSUP // the journal cannot undo an exchange; callers fall back
	}
	from, to := n.child(name), np.child(newName)
	v := n.l.decide(ctx, disk.OpRename, from, 0)
	if v.Errno == 0 {
		v = n.l.decide(ctx, disk.OpRename, to, 0)
	}
	if v.Errno != 0 {
		return v.Errno
	}
	if !journaled(from) && !journaled(to) {
		return n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
	}
	done := n.l.journal.BeforeRename(filepath.Join(n.backing(), name), filepath.Join(np.backing(), newName))
	errno := n.LoopbackNode.Rename(ctx, name, np, newName, flags)
	done(errno == 0)
	return errno
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok {
		rel := n.rel()
		if v := n.l.decide(ctx, disk.OpTruncate, rel, 0); v.Errno != 0 {
			return v.Errno
		}
		if journaled(rel) {
			fh, _ := f.(*file)
			if fh == nil {
				g, err := os.OpenFile(n.backing(), os.O_RDWR, 0)
				if err != nil {
					return fs.ToErrno(err)
				}
				defer g.Close()
				if err := n.l.journal.TouchSize(int(g.Fd()), int64(size)); err != nil {
					return fs.ToErrno(err)
				}
			} else if err := n.l.journal.TouchSize(fh.fd, int64(size)); err != nil {
				return fs.ToErrno(err)
			}
		}
	}
	return n.LoopbackNode.Setattr(ctx, f, in, out)
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if v := n.l.decide(ctx, disk.OpReaddir, n.rel(), 0); v.Errno != 0 {
		return nil, 0, v.Errno
	}
	fh, fuseFlags, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return &dir{inner: fh, n: n}, fuseFlags, 0
}

// Statfs reports a full disk's space as what it has left.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	if errno := n.LoopbackNode.Statfs(ctx, out); errno != 0 {
		return errno
	}
	if free := n.l.freeBytes(); free >= 0 && out.Bsize > 0 {
		blocks := uint64(free) / uint64(out.Bsize)
		out.Bfree, out.Bavail = min(out.Bfree, blocks), min(out.Bavail, blocks)
	}
	return 0
}

// CopyFileRange is refused as unimplemented: the kernel then copies with reads and
// writes, which the layer sees.
func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut uint64, len uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

// Tmpfile is not supported: a file with no name has no place in the journal.
func (n *node) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EOPNOTSUPP
}

// dir is an open directory: readdir passes through, fsync is the layer's.
type dir struct {
	inner fs.FileHandle
	n     *node
}

func (d *dir) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if r, ok := d.inner.(fs.FileReaddirenter); ok {
		return r.Readdirent(ctx)
	}
	return nil, syscall.ENOTSUP
}

func (d *dir) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if s, ok := d.inner.(fs.FileSeekdirer); ok {
		return s.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

func (d *dir) Releasedir(ctx context.Context, flags uint32) {
	if r, ok := d.inner.(fs.FileReleasedirer); ok {
		r.Releasedir(ctx, flags)
	}
}

func (d *dir) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	rel := d.n.rel()
	if v := d.n.l.decide(ctx, disk.OpFsync, rel, 0); v.Errno != 0 {
		return v.Errno
	}
	s, ok := d.inner.(fs.FileFsyncdirer)
	if !ok {
		return syscall.ENOTSUP
	}
	if errno := s.Fsyncdir(ctx, flags); errno != 0 {
		return errno
	}
	if journaled(rel) {
		d.n.l.journal.DirSynced(d.n.backing(), !isCanary(rel))
	}
	return 0
}
