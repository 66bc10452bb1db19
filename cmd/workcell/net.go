package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/docker/go-units"
	"github.com/urfave/cli/v2"

	"github.com/workcell/workcell/api"
)

// netCommands are the split network's commands (workcell net ...).
func netCommands() []*cli.Command {
	return []*cli.Command{{
		Name:  "net",
		Usage: "show or change a profile's network",
		Subcommands: withJSONFlag([]*cli.Command{
			{Name: "show", Usage: "addresses, mode, allow-list and traffic of a profile", ArgsUsage: "[NAME]", Action: cmdNetShow},
			{
				Name:      "set",
				Usage:     "replace a profile's network settings, live if it runs (root/system only)",
				ArgsUsage: "[NAME]",
				Description: "Every setting not given is reset: `net set work --mode direct` " +
					"clears the allow-list, the VPN endpoints and the resolvers.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "mode", Usage: "direct, vpn-lockdown or offline (required)"},
					&cli.StringSliceFlag{Name: "allow", Usage: "allowed destination `CIDR[/PROTO:PORT]` (direct mode; none: every public address)"},
					&cli.StringSliceFlag{Name: "vpn-endpoint", Usage: "VPN server `IP:PORT` (or IP for any protocol) eth0 may reach in vpn-lockdown mode"},
					&cli.StringSliceFlag{Name: "dns", Usage: "resolver `IP` (default: the uplink's upstream resolvers)"},
					&cli.StringSliceFlag{Name: "uplink", Usage: "host `INTERFACE` work may leave through (default: those of the default routes)"},
				},
				Action: cmdNetSet,
			},
		}),
	}}
}

func cmdNetShow(c *cli.Context) error {
	name, err := profileName(c)
	if err != nil {
		return err
	}
	n, err := client(c).Network(c.Context, name)
	if err != nil {
		return err
	}
	return printNetwork(c, n)
}

func cmdNetSet(c *cli.Context) error {
	// The flags may follow NAME, as in `net set work --mode offline`; the
	// CLI library stops at the first argument, so parse the rest here.
	if c.NArg() > 1 && !strings.HasPrefix(c.Args().First(), "-") {
		set := flag.NewFlagSet("set", flag.ContinueOnError)
		set.SetOutput(io.Discard)
		for _, f := range c.Command.Flags {
			if err := f.Apply(set); err != nil {
				return err
			}
		}
		if err := set.Parse(c.Args().Tail()); err != nil {
			return usagef("net set: %v", err)
		}
		if set.NArg() > 0 {
			return usagef("net set: unexpected argument %q (want NAME and flags)", set.Arg(0))
		}
		name := c.Args().First()
		return netSet(cli.NewContext(c.App, set, c), name)
	}
	name, err := profileName(c)
	if err != nil {
		return err
	}
	return netSet(c, name)
}

func netSet(c *cli.Context, name string) error {
	if c.String("mode") == "" {
		return usagef("net set: --mode is required (direct, vpn-lockdown or offline)")
	}
	s := api.NetworkSettings{
		Mode:         c.String("mode"),
		Allow:        c.StringSlice("allow"),
		VPNEndpoints: c.StringSlice("vpn-endpoint"),
		DNS:          c.StringSlice("dns"),
		Uplinks:      c.StringSlice("uplink"),
	}
	n, err := client(c).SetNetwork(c.Context, name, s)
	if err != nil {
		return err
	}
	return printNetwork(c, n)
}

func printNetwork(c *cli.Context, n api.Network) error {
	if wantJSON(c) {
		return printJSON(c, n)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "profile\t%s\n", n.Name)
	fmt.Fprintf(tw, "mode\t%s\n", n.Settings.Mode)
	if n.Present {
		fmt.Fprintf(tw, "address\t%s (gateway %s on %s)\n", n.Address, n.Gateway, n.HostInterface)
		if n.Address6 != "" {
			fmt.Fprintf(tw, "address6\t%s (gateway %s)\n", n.Address6, n.Gateway6)
		}
	} else {
		fmt.Fprintf(tw, "address\t- (no network until the profile starts)\n")
	}
	allow := "every public address"
	switch {
	case n.Settings.Mode != api.NetworkDirect:
		allow = "- (" + n.Settings.Mode + " mode)"
	case len(n.Settings.Allow) > 0:
		allow = strings.Join(n.Settings.Allow, ", ")
	}
	fmt.Fprintf(tw, "allow\t%s\n", allow)
	if len(n.Settings.VPNEndpoints) > 0 {
		fmt.Fprintf(tw, "vpn endpoints\t%s\n", strings.Join(n.Settings.VPNEndpoints, ", "))
	}
	dns := strings.Join(n.DNS, ", ")
	if dns == "" {
		dns = strings.Join(n.Settings.DNS, ", ")
	}
	if dns == "" {
		dns = "-"
	}
	fmt.Fprintf(tw, "dns\t%s\n", dns)
	if len(n.Settings.Uplinks) > 0 {
		fmt.Fprintf(tw, "uplinks\t%s\n", strings.Join(n.Settings.Uplinks, ", "))
	}
	ct := n.Counters
	fmt.Fprintf(tw, "in\t%s, %d packets\n", units.BytesSize(float64(ct.InBytes)), ct.InPackets)
	fmt.Fprintf(tw, "out\t%s, %d packets\n", units.BytesSize(float64(ct.OutBytes)), ct.OutPackets)
	if n.Pending != "" {
		fmt.Fprintf(tw, "pending\t%s\n", n.Pending)
	}
	return tw.Flush()
}
