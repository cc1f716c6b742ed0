// Package nsrun runs code inside another network namespace, and creates namespaces,
// without ever leaving a Go thread in the wrong one. Namespaces belong to OS threads, and
// Go moves goroutines between threads, so the work runs on a fresh goroutine locked to its
// thread, which is switched back to where it started afterwards; a thread that cannot
// switch back stays locked, and the runtime discards it when the goroutine ends.
package nsrun

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"

	"github.com/vishvananda/netns"
)

// onLockedThread runs fn on a fresh goroutine locked to its OS thread and then puts the
// thread back into the namespace it started in, whatever fn did to it. If that fails the
// thread is never unlocked, so the runtime ends it with the goroutine instead of running
// other goroutines in the wrong namespace.
func onLockedThread(fn func() error) error {
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
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return from netns: %w (thread discarded)", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Do runs fn with the calling thread in target. Sockets fn opens and processes it starts
// belong to target.
//
// Equivalent to: nsenter --net=TARGET -- fn
func Do(target netns.NsHandle, fn func() error) error {
	return onLockedThread(func() error {
		if err := netns.Set(target); err != nil {
			return fmt.Errorf("enter netns: %w", err)
		}
		return fn()
	})
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

// New creates an anonymous network namespace and returns a handle to it; the caller's
// thread stays where it is. The namespace lives while a handle to it is open or a process
// is inside: closing the last handle of an empty one removes it.
//
// Equivalent to: unshare --net (from a thread that then goes back)
func New() (netns.NsHandle, error) {
	h, err := create(netns.New, nil)
	if err != nil {
		return h, fmt.Errorf("create netns: %w", err)
	}
	return h, nil
}

// NewNamed creates a network namespace bind-mounted at /var/run/netns/NAME, so that it
// outlives the handle and `ip netns exec NAME` works from outside, and returns a handle to
// it; the caller's thread stays where it is. A name already in use is an error.
//
// Equivalent to: ip netns add NAME
func NewNamed(name string) (netns.NsHandle, error) {
	h, err := create(func() (netns.NsHandle, error) { return netns.NewNamed(name) },
		func() { _ = netns.DeleteNamed(name) })
	if err != nil {
		return h, fmt.Errorf("create netns %s: %w", name, err)
	}
	return h, nil
}

// create runs newNs (which moves its thread into the namespace it makes) on a locked
// thread that goes back afterwards. When the thread cannot go back, the new namespace is
// closed and removed (remove, if not nil) rather than handed out.
func create(newNs func() (netns.NsHandle, error), remove func()) (netns.NsHandle, error) {
	h := netns.None()
	created := false
	err := onLockedThread(func() error {
		var err error
		h, err = newNs()
		created = err == nil
		return err
	})
	if err != nil {
		if created {
			h.Close()
			if remove != nil {
				remove()
			}
		}
		return netns.None(), err
	}
	return h, nil
}
