// Package nsrun runs code inside another network namespace without ever leaving a Go
// thread in the wrong one. Namespaces belong to OS threads, and Go moves goroutines
// between threads, so the work runs on a fresh goroutine locked to its thread, switched
// into the target and back; a thread that cannot switch back stays locked, and the
// runtime discards it when the goroutine ends.
package nsrun

import (
	"fmt"
	"os/exec"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn with the calling thread in target. Sockets fn opens and processes it starts
// belong to target.
//
// Equivalent to: nsenter --net=TARGET -- fn
func Do(target netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("return from netns: %w (thread discarded)", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// DoNamed is Do for a namespace named under /var/run/netns (or an absolute path).
func DoNamed(name string, fn func() error) error {
	open := netns.GetFromName
	if len(name) > 0 && name[0] == '/' {
		open = netns.GetFromPath
	}
	target, err := open(name)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	defer target.Close()
	if err := Do(target, fn); err != nil {
		return fmt.Errorf("netns %s: %w", name, err)
	}
	return nil
}

// Start starts cmd inside the named namespace; the process inherits it.
func Start(name string, cmd *exec.Cmd) error {
	return DoNamed(name, cmd.Start)
}
