// Package dist holds workcelld's service files for the platforms it ships
// on (Android's init and SELinux policy, systemd, OpenRC) and the tests
// that keep them consistent with each other and with the code: no Go code
// of its own.
package dist
