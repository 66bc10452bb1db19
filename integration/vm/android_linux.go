package vm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// androidInit is the part of /init that lays an Android-shaped guest out
// (Config.Android) as Android 12-15's init and netd do on a phone, after
// proc, sys, dev and the tmpfs mounts:
//
//   - cgroups as AOSP's libprocessgroup cgroups.json mounts them: the v1
//     controllers memory at /dev/memcg, cpu at /dev/cpuctl, cpuset at
//     /dev/cpuset (noprefix) and blkio at /dev/blkio, with the groups
//     init.rc makes in them; the v2 hierarchy at /sys/fs/cgroup with no
//     controller enabled (every controller it could have is bound to v1;
//     its freezer is v2's built-in cgroup.freeze).
//   - binderfs at /dev/binderfs (stats=global), with /dev/binder,
//     /dev/hwbinder and /dev/vndbinder as symlinks into it, as init.rc
//     makes them.
//   - loop devices under /dev/block (ueventd puts block devices there).
//   - netd's iptables skeleton (system/netd/server/Controllers.cpp): its
//     chains hooked into the built-in ones, the OEM chains first
//     (oem_fwd, oem_out, oem_nat_pre), in iptables-legacy, which is the only
//     netfilter a GKI kernel has.
//   - no /etc/resolv.conf (DNS lives in netd) and no mkfs.ext4 (AOSP ships
//     mke2fs).
//
// A step that fails stops the boot (SETUP marker) naming it.
const androidInit = `# Android 12-15 layout (integration/vm/android_linux.go).
mkdir -p /dev/memcg /dev/cpuctl /dev/cpuset /dev/blkio
must mount -t cgroup -o nodev,noexec,nosuid,memory none /dev/memcg
must mount -t cgroup -o nodev,noexec,nosuid,cpu none /dev/cpuctl
must mount -t cgroup -o nodev,noexec,nosuid,cpuset,noprefix none /dev/cpuset
must mount -t cgroup -o nodev,noexec,nosuid,blkio none /dev/blkio
must mount -t cgroup2 -o nodev,noexec,nosuid none /sys/fs/cgroup
echo 1 > /dev/memcg/memory.move_charge_at_immigrate
for g in apps system; do must mkdir -p /dev/memcg/$g; done
for g in top-app foreground background system system-background rt camera-daemon; do must mkdir -p /dev/cpuctl/$g; done
for g in foreground background top-app system-background restricted camera-daemon; do
  must mkdir -p /dev/cpuset/$g
  must cp /dev/cpuset/cpus /dev/cpuset/$g/cpus
  must cp /dev/cpuset/mems /dev/cpuset/$g/mems
done
mkdir -p /dev/binderfs
must mount -t binder -o stats=global binder /dev/binderfs
chmod 0755 /dev/binderfs
for d in binder hwbinder vndbinder; do must ln -s /dev/binderfs/$d /dev/$d; done
mkdir -p /dev/block
for l in /dev/loop[0-9]*; do [ -e "$l" ] && must mv "$l" /dev/block/; done
rm -f /etc/resolv.conf
must iptables-restore /etc/netd-iptables.rules
must ip6tables-restore /etc/netd-ip6tables.rules
`

// netdFilter is netd's filter table skeleton; netdNAT its IPv4 nat table
// (GKI has no IPv6 NAT).
const netdFilter = `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:bw_INPUT - [0:0]
:fw_INPUT - [0:0]
:oem_fwd - [0:0]
:fw_FORWARD - [0:0]
:bw_FORWARD - [0:0]
:tetherctrl_FORWARD - [0:0]
:oem_out - [0:0]
:fw_OUTPUT - [0:0]
:st_OUTPUT - [0:0]
:bw_OUTPUT - [0:0]
-A INPUT -j bw_INPUT
-A INPUT -j fw_INPUT
-A FORWARD -j oem_fwd
-A FORWARD -j fw_FORWARD
-A FORWARD -j bw_FORWARD
-A FORWARD -j tetherctrl_FORWARD
-A OUTPUT -j oem_out
-A OUTPUT -j fw_OUTPUT
-A OUTPUT -j st_OUTPUT
-A OUTPUT -j bw_OUTPUT
COMMIT
`

