package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/workcell/workcell/api"
)

// fakeDaemon answers the API on a unix socket with canned replies, so the
// CLI's parsing, output and exit codes can be checked without root.
func fakeDaemon(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func runCLI(t *testing.T, sock string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code := run(ctx, append([]string{"workcell", "--socket", sock}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestExitCodesFollowErrorClasses(t *testing.T) {
	for _, tc := range []struct {
		class error
		code  int
	}{
		{api.ErrInvalidArgument, exitInvalid},
		{api.ErrNotFound, exitNotFound},
		{api.ErrPermission, exitPermission},
		{api.ErrConflict, exitConflict},
		{api.ErrUnavailable, exitUnavailable},
		{api.ErrThrottled, exitThrottled},
		{api.ErrInternal, exitInternal},
	} {
		msg := "the message for " + tc.class.Error()
		sock := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) {
			body, status := api.ToBody(api.Errorf(tc.class, "%s", msg))
			reply(w, status, body)
		})
		code, _, stderr := runCLI(t, sock, "start", "work")
		if code != tc.code || stderr != "workcell: "+msg+"\n" {
			t.Errorf("%v: exit %d stderr %q, want %d and one line with the message", tc.class, code, stderr, tc.code)
		}
	}
}

func TestDaemonDownIsUnavailable(t *testing.T) {
	code, _, stderr := runCLI(t, filepath.Join(t.TempDir(), "none.sock"), "status")
	if code != exitUnavailable || !strings.Contains(stderr, "workcelld is not running") {
		t.Fatalf("exit %d %q", code, stderr)
	}
}

func TestStatusOutputAndDefaultName(t *testing.T) {
	var path string
	sock := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.Path
		reply(w, 200, api.Profile{Name: "work", State: api.StateRunning, Pid: 4321})
	})
	code, out, _ := runCLI(t, sock, "status")
	if code != 0 || out != "work: running (pid 4321)\n" || path != "/v1/profiles/work" {
		t.Fatalf("status: exit %d out %q path %q", code, out, path)
	}
	for _, args := range [][]string{{"--json", "status"}, {"status", "--json", "work"}} {
		code, out, _ = runCLI(t, sock, args...)
		var p api.Profile
		if code != 0 || json.Unmarshal([]byte(out), &p) != nil || p.Pid != 4321 || p.State != api.StateRunning {
			t.Fatalf("%v: exit %d out %q", args, code, out)
		}
	}
}

func TestInstallSendsAbsoluteBundleAndLimits(t *testing.T) {
	var got api.InstallRequest
	sock := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		json.NewDecoder(r.Body).Decode(&got)
		reply(w, 201, api.Profile{Name: got.Name, State: api.StateStopped})
	})
	code, out, stderr := runCLI(t, sock, "install", "--memory", "512M", "--cpus", "1.5", "--pids", "300", "work", "rel/bundle")
	if code != 0 {
		t.Fatalf("exit %d %q", code, stderr)
	}
	if !filepath.IsAbs(got.Bundle) || !strings.HasSuffix(got.Bundle, "rel/bundle") {
		t.Fatalf("bundle sent as %q", got.Bundle)
	}
	if got.Limits != (api.Limits{MemoryBytes: 512 << 20, CPUMillis: 1500, Pids: 300}) {
		t.Fatalf("limits sent: %+v", got.Limits)
	}
	if out != "work: stopped\n" {
		t.Fatalf("out %q", out)
	}
	if code, _, _ := runCLI(t, sock, "install", "work"); code != exitInvalid {
		t.Fatalf("install with one argument: exit %d", code)
	}
}

