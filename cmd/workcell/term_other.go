//go:build !linux

package main

import (
	"errors"
	"os"
)

// isTerminal: only the Linux build prompts on a terminal; elsewhere the
// passphrase comes with --passphrase-stdin.
func isTerminal(*os.File) bool { return false }

func noEcho(*os.File) (func(), error) { return nil, errors.New("not supported on this system") }
