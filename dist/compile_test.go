package dist

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The compile test: workcelld.te, expanded with testdata/te_macros.m4 and
// put after stand-ins for the platform's classes and types, must compile
// with checkpolicy (Debian's, the tool that compiles SELinux kernel
// policy): every class, permission, type and ioctl in it is real. Then
// each NEVERALLOW note of workcelld.te is proven true: the AOSP rule it
// names, restated below, added to the policy makes checkpolicy refuse it;
// and the rules workcelld.te claims to keep do not.

const commons = `
common file { ioctl read write create getattr setattr lock relabelfrom relabelto append map unlink link rename execute quotaon mounton audit_access open execmod watch watch_mount watch_sb watch_with_perm watch_reads }
common socket { ioctl read write create getattr setattr lock relabelfrom relabelto append map bind connect listen accept getopt setopt shutdown recvfrom sendto name_bind }
common cap { chown dac_override dac_read_search fowner fsetid kill setgid setuid setpcap linux_immutable net_bind_service net_broadcast net_admin net_raw ipc_lock ipc_owner sys_module sys_rawio sys_chroot sys_ptrace sys_pacct sys_admin sys_boot sys_nice sys_resource sys_time sys_tty_config mknod lease audit_write audit_control setfcap }
common cap2 { mac_override mac_admin syslog wake_alarm block_suspend audit_read perfmon bpf checkpoint_restore }
`

// classes are the kernel's (security/selinux/include/classmap.h) and
// servicemanager's classes workcelld.te uses, with their permissions.
var classes = []struct{ name, def string }{
	{"file", "inherits file { execute_no_trans entrypoint }"},
	{"dir", "inherits file { add_name remove_name reparent search rmdir }"},
	{"lnk_file", "inherits file"},
	{"chr_file", "inherits file"},
	{"blk_file", "inherits file"},
	{"sock_file", "inherits file"},
	{"fifo_file", "inherits file"},
	{"fd", "{ use }"},
	{"process", "{ fork transition sigchld sigkill sigstop signull signal ptrace getsched setsched getsession getpgid setpgid getcap setcap share getattr setexec setfscreate noatsecure siginh setrlimit rlimitinh dyntransition setcurrent execmem execstack execheap setkeycreate setsockcreate getrlimit }"},
	{"filesystem", "{ mount remount unmount getattr relabelfrom relabelto associate quotamod quotaget watch }"},
	{"capability", "inherits cap"},
	{"capability2", "inherits cap2"},
	{"cap_userns", "inherits cap"},
	{"cap2_userns", "inherits cap2"},
	{"unix_stream_socket", "inherits socket { connectto }"},
	{"unix_dgram_socket", "inherits socket"},
	{"tcp_socket", "inherits socket { node_bind name_connect }"},
	{"udp_socket", "inherits socket { node_bind }"},
	{"rawip_socket", "inherits socket { node_bind }"},
	{"netlink_route_socket", "inherits socket { nlmsg_read nlmsg_write nlmsg_readpriv nlmsg_getneigh }"},
	{"netlink_generic_socket", "inherits socket"},
	{"binder", "{ impersonate call set_context_mgr transfer }"},
	{"bpf", "{ map_create map_read map_write prog_load prog_run }"},
	{"service_manager", "{ add find list }"},
}

// platformDecls declares platformTypes as AOSP does in kind: attributes,
// domains, and filesystem types (fs_type, for the mount rule).
func platformDecls() string {
	attrs := map[string]bool{"domain": true, "coredomain": true, "file_type": true, "data_file_type": true, "core_data_file_type": true,
		"system_file_type": true, "exec_type": true, "dev_type": true, "coredomain_socket": true, "mlstrustedobject": true}
	domains := map[string]bool{"init": true, "kernel": true, "shell": true, "system_app": true, "platform_app": true, "servicemanager": true, "system_server": true}
	fs := map[string]bool{"labeledfs": true, "tmpfs": true, "proc": true, "sysfs": true, "devpts": true, "binderfs": true, "cgroup": true, "cgroup_v2": true}
	var b strings.Builder
	b.WriteString("attribute fs_type;\n")
	for _, t := range platformTypes {
		if attrs[t] {
			fmt.Fprintf(&b, "attribute %s;\n", t)
		}
	}
	for _, t := range platformTypes {
		switch {
		case attrs[t]:
		case domains[t]:
			fmt.Fprintf(&b, "type %s, domain, coredomain;\n", t)
		case fs[t]:
			fmt.Fprintf(&b, "type %s, fs_type;\n", t)
		default:
			fmt.Fprintf(&b, "type %s, file_type;\n", t)
		}
	}
	return b.String()
}

// ioctlDefines are the ioctl numbers workcelld.te names (AOSP keeps them in
// ioctl_defines), as the low 16 bits an allowxperm rule takes.
func ioctlDefines() []string {
	var out []string
	for name, cmd := range map[string]uint{
		"LOOP_SET_FD": unix.LOOP_SET_FD, "LOOP_CLR_FD": unix.LOOP_CLR_FD, "LOOP_GET_STATUS64": unix.LOOP_GET_STATUS64,
		"LOOP_SET_STATUS64": unix.LOOP_SET_STATUS64, "LOOP_CONFIGURE": unix.LOOP_CONFIGURE, "LOOP_CTL_GET_FREE": unix.LOOP_CTL_GET_FREE,
		"FS_IOC_ADD_ENCRYPTION_KEY": unix.FS_IOC_ADD_ENCRYPTION_KEY, "FS_IOC_REMOVE_ENCRYPTION_KEY": unix.FS_IOC_REMOVE_ENCRYPTION_KEY,
		"FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS": unix.FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS, "FS_IOC_GET_ENCRYPTION_KEY_STATUS": unix.FS_IOC_GET_ENCRYPTION_KEY_STATUS,
		"FS_IOC_GET_ENCRYPTION_POLICY_EX": unix.FS_IOC_GET_ENCRYPTION_POLICY_EX, "FS_IOC_SET_ENCRYPTION_POLICY": unix.FS_IOC_SET_ENCRYPTION_POLICY,
	} {
		out = append(out, fmt.Sprintf("-D%s=0x%04x", name, cmd&0xffff))
	}
	return out
}

