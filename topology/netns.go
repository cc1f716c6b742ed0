package topology

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// InNetns runs fn on a locked OS thread switched into the named namespace, then switches
// back. If switching back fails the thread stays locked, so Go discards it rather than
// reuse a thread left in the wrong namespace.
func InNetns(name string, fn func() error) error {
	target, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	defer target.Close()
	return inNetnsHandle(target, fn)
}

func inNetnsHandle(target netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns: %w", err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return fmt.Errorf("return to original netns: %w (thread discarded)", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// newNamedNetns creates a named namespace (bind-mounted under /var/run/netns so that
// `ip netns exec` works from outside) without leaving the calling thread in it.
func newNamedNetns(name string) (netns.NsHandle, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return 0, fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	h, err := netns.NewNamed(name)
	if err != nil {
		_ = netns.Set(orig)
		return 0, fmt.Errorf("create netns %s: %w", name, err)
	}
	if err := netns.Set(orig); err != nil {
		h.Close()
		// Keep the thread locked (by not unlocking twice is impossible here); panic is
		// better than running the rest of dt inside the new namespace.
		panic(fmt.Sprintf("cannot return to the original netns: %v", err))
	}
	return h, nil
}

// ethtool ioctl numbers from <linux/ethtool.h> and <linux/sockios.h>.
const (
	siocEthtool    = 0x8946
	ethtoolSTxCsum = 0x17 // ETHTOOL_STXCSUM
)

type ethtoolValue struct {
	cmd  uint32
	data uint32
}

type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data uintptr
	_    [16]byte
}

// disableTxChecksum turns TX checksum offload off on an interface of the current
// namespace. With the userspace datapath, packets leaving a veth with a partial checksum
// are forwarded by ovs-vswitchd unchanged and the receiver drops them: ping works, TCP
// silently hangs.
//
// Equivalent to: ethtool -K IFACE tx off
func disableTxChecksum(iface string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket for ethtool: %w", err)
	}
	defer unix.Close(fd)
	v := ethtoolValue{cmd: ethtoolSTxCsum, data: 0}
	var req ifreqData
	copy(req.name[:], iface)
	req.data = uintptr(unsafe.Pointer(&v))
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), siocEthtool, uintptr(unsafe.Pointer(&req))); errno != 0 {
		return fmt.Errorf("ethtool -K %s tx off: %w", iface, errno)
	}
	runtime.KeepAlive(&v)
	return nil
}
