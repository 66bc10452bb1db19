// Package daemon is workcelld's core: the profiles, their state machine,
// their records on disk, the reconcile loop that adopts what an earlier
// daemon left running, and the control server with its authorization by
// peer credentials.
//
// It makes no syscalls of its own for containers: it composes the
// concern packages (sandbox today; netns, binder and images as they land).
package daemon