// compile builds policy.conf from workcelld.te plus extra rules and runs
// checkpolicy on it, returning its output and error.
func compile(t *testing.T, extra string) (string, error) {
	t.Helper()
	for _, tool := range []string{"m4", "checkpolicy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (Debian packages m4 and checkpolicy: hack/install-deps): %v", tool, err)
		}
	}
	dir := t.TempDir()
	extraFile := filepath.Join(dir, "extra.te")
	if err := os.WriteFile(extraFile, []byte(extra), 0o600); err != nil {
		t.Fatal(err)
	}
	m4 := exec.Command("m4", append(append([]string{"-s"}, ioctlDefines()...), "testdata/te_macros.m4", "android/sepolicy/workcelld.te", extraFile)...)
	te, err := m4.Output()
	if err != nil {
		t.Fatalf("m4 workcelld.te: %v", err)
	}
	var b strings.Builder
	for _, c := range classes {
		fmt.Fprintf(&b, "class %s\n", c.name)
	}
	b.WriteString("sid kernel\n")
	b.WriteString(commons)
	for _, c := range classes {
		fmt.Fprintf(&b, "class %s %s\n", c.name, c.def)
	}
	b.WriteString("policycap extended_socket_class;\n")
	b.WriteString(platformDecls())
	b.Write(te)
	b.WriteString("\nrole r;\nrole r types domain;\nuser u roles { r };\nsid kernel u:r:kernel\n")
	conf := filepath.Join(dir, "policy.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("checkpolicy", "-c", "30", "-o", filepath.Join(dir, "policy"), conf).CombinedOutput()
	return string(out), err
}

func TestSepolicyCompiles(t *testing.T) {
	if out, err := compile(t, ""); err != nil {
		t.Fatalf("checkpolicy refuses workcelld.te: %v\n%s", err, out)
	}
}

// AOSP's rules (system/sepolicy), restated over the stand-in types.
var neverallows = []struct {
	name, rule string
	violated   bool // true: workcelld.te breaks it, as its NEVERALLOW note says
}{
	{"set_context_mgr only for the service managers (domain.te)", "neverallow { domain -servicemanager } *:binder set_context_mgr;", true},
	{"bpf map_create/prog_load only for bpfloader (bpfloader.te)", "neverallow domain *:bpf { map_create prog_load };", true},
	{"mounting only for init, vold, zygote... (private/domain.te)", "neverallow { domain -init } fs_type:filesystem { mount remount relabelfrom relabelto };", true},
	{"mounting on proc only for init (domain.te)", "neverallow { domain -init } proc:{ file dir } mounton;", true},
	{"sys_ptrace only for vold, storaged, system_server... (private/domain.te)", "neverallow domain self:global_capability_class_set sys_ptrace;", true},
	{"dac_override only for a list of daemons (private/domain.te)", "neverallow { domain -init } self:global_capability_class_set dac_override;", true},
	{"no code from /data outside appdomain (private/domain.te)", "neverallow domain data_file_type:file { execute execute_no_trans };", true},
	{"no code from an fs_type outside appdomain (private/domain.te)", "neverallow domain fs_type:file execute;", true},

	{"no mac_admin/mac_override for anyone (domain.te)", "neverallow * self:global_capability2_class_set { mac_admin mac_override };", false},
	{"no module loading or raw I/O", "neverallow { workcelld workcell_app } self:global_capability_class_set { sys_module sys_rawio sys_boot sys_time };", false},
	{"work reaches no host binder service", "neverallow workcell_app { servicemanager system_server }:binder { call transfer set_context_mgr };", false},
	{"work opens no host binder device", "neverallow workcell_app binder_device:chr_file *;", false},
	{"work has no capabilities", "neverallow workcell_app self:global_capability_class_set *;", false},
	{"work mounts nothing", "neverallow workcell_app fs_type:filesystem { mount remount unmount relabelfrom relabelto };", false},
	{"work cannot connect to the daemon's socket", "neverallow workcell_app workcelld_socket:sock_file write;", false},
	{"nobody writes the daemon's binary", "neverallow domain workcelld_exec:file { write append create setattr relabelto };", false},
}

func TestSepolicyNeverallowNotes(t *testing.T) {
	te := read(t, "android/sepolicy/workcelld.te")
	for _, n := range neverallows {
		t.Run(n.name, func(t *testing.T) {
			out, err := compile(t, n.rule+"\n")
			switch {
			case n.violated && err == nil:
				t.Errorf("workcelld.te no longer breaks %q: drop its NEVERALLOW note", n.rule)
			case n.violated && !strings.Contains(out, "neverallow"):
				t.Errorf("checkpolicy failed for another reason than the neverallow: %v\n%s", err, out)
			case !n.violated && err != nil:
				t.Errorf("workcelld.te breaks %q: %v\n%s", n.rule, err, out)
			}
		})
	}
	if c := strings.Count(te, "NEVERALLOW"); c < 8 {
		t.Errorf("workcelld.te has %d NEVERALLOW notes, want one per rule it breaks (8)", c)
	}
}
