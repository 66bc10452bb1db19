package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeDaemonEnv makes the test binary a stand-in daemon (TestMain): it
// listens on the named socket, and on SIGTERM writes "stopped" to the
// socket's path + ".stopped" and exits, unless told to ignore SIGTERM.
const fakeDaemonEnv = "WORKCELLD_TEST_FAKE_DAEMON"

func TestMain(m *testing.M) {
	if path := os.Getenv(fakeDaemonEnv); path != "" {
		fakeDaemon(path, os.Getenv(fakeDaemonEnv+"_IGNORE_TERM") != "")
		return
	}
	os.Exit(m.Run())
}

func fakeDaemon(path string, ignoreTerm bool) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	ln, err := net.Listen("unix", path)
	if err != nil {
		os.Exit(3)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	os.WriteFile(path+".ready", nil, 0o600)
	for range ch {
		if !ignoreTerm {
			// What --stop-on-exit does before the daemon ends.
			os.WriteFile(path+".stopped", []byte("stopped"), 0o600)
			os.Exit(0)
		}
	}
}

// startFake runs the stand-in daemon and waits until it listens.
func startFake(t *testing.T, ignoreTerm bool) (*exec.Cmd, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "workcelld.sock")
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), fakeDaemonEnv+"="+sock)
	if ignoreTerm {
		cmd.Env = append(cmd.Env, fakeDaemonEnv+"_IGNORE_TERM=1")
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		if _, err := os.Stat(sock + ".ready"); err == nil {
			return cmd, sock
		}
		if i > 500 {
			t.Fatal("stand-in daemon did not listen within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestShutdownStopsTheListenerAndWaits(t *testing.T) {
	cmd, sock := startFake(t, false)
	var out bytes.Buffer
	if err := shutdownDaemon(context.Background(), sock, 10*time.Second, &out); err != nil {
		t.Fatalf("shutdown: %v (%s)", err, out.String())
	}
	// shutdownDaemon returned only after the process had ended: its
	// marker is there and waiting for it does not block.
	if b, err := os.ReadFile(sock + ".stopped"); err != nil || string(b) != "stopped" {
		t.Errorf("the daemon's stop-on-exit did not run: %q %v", b, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case <-waited:
	case <-time.After(2 * time.Second):
		t.Fatal("shutdown returned while the daemon still ran")
	}
	if !strings.Contains(out.String(), "exited") {
		t.Errorf("output %q does not say the daemon exited", out.String())
	}
}

func TestShutdownTimesOutOnADaemonThatStays(t *testing.T) {
	_, sock := startFake(t, true)
	start := time.Now()
	err := shutdownDaemon(context.Background(), sock, 300*time.Millisecond, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "still runs") {
		t.Fatalf("err = %v, want a timeout naming the pid", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeout of 300ms took %s", d)
	}
}

func TestShutdownWithoutDaemonIsNothingToDo(t *testing.T) {
	var out bytes.Buffer
	sock := filepath.Join(t.TempDir(), "none.sock")
	if err := shutdownDaemon(context.Background(), sock, time.Second, &out); err != nil {
		t.Fatalf("no daemon: %v", err)
	}
	if !strings.Contains(out.String(), "nothing to stop") {
		t.Errorf("output %q", out.String())
	}
}

func TestSameExecutableTellsOtherPrograms(t *testing.T) {
	sleep := exec.Command("sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatalf("sleep: %v", err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	if same, err := sameExecutable(sleep.Process.Pid); err != nil || same {
		t.Errorf("sleep: same=%v err=%v, want another executable", same, err)
	}
	if same, err := sameExecutable(os.Getpid()); err != nil || !same {
		t.Errorf("self: same=%v err=%v", same, err)
	}
}

func TestShutdownCommandFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"workcelld", "shutdown", "--timeout", "0s"}, "--timeout"},
		{[]string{"workcelld", "shutdown", "extra"}, "unexpected argument"},
	} {
		err := app().Run(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want %q", tc.args, err, tc.want)
		}
	}
}
