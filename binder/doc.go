// Package binder speaks Android's binder IPC in pure Go: the kernel
// driver's protocol (Linux only, golang.org/x/sys/unix against the UAPI
// header linux/android/binder.h) and libbinder's parcel format for the
// Android release a caller chooses (10 to 14; see Release).
//
// Parcels (Parcel, ParseParcel) build on any OS. A received parcel is
// checked before use: object offsets must be inside the data, 4-aligned,
// ascending and non-overlapping, and plain reads may not cover an object.
// The reader never panics on hostile bytes (FuzzParcelReader).
// Scatter-gather buffers and fd arrays (BINDER_TYPE_PTR, BINDER_TYPE_FDA)
// follow libhwbinder's layout (WriteBuffer, WriteEmbeddedBuffer,
// WriteFDArray); their parents and offsets are checked against the
// driver's fixup rules on both writing and parsing (parcel_sg.go).
//
// The driver layer (Conn) opens a device, checks protocol version 8, maps
// the receive buffer read-only, and talks BINDER_WRITE_READ from goroutines
// locked to their OS threads, because the driver tracks threads: a reply
// goes to the thread that sent the call, and a call nested back into a
// thread waiting for a reply is served by that thread (Transact handles
// it). Serve runs the looper threads that take process-wide work. Local
// objects are Nodes served by a Handler; remote ones are handles, on which
// the connection takes a strong and a weak reference when they arrive
// (before freeing the buffer that carried them) until ReleaseHandle.
// Received buffers are always copied out and freed (BC_FREE_BUFFER).
// The fds the driver installs for a received call (fd objects and fd
// arrays) belong to its parcel: the connection closes them once the
// handler returned and its reply went out, unless the handler passed them
// on (the proxy moves forwarded fds into the forwarded parcel, closed once
// sent); a reply's fds are the caller's (Parcel.CloseFDs). References on
// handles a call brought are dropped again unless something keeps them
// (a registration, a proxy's node), so no caller can grow this process's
// fd table or handle table.
//
// On top of the driver layer, ServiceManager serves a context as its
// manager in the protocol of the configured release (the C servicemanager
// of Android 10, the AIDL IServiceManager of 11 to 14), keeping the
// services its apps register inside the context and asking a Resolver for
// other names. Proxy is the Resolver of a profile's context: it looks the
// host services a ProxyPolicy allows up in the host's context and checks
// every call on them (interface token and code, default deny; binder
// objects wrapped both ways; fds only where allowed), answering a denied
// call with a SecurityException and an AuditRecord.
//
// Limits (limits.go) bound what a profile's apps can make the manager and
// the helpers hold: registered services, death links, proxied objects;
// past one the caller gets an IllegalStateException or SecurityException
// naming the config field that raises it.
//
// In workcelld each allowed host service is served by a node helper
// (nodehelper_linux.go): workcelld re-executes itself as
// `workcelld binder-node`, and that process runs the Proxy for the one
// service as an ordinary client of both devices and registers its node
// with the profile's service manager. It exits when the host service
// dies, so the driver delivers the death to every work app linked to it
// (the driver sends death notices only when a node's owning process goes,
// and a process cannot call the context manager it owns). Exports
// (exports.go) run the same helper the other way: a work service the
// policy exports is registered in the host's service manager under a
// proxy node that checks every host-to-work call. Helpers run sandboxed
// (helpersandbox_linux.go): an unprivileged uid, no capabilities,
// no_new_privs, a seccomp allow-list and a cgroup with memory and pids
// limits, so host services see that uid as the caller, never root.
//
// # Tests
//
// `go test ./binder/` runs the portable tests: UAPI sizes and numbers
// (checked once against the kernel header with a C program), parcel
// encodings per release, and the fuzz seeds.
//
// The driver tests need a real binder driver, which this project's CI
// hosts lack, so they sit behind the build tag binderdriver and run in the
// qemu guest of integration/vm, where binder_linux is loaded with
// devices=binder,workbinder. The harness builds them statically:
//
//	CGO_ENABLED=0 go test -c -tags binderdriver -o binder.test ./binder/
//
// and runs ./binder.test -test.v in the guest. They use
// /dev/workbinder unless WORKCELL_BINDER_DEVICE names another device, and
// they fail, not skip, when the device is missing. Each test starts its
// server (the context manager) by re-executing the test binary with
// WORKCELL_BINDER_TEST_ROLE=server, and plays the client itself.
//
// The service manager and proxy tests also use /dev/binder (or
// WORKCELL_BINDER_HOST_DEVICE) as the host's context; the host's service
// manager, an echo service and workcelld's side each run in a process of
// their own, because the driver refuses calls from a process to the
// context manager it owns. TestBinderProxyInVM in integration/vm runs them
// and shows the BINDER-BENCH figures they print.
package binder
