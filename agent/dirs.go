package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// dirs backs up and removes directory trees, confined to the run directory so that a
// wrong path in a request can never touch the rest of the machine.
type dirs struct {
	root   string // the run directory, absolute with symlinks resolved
	socket string // the agent's own socket, which a clean must not remove
	log    *slog.Logger
}

// resolve checks that p is absolute and strictly inside the run directory once symlinks
// in its existing part are resolved, and returns that resolved path. With followLast
// false a symlink in the last component stays as it is (removing it removes the link).
func (d dirs) resolve(what, p string, followLast bool) (string, error) {
	if p == "" {
		return "", badRequest("%s path is empty", what)
	}
	if !filepath.IsAbs(p) {
		return "", badRequest("%s path %q is not absolute", what, p)
	}
	p = filepath.Clean(p)
	var (
		real string
		err  error
	)
	if followLast {
		real, err = resolveExisting(p)
	} else if real, err = resolveExisting(filepath.Dir(p)); err == nil {
		real = filepath.Join(real, filepath.Base(p))
	}
	if err != nil {
		return "", fmt.Errorf("resolve %s path %q: %w", what, p, err)
	}
	if !within(d.root, real) {
		return "", badRequest("%s path %q is outside the run directory %s", what, p, d.root)
	}
	return real, nil
}

// within reports whether p lies strictly below root; both are clean absolute paths.
func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return false
	}
	return rel != "." && rel != ".." && !strings.HasPrefix(rel, "../")
}

// resolveExisting resolves symlinks in the longest existing prefix of p and appends the
// rest unchanged, so a path that does not exist yet cannot escape through a symlinked
// parent either.
func resolveExisting(p string) (string, error) {
	real, err := filepath.EvalSymlinks(p)
	if err == nil {
		return real, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	parent := filepath.Dir(p)
	if parent == p {
		return p, nil
	}
	realParent, err := resolveExisting(parent)
	if err != nil {
		return "", err
	}
	return filepath.Join(realParent, filepath.Base(p)), nil
}

// backup copies the tree at req.Src to req.Dst. A copy that fails half-way is removed.
// It copies whatever is there: stop or pause the owner first for a consistent copy.
func (d dirs) backup(ctx context.Context, req BackupRequest) (BackupResult, error) {
	src, err := d.resolve("src", req.Src, true)
	if err != nil {
		return BackupResult{}, err
	}
	dst, err := d.resolve("dst", req.Dst, true)
	if err != nil {
		return BackupResult{}, err
	}
	if dst == src || within(src, dst) {
		return BackupResult{}, badRequest("backup destination %q is inside its source %q", req.Dst, req.Src)
	}
	fi, err := os.Stat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return BackupResult{}, notFound("backup source %q does not exist", req.Src)
	}
	if err != nil {
		return BackupResult{}, fmt.Errorf("backup %s: %w", req.Src, err)
	}
	if !fi.IsDir() {
		return BackupResult{}, badRequest("backup source %q is not a directory", req.Src)
	}
	if _, err := os.Lstat(dst); err == nil {
		return BackupResult{}, conflict("backup destination %q already exists", req.Dst)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return BackupResult{}, fmt.Errorf("backup %s: %w", req.Src, err)
	}
	res := BackupResult{Src: src, Dst: dst}
	if err := copyTree(ctx, src, dst, &res); err != nil {
		if rerr := os.RemoveAll(dst); rerr != nil {
			d.log.Error("remove partial backup", "dst", dst, "err", rerr)
		}
		return BackupResult{}, fmt.Errorf("backup %s to %s: %w", req.Src, req.Dst, err)
	}
	d.log.Info("backed up", "src", src, "dst", dst, "files", res.Files, "bytes", res.Bytes)
	return res, nil
}

// copyTree copies directories, regular files (with their modes) and symlinks; other
// kinds of files (sockets, fifos, devices) are skipped.
func copyTree(ctx context.Context, src, dst string, res *BackupResult) error {
	return filepath.WalkDir(src, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := de.Info()
		if err != nil {
			return err
		}
		switch mode := info.Mode(); {
		case mode.IsDir():
			return os.Mkdir(target, mode.Perm())
		case mode&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case mode.IsRegular():
			n, err := copyFile(path, target, mode.Perm())
			res.Files++
			res.Bytes += n
			return err
		}
		return nil
	})
}

func copyFile(src, dst string, perm fs.FileMode) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// clean removes the tree at req.Path; a path that does not exist is not an error.
func (d dirs) clean(req CleanRequest) (CleanResult, error) {
	p, err := d.resolve("clean", req.Path, false)
	if err != nil {
		return CleanResult{}, err
	}
	if d.socket != "" && (p == d.socket || within(p, d.socket)) {
		return CleanResult{}, badRequest("clean path %q holds the agent's socket %s", req.Path, d.socket)
	}
	_, err = os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return CleanResult{Path: p}, nil
	}
	if err := os.RemoveAll(p); err != nil {
		return CleanResult{}, fmt.Errorf("clean %s: %w", req.Path, err)
	}
	d.log.Info("cleaned", "path", p)
	return CleanResult{Path: p, Removed: true}, nil
}
