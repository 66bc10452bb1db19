package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// FuzzBundleConfig feeds arbitrary config.json bytes (they come from
// outside: IT's bundles) through the parser, the validator and the
// hardening. Nothing may panic, and whatever Validate accepts must come
// out of Harden with the sandbox's guarantees.
func FuzzBundleConfig(f *testing.F) {
	f.Add([]byte(`{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/"}}`))
	f.Add([]byte(`{"root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"network","path":"/proc/1/ns/net"}]}}`))
	f.Add([]byte(`{"root":{"path":"rootfs"},"process":{"capabilities":{"bounding":["CAP_SYS_ADMIN"]}}}`))
	f.Add([]byte(`{"root":{"path":"rootfs"},"mounts":[{"destination":"/x","type":"bind","source":"/etc","options":["rbind"]}]}`))
	f.Add([]byte(`{"root":{"path":"../.."},"hooks":{"prestart":[{"path":"/bin/sh"}]}}`))
	f.Add([]byte(`{"root":{"path":"rootfs"},"linux":{"sysctl":{"kernel.panic":"1"},"resources":{"devices":[{"allow":true}]}}}`))
	f.Add([]byte(`{"root":{"path":"rootfs"}} trailing`))
	f.Add([]byte(`{"root":{"path":"rootfs","readonly":"yes"}}`))
	// Mounts, rlimits and resources (issue 8).
	f.Add([]byte(`{"root":{"path":"rootfs"},"process":{"args":["sh"]},"mounts":[{"destination":"/hostproc","type":"proc","source":"proc"}]}`))
	f.Add([]byte(`{"root":{"path":"rootfs"},"process":{"args":["sh"]},"mounts":[{"destination":"/proc","type":"proc"},{"destination":"/sys","type":"sysfs","options":["ro","rw"]},{"destination":"/sys/fs/cgroup","type":"cgroup","options":["rrw"]}]}`))
	f.Add([]byte(`{"root":{"path":"rootfs"},"process":{"args":["sh"]},"mounts":[{"destination":"/sys/","type":"sysfs","options":["rw"]},{"destination":"/dev/shm","type":"tmpfs","options":["size=2g","exec"]},{"destination":"/run","type":"tmpfs"}]}`))
	f.Add([]byte(`{"root":{"path":"rootfs"},"process":{"args":["sh"],"rlimits":[{"type":"RLIMIT_NOFILE","soft":1024,"hard":1024},{"type":"RLIMIT_RTPRIO","soft":99,"hard":99},{"type":"RLIMIT_MEMLOCK","soft":1,"hard":18446744073709551615}]}}`))
	f.Add([]byte(`{"root":{"path":"rootfs"},"process":{"args":["sh"],"oomScoreAdj":-1000,"selinuxLabel":"u:r:su:s0"}}`))
	f.Add([]byte(`{"root":{"path":"rootfs"},"process":{"args":["sh"],"oomScoreAdj":5}}`))
	f.Add([]byte(`{"root":{"path":"rootfs"},"process":{"args":["sh"]},"linux":{"resources":{"unified":{"cgroup.procs":"1","pids.max":"max"},"memory":{"limit":-1,"disableOOMKiller":true},"pids":{"limit":-1},"cpu":{"burst":1000000}}}}`))
	f.Add([]byte(`{"root":{"path":"rootfs"},"process":{"args":["sh"]},"linux":{"resources":{"blockIO":{"weight":1000},"network":{"classID":1048577},"hugepageLimits":[{"pageSize":"2MB","limit":1}]}}}`))

	dir := f.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := decodeSpec("config.json", data)
		if err != nil {
			return
		}
		if Validate(spec) != nil {
			return
		}
		if spec.Root == nil || spec.Root.Path == "" {
			t.Fatal("Validate accepted a spec without root.path")
		}
		hs, err := Harden(spec, dir, HardenOptions{ID: "fuzz"})
		if err != nil {
			return // e.g. a root path other than the one made here
		}
		if hs.Process == nil || !hs.Process.NoNewPrivileges {
			t.Fatal("hardened spec without no_new_privs")
		}
		if hs.Linux == nil || hs.Linux.Seccomp == nil {
			t.Fatal("hardened spec without seccomp")
		}
		for _, ns := range hs.Linux.Namespaces {
			if ns.Path != "" {
				t.Fatalf("hardened spec joins namespace %s at %s", ns.Type, ns.Path)
			}
		}
		if hs.Process.Capabilities != nil {
			for _, set := range [][]string{hs.Process.Capabilities.Bounding, hs.Process.Capabilities.Effective, hs.Process.Capabilities.Permitted, hs.Process.Capabilities.Inheritable, hs.Process.Capabilities.Ambient} {
				for _, c := range set {
					if !slices.Contains(AllowedCapabilities, c) {
						t.Fatalf("hardened spec keeps capability %s", c)
					}
				}
			}
		}
		if hs.Hooks != nil {
			t.Fatal("hardened spec has hooks")
		}
		checkHardenedMounts(t, hs.Mounts)
		checkHardenedResources(t, hs.Linux.Resources)
		seen := map[string]bool{}
		for _, r := range hs.Process.Rlimits {
			limit, ok := rlimitCaps[r.Type]
			if !ok || seen[r.Type] || r.Hard > limit || r.Soft > r.Hard {
				t.Fatalf("hardened spec has rlimit %+v (cap %d, known %v, twice %v)", r, limit, ok, seen[r.Type])
			}
			seen[r.Type] = true
		}
		for _, typ := range []string{"RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_MEMLOCK", "RLIMIT_NOFILE"} {
			if !seen[typ] {
				t.Fatalf("hardened spec leaves %s to the daemon's own", typ)
			}
		}
		if o := hs.Process.OOMScoreAdj; o == nil || *o < DefaultOOMScoreAdj || *o > 1000 {
			t.Fatalf("hardened spec has oomScoreAdj %v", o)
		}
		if hs.Process.SelinuxLabel != "" || hs.Process.ApparmorProfile != "" || hs.Linux.MountLabel != "" {
			t.Fatal("hardened spec keeps a bundle's label")
		}
		for _, p := range defaultMaskedPaths {
			if !slices.Contains(hs.Linux.MaskedPaths, p) {
				t.Fatalf("hardened spec does not mask %s", p)
			}
		}
		for _, p := range defaultReadonlyPaths {
			if !slices.Contains(hs.Linux.ReadonlyPaths, p) {
				t.Fatalf("hardened spec leaves %s writable", p)
			}
		}
	})
}

