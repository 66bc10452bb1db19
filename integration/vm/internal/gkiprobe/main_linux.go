// Command gkiprobe runs in the GKI-shaped guest of integration/vm
// (TestGKIKernelShapeInVM) and checks that the kernel and the system have
// the shape of a phone's: no pid or user namespaces, no nf_tables but
// iptables-legacy with the matches netd uses, Android's cgroup layout
// without a pids controller, binderfs, fscrypt v2 with Adiantum and HCTR2
// on an ext4 made with `mke2fs -O encrypt` on a loop device, and overlay
// (also on an encrypted upper). Each check prints "gkiprobe: ok <name>" or
// "gkiprobe: FAIL <name>: <why>"; the last line is "gkiprobe: PASS" only
// when every check passed.
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/workcell/workcell/binder"
	"github.com/workcell/workcell/images/fscrypt"
)

var failed int

func check(name string, f func() error) {
	if err := f(); err != nil {
		failed++
		fmt.Printf("gkiprobe: FAIL %s: %v\n", name, err)
		return
	}
	fmt.Printf("gkiprobe: ok %s\n", name)
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	check("kernel-config", kernelConfig)
	check("no-pid-namespace", func() error { return cloneRefused(unix.CLONE_NEWPID, "CLONE_NEWPID") })
	check("no-user-namespace", func() error { return cloneRefused(unix.CLONE_NEWUSER, "CLONE_NEWUSER") })
	check("net-uts-ipc-namespaces", otherNamespaces)
	check("hidepid-procfs", hidepidProc)
	check("no-nf_tables", noNFTables)
	check("iptables-legacy", iptablesLegacy)
	check("netd-chains", netdChains)
	check("android-cgroups", androidCgroups)
	check("no-pids-controller", noPids)
	check("binderfs", binderfs)
	check("loop-under-dev-block", loopUnderDevBlock)
	check("fscrypt-adiantum-on-loop-ext4", func() error { return fscryptOnLoop(ctx) })
	check("overlay", func() error { return overlay("/tmp/gkiprobe-overlay") })
	check("seccomp-filter", seccompFilter)
	if failed > 0 {
		fmt.Printf("gkiprobe: %d checks failed\n", failed)
		os.Exit(1)
	}
	fmt.Println("gkiprobe: PASS")
}

// kernelConfig reads /proc/config.gz, as one would on a phone.
func kernelConfig() error {
	f, err := os.Open("/proc/config.gz")
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		return err
	}
	cfg := string(b)
	for _, want := range []string{"# CONFIG_PID_NS is not set", "CONFIG_ANDROID_BINDERFS=y", "CONFIG_CRYPTO_ADIANTUM=y", "# CONFIG_NF_TABLES is not set"} {
		if !strings.Contains(cfg, "\n"+want+"\n") {
			return fmt.Errorf("/proc/config.gz lacks %q", want)
		}
	}
	for _, absent := range []string{"CONFIG_USER_NS=y", "CONFIG_CGROUP_PIDS=y", "CONFIG_CGROUP_DEVICE=y", "CONFIG_MODULES=y"} {
		if strings.Contains(cfg, "\n"+absent+"\n") {
			return fmt.Errorf("/proc/config.gz has %q", absent)
		}
	}
	return nil
}

// cloneRefused starts /bin/true in a new namespace of the given kind: a
// GKI kernel refuses it with EINVAL. (unshare(2) would prove nothing for
// CLONE_NEWUSER here: a multi-threaded process is always refused.)
func cloneRefused(flag uintptr, name string) error {
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flag}
	err := cmd.Run()
	if err == nil {
		return fmt.Errorf("clone(%s) succeeded: the kernel has this namespace", name)
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clone(%s) failed with %v, want EINVAL", name, err)
	}
	return nil
}

// otherNamespaces is the control of the two checks above: the namespaces
// GKI has do work.
func otherNamespaces() error {
	cmd := exec.Command("/bin/hostname", "gkiprobe-uts")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNET | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNS}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("clone(NEWNET|NEWUTS|NEWIPC|NEWNS): %v: %s", err, out)
	}
	h, _ := os.Hostname()
	if h == "gkiprobe-uts" {
		return errors.New("the child's hostname leaked into the guest's UTS namespace")
	}
	return nil
}

