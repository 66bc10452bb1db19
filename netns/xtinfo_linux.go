package netns

import (
	"errors"
	"fmt"
	"unsafe"

	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// xtInfo is struct ipt_getinfo (and ip6t_getinfo, the same layout) of
// <linux/netfilter_ipv4/ip_tables.h>: what IPT_SO_GET_INFO answers about
// one table without copying its rules.
type xtInfo struct {
	Name       [32]byte
	ValidHooks uint32
	HookEntry  [5]uint32
	Underflow  [5]uint32
	NumEntries uint32
	Size       uint32
}

var (
	_ [84 - unsafe.Sizeof(xtInfo{})]byte
	_ [unsafe.Sizeof(xtInfo{}) - 84]byte
)

// xtSoGetInfo is IPT_SO_GET_INFO and IP6T_SO_GET_INFO (IPT_BASE_CTL).
const xtSoGetInfo = 64

// xtFingerprint is the shape of the host's legacy tables that the rules
// live in: entries and size of filter and nat, per family. Any rule added,
// removed or replaced by one of another length (netd's restart, a flush,
// a hand edit) changes it; counters do not. Reading it costs two
// getsockopts per family, where iptables-save costs an exec and the whole
// table (on a phone, netd's thousands of rules).
type xtFingerprint [2][2][2]uint32

// xtReadFingerprint reads it in ns. A table the kernel does not have (no
// ip6tables nat on GKI) reads as all ones, which is stable too.
func xtReadFingerprint(ns vns.NsHandle) (xtFingerprint, error) {
	var fp xtFingerprint
	err := inNS(ns, func() error {
		for fam, f := range []struct{ af, level int }{{unix.AF_INET, unix.IPPROTO_IP}, {unix.AF_INET6, unix.IPPROTO_IPV6}} {
			fd, err := unix.Socket(f.af, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
			if err != nil {
				return fmt.Errorf("raw socket: %w", err)
			}
			for t, table := range []string{"filter", "nat"} {
				var info xtInfo
				copy(info.Name[:], table)
				l := uint32(unsafe.Sizeof(info))
				_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(f.level), xtSoGetInfo,
					uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&l)), 0)
				switch {
				case e == 0:
					fp[fam][t] = [2]uint32{info.NumEntries, info.Size}
				case errors.Is(e, unix.ENOENT):
					fp[fam][t] = [2]uint32{^uint32(0), ^uint32(0)}
				default:
					unix.Close(fd)
					return fmt.Errorf("IPT_SO_GET_INFO %s: %w", table, e)
				}
			}
			unix.Close(fd)
		}
		return nil
	})
	return fp, err
}
