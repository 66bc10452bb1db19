package main

import "github.com/urfave/cli/v2"

// netCommands are the split network's commands (workcell net ...).
func netCommands() []*cli.Command { return nil }
