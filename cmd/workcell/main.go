// Command workcell drives workcelld: the employee turns work mode on and
// off and looks at the work profile; root (or the system uid) installs
// and removes profiles. It talks to the daemon only through package api.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	"github.com/urfave/cli/v2"

	"github.com/workcell/workcell/api"
)

// Exit codes, one per error class, so scripts can tell them apart.
const (
	exitInternal    = 1
	exitInvalid     = 2
	exitNotFound    = 3
	exitPermission  = 4
	exitConflict    = 5
	exitUnavailable = 6
	exitThrottled   = 7
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitError carries an exit code that is not an error (exec's).
type exitError int

func (e exitError) Error() string { return "exit status " + strconv.Itoa(int(e)) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, flagsFirst(app, args))
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return int(ee)
	}
	fmt.Fprintln(stderr, "workcell:", err)
	for _, c := range []struct {
		class error
		code  int
	}{
		{api.ErrInvalidArgument, exitInvalid},
		{api.ErrNotFound, exitNotFound},
		{api.ErrPermission, exitPermission},
		{api.ErrConflict, exitConflict},
		{api.ErrUnavailable, exitUnavailable},
		{api.ErrThrottled, exitThrottled},
	} {
		if errors.Is(err, c.class) {
			return c.code
		}
	}
	var ue usageError
	if errors.As(err, &ue) {
		return exitInvalid
	}
	return exitInternal
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func newApp(stdout, stderr io.Writer) *cli.App {
	nameArg := "[NAME]"
	return &cli.App{
		Name:      "workcell",
		Usage:     "drive the work profile through workcelld",
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "socket", Value: defaultSocket(socketExists), EnvVars: []string{"WORKCELL_SOCKET"}, Usage: "workcelld's control socket"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON instead of text"},
		},
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err.Error()}
		},
		Commands: withJSONFlag(concat([]*cli.Command{
			{Name: "profiles", Usage: "list the profiles", Action: cmdProfiles},
			{
				Name: "install", Usage: "import an OCI runtime bundle as a new profile (root/system only)", ArgsUsage: "NAME BUNDLE_DIR",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "memory", Usage: "memory limit, e.g. 512M (default: none)"},
					&cli.Float64Flag{Name: "cpus", Usage: "CPU limit in CPUs, e.g. 1.5 (default: none)"},
					&cli.Int64Flag{Name: "pids", Usage: "limit on the number of processes (default: none)"},
					&cli.BoolFlag{Name: "no-standby", Usage: "never keep the stopped profile's container prepared (saves an idle process; start is slower)"},
				},
				Action: cmdInstall,
			},
			{Name: "remove", Usage: "stop and delete a profile with all its data (root/system only)", ArgsUsage: nameArg, Action: cmdRemove},
			{
				Name: "start", Usage: "start a profile", ArgsUsage: nameArg,
				Flags:  []cli.Flag{&cli.BoolFlag{Name: "cold", Usage: "start from scratch, not from the prepared container"}},
				Action: cmdAction("start"),
			},
			{
				Name: "stop", Usage: "stop a profile", ArgsUsage: nameArg,
				Flags:  []cli.Flag{&cli.DurationFlag{Name: "timeout", Usage: "time for init to exit after SIGTERM (default: the daemon's; at most its stop_timeout_max, 5m by default)"}},
				Action: cmdAction("stop"),
			},
			{Name: "off", Usage: "work mode off: freeze every process of the profile", ArgsUsage: nameArg, Action: cmdAction("off")},
			{Name: "on", Usage: "work mode on: resume the profile", ArgsUsage: nameArg, Action: cmdAction("on")},
			{Name: "status", Usage: "show a profile's state", ArgsUsage: nameArg, Action: cmdStatus},
			{Name: "stats", Usage: "show a profile's CPU, memory and process use", ArgsUsage: nameArg, Action: cmdStats},
			{
				Name: "logs", Usage: "print the profile's console log", ArgsUsage: nameArg,
				Flags:  []cli.Flag{&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing what is written"}},
				Action: cmdLogs,
			},
			{
				Name: "exec", Usage: "run a command in a running profile (-t: with a terminal, the default when stdin and stdout are one; -T: without; --user UID[:GID], root only: as another user than the bundle's)",
				ArgsUsage: "[-t|-T] [--user UID[:GID]] [NAME] -- CMD [ARG...]", SkipFlagParsing: true, Action: cmdExec,
			},
			{Name: "events", Usage: "follow the profiles' state changes", Action: cmdEvents},
			{Name: "version", Usage: "show the daemon's version", Action: cmdVersion},
		}, netCommands(), storageCommands(), binderCommands(), doctorCommands())),
	}
}

func concat(lists ...[]*cli.Command) []*cli.Command {
	var all []*cli.Command
	for _, l := range lists {
		all = append(all, l...)
	}
	return all
}