// hidepidProc mounts a procfs that shows only the caller's processes, the
// way a profile sees /proc without a pid namespace.
func hidepidProc() error {
	dir, err := os.MkdirTemp("", "gkiprobe-proc-")
	if err != nil {
		return err
	}
	defer os.Remove(dir)
	if err := unix.Mount("proc", dir, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "hidepid=invisible,subset=pid"); err != nil {
		return fmt.Errorf("mount proc hidepid=invisible,subset=pid: %w", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	if _, err := os.Stat(filepath.Join(dir, "sys")); err == nil {
		return errors.New("subset=pid still shows /proc/sys")
	}
	// As root every process is visible; as another uid, only its own.
	cmd := exec.Command("/bin/ls", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000100, Gid: 1000100}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ls %s as uid 1000100: %v: %s", dir, err, out)
	}
	if strings.Contains(" "+strings.Join(strings.Fields(string(out)), " ")+" ", " 1 ") {
		return fmt.Errorf("uid 1000100 sees pid 1 in a hidepid=invisible procfs: %s", out)
	}
	return nil
}

// noNFTables asks nfnetlink for the nf_tables subsystem (NFT_MSG_GETGEN):
// a GKI kernel does not have it. The control is a conntrack dump over the
// same socket, which must work.
func noNFTables() error {
	if err := nfnetlinkRequest(10<<8|16, unix.NLM_F_REQUEST|unix.NLM_F_ACK); err == nil {
		return errors.New("NFT_MSG_GETGEN was answered: the kernel has nf_tables")
	} else if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("NFT_MSG_GETGEN: %v, want EOPNOTSUPP (no nf_tables subsystem)", err)
	}
	// IPCTNL_MSG_CT_GET dump.
	if err := nfnetlinkRequest(1<<8|1, unix.NLM_F_REQUEST|unix.NLM_F_DUMP|unix.NLM_F_ACK); err != nil {
		return fmt.Errorf("the control, a conntrack dump over nfnetlink, failed: %v", err)
	}
	if _, err := os.Stat("/proc/net/ip_tables_names"); err != nil {
		return fmt.Errorf("iptables-legacy's /proc/net/ip_tables_names: %w", err)
	}
	return nil
}

// nfnetlinkRequest sends one nfnetlink message with an nfgenmsg and
// returns the kernel's error, if any (nil for a clean NLMSG_DONE or ACK).
func nfnetlinkRequest(msgType uint16, flags uint16) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	tv := unix.Timeval{Sec: 5}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	msg := make([]byte, unix.NLMSG_HDRLEN+4)
	*(*unix.NlMsghdr)(unsafe.Pointer(&msg[0])) = unix.NlMsghdr{Len: uint32(len(msg)), Type: msgType, Flags: flags, Seq: 1}
	msg[unix.NLMSG_HDRLEN] = unix.AF_INET // nfgenmsg: family, version 0, res_id 0
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return errors.New("short NLMSG_ERROR")
				}
				if code := *(*int32)(unsafe.Pointer(&m.Data[0])); code != 0 {
					return syscall.Errno(-code)
				}
				return nil
			case unix.NLMSG_DONE:
				return nil
			}
		}
	}
}

func run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// iptablesLegacy loads, in one iptables-restore batch per family as netd
// does, a chain using every match netd uses, and reads it back.
func iptablesLegacy() error {
	if out, err := run("iptables", "--version"); err != nil {
		return err
	} else if !strings.Contains(out, "legacy") {
		return fmt.Errorf("iptables --version = %q, want the legacy backend", strings.TrimSpace(out))
	}
	rules := `*filter
:gkiprobe - [0:0]
-A gkiprobe -m owner --uid-owner 1000100-1099999 -m comment --comment "work uids" -j DROP
-A gkiprobe -m mark --mark 0x10000/0x10000 -j RETURN
-A gkiprobe -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A gkiprobe -m state --state INVALID -j DROP
-A gkiprobe -p tcp -m multiport --dports 53,853 -j ACCEPT
-A gkiprobe -m iprange --dst-range 10.0.0.1-10.0.0.9 -j REJECT
-A gkiprobe -j MARK --set-xmark 0x1/0x1
COMMIT
*nat
:gkiprobe_nat - [0:0]
-A gkiprobe_nat -s 10.99.0.0/24 -j MASQUERADE
COMMIT
`
	cmd := exec.Command("iptables-restore", "--noflush")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore: %v: %s", err, out)
	}
	rules6 := strings.ReplaceAll(strings.ReplaceAll(strings.Split(rules, "*nat")[0], "10.0.0.1-10.0.0.9", "fd00::1-fd00::9"), "REJECT", "REJECT --reject-with icmp6-adm-prohibited")
	cmd = exec.Command("ip6tables-restore", "--noflush")
	cmd.Stdin = strings.NewReader(rules6)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip6tables-restore: %v: %s", err, out)
	}
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		out, err := run(tool)
		if err != nil {
			return err
		}
		for _, want := range []string{"--uid-owner 1000100-1099999", "--comment \"work uids\"", "--ctstate RELATED,ESTABLISHED", "--state INVALID", "multiport --dports 53,853", "--dst-range", "--mark 0x10000/0x10000"} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("%s lacks %q:\n%s", tool, want, out)
			}
		}
		if tool == "iptables-save" && !strings.Contains(out, "-j MASQUERADE") {
			return fmt.Errorf("iptables-save lacks the MASQUERADE rule:\n%s", out)
		}
	}
	for _, c := range [][]string{
		{"iptables", "-F", "gkiprobe"}, {"iptables", "-X", "gkiprobe"},
		{"iptables", "-t", "nat", "-F", "gkiprobe_nat"}, {"iptables", "-t", "nat", "-X", "gkiprobe_nat"},
		{"ip6tables", "-F", "gkiprobe"}, {"ip6tables", "-X", "gkiprobe"},
	} {
		if _, err := run(c[0], c[1:]...); err != nil {
			return err
		}
	}
	if _, err := run("ip6tables", "-t", "nat", "-S"); err == nil {
		return errors.New("ip6tables has a nat table: GKI has no IPv6 NAT")
	}
	return nil
}

