// Command mkbundle writes a small OCI runtime bundle made from the host's
// static busybox: the demo work profile of `make run` and the bundle of
// `make bench`. Usage: mkbundle DIR [CMD ARG...]
package main

import (
	"fmt"
	"os"

	"github.com/workcell/workcell/internal/testbundle"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: mkbundle DIR [CMD ARG...]")
		os.Exit(2)
	}
	if err := testbundle.WriteBundle(os.Args[1], os.Args[2:]...); err != nil {
		fmt.Fprintln(os.Stderr, "mkbundle:", err)
		os.Exit(1)
	}
}
