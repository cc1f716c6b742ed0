package topology

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/dtlab/dt/internal/nsrun"
)

// InNetns runs fn with the calling thread in the named namespace (see nsrun): sockets it
// opens live there.
func InNetns(name string, fn func() error) error { return nsrun.DoNamed(name, fn) }

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