func netdChains() error {
	for table, chains := range map[string][]string{
		"filter": {"oem_fwd", "oem_out", "fw_INPUT", "tetherctrl_FORWARD"},
		"nat":    {"oem_nat_pre", "tetherctrl_nat_POSTROUTING"},
	} {
		out, err := run("iptables", "-t", table, "-S")
		if err != nil {
			return err
		}
		for _, c := range chains {
			if !strings.Contains(out, "-N "+c+"\n") {
				return fmt.Errorf("iptables -t %s has no chain %s:\n%s", table, c, out)
			}
		}
	}
	return nil
}

func androidCgroups() error {
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return err
	}
	for _, want := range []string{" /dev/memcg cgroup ", " /dev/cpuctl cgroup ", " /dev/cpuset cgroup ", " /sys/fs/cgroup cgroup2 ", " /dev/binderfs binder "} {
		if !strings.Contains(string(mounts), want) {
			return fmt.Errorf("no mount %q in /proc/self/mounts", strings.TrimSpace(want))
		}
	}
	for _, f := range []string{"/dev/memcg/memory.limit_in_bytes", "/dev/memcg/apps", "/dev/cpuctl/cpu.shares", "/dev/cpuctl/top-app", "/dev/cpuset/cpus"} {
		if _, err := os.Stat(f); err != nil {
			return err
		}
	}
	// A v1 memory limit in a fresh group takes and reads back.
	g := "/dev/memcg/gkiprobe"
	if err := os.Mkdir(g, 0o755); err != nil {
		return err
	}
	defer os.Remove(g)
	if err := os.WriteFile(g+"/memory.limit_in_bytes", []byte("67108864"), 0); err != nil {
		return fmt.Errorf("v1 memory limit: %w", err)
	}
	if b, _ := os.ReadFile(g + "/memory.limit_in_bytes"); strings.TrimSpace(string(b)) != "67108864" {
		return fmt.Errorf("memory.limit_in_bytes reads %q after writing 67108864", b)
	}
	// cgroup2 has no controller: all are bound to v1 or absent. Its
	// freezer (cgroup.freeze) and cgroup.kill are built in.
	ctrls, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	if err != nil {
		return err
	}
	for _, c := range strings.Fields(string(ctrls)) {
		if c == "memory" || c == "cpu" || c == "pids" || c == "cpuset" {
			return fmt.Errorf("cgroup2 offers the %s controller; on Android it is bound to v1 or absent (controllers: %q)", c, ctrls)
		}
	}
	if b, _ := os.ReadFile("/sys/fs/cgroup/cgroup.subtree_control"); strings.TrimSpace(string(b)) != "" {
		return fmt.Errorf("cgroup2's subtree_control is %q, want empty", b)
	}
	v2 := "/sys/fs/cgroup/gkiprobe"
	if err := os.Mkdir(v2, 0o755); err != nil {
		return err
	}
	defer os.Remove(v2)
	for _, f := range []string{"cgroup.freeze", "cgroup.kill", "cgroup.events"} {
		if _, err := os.Stat(filepath.Join(v2, f)); err != nil {
			return fmt.Errorf("cgroup2 child: %w", err)
		}
	}
	if err := os.WriteFile(v2+"/cgroup.freeze", []byte("1"), 0); err != nil {
		return fmt.Errorf("v2 freezer: %w", err)
	}
	return nil
}

