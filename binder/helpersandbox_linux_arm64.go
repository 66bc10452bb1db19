package binder

import "golang.org/x/sys/unix"

const auditArch = unix.AUDIT_ARCH_AARCH64

// archSyscalls: arm64 has only the generic table.
var archSyscalls []uintptr
