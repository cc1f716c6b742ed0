package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// watchParent returns a channel that is closed once process pid has ended, checked every
// interval until ctx ends. pid <= 0 means never. A pidfd pins the process itself, so a
// recycled pid cannot pass for the controller; kernels without pidfd_open (< 5.3) fall
// back to kill(pid, 0) plus a change of our own parent.
func watchParent(ctx context.Context, pid int, interval time.Duration, log *slog.Logger) <-chan struct{} {
	gone := make(chan struct{})
	if pid <= 0 {
		return gone
	}
	var (
		alive func() bool
		done  = func() {}
	)
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case err == nil:
		alive = func() bool {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, 0)
			// EINTR and friends: look again at the next tick.
			return err != nil || n == 0
		}
		done = func() { unix.Close(fd) }
	case errors.Is(err, unix.ESRCH):
		log.Warn("parent process already gone", "parent_pid", pid)
		close(gone)
		return gone
	default:
		log.Debug("pidfd_open unavailable, polling with kill(pid, 0)", "err", err)
		direct := os.Getppid() == pid
		alive = func() bool {
			if direct && os.Getppid() != pid {
				return false
			}
			return !errors.Is(unix.Kill(pid, 0), unix.ESRCH)
		}
	}
	go func() {
		defer done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if !alive() {
					close(gone)
					return
				}
			}
		}
	}()
	return gone
}
