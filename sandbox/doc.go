// Package sandbox turns an OCI runtime bundle (config.json + rootfs) into a
// hardened libcontainer container and drives it: start, stop, freeze, thaw,
// exec, stats, and adoption of a container started by an earlier daemon.
//
// The package has two halves. The portable half (Limits, HardenOptions,
// LoadBundle, Validate, Harden) is pure data on *specs.Spec: it refuses any
// bundle that asks for more than a work container may have, then writes the
// defaults the daemon enforces (namespaces, capabilities, seccomp,
// no_new_privs, masked paths, devices, limits, rlimits, oom_score_adj,
// labels). A bundle's mounts only say which of runc's default mounts it
// wants: the daemon builds each one itself. The Linux half (Runtime,
// Container) hands the hardened spec to libcontainer and adds what
// libcontainer does not do well enough for a phone: an event-driven cgroup v2
// freezer and a pidfd-based Wait that also works for adopted containers.
//
// The package knows nothing about images, networks or binder beyond the paths
// it is handed (rootfs, network namespace, extra mounts and devices).
package sandbox
