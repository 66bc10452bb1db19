package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/workcell/workcell/api"
)

// binderCommands are the binder split's commands (workcell binder ...).
func binderCommands() []*cli.Command {
	return []*cli.Command{{
		Name:  "binder",
		Usage: "show or change what a profile may reach over binder",
		Subcommands: withJSONFlag([]*cli.Command{
			{
				Name:      "services",
				Usage:     "the profile's own binder services and the host services it may use, with their allowed codes",
				ArgsUsage: "[NAME]",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "audit", Usage: "print the proxy's audit records (JSON lines) and follow them"},
					&cli.BoolFlag{Name: "follow", Value: true, Usage: "with --audit: keep printing new records (--follow=false: print and exit)"},
				},
				Action: cmdBinderServices,
			},
			{
				Name:      "set",
				Usage:     "replace the profile's binder policy, live if it runs (root/system only)",
				ArgsUsage: "[NAME]",
				Description: "Each --allow lets the profile use one host service:\n\n" +
					"   --allow SERVICE=DESCRIPTOR:CODES[:fds]\n\n" +
					"SERVICE is the name in the host's service manager, DESCRIPTOR the interface a call\n" +
					"must name, CODES a comma-separated list of transaction codes and FIRST-LAST ranges\n" +
					"(1-16777215), and \":fds\" lets file descriptors pass. --object SERVICE=DESCRIPTOR:CODES\n" +
					"allows codes on binders of that interface the service hands out. Everything not\n" +
					"allowed is denied with a SecurityException and an audit record. The policy is\n" +
					"replaced whole: `binder set work --none` allows nothing.\n\n" +
					"   workcell binder set work --allow media.player=android.media.IMediaPlayerService:1-3,7\n\n" +
					"Each --export lets host processes use one of the profile's own services:\n\n" +
					"   --export SERVICE[@HOSTNAME]=DESCRIPTOR:CODES[:fds]\n\n" +
					"While a work app has SERVICE registered, the host's service manager has it as HOSTNAME\n" +
					"(default: SERVICE), letting through only CODES on DESCRIPTOR. Host processes see no\n" +
					"other work service.",
				Flags: []cli.Flag{
					&cli.GenericFlag{Name: "allow", Value: &repeated{}, Usage: "allowed host service `SERVICE=DESCRIPTOR:CODES[:fds]` (repeat for more)"},
					&cli.GenericFlag{Name: "object", Value: &repeated{}, Usage: "allowed codes on binders a service hands out, `SERVICE=DESCRIPTOR:CODES` (repeat for more)"},
					&cli.GenericFlag{Name: "export", Value: &repeated{}, Usage: "work service host processes may use, `SERVICE[@HOSTNAME]=DESCRIPTOR:CODES[:fds]` (repeat for more)"},
					&cli.BoolFlag{Name: "none", Usage: "allow no host service and export nothing"},
				},
				Action: cmdBinderSet,
			},
		}),
	}}
}

// repeated is a flag value that collects each occurrence whole (a string
// slice flag would split CODES at its commas).
type repeated []string

func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }
func (r *repeated) String() string     { return strings.Join(*r, " ") }

func cmdBinderServices(c *cli.Context) error {
	name, err := profileName(c)
	if err != nil {
		return err
	}
	if c.Bool("audit") {
		return client(c).BinderAudit(c.Context, name, c.Bool("follow"), c.App.Writer)
	}
	b, err := client(c).Binder(c.Context, name)
	if err != nil {
		return err
	}
	return printBinder(c, b)
}

func cmdBinderSet(c *cli.Context) error {
	name, err := profileName(c)
	if err != nil {
		return err
	}
	allows := *c.Generic("allow").(*repeated)
	objects := *c.Generic("object").(*repeated)
	exports := *c.Generic("export").(*repeated)
	if len(allows) == 0 && len(exports) == 0 && !c.Bool("none") {
		return usagef("binder set: give --allow SERVICE=DESCRIPTOR:CODES[:fds] or --export SERVICE[@HOSTNAME]=DESCRIPTOR:CODES[:fds] (repeatable), or --none to allow nothing")
	}
	if (len(allows) > 0 || len(exports) > 0) && c.Bool("none") {
		return usagef("binder set: --none and --allow/--export contradict each other")
	}
	pol, err := parseBinderFlags(allows, objects)
	if err != nil {
		return err
	}
	if pol.Exports, err = parseExportFlags(exports); err != nil {
		return err
	}
	b, err := client(c).SetBinderPolicy(c.Context, name, pol)
	if err != nil {
		return err
	}
	return printBinder(c, b)
}

