package main

import (
	"errors"
	"io/fs"
	"os"

	"github.com/workcell/workcell/api"
)

// defaultSocket is the control socket when neither --socket nor
// WORKCELL_SOCKET names one. One linux/arm64 build of the CLI runs both on
// Android and on a Linux phone, so the choice is made where it runs, from
// what is there: Android's init creates api.AndroidSocket for workcelld
// (dist/android/workcelld.rc) and nothing on a Linux phone makes that
// path; otherwise the daemon's own default. exists is the seam for tests.
func defaultSocket(exists func(string) bool) string {
	if exists(api.AndroidSocket) {
		return api.AndroidSocket
	}
	return api.DefaultSocket
}

// socketExists tells whether path is there. A path that cannot be looked
// at (an SELinux domain without getattr on the socket) counts as there:
// connecting to it then fails with an error that names it, which says
// more than a connection refused on a Linux path that was never meant.
func socketExists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