func noPids() error {
	b, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && (f[0] == "pids" || f[0] == "devices") {
			return fmt.Errorf("/proc/cgroups lists %s", f[0])
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/pids.max"); err == nil {
		return errors.New("/sys/fs/cgroup has pids files")
	}
	return nil
}

// binderfs makes a device through /dev/binderfs/binder-control and talks
// protocol version 8 on it, then removes it.
func binderfs() error {
	for _, d := range []string{"binder", "hwbinder", "vndbinder", "binder-control"} {
		if _, err := os.Stat("/dev/binderfs/" + d); err != nil {
			return err
		}
	}
	if t, err := os.Readlink("/dev/binder"); err != nil || t != "/dev/binderfs/binder" {
		return fmt.Errorf("/dev/binder -> %q (%v), want /dev/binderfs/binder", t, err)
	}
	name := fmt.Sprintf("gkiprobe%d", os.Getpid())
	p, err := binder.AddBinderfsDevice("/dev/binderfs", name)
	if err != nil {
		return err
	}
	defer binder.RemoveBinderfsDevice("/dev/binderfs", name)
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer unix.Close(fd)
	var ver int32
	// BINDER_VERSION = _IOWR('b', 9, struct binder_version)
	const binderVersion = 0xc0046209
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), binderVersion, uintptr(unsafe.Pointer(&ver))); e != 0 {
		return fmt.Errorf("BINDER_VERSION on %s: %v", p, e)
	}
	if ver != 8 {
		return fmt.Errorf("binder protocol %d on %s, want 8", ver, p)
	}
	return nil
}

func loopUnderDevBlock() error {
	if _, err := os.Stat("/dev/block/loop0"); err != nil {
		return err
	}
	if _, err := os.Stat("/dev/loop0"); err == nil {
		return errors.New("/dev/loop0 exists: Android keeps loop nodes in /dev/block")
	}
	return nil
}

// attachLoop attaches file to a free loop device found through
// /dev/loop-control and returns the node (wherever the platform keeps it).
func attachLoop(file string) (string, func(), error) {
	ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, err
	}
	defer unix.Close(ctl)
	n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
	if err != nil {
		return "", nil, fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
	}
	var node string
	for _, c := range []string{fmt.Sprintf("/dev/block/loop%d", n), fmt.Sprintf("/dev/loop%d", n)} {
		if _, err := os.Stat(c); err == nil {
			node = c
			break
		}
	}
	if node == "" {
		return "", nil, fmt.Errorf("loop%d has no node in /dev/block or /dev", n)
	}
	lfd, err := unix.Open(node, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, err
	}
	ffd, err := unix.Open(file, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(lfd)
		return "", nil, err
	}
	defer unix.Close(ffd)
	if err := unix.IoctlSetInt(lfd, unix.LOOP_SET_FD, ffd); err != nil {
		unix.Close(lfd)
		return "", nil, fmt.Errorf("LOOP_SET_FD %s: %w", node, err)
	}
	return node, func() { _ = unix.IoctlSetInt(lfd, unix.LOOP_CLR_FD, 0); unix.Close(lfd) }, nil
}

