package vm

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	gkiOnce   sync.Once
	gkiKernel *Kernel
	gkiErr    error
)

// guestGKIKernel builds (once, then from the cache) the GKI-shaped kernel;
// a machine that cannot build it fails the test saying what is missing.
func guestGKIKernel(t *testing.T) *Kernel {
	t.Helper()
	gkiOnce.Do(func() {
		start := time.Now()
		gkiKernel, gkiErr = BuildGKIKernel(context.Background(), CacheDir(), slog.New(slog.NewTextHandler(os.Stderr, nil)))
		if gkiErr == nil {
			t.Logf("GKI-shaped kernel %s (%s) ready in %v; its cold build's make took %ds",
				gkiKernel.Release, gkiKernel.Vmlinuz, time.Since(start).Round(time.Millisecond), gkiKernel.BuildSeconds)
		}
	})
	if gkiErr != nil {
		t.Fatalf("no GKI-shaped guest kernel: %v", gkiErr)
	}
	return gkiKernel
}

// bootGKI is bootConfig on the GKI-shaped kernel with the Android layout.
func bootGKI(t *testing.T, cfg Config) *Result {
	t.Helper()
	k := guestGKIKernel(t)
	cfg.Android = true
	programs := cfg.Programs
	logFile, err := os.CreateTemp("", "workcell-vm-"+t.Name()+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	t.Logf("guest console: %s", logFile.Name())
	cfg.Kernel = k
	cfg.Console = &lineLogger{t: t, prefix: "guest: ", file: logFile}
	cfg.Logger = slog.New(slog.NewTextHandler(&lineLogger{t: t, prefix: "vm: "}, nil))
	res, err := Run(context.Background(), cfg)
	if res != nil {
		t.Logf("guest %s: booted in %v, whole run %v", res.Kernel, res.Boot.Round(time.Millisecond), res.Wall.Round(time.Millisecond))
	}
	if err != nil {
		t.Fatalf("%v\n(full console: %s)", err, logFile.Name())
	}
	if len(res.Programs) != len(programs) {
		t.Fatalf("guest ran %d of %d programs (full console: %s)", len(res.Programs), len(programs), logFile.Name())
	}
	return res
}

var fragmentOption = regexp.MustCompile(`^(CONFIG_[A-Za-z0-9_]+=.*|# CONFIG_[A-Za-z0-9_]+ is not set)$`)

// TestGKIFragmentSaysWhatGKISets keeps the fragment's promise: every
// option has a "# gki:" or "# x86 guest:" line right above it, and the
// choices the issue names are there as gki_defconfig makes them.
func TestGKIFragmentSaysWhatGKISets(t *testing.T) {
	var prev string
	opts := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(GKIFragment()))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if fragmentOption.MatchString(line) {
			opts[line] = true
			if !strings.HasPrefix(prev, "# gki: ") && !strings.HasPrefix(prev, "# x86 guest: ") {
				t.Errorf("gki.fragment:%d: %q has no \"# gki: ...\" (or \"# x86 guest: ...\") line above it", n, line)
			}
		}
		prev = line
	}
	for _, want := range []string{
		"# CONFIG_PID_NS is not set", "# CONFIG_USER_NS is not set", "CONFIG_UTS_NS=y", "CONFIG_IPC_NS=y", "CONFIG_NET_NS=y",
		"CONFIG_CGROUPS=y", "CONFIG_MEMCG=y", "CONFIG_CGROUP_SCHED=y", "CONFIG_FAIR_GROUP_SCHED=y", "CONFIG_CGROUP_FREEZER=y",
		"CONFIG_CGROUP_BPF=y", "# CONFIG_CGROUP_PIDS is not set", "# CONFIG_CGROUP_DEVICE is not set",
		"CONFIG_IP_NF_IPTABLES=y", "CONFIG_IP_NF_FILTER=y", "CONFIG_IP_NF_MANGLE=y", "CONFIG_IP_NF_NAT=y",
		"CONFIG_IP_NF_TARGET_MASQUERADE=y", "CONFIG_NF_CONNTRACK=y", "CONFIG_NETFILTER_XT_MATCH_OWNER=y",
		"CONFIG_NETFILTER_XT_MATCH_MARK=y", "CONFIG_NETFILTER_XT_MATCH_CONNTRACK=y", "CONFIG_NETFILTER_XT_MATCH_STATE=y",
		"CONFIG_NETFILTER_XT_MATCH_COMMENT=y", "CONFIG_NETFILTER_XT_MATCH_MULTIPORT=y", "CONFIG_NETFILTER_XT_MATCH_IPRANGE=y",
		"CONFIG_IP6_NF_IPTABLES=y", "CONFIG_IP6_NF_FILTER=y", "CONFIG_IP6_NF_MANGLE=y", "# CONFIG_NF_TABLES is not set",
		"CONFIG_ANDROID_BINDER_IPC=y", "CONFIG_ANDROID_BINDERFS=y",
		"CONFIG_FS_ENCRYPTION=y", "CONFIG_FS_ENCRYPTION_INLINE_CRYPT=y", "CONFIG_CRYPTO_ADIANTUM=y", "CONFIG_CRYPTO_HCTR2=y",
		"CONFIG_CRYPTO_AES=y", "CONFIG_CRYPTO_XTS=y", "CONFIG_CRYPTO_CTS=y", "CONFIG_CRYPTO_SHA512=y",
		"CONFIG_OVERLAY_FS=y", "CONFIG_BLK_DEV_LOOP=y", "CONFIG_EXT4_FS=y", "CONFIG_VETH=y", "CONFIG_TUN=y", "CONFIG_SECCOMP_FILTER=y",
	} {
		if !opts[want] {
			t.Errorf("gki.fragment lacks %q", want)
		}
	}
	for o := range opts {
		if strings.HasSuffix(o, "=m") {
			t.Errorf("gki.fragment builds %q as a module: the guest loads none", o)
		}
	}
	t.Logf("gki.fragment: %d options", len(opts))
}