const netdNAT = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:oem_nat_pre - [0:0]
:tetherctrl_nat_POSTROUTING - [0:0]
-A PREROUTING -j oem_nat_pre
-A POSTROUTING -j tetherctrl_nat_POSTROUTING
COMMIT
`

// NetdChains are the chains netd's skeleton makes, by table.
var NetdChains = map[string][]string{
	"filter": {"bw_INPUT", "fw_INPUT", "oem_fwd", "fw_FORWARD", "bw_FORWARD", "tetherctrl_FORWARD", "oem_out", "fw_OUTPUT", "st_OUTPUT", "bw_OUTPUT"},
	"nat":    {"oem_nat_pre", "tetherctrl_nat_POSTROUTING"},
}

// hostLoader is the host's dynamic loader: it lists a program's libraries
// and runs them in the guest at the same path.
const hostLoader = "/lib64/ld-linux-x86-64.so.2"

// xtablesDir holds iptables' match and target plugins (dlopened by name).
const xtablesDir = "/usr/lib/x86_64-linux-gnu/xtables"

// androidTool is a dynamic program of the Android-shaped guest: guest names
// in /bin, and the host file of the Debian package that has it.
type androidTool struct {
	names []string
	host  []string // candidates, first found wins
	pkg   string
}

var androidTools = []androidTool{
	{
		// xtables-legacy-multi runs as what argv[0] names.
		names: []string{"iptables", "ip6tables", "iptables-save", "ip6tables-save", "iptables-restore", "ip6tables-restore",
			"iptables-legacy", "ip6tables-legacy", "iptables-legacy-save", "ip6tables-legacy-save",
			"iptables-legacy-restore", "ip6tables-legacy-restore"},
		host: []string{"/usr/sbin/xtables-legacy-multi", "/sbin/xtables-legacy-multi"},
		pkg:  "iptables",
	},
	{names: []string{"ip"}, host: []string{"/usr/bin/ip", "/bin/ip", "/usr/sbin/ip", "/sbin/ip"}, pkg: "iproute2"},
	{names: []string{"mke2fs"}, host: []string{"/usr/sbin/mke2fs", "/sbin/mke2fs"}, pkg: "e2fsprogs"},
}

var (
	androidOnce  sync.Once
	androidFS    map[string]archiveEntry
	androidFSErr error
)

// androidFiles returns the initramfs entries of the Android layout: the
// tools of androidTools in /bin (a real file there wins over busybox's
// applet link of the same name), every xtables plugin, the libraries all
// of them need at their host paths, the loader, and netd's rules.
func androidFiles() (map[string]archiveEntry, error) {
	androidOnce.Do(func() { androidFS, androidFSErr = collectAndroidFiles() })
	return androidFS, androidFSErr
}

func collectAndroidFiles() (map[string]archiveEntry, error) {
	if _, err := os.Stat(hostLoader); err != nil {
		return nil, fmt.Errorf("vm: the Android guest's tools need the host's loader %s: %w", hostLoader, ErrMissing)
	}
	files := map[string]archiveEntry{
		strings.TrimPrefix(hostLoader, "/"): {src: hostLoader, perm: 0o755},
		"etc/netd-iptables.rules":           {data: []byte(netdFilter + netdNAT), perm: 0o644},
		"etc/netd-ip6tables.rules":          {data: []byte(netdFilter), perm: 0o644},
	}
	var elfs []string
	for _, t := range androidTools {
		host := ""
		for _, c := range t.host {
			if _, err := os.Stat(c); err == nil {
				host = c
				break
			}
		}
		if host == "" {
			return nil, fmt.Errorf("vm: the Android guest needs %s (package %s): %w", t.host[0], t.pkg, ErrMissing)
		}
		elfs = append(elfs, host)
		for _, n := range t.names {
			files["bin/"+n] = archiveEntry{src: host, perm: 0o755}
		}
	}
	plugins, err := filepath.Glob(filepath.Join(xtablesDir, "*.so"))
	if err != nil || len(plugins) == 0 {
		return nil, fmt.Errorf("vm: the Android guest needs iptables' plugins in %s (package iptables): %w", xtablesDir, ErrMissing)
	}
	for _, p := range plugins {
		files[strings.TrimPrefix(p, "/")] = archiveEntry{src: p, perm: 0o644}
	}
	elfs = append(elfs, plugins...)
	libs, err := sharedLibraries(elfs)
	if err != nil {
		return nil, err
	}
	for _, l := range libs {
		files[strings.TrimPrefix(l, "/")] = archiveEntry{src: l, perm: 0o755}
	}
	if _, err := os.Stat("/etc/mke2fs.conf"); err == nil {
		files["etc/mke2fs.conf"] = archiveEntry{src: "/etc/mke2fs.conf", perm: 0o644}
	}
	return files, nil
}

// sharedLibraries lists, through the host's loader, every library the
// given ELF files need (transitively, as the loader resolves them).
func sharedLibraries(elfs []string) ([]string, error) {
	seen := map[string]bool{}
	for _, f := range elfs {
		var stderr bytes.Buffer
		cmd := exec.Command(hostLoader, "--list", f)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("vm: %s --list %s: %v: %s", hostLoader, f, err, strings.TrimSpace(stderr.String()))
		}
		for _, line := range strings.Split(string(out), "\n") {
			fs := strings.Fields(line)
			if len(fs) >= 3 && fs[1] == "=>" {
				if !strings.HasPrefix(fs[2], "/") {
					return nil, fmt.Errorf("vm: %s needs %s, which the host's loader cannot find", f, fs[0])
				}
				seen[fs[2]] = true
			}
		}
	}
	libs := make([]string, 0, len(seen))
	for l := range seen {
		libs = append(libs, l)
	}
	sort.Strings(libs)
	return libs, nil
}