// parseBinderFlags reads --allow SERVICE=DESCRIPTOR:CODES[:fds] and
// --object SERVICE=DESCRIPTOR:CODES into a policy; the daemon checks the
// codes and names.
func parseBinderFlags(allows, objects []string) (api.BinderPolicy, error) {
	pol := api.BinderPolicy{Services: []api.BinderService{}}
	split := func(flag, v string, fds bool) (svc, desc string, codes []string, allowFDs bool, err error) {
		svc, rest, ok := strings.Cut(v, "=")
		parts := strings.Split(rest, ":")
		if fds && len(parts) == 3 {
			if parts[2] != "fds" {
				return "", "", nil, false, usagef("--%s %q: the part after CODES may only be \"fds\"", flag, v)
			}
			allowFDs, parts = true, parts[:2]
		}
		if !ok || svc == "" || len(parts) != 2 || parts[0] == "" || parts[1] == "" {
			want := "SERVICE=DESCRIPTOR:CODES"
			if fds {
				want += "[:fds]"
			}
			return "", "", nil, false, usagef("--%s %q: want %s", flag, v, want)
		}
		return svc, parts[0], strings.Split(parts[1], ","), allowFDs, nil
	}
	index := map[string]int{}
	for _, a := range allows {
		svc, desc, codes, fds, err := split("allow", a, true)
		if err != nil {
			return pol, err
		}
		if _, dup := index[svc]; dup {
			return pol, usagef("--allow: service %q given twice", svc)
		}
		index[svc] = len(pol.Services)
		pol.Services = append(pol.Services, api.BinderService{Name: svc, Descriptor: desc, Codes: codes, AllowFDs: fds})
	}
	for _, o := range objects {
		svc, desc, codes, _, err := split("object", o, false)
		if err != nil {
			return pol, err
		}
		i, ok := index[svc]
		if !ok {
			return pol, usagef("--object %q: service %q has no --allow", o, svc)
		}
		pol.Services[i].Objects = append(pol.Services[i].Objects, api.BinderInterface{Descriptor: desc, Codes: codes})
	}
	return pol, nil
}

// parseExportFlags reads --export SERVICE[@HOSTNAME]=DESCRIPTOR:CODES[:fds].
func parseExportFlags(exports []string) ([]api.BinderExport, error) {
	var out []api.BinderExport
	for _, v := range exports {
		names, rest, ok := strings.Cut(v, "=")
		parts := strings.Split(rest, ":")
		fds := false
		if len(parts) == 3 {
			if parts[2] != "fds" {
				return nil, usagef("--export %q: the part after CODES may only be \"fds\"", v)
			}
			fds, parts = true, parts[:2]
		}
		svc, hostName, _ := strings.Cut(names, "@")
		if !ok || svc == "" || strings.HasSuffix(names, "@") || len(parts) != 2 || parts[0] == "" || parts[1] == "" {
			return nil, usagef("--export %q: want SERVICE[@HOSTNAME]=DESCRIPTOR:CODES[:fds]", v)
		}
		out = append(out, api.BinderExport{Name: svc, HostName: hostName, Descriptor: parts[0],
			Codes: strings.Split(parts[1], ","), AllowFDs: fds})
	}
	return out, nil
}

func printBinder(c *cli.Context, b api.Binder) error {
	if wantJSON(c) {
		return printJSON(c, b)
	}
	w := c.App.Writer
	if b.Active {
		fmt.Fprintf(w, "profile %s: binder context on %s, seen as /dev/binder (%s)\n", b.Name, b.Device, b.Release)
	} else {
		fmt.Fprintf(w, "profile %s: no binder context now (%s)\n", b.Name, b.Note)
	}
	own := "none"
	if len(b.Services) > 0 {
		own = strings.Join(b.Services, ", ")
	} else if !b.Active {
		own = "-"
	}
	fmt.Fprintf(w, "own services: %s\n", own)
	if err := printExports(w, b); err != nil {
		return err
	}
	if len(b.Host) == 0 {
		fmt.Fprintln(w, "host services: none allowed")
		return nil
	}
	fmt.Fprintln(w, "host services through the proxy:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SERVICE\tDESCRIPTOR\tCODES\tFDS\tON HOST")
	for _, s := range b.Host {
		fds := "no"
		if s.AllowFDs {
			fds = "yes"
		}
		present := "?"
		if s.Present != nil {
			present = map[bool]string{true: "yes", false: "no"}[*s.Present]
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", s.Name, s.Descriptor, strings.Join(s.Codes, ","), fds, present)
		for _, o := range s.Objects {
			fmt.Fprintf(tw, "    (objects)\t%s\t%s\t\t\n", o.Descriptor, strings.Join(o.Codes, ","))
		}
	}
	return tw.Flush()
}

// printExports lists the exports: the work service, its host name, codes,
// fds, and whether the host's service manager has it now.
func printExports(w io.Writer, b api.Binder) error {
	if len(b.Policy.Exports) == 0 {
		return nil
	}
	fmt.Fprintln(w, "work services exported to the host:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SERVICE\tHOST NAME\tDESCRIPTOR\tCODES\tFDS\tON HOST")
	for _, e := range b.Policy.Exports {
		host := e.HostName
		if host == "" {
			host = e.Name
		}
		fds := map[bool]string{true: "yes", false: "no"}[e.AllowFDs]
		on := "no"
		if !b.Active {
			on = "-"
		} else if slices.Contains(b.Exported, e.Name) {
			on = "yes"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", e.Name, host, e.Descriptor, strings.Join(e.Codes, ","), fds, on)
	}
	return tw.Flush()
}
