// Package testbundle builds OCI runtime bundles around the host's static
// busybox, for tests and local runs: a rootfs with /bin/busybox and its
// applets, and a config.json like `runc spec`'s default (no terminal, no
// seccomp section, no hooks, no capabilities section so that the sandbox's
// allowed set applies, no hostname so that the sandbox's default applies).
package testbundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// BusyboxPath is the static busybox copied into every bundle.
const BusyboxPath = "/bin/busybox"

// DefaultArgs keep init alive until SIGTERM, which it honours at once. The
// sleep is short because busybox ash can miss a trapped signal that lands
// just before its wait blocks; the next child's exit then runs the trap.
var DefaultArgs = []string{"sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"}

// ErrNoBusybox is returned when BusyboxPath is missing.
var ErrNoBusybox = errors.New(BusyboxPath + " is missing: apt-get install busybox-static")

// Busybox builds a bundle in a fresh t.TempDir() and returns its directory.
// args default to DefaultArgs.
func Busybox(t testing.TB, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	// The bundle's path must be traversable by the container's root after
	// pivot, and TempDir is 0700 already: fine for uid 0.
	if err := WriteBundle(dir, args...); err != nil {
		t.Fatal(err)
	}
	return dir
}

// WriteBundle writes a busybox bundle into dir (created if missing): dir/rootfs
// and dir/config.json. args default to DefaultArgs.
func WriteBundle(dir string, args ...string) error {
	if _, err := os.Stat(BusyboxPath); err != nil {
		return fmt.Errorf("testbundle: %w", ErrNoBusybox)
	}
	if len(args) == 0 {
		args = DefaultArgs
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := writeRootfs(rootfs); err != nil {
		return fmt.Errorf("testbundle: rootfs %s: %w", rootfs, err)
	}
	data, err := json.MarshalIndent(Spec(args...), "", "\t")
	if err != nil {
		return fmt.Errorf("testbundle: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		return fmt.Errorf("testbundle: %w", err)
	}
	return nil
}

func writeRootfs(rootfs string) error {
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "etc", "mnt", "root", "var", "run"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(rootfs, "tmp"), 0o1777); err != nil {
		return err
	}
	bb, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), bb, 0o755); err != nil {
		return err
	}
	for _, applet := range applets() {
		if applet == "busybox" || strings.ContainsRune(applet, '/') {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
		"etc/hosts":  "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(rootfs, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// applets lists busybox's applets, falling back to the ones tests use.
func applets() []string {
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err == nil && len(out) > 0 {
		return strings.Fields(string(out))
	}
	return []string{"sh", "sleep", "ps", "ls", "cat", "echo", "mount", "mknod", "hostname",
		"id", "seq", "true", "false", "kill", "grep", "wc", "head", "env", "touch", "rm", "mkdir"}
}

// Spec returns the bundle's config: `runc spec`'s default without terminal,
// hostname and capabilities, running args.
func Spec(args ...string) *specs.Spec {
	if len(args) == 0 {
		args = DefaultArgs
	}
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Args: args,
			Env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"},
			Cwd:  "/",
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024},
			},
			NoNewPrivileges: true,
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Linux: &specs.Linux{
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
			},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.NetworkNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.CgroupNamespace},
			},
		},
	}
}

// SetUser rewrites the bundle's config.json in dir so that its process
// runs as uid:gid with the supplementary gids.
func SetUser(dir string, uid, gid uint32, gids ...uint32) error {
	path := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("testbundle: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("testbundle: %s: %w", path, err)
	}
	spec.Process.User = specs.User{UID: uid, GID: gid, AdditionalGids: gids}
	if data, err = json.MarshalIndent(&spec, "", "\t"); err != nil {
		return fmt.Errorf("testbundle: %w", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("testbundle: %w", err)
	}
	return nil
}
