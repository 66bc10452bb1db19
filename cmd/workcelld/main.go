// Command workcelld is the workcell daemon: it runs the work profiles and
// serves the control API on a unix socket. It is also libcontainer's init
// when re-executed as "workcelld init" inside a new container.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/docker/go-units"
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	"github.com/urfave/cli/v2"

	"github.com/workcell/workcell/daemon"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		// Re-executed by libcontainer inside the new namespaces.
		libcontainer.Init()
		return
	}
	if len(os.Args) > 1 && os.Args[1] == daemon.BinderNodeCommand {
		// Re-executed by the daemon: one binder node helper, hidden from
		// the CLI (daemon/binder_linux.go).
		os.Exit(daemon.RunBinderNode())
	}
	if err := app().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "workcelld:", err)
		os.Exit(1)
	}
}

func app() *cli.App {
	def := daemon.DefaultConfig()
	return &cli.App{
		Name:    "workcelld",
		Usage:   "run the work profile and serve its control socket",
		Version: daemon.Version,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "JSON config `FILE` with the same settings (flags win)"},
			&cli.StringFlag{Name: "state-dir", Value: def.StateDir, Usage: "where profiles live"},
			&cli.StringFlag{Name: "run-dir", Value: def.RunDir, Usage: "runtime state (containers, socket)"},
			&cli.StringFlag{Name: "socket", Usage: "control socket (default <run-dir>/workcelld.sock)"},
			&cli.IntFlag{Name: "owner-uid", Value: def.OwnerUID, Usage: "the employee's uid (-1: none)"},
			&cli.IntFlag{Name: "system-uid", Value: def.SystemUID, Usage: "an extra uid with full rights, for the OEM's system UI (-1: none)"},
			&cli.BoolFlag{Name: "stop-on-exit", Usage: "stop every profile before exiting (for shutdown)"},
			&cli.StringFlag{Name: "log-level", Value: def.LogLevel, Usage: "debug, info, warn or error"},
			&cli.DurationFlag{Name: "stop-timeout", Value: time.Duration(def.StopTimeout), Usage: "how long a profile's init has after SIGTERM"},
			&cli.BoolFlag{Name: "standby", Value: def.Standby, Usage: "keep stopped profiles' containers prepared so start takes milliseconds (--standby=false: none)"},
			&cli.StringFlag{Name: "store-image", Usage: "ext4 image `PATH` (made sparse with -O encrypt if missing) loop-mounted to hold the encrypted profile data"},
			&cli.StringFlag{Name: "store-size", Usage: "size of the store image, e.g. 1G (an existing image must have it)"},
			&cli.BoolFlag{Name: "insecure-unencrypted-storage", Usage: "keep profile data UNENCRYPTED where the state folder cannot encrypt (not for real use)"},
			&cli.StringFlag{Name: "net-pool", Usage: "IPv4 `CIDR` the profiles' subnets come from (default 10.231.0.0/16)"},
			&cli.StringFlag{Name: "net-pool6", Usage: "IPv6 `CIDR` whose /64s go to the profiles (default fd77:6f72:6b00::/48), or \"off\""},
			&cli.StringSliceFlag{Name: "binder-device", Usage: "binder `DEVICE` of a binder_linux devices= list a profile may get as its context (repeat for more; unused where binderfs is there)"},
			&cli.StringFlag{Name: "binder-host-device", Value: def.BinderHostDevice, Usage: "the host's binder context, where allowed host services live"},
			&cli.StringFlag{Name: "binder-release", Value: def.BinderRelease, Usage: "binder wire format: android10, android11 or android14"},
		},
		Action: run,
		Commands: []*cli.Command{{
			Name:  "shutdown",
			Usage: "make the running workcelld (started with --stop-on-exit) stop every profile and exit, and wait for it: for init's `on shutdown`",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "socket", Value: filepath.Join(def.RunDir, "workcelld.sock"), Usage: "the running daemon's control socket"},
				&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "how long the daemon has to stop its profiles and exit"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return fmt.Errorf("shutdown: unexpected argument %q", c.Args().First())
				}
				if c.Duration("timeout") <= 0 {
					return fmt.Errorf("shutdown --timeout %s: must be positive", c.Duration("timeout"))
				}
				return shutdownDaemon(c.Context, c.String("socket"), c.Duration("timeout"), c.App.Writer)
			},
		}},
	}
}

