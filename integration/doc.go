// Package integration holds workcell's end-to-end tests: the real daemon
// and CLI binaries, real containers, cgroups and namespaces, as root.
// They are not skipped when something is missing: they fail saying what.
package integration
