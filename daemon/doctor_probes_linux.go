package daemon

import (
	"fmt"
	"os/exec"
	"runtime"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/workcell/workcell/images/fscrypt"
	"github.com/workcell/workcell/netns"
	"github.com/workcell/workcell/sandbox"
)

// The probes doctor asks the kernel through: the concerns' own where they
// have one (sandbox, netns, fscrypt), small ones of its own for the rest.

// probeSeccomp reports whether the kernel filters syscalls with seccomp
// (PR_GET_SECCOMP answers rather than EINVAL).
func probeSeccomp() error {
	if _, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_GET_SECCOMP): %w (the kernel needs CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER)", err)
	}
	return nil
}

// routeFacts says where the kernel routes by default: whether the main
// table has a default route, and which other tables do (netd's per-network
// tables on Android).
func routeFacts() (mainDefault bool, tables []int, err error) {
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return false, nil, fmt.Errorf("list routes: %w", err)
		}
		for _, r := range rs {
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones != 0 {
					continue
				}
			}
			if r.Type == unix.RTN_UNREACHABLE || r.Type == unix.RTN_BLACKHOLE || r.Type == unix.RTN_PROHIBIT {
				continue
			}
			switch r.Table {
			case unix.RT_TABLE_MAIN:
				mainDefault = true
			case unix.RT_TABLE_LOCAL, unix.RT_TABLE_DEFAULT:
			default:
				if !containsInt(tables, r.Table) {
					tables = append(tables, r.Table)
				}
			}
		}
	}
	return mainDefault, tables, nil
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// hostDoctorEnv is the real host.
func hostDoctorEnv() doctorEnv {
	return doctorEnv{
		root:                "/",
		goarch:              runtime.GOARCH,
		lookPath:            exec.LookPath,
		probePIDNS:          sandbox.ProbePIDNS,
		probeUserNS:         sandbox.ProbeUserNS,
		probeCgroups:        sandbox.ProbeCgroups,
		probeNFTables:       netns.ProbeNFTables,
		probeIPTablesLegacy: netns.ProbeIPTablesLegacy,
		probeSeccomp:        probeSeccomp,
		probeCipher:         fscrypt.ProbeMode,
		routes:              routeFacts,
	}
}
