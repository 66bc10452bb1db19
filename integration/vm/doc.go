// Package vm is workcell's real-kernel harness: it boots Debian's own kernel
// under qemu (TCG, no KVM), with an initramfs of static busybox, the kernel
// modules the guest needs (binder_linux first of all) and static test
// binaries, runs those binaries as root on cgroup v2 and brings each one's
// exit code and output back through the serial console.
//
// The host this project runs on has no binder driver and a hybrid cgroup
// hierarchy; the guest has both binder (`binder_linux devices=binder,workbinder`)
// and a pure cgroup v2 hierarchy with the cpu, memory and pids controllers.
//
// The tests of this package are host-side: each one builds static binaries,
// boots a guest and fails naming the guest program that failed. Nothing is
// skipped when a tool or the kernel cannot be had: the test fails saying
// what is missing (hack/vm-deps installs it). The downloaded kernel package
// is cached between runs (see CacheDir).
//
// A second guest is phone-shaped: BuildGKIKernel builds a kernel from
// Debian's linux-source-6.1 with gki/gki.fragment (android14-6.1
// gki_defconfig's choices: no pid or user namespaces, no nf_tables but
// iptables-legacy, no pids controller, binderfs, fscrypt with Adiantum,
// everything built in), cached by the hash of the fragment, the build
// script and the source package; Config.Android lays the guest out as
// Android 12-15 do (v1 memcg at /dev/memcg, cpu at /dev/cpuctl, a bare
// cgroup2, binderfs at /dev/binderfs, netd's chains, iptables-legacy).
package vm
