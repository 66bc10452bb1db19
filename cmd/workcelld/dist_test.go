package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/daemon"
)

// The service files in dist/ start this daemon with flags: each must be one
// the daemon has, and the whole line must make a valid config.

func readDist(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "dist", rel))
	if err != nil {
		t.Fatalf("dist/%s: %v", rel, err)
	}
	return string(b)
}

// parseDaemonArgs runs args through the daemon's own flag parsing and
// config validation, with --config pointing at a file holding extra.
func parseDaemonArgs(t *testing.T, args []string, extra string) daemon.Config {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "workcelld.json")
	if err := os.WriteFile(conf, []byte(extra), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range args {
		if args[i] == "--config" && i+1 < len(args) {
			args[i+1] = conf
		}
	}
	var cfg daemon.Config
	a := app()
	a.Action = func(c *cli.Context) error {
		if c.NArg() > 0 {
			t.Errorf("unexpected argument %q", c.Args().First())
		}
		var err error
		cfg, err = config(c)
		return err
	}
	if err := a.Run(append([]string{"workcelld"}, args...)); err != nil {
		t.Fatalf("workcelld %s: %v", strings.Join(args, " "), err)
	}
	return cfg
}

func TestAndroidRCStartsTheDaemonWithItsFlags(t *testing.T) {
	rc := readDist(t, "android/workcelld.rc")
	svc := regexp.MustCompile(`(?m)^service workcelld (\S+)(.*)$`).FindStringSubmatch(rc)
	if svc == nil {
		t.Fatal("workcelld.rc: no `service workcelld` line")
	}
	cfg := parseDaemonArgs(t, strings.Fields(svc[2]), `{"store_size": 1073741824, "owner_uid": 10123}`)
	if !cfg.StopOnExit {
		t.Error("the service does not run with --stop-on-exit: `on shutdown` would leave the profiles running")
	}
	sock := regexp.MustCompile(`(?m)^\s+socket (\S+) stream (\S+) (\S+) (\S+)\s*$`).FindStringSubmatch(rc)
	if sock == nil {
		t.Fatal("workcelld.rc: no `socket NAME stream MODE USER GROUP` line")
	}
	if "ANDROID_SOCKET_"+sock[1] != androidSocketEnv {
		t.Errorf("the rc's socket %q reaches the daemon as ANDROID_SOCKET_%s, but it reads %s", sock[1], sock[1], androidSocketEnv)
	}
	if p := "/dev/socket/" + sock[1]; p != api.AndroidSocket || cfg.Socket != p {
		t.Errorf("init makes %s, the CLI's Android default is %s, the daemon's --socket is %s: want one path", p, api.AndroidSocket, cfg.Socket)
	}

	// The shutdown step runs this binary's shutdown command on that socket.
	ex := regexp.MustCompile(`(?m)^\s+exec .* -- (\S+) shutdown(.*)$`).FindStringSubmatch(rc)
	if ex == nil {
		t.Fatal("workcelld.rc: no `exec ... -- workcelld shutdown` in `on shutdown`")
	}
	if ex[1] != svc[1] {
		t.Errorf("on shutdown runs %s, the service is %s", ex[1], svc[1])
	}
	a := app()
	var gotSock string
	a.Commands[0].Action = func(c *cli.Context) error { gotSock = c.String("socket"); return nil }
	if err := a.Run(append([]string{"workcelld", "shutdown"}, strings.Fields(ex[2])...)); err != nil {
		t.Fatalf("shutdown%s: %v", ex[2], err)
	}
	if gotSock != api.AndroidSocket {
		t.Errorf("shutdown talks to %q, want %s", gotSock, api.AndroidSocket)
	}
}

func TestOpenRCStartsTheDaemonWithItsFlags(t *testing.T) {
	rc := readDist(t, "openrc/workcelld")
	m := regexp.MustCompile(`(?m)^command_args="([^"]*)"`).FindStringSubmatch(rc)
	if m == nil {
		t.Fatal("dist/openrc/workcelld: no command_args")
	}
	args := strings.Fields(strings.ReplaceAll(m[1], "${WORKCELLD_ARGS}", ""))
	parseDaemonArgs(t, args, `{"owner_uid": 10000}`)
	// The extra arguments the comment tells the reader to add parse too.
	parseDaemonArgs(t, append(args, "--stop-on-exit"), `{"owner_uid": 10000}`)
}

func TestSystemdUnitsStartTheDaemonWithItsFlags(t *testing.T) {
	for _, f := range []string{"systemd/workcelld.service", "systemd/workcelld-shutdown.conf"} {
		unit := readDist(t, f)
		m := regexp.MustCompile(`(?m)^ExecStart=/usr/bin/workcelld (.+)$`).FindStringSubmatch(unit)
		if m == nil {
			t.Fatalf("dist/%s: no ExecStart of workcelld", f)
		}
		parseDaemonArgs(t, strings.Fields(m[1]), `{"owner_uid": 1000}`)
	}
}