func TestParseExec(t *testing.T) {
	for _, tc := range []struct {
		args []string
		name string
		cmd  []string
		tty  ttyMode
		user string
		ok   bool
	}{
		{[]string{"--", "ps", "-ef"}, "work", []string{"ps", "-ef"}, ttyAuto, "", true},
		{[]string{"other", "--", "ls", "--", "x"}, "other", []string{"ls", "--", "x"}, ttyAuto, "", true},
		{[]string{"other", "ls"}, "other", []string{"ls"}, ttyAuto, "", true},
		{[]string{"other", "ls", "-t"}, "other", []string{"ls", "-t"}, ttyAuto, "", true},
		{[]string{"-t", "--", "sh"}, "work", []string{"sh"}, ttyForce, "", true},
		{[]string{"work", "-T", "--", "sh"}, "work", []string{"sh"}, ttyNone, "", true},
		{[]string{"--user", "1000", "work", "id"}, "work", []string{"id"}, ttyAuto, "1000:1000", true},
		{[]string{"--user=0:5", "--", "id"}, "work", []string{"id"}, ttyAuto, "0:5", true},
		{[]string{"-u", "root", "--", "id"}, "", nil, ttyAuto, "", false},
		{[]string{"--user", "4294967295", "--", "id"}, "", nil, ttyAuto, "", false},
		{[]string{"--user"}, "", nil, ttyAuto, "", false},
		{[]string{"-x", "--", "id"}, "", nil, ttyAuto, "", false},
		{[]string{"--"}, "", nil, ttyAuto, "", false},
		{[]string{"work"}, "", nil, ttyAuto, "", false},
	} {
		o, err := parseExec(tc.args)
		if (err == nil) != tc.ok {
			t.Errorf("parseExec(%q): err %v, want ok=%v", tc.args, err, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		user := ""
		if o.user != nil {
			user = fmt.Sprintf("%d:%d", o.user.UID, o.user.GID)
		}
		if o.name != tc.name || strings.Join(o.args, " ") != strings.Join(tc.cmd, " ") || o.tty != tc.tty || user != tc.user {
			t.Errorf("parseExec(%q) = %q %q tty %d user %q", tc.args, o.name, o.args, o.tty, user)
		}
	}
}

func TestFlagsAfterArguments(t *testing.T) {
	app := newApp(nil, nil)
	for _, tc := range []struct{ in, want string }{
		{"workcell install work ./b --memory 1G --pids 9", "workcell install --memory 1G --pids 9 work ./b"},
		{"workcell --socket /s logs work -f", "workcell --socket /s logs -f work"},
		{"workcell stop work --timeout=3s", "workcell stop --timeout=3s work"},
		{"workcell exec work -- ls -l", "workcell exec work -- ls -l"},
		{"workcell status work --json", "workcell status --json work"},
		{"workcell wipe work --yes", "workcell wipe --yes work"},
	} {
		got := strings.Join(flagsFirst(app, strings.Fields(tc.in)), " ")
		if got != tc.want {
			t.Errorf("flagsFirst(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestStatusSaysWhenTheNextPassphraseTryIsAllowed(t *testing.T) {
	at := time.Now().Add(90 * time.Second)
	sock := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, api.Profile{Name: "work", State: api.StateLocked, Passphrase: true, FailedUnlocks: 6, PassphraseRetryAt: &at})
	})
	code, out, _ := runCLI(t, sock, "status")
	if code != 0 || !strings.HasPrefix(out, "work: locked\n  6 wrong passphrases in a row; next try allowed in 1m") || !strings.Contains(out, at.Local().Format(time.DateTime)) {
		t.Fatalf("status: exit %d out %q", code, out)
	}
	code, out, _ = runCLI(t, sock, "status", "--json")
	var p api.Profile
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil || p.FailedUnlocks != 6 || p.PassphraseRetryAt == nil || !p.PassphraseRetryAt.Equal(at) {
		t.Fatalf("status --json: exit %d out %q", code, out)
	}
}

func TestThrottledAnswerKeepsRetryAfter(t *testing.T) {
	sock := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		body, status := api.ToBody(api.Throttledf(42*time.Second, "profile work: too many wrong passphrases"))
		reply(w, status, body)
	})
	_, err := api.NewClient(sock).Unlock(context.Background(), "work", api.UnlockRequest{Passphrase: "x"})
	if d, ok := api.RetryAfter(err); !errors.Is(err, api.ErrThrottled) || !ok || d != 42*time.Second {
		t.Fatalf("unlock: %v (retry %v %v)", err, d, ok)
	}
	if code, _, stderr := runCLI(t, sock, "start", "work"); code != exitThrottled || !strings.Contains(stderr, "too many") {
		t.Fatalf("exit %d %q", code, stderr)
	}
}

func TestStatusShowsLimitWarnings(t *testing.T) {
	w := "pids limit of 50 not enforced: the kernel has no pids cgroup controller"
	sock := fakeDaemon(t, func(rw http.ResponseWriter, r *http.Request) {
		reply(rw, 200, api.Profile{Name: "work", State: api.StateRunning, Pid: 42, Warnings: []string{w}})
	})
	code, out, _ := runCLI(t, sock, "status")
	if code != 0 || out != "work: running (pid 42)\n  warning: "+w+"\n" {
		t.Fatalf("status: exit %d out %q", code, out)
	}
	code, out, _ = runCLI(t, sock, "status", "--json")
	if code != 0 || !strings.Contains(out, `"warnings": [`) && !strings.Contains(out, `"warnings":[`) {
		t.Fatalf("status --json: exit %d out %q", code, out)
	}
	var p api.Profile
	if json.Unmarshal([]byte(out), &p) != nil || len(p.Warnings) != 1 || p.Warnings[0] != w {
		t.Fatalf("status --json: %q", out)
	}
}
