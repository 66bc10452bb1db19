package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/workcell/workcell/images/fscrypt"
	"github.com/workcell/workcell/sandbox"
)

// The probes doctor asks the kernel through. probeNFTables and
// probeIPTablesLegacy stand in for netns.ProbeNFTables and
// netns.ProbeIPTablesLegacy until the netns backend lands.

// probeNFTables reports whether the kernel speaks nf_tables: listing the
// tables over netfilter netlink works.
func probeNFTables(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nf_tables: %w", err)
	}
	defer c.CloseLasting()
	if _, err := c.ListTables(); err != nil {
		return fmt.Errorf("the kernel does not answer nf_tables requests: %w (it needs CONFIG_NF_TABLES)", err)
	}
	return nil
}

// probeIPTablesLegacy reports whether the legacy iptables of the kernel
// (ip_tables) and the iptables-legacy-restore command are both there.
func probeIPTablesLegacy(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// The module loads at the first use, so an absent table list is
	// asked of the kernel's config before it counts as missing.
	if _, err := os.Stat("/proc/net/ip_tables_names"); err != nil {
		has, known := configHas("/", "CONFIG_IP_NF_IPTABLES")
		switch {
		case known && !has:
			return errors.New("the kernel config does not set CONFIG_IP_NF_IPTABLES")
		case !known:
			return fmt.Errorf("no /proc/net/ip_tables_names (ip_tables is not loaded) and no /proc/config.gz to ask: %w", err)
		}
	}
	for _, c := range []string{"iptables-legacy-restore", "iptables-restore"} {
		if _, err := exec.LookPath(c); err == nil {
			return nil
		}
	}
	return errors.New("the kernel has ip_tables but no iptables-legacy-restore (or iptables-restore) command is on PATH: install iptables")
}

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
		probeNFTables:       probeNFTables,
		probeIPTablesLegacy: probeIPTablesLegacy,
		probeSeccomp:        probeSeccomp,
		probeCipher:         fscrypt.ProbeMode,
		routes:              routeFacts,
	}
}