// withJSONFlag lets --json stand after the command too (`workcell status
// --json`), as users type it.
func withJSONFlag(cmds []*cli.Command) []*cli.Command {
	for _, c := range cmds {
		if !c.SkipFlagParsing {
			c.Flags = append(c.Flags, &cli.BoolFlag{Name: "json", Usage: "print JSON instead of text"})
		}
	}
	return cmds
}

func client(c *cli.Context) *api.Client { return api.NewClient(c.String("socket")) }

// profileName returns the NAME argument or the default profile.
func profileName(c *cli.Context) (string, error) {
	switch c.NArg() {
	case 0:
		return api.DefaultProfile, nil
	case 1:
		return c.Args().First(), nil
	}
	return "", usagef("%s: too many arguments (want at most NAME)", c.Command.Name)
}

func printJSON(c *cli.Context, v any) error {
	enc := json.NewEncoder(c.App.Writer)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cmdProfiles(c *cli.Context) error {
	ps, err := client(c).Profiles(c.Context)
	if err != nil {
		return err
	}
	if wantJSON(c) {
		return printJSON(c, ps)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tPID\tSINCE")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, p.State, pidText(p.Pid), since(p.StartedAt))
	}
	return tw.Flush()
}

func pidText(pid int) string {
	if pid == 0 {
		return "-"
	}
	return strconv.Itoa(pid)
}

func since(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return time.Since(*t).Round(time.Second).String()
}

func cmdInstall(c *cli.Context) error {
	if c.NArg() != 2 {
		return usagef("install: want NAME BUNDLE_DIR")
	}
	bundle, err := filepath.Abs(c.Args().Get(1))
	if err != nil {
		return usagef("install: bundle path %q: %v", c.Args().Get(1), err)
	}
	var lim api.Limits
	if m := c.String("memory"); m != "" {
		if lim.MemoryBytes, err = units.RAMInBytes(m); err != nil {
			return usagef("--memory %q: want a size such as 512M", m)
		}
	}
	if cpus := c.Float64("cpus"); cpus != 0 {
		lim.CPUMillis = int64(cpus * 1000)
	}
	lim.Pids = c.Int64("pids")
	p, err := client(c).Install(c.Context, api.InstallRequest{Name: c.Args().First(), Bundle: bundle, Limits: lim, NoStandby: c.Bool("no-standby")})
	if err != nil {
		return err
	}
	return printProfile(c, p)
}

func cmdRemove(c *cli.Context) error {
	name, err := profileName(c)
	if err != nil {
		return err
	}
	if err := client(c).Remove(c.Context, name); err != nil {
		return err
	}
	if wantJSON(c) {
		return printJSON(c, api.Profile{Name: name, State: api.StateAbsent})
	}
	fmt.Fprintf(c.App.Writer, "%s: removed\n", name)
	return nil
}

func cmdAction(act string) cli.ActionFunc {
	return func(c *cli.Context) error {
		name, err := profileName(c)
		if err != nil {
			return err
		}
		cl := client(c)
		var p api.Profile
		switch act {
		case "start":
			p, err = cl.StartWith(c.Context, name, api.StartRequest{Cold: c.Bool("cold")})
		case "stop":
			p, err = cl.Stop(c.Context, name, api.StopRequest{TimeoutMillis: c.Duration("timeout").Milliseconds()})
		case "off":
			p, err = cl.Off(c.Context, name)
		case "on":
			p, err = cl.On(c.Context, name)
		}
		if err != nil {
			return err
		}
		return printProfile(c, p)
	}
}

func printProfile(c *cli.Context, p api.Profile) error {
	if wantJSON(c) {
		return printJSON(c, p)
	}
	if p.Pid != 0 {
		fmt.Fprintf(c.App.Writer, "%s: %s (pid %d)\n", p.Name, p.State, p.Pid)
	} else if p.Standby {
		fmt.Fprintf(c.App.Writer, "%s: %s (prepared: starts in milliseconds)\n", p.Name, p.State)
	} else {
		fmt.Fprintf(c.App.Writer, "%s: %s\n", p.Name, p.State)
	}
	if p.FailedUnlocks > 0 {
		fmt.Fprintf(c.App.Writer, "  %s\n", triesText(p, time.Now()))
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(c.App.Writer, "  warning: %s\n", w)
	}
	return nil
}

// triesText says how many wrong passphrases were given and when the next
// try is allowed.
func triesText(p api.Profile, now time.Time) string {
	s := fmt.Sprintf("%d wrong passphrase", p.FailedUnlocks)
	if p.FailedUnlocks != 1 {
		s += "s"
	}
	s += " in a row"
	if p.PassphraseRetryAt != nil && p.PassphraseRetryAt.After(now) {
		wait := p.PassphraseRetryAt.Sub(now).Round(time.Second)
		return s + fmt.Sprintf("; next try allowed in %s (at %s)", wait, p.PassphraseRetryAt.Local().Format(time.DateTime))
	}
	return s + "; a try is allowed now"
}

func cmdStatus(c *cli.Context) error {
	name, err := profileName(c)
	if err != nil {
		return err
	}
	p, err := client(c).Profile(c.Context, name)
	if err != nil {
		return err
	}
	return printProfile(c, p)
}

func cmdStats(c *cli.Context) error {
	name, err := profileName(c)
	if err != nil {
		return err
	}
	s, err := client(c).Stats(c.Context, name)
	if err != nil {
		return err
	}
	if wantJSON(c) {
		return printJSON(c, s)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "profile\t%s (%s)\n", s.Name, s.State)
	fmt.Fprintf(tw, "cpu\t%s\n", time.Duration(s.CPUUsageNanos).Round(time.Millisecond))
	fmt.Fprintf(tw, "memory\t%s%s\n", units.BytesSize(float64(s.MemoryBytes)), limitText(s.MemoryLimitBytes, func(v uint64) string { return units.BytesSize(float64(v)) }))
	fmt.Fprintf(tw, "pids\t%d%s\n", s.Pids, limitText(s.PidsLimit, func(v uint64) string { return strconv.FormatUint(v, 10) }))
	fmt.Fprintf(tw, "network\tin %s (%d packets), out %s (%d packets)\n", units.BytesSize(float64(s.NetInBytes)), s.NetInPackets, units.BytesSize(float64(s.NetOutBytes)), s.NetOutPackets)
	return tw.Flush()
}

func limitText(v uint64, f func(uint64) string) string {
	if v == 0 || v >= 1<<62 {
		return ""
	}
	return " / " + f(v)
}

func cmdLogs(c *cli.Context) error {
	name, err := profileName(c)
	if err != nil {
		return err
	}
	return client(c).Logs(c.Context, name, c.Bool("follow"), c.App.Writer)
}

func cmdEvents(c *cli.Context) error {
	return client(c).Events(c.Context, func(ev api.Event) error {
		if wantJSON(c) {
			b, _ := json.Marshal(ev)
			_, err := fmt.Fprintln(c.App.Writer, string(b))
			return err
		}
		line := fmt.Sprintf("%s %s %s", ev.Time.Local().Format(time.TimeOnly), ev.Profile, ev.State)
		if ev.Reason != "" {
			line += " (" + ev.Reason + ")"
		}
		_, err := fmt.Fprintln(c.App.Writer, strings.TrimSpace(line))
		return err
	})
}

func cmdVersion(c *cli.Context) error {
	v, err := client(c).Version(c.Context)
	if err != nil {
		return err
	}
	if wantJSON(c) {
		return printJSON(c, v)
	}
	fmt.Fprintf(c.App.Writer, "workcelld %s (api %s, cgroup v2: %t, pid %d)\n", v.Version, v.API, v.CgroupV2, v.DaemonPid)
	if v.Identity != "" {
		fmt.Fprintf(c.App.Writer, "identity: %s (%s)\n", v.Identity, v.IdentityWhy)
	}
	if v.PIDMode != "" {
		fmt.Fprintf(c.App.Writer, "pid: %s (%s)\n", v.PIDMode, v.PIDModeWhy)
	}
	return nil
}

// wantJSON reports whether --json was given before or after the command.
func wantJSON(c *cli.Context) bool {
	for _, x := range c.Lineage() {
		if x.IsSet("json") {
			return true
		}
	}
	return false
}

// flagsFirst moves a command's flags in front of its arguments, so that
// `workcell install work ./bundle --memory 1G` works as users type it (the
// CLI library stops reading flags at the first argument). Nothing after
// "--" and nothing of a command that reads its own arguments (exec) moves.
func flagsFirst(app *cli.App, args []string) []string {
	out := append([]string(nil), args[:1]...)
	i := 1
	// Global flags, then the command path (command, subcommand).
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		out = append(out, args[i])
		if takesValue(app.Flags, args[i]) && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
		i++
	}
	cmds := app.Commands
	var cmd *cli.Command
	for i < len(args) {
		c := findCommand(cmds, args[i])
		if c == nil {
			break
		}
		out = append(out, args[i])
		cmd, cmds = c, c.Subcommands
		i++
	}
	if cmd == nil || cmd.SkipFlagParsing {
		return append(out, args[i:]...)
	}
	var flags, rest []string
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			flags = append(flags, a)
			if takesValue(cmd.Flags, a) && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
			continue
		}
		rest = append(rest, a)
	}
	return append(append(out, flags...), rest...)
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// takesValue reports whether arg names a flag that is followed by a
// value (not a bool flag, not written as --flag=value).
func takesValue(flags []cli.Flag, arg string) bool {
	name := strings.TrimLeft(arg, "-")
	if strings.Contains(name, "=") {
		return false
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				_, isBool := f.(*cli.BoolFlag)
				return !isBool
			}
		}
	}
	return false
}
