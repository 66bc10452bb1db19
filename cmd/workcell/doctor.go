package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/workcell/workcell/api"
)

// doctorCommands is workcell doctor.
func doctorCommands() []*cli.Command {
	return []*cli.Command{{
		Name:   "doctor",
		Usage:  "show which kernel and platform features workcelld found, which mechanisms it chose, and how to fix what is missing",
		Action: cmdDoctor,
	}}
}

func cmdDoctor(c *cli.Context) error {
	if c.NArg() > 0 {
		return usagef("doctor: no arguments expected")
	}
	r, err := client(c).Doctor(c.Context)
	if err != nil {
		return err
	}
	if wantJSON(c) {
		return printJSON(c, r)
	}
	return printDoctor(c, r)
}

// printDoctor prints a table of the checks, then for each feature that is
// not found what it costs and how to fix it.
func printDoctor(c *cli.Context, r api.DoctorReport) error {
	w := c.App.Writer
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FEATURE\tSTATUS\tMODE\tDETAIL")
	for _, ch := range r.Checks {
		mode := ch.Mode
		if mode == "" {
			mode = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ch.Name, ch.Status, mode, ch.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, ch := range r.Checks {
		if ch.Status == api.DoctorFound {
			continue
		}
		fmt.Fprintf(w, "\n%s is %s\n", ch.Name, ch.Status)
		if ch.Cost != "" {
			fmt.Fprintf(w, "  cost: %s\n", ch.Cost)
		}
		if ch.Fix != "" {
			fmt.Fprintf(w, "  fix:  %s\n", ch.Fix)
		}
	}
	if len(r.Warnings) > 0 {
		fmt.Fprintln(w, "\nwarnings:")
		for _, s := range r.Warnings {
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
	return nil
}
