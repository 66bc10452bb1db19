package sandbox

import (
	"slices"
	"testing"
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
		hs, err := Harden(spec, "/nonexistent-bundle", HardenOptions{ID: "fuzz"})
		if err != nil {
			return // e.g. the root path cannot be resolved here
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
		for i, m := range hs.Mounts {
			if m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind") {
				t.Fatalf("hardened spec has bind mount %d of %s", i, m.Source)
			}
		}
	})
}
