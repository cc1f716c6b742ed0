package disk

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Subtype is the FUSE subtype of dt's disk layer: its mounts have the filesystem type
// "fuse.dtdisk" and the source SourceName(run id, node), which is how teardown and
// `dt clean` find exactly the run's mounts, also when the agent that served one is gone.
const Subtype = "dtdisk"

// FSType is the filesystem type of a disk layer's mount in /proc/self/mountinfo.
const FSType = "fuse." + Subtype

// SourceName is the source (FUSE fsname) of node's mount in run runID.
func SourceName(runID, node string) string { return "dt-" + runID + "-" + node }

// Mount is one mount of the disk layer.
type Mount struct {
	Point  string `json:"point"`
	Source string `json:"source"`
}

// RunID is the run id of the mount's source ("" when it is not dt's).
func (m Mount) RunID() string {
	rest, ok := strings.CutPrefix(m.Source, "dt-")
	if !ok || len(rest) < 7 || rest[6] != '-' {
		return ""
	}
	return rest[:6]
}

// Mounts lists the disk layer's mounts (type fuse.dtdisk) in /proc/self/mountinfo.
func Mounts() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" && i >= 6 {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(fields) || fields[sep+1] != FSType {
			continue
		}
		out = append(out, Mount{Point: unescape(fields[4]), Source: unescape(fields[sep+2])})
	}
	return out, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// RunMounts lists the mounts of run runID: their source names the run and, when dir is
// not "", they lie under dir (the run's runtime directory).
func RunMounts(runID, dir string) ([]Mount, error) {
	all, err := Mounts()
	var out []Mount
	for _, m := range all {
		if m.RunID() != runID {
			continue
		}
		if dir != "" && !under(dir, m.Point) {
			continue
		}
		out = append(out, m)
	}
	return out, err
}

// under reports whether p is dir or below it.
func under(dir, p string) bool {
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(p))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// Detach lazily unmounts the disk layer's mount at point (umount2 MNT_DETACH): it is
// gone from the tree at once, whether its server still answers or not. A point that is
// not mounted is not an error.
//
// Equivalent to: fusermount -u -z POINT
func Detach(point string) error {
	err := unix.Unmount(point, unix.MNT_DETACH)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmount %s: %w", point, err)
}

// DetachRun detaches every mount of run runID (RunMounts(runID, dir)), innermost first,
// and returns the points it detached.
func DetachRun(runID, dir string) ([]string, error) {
	ms, err := RunMounts(runID, dir)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	var done []string
	for i := len(ms) - 1; i >= 0; i-- {
		if err := Detach(ms[i].Point); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, ms[i].Point)
	}
	return done, errors.Join(errs...)
}
