// Package procenv reads another process's environment from /proc/PID/environ whole, even
// while the process execs. dt tells which processes belong to a run by the DT_RUN_ID entry
// there, so a read that mixes two address spaces, or stops half-way, misses a process.
package procenv

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Read returns the environment of process pid as /proc/PID/environ holds it: KEY=VALUE
// entries, each ended by a NUL.
//
// It reads with one pread(2) (a larger buffer and a fresh pread from offset 0 if it did not
// fit): the kernel copies one read from one address space, so the answer is the whole
// environment before an exec or the whole one after it. os.ReadFile reads in chunks, and a
// process that execs between two chunks leaves it with the start of the old environment
// only: the inherited variables without the markers appended after them. A process in
// the middle of an exec, a zombie and a kernel thread have none: Read returns no bytes.
//
// Equivalent to: cat /proc/PID/environ
func Read(pid int) ([]byte, error) {
	path := fmt.Sprintf("/proc/%d/environ", pid)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	for size := 32 << 10; ; size *= 2 {
		buf := make([]byte, size)
		n, err := pread(fd, buf)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if n < size {
			return buf[:n], nil
		}
	}
}

// pread reads from offset 0 once; an interrupted call is made again (it read nothing).
func pread(fd int, buf []byte) (int, error) {
	for {
		n, err := unix.Pread(fd, buf, 0)
		if !errors.Is(err, unix.EINTR) {
			return n, err
		}
	}
}

// Contains reports whether env, as Read returns it, holds the entry kv ("KEY=VALUE")
// exactly.
func Contains(env []byte, kv string) bool {
	for e := range bytes.SplitSeq(env, []byte{0}) {
		if len(e) > 0 && string(e) == kv {
			return true
		}
	}
	return false
}
