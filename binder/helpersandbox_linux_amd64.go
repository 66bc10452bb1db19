package binder

import "golang.org/x/sys/unix"

const auditArch = unix.AUDIT_ARCH_X86_64

// archSyscalls are the helper's syscalls that only amd64 has: the Go
// runtime sets a new thread's TLS with arch_prctl.
var archSyscalls = []uintptr{unix.SYS_ARCH_PRCTL, unix.SYS_EPOLL_WAIT, unix.SYS_POLL}