func config(c *cli.Context) (daemon.Config, error) {
	cfg := daemon.DefaultConfig()
	if path := c.String("config"); path != "" {
		var err error
		if cfg, err = daemon.LoadConfigFile(path, cfg); err != nil {
			return cfg, err
		}
	}
	// Flags win over the file, but only those given.
	set(c, "state-dir", c.String, &cfg.StateDir)
	set(c, "run-dir", c.String, &cfg.RunDir)
	set(c, "socket", c.String, &cfg.Socket)
	set(c, "owner-uid", c.Int, &cfg.OwnerUID)
	set(c, "system-uid", c.Int, &cfg.SystemUID)
	set(c, "stop-on-exit", c.Bool, &cfg.StopOnExit)
	set(c, "log-level", c.String, &cfg.LogLevel)
	set(c, "stop-timeout", func(n string) daemon.Duration { return daemon.Duration(c.Duration(n)) }, &cfg.StopTimeout)
	set(c, "standby", c.Bool, &cfg.Standby)
	if c.IsSet("store-image") {
		abs, err := filepath.Abs(c.String("store-image"))
		if err != nil {
			return cfg, fmt.Errorf("--store-image: %w", err)
		}
		cfg.StoreImage = abs
	}
	if c.IsSet("store-size") {
		n, err := units.RAMInBytes(c.String("store-size"))
		if err != nil {
			return cfg, fmt.Errorf("--store-size %q: want a size such as 1G", c.String("store-size"))
		}
		cfg.StoreSize = n
	}
	set(c, "insecure-unencrypted-storage", c.Bool, &cfg.InsecureUnencryptedStorage)
	set(c, "net-pool", c.String, &cfg.NetPool)
	set(c, "net-pool6", c.String, &cfg.NetPool6)
	set(c, "binder-device", c.StringSlice, &cfg.BinderDevices)
	set(c, "binder-host-device", c.String, &cfg.BinderHostDevice)
	set(c, "binder-release", c.String, &cfg.BinderRelease)
	return cfg, cfg.Validate()
}

// set stores flag name's value, read with get, in *dst if the flag was
// given.
func set[T any](c *cli.Context, name string, get func(string) T, dst *T) {
	if c.IsSet(name) {
		*dst = get(name)
	}
}

func logger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func run(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", c.Args().First())
	}
	cfg, err := config(c)
	if err != nil {
		return err
	}
	log, err := logger(cfg.LogLevel)
	if err != nil {
		return err
	}
	// On Android init made the control socket (initsocket_linux.go).
	initLn, initPath, err := inheritedListener(os.Getenv)
	if err != nil {
		return err
	}
	if initLn != nil {
		defer initLn.Close()
		os.Unsetenv(androidSocketEnv) // the fd number means nothing to children
		if c.IsSet("socket") && c.String("socket") != initPath {
			return fmt.Errorf("--socket %s: init handed over the socket %s (%s); give the same path or none", c.String("socket"), initPath, androidSocketEnv)
		}
		cfg.Socket = initPath
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	d, err := daemon.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	var srv *daemon.Server
	if initLn != nil {
		srv = d.ListenOn(initLn, initPath)
	} else if srv, err = d.Listen(ctx); err != nil {
		d.Close(context.Background())
		return err
	}
	log.Info("workcelld ready", "socket", cfg.Socket, "state_dir", cfg.StateDir, "owner_uid", cfg.OwnerUID, "system_uid", cfg.SystemUID)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	select {
	case <-ctx.Done():
		log.Info("signal received: closing the socket", "stop_on_exit", cfg.StopOnExit)
	case err = <-errc:
		log.Error("control server failed", "err", err)
	}
	srv.Close()
	d.Close(context.Background())
	return err
}
