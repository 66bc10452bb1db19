package main

import "github.com/urfave/cli/v2"

// storageCommands are the encrypted storage's commands (lock, unlock,
// wipe, passphrase).
func storageCommands() []*cli.Command { return nil }