// fscryptOnLoop makes an ext4 with `mke2fs -t ext4 -O encrypt` in a file,
// mounts it from a loop device (with inlinecrypt: blk-crypto's fallback),
// and checks v2 policies with Adiantum and with AES-256-XTS/HCTR2: a file
// written under the key reads back, and once the key is removed its name
// is ciphertext and its content cannot be opened. An overlay with its
// upper layer in the encrypted folder works too.
func fscryptOnLoop(ctx context.Context) error {
	img := "/tmp/gkiprobe-ext4.img"
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		return err
	}
	defer os.Remove(img)
	if err := os.Truncate(img, 64<<20); err != nil {
		return err
	}
	if _, err := run("mke2fs", "-q", "-F", "-t", "ext4", "-O", "encrypt", img); err != nil {
		return err
	}
	node, detach, err := attachLoop(img)
	if err != nil {
		return err
	}
	defer detach()
	mnt := "/tmp/gkiprobe-mnt"
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(node, mnt, "ext4", 0, "inlinecrypt"); err != nil {
		return fmt.Errorf("mount %s ext4 inlinecrypt: %w", node, err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	for _, m := range []struct {
		name                string
		contents, filenames uint8
	}{
		{"adiantum", unix.FSCRYPT_MODE_ADIANTUM, unix.FSCRYPT_MODE_ADIANTUM},
		{"aes-xts-hctr2", unix.FSCRYPT_MODE_AES_256_XTS, 10 /* FSCRYPT_MODE_AES_256_HCTR2 */},
		{"aes-xts-cts", unix.FSCRYPT_MODE_AES_256_XTS, unix.FSCRYPT_MODE_AES_256_CTS},
	} {
		if err := encryptedDir(ctx, mnt, m.name, m.contents, m.filenames); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
	}
	return nil
}

func encryptedDir(ctx context.Context, mnt, name string, contents, filenames uint8) error {
	dir := filepath.Join(mnt, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	key, err := fscrypt.NewKey()
	if err != nil {
		return err
	}
	id, err := fscrypt.AddKey(ctx, mnt, key)
	if err != nil {
		return err
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	p := unix.FscryptPolicyV2{
		Version:                   unix.FSCRYPT_POLICY_V2,
		Contents_encryption_mode:  contents,
		Filenames_encryption_mode: filenames,
		Flags:                     unix.FSCRYPT_POLICY_FLAGS_PAD_32,
		Master_key_identifier:     id,
	}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.FS_IOC_SET_ENCRYPTION_POLICY, uintptr(unsafe.Pointer(&p)))
	unix.Close(fd)
	if e != 0 {
		return fmt.Errorf("FS_IOC_SET_ENCRYPTION_POLICY: %v", e)
	}
	secret := []byte("work data " + name)
	if err := os.WriteFile(filepath.Join(dir, "secret.txt"), secret, 0o600); err != nil {
		return err
	}
	if name == "adiantum" {
		if err := overlay(filepath.Join(dir, "ovl")); err != nil {
			return fmt.Errorf("overlay with its upper in the encrypted folder: %w", err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "secret.txt")); err != nil || !bytes.Equal(b, secret) {
		return fmt.Errorf("read back %q (%v)", b, err)
	}
	if _, err := fscrypt.RemoveKey(ctx, mnt, id); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name() == "secret.txt" {
			return errors.New("the file's name is still plaintext after the key was removed")
		}
		if _, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
			return fmt.Errorf("%s opened without the key", e.Name())
		}
	}
	if len(ents) == 0 {
		return errors.New("the encrypted folder lists nothing after the key was removed")
	}
	return nil
}

// overlay mounts lower+upper at base/merged and checks copy-up.
func overlay(base string) error {
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(base, "lower", "f"), []byte("lower"), 0o644); err != nil {
		return err
	}
	merged := filepath.Join(base, "merged")
	opts := fmt.Sprintf("lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work", base, base, base)
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay %s: %w", opts, err)
	}
	defer unix.Unmount(merged, unix.MNT_DETACH)
	if err := os.WriteFile(filepath.Join(merged, "f"), []byte("upper"), 0o644); err != nil {
		return err
	}
	if b, err := os.ReadFile(filepath.Join(base, "upper", "f")); err != nil || string(b) != "upper" {
		return fmt.Errorf("copy-up: upper/f = %q (%v)", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(base, "lower", "f")); string(b) != "lower" {
		return fmt.Errorf("the lower layer changed: %q", b)
	}
	return nil
}

// seccompFilter installs a filter in a child (busybox sh under
// PR_SET_NO_NEW_PRIVS is enough to prove the kernel takes one): the
// kernel must report seccomp filter mode in /proc/self/status.
func seccompFilter() error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	if !strings.Contains(string(b), "\nSeccomp:") {
		return errors.New("/proc/self/status has no Seccomp line: no CONFIG_SECCOMP")
	}
	// PR_GET_SECCOMP answers 0 (disabled) on a kernel with seccomp; and
	// SECCOMP_GET_ACTION_AVAIL for KILL_PROCESS needs the filter mode.
	const seccompGetActionAvail = 2
	action := uint32(0x80000000) // SECCOMP_RET_KILL_PROCESS
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, seccompGetActionAvail, 0, uintptr(unsafe.Pointer(&action))); e != 0 {
		return fmt.Errorf("seccomp(SECCOMP_GET_ACTION_AVAIL): %v: no CONFIG_SECCOMP_FILTER", e)
	}
	return nil
}