// TestGKIKernelShapeInVM boots the GKI-shaped kernel with the Android
// layout and checks its shape from inside (internal/gkiprobe): no pid or
// user namespaces, no nf_tables but a working iptables-legacy, v1 memcg at
// /dev/memcg, no pids controller, binderfs devices from binder-control,
// fscrypt v2 with Adiantum on a loop-mounted `mke2fs -O encrypt` ext4,
// overlay.
func TestGKIKernelShapeInVM(t *testing.T) {
	bin := buildStatic(t, "gkiprobe", false, "./internal/gkiprobe", "build")
	res := bootGKI(t, Config{
		Programs: []Program{{Name: "gkiprobe", Path: bin}},
		Timeout:  4 * time.Minute,
	})
	out := res.Programs[0].Output
	var oks []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if name, ok := strings.CutPrefix(line, "gkiprobe: ok "); ok {
			oks = append(oks, name)
		}
		if strings.HasPrefix(line, "gkiprobe: FAIL ") {
			t.Error(strings.TrimPrefix(line, "gkiprobe: "))
		}
	}
	t.Logf("guest checks passed: %s", strings.Join(oks, ", "))
	if res.Programs[0].Code != 0 || !strings.Contains(out, "gkiprobe: PASS") {
		t.Errorf("gkiprobe exited %d without PASS:\n%s", res.Programs[0].Code, tail(out, 60))
	}
}

// TestAndroidToolsRunFromTheirCopies copies the Android guest's dynamic
// tools with the libraries androidFiles found into a bare folder and runs
// each there under chroot: a library the loader listing missed would
// fail here, not in a guest minutes later.
func TestAndroidToolsRunFromTheirCopies(t *testing.T) {
	files, err := androidFiles()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for name, e := range files {
		dst := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		data := e.data
		if e.src != "" {
			if data, err = os.ReadFile(e.src); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(dst, data, os.FileMode(e.perm)); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"bin/iptables", "bin/ip6tables-restore", "bin/iptables-save", "bin/ip", "bin/mke2fs",
		"usr/lib/x86_64-linux-gnu/xtables/libxt_owner.so", "usr/lib/x86_64-linux-gnu/xtables/libxt_MASQUERADE.so", "etc/netd-iptables.rules"} {
		if _, ok := files[want]; !ok {
			t.Errorf("the Android guest lacks %s", want)
		}
	}
	for _, args := range [][]string{
		{"/bin/iptables", "--version"}, {"/bin/ip6tables-restore", "--version"}, {"/bin/iptables-legacy-save", "--version"},
		{"/bin/ip", "-V"}, {"/bin/mke2fs", "-V"},
	} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s in a folder of only the guest's files: %v\n%s", strings.Join(args, " "), err, out)
		}
		if args[0] == "/bin/iptables" && !strings.Contains(string(out), "legacy") {
			t.Errorf("iptables --version = %q, want the legacy backend", out)
		}
	}
	// Every plugin's libraries are there too: the loader resolves each.
	plugins, _ := filepath.Glob(filepath.Join(root, strings.TrimPrefix(xtablesDir, "/"), "*.so"))
	for _, p := range plugins {
		guest := strings.TrimPrefix(p, root)
		cmd := exec.Command(hostLoader, "--list", guest)
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
		if out, err := cmd.CombinedOutput(); err != nil || strings.Contains(string(out), "not found") {
			t.Errorf("%s in the guest's files: %v\n%s", guest, err, out)
		}
	}
}