// checkHardenedMounts: no bind mount (the fuzz passes no daemon mounts),
// each filesystem only at its runtime-spec default destination, once, with
// the daemon's options, and sysfs and cgroup read-only.
func checkHardenedMounts(t *testing.T, mounts []specs.Mount) {
	t.Helper()
	seen := map[string]bool{}
	for i, m := range mounts {
		if m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind") {
			t.Fatalf("hardened spec has bind mount %d of %s", i, m.Source)
		}
		d, ok := lookupDefaultMount(m.Destination)
		if !ok || !slices.Contains(d.types, m.Type) {
			t.Fatalf("hardened spec has a %s mount at %s", m.Type, m.Destination)
		}
		if seen[m.Destination] {
			t.Fatalf("hardened spec mounts %s twice", m.Destination)
		}
		seen[m.Destination] = true
		for _, o := range m.Options {
			if !slices.Contains(d.options, o) && !(d.dest == "/dev/shm" && len(o) > 5 && o[:5] == "size=") {
				t.Fatalf("hardened spec's %s mount has option %q", m.Destination, o)
			}
		}
		switch m.Type {
		case "sysfs", "cgroup", "cgroup2":
			if !slices.Contains(m.Options, "ro") || slices.ContainsFunc(m.Options, func(o string) bool { return o == "rw" || o == "rrw" }) {
				t.Fatalf("hardened spec has a writable %s mount: %v", m.Type, m.Options)
			}
		}
		for _, o := range []string{"nosuid"} {
			if !slices.Contains(m.Options, o) {
				t.Fatalf("hardened spec's %s mount lacks %s", m.Destination, o)
			}
		}
	}
}

// checkHardenedResources: nothing but the daemon's limits (none here) and
// the deny-all device rule.
func checkHardenedResources(t *testing.T, r *specs.LinuxResources) {
	t.Helper()
	if r == nil {
		return
	}
	if len(r.Unified) > 0 || r.BlockIO != nil || len(r.HugepageLimits) > 0 || len(r.Rdma) > 0 || r.Network != nil {
		t.Fatalf("hardened spec has raw resources %+v", r)
	}
	if r.Memory != nil || r.CPU != nil || r.Pids != nil {
		t.Fatalf("hardened spec keeps a bundle's limits: memory %+v cpu %+v pids %+v", r.Memory, r.CPU, r.Pids)
	}
	if len(r.Devices) != 1 || r.Devices[0].Allow {
		t.Fatalf("hardened spec's device rules %+v, want deny all", r.Devices)
	}
}
