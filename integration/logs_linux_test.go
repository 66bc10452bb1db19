package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// withConfig sets one field of the daemon's config file.
func withConfig(key string, value any) daemonOpt {
	return func(d *daemon) {
		b, err := os.ReadFile(d.cfgFile)
		if err != nil {
			d.t.Fatal(err)
		}
		cfg := map[string]any{}
		if err := json.Unmarshal(b, &cfg); err != nil {
			d.t.Fatal(err)
		}
		cfg[key] = value
		b, _ = json.Marshal(cfg)
		if err := os.WriteFile(d.cfgFile, b, 0o600); err != nil {
			d.t.Fatal(err)
		}
	}
}

func TestConsoleLogIsCapped(t *testing.T) {
	const capBytes = 8192
	d := newDaemon(t, withConfig("log_max_bytes", capBytes))
	// The init writes about 100 KB of numbered lines, then says so in a
	// file (not in the log: a copy-and-truncate fallback may drop a line
	// written mid-rotation) and idles.
	d.install("work", "sh", "-c", "trap 'exit 0' TERM; i=0; while [ $i -lt 5000 ]; do echo line-$i-padding; i=$((i+1)); done; touch /tmp/done-writing; while :; do sleep 3600 & wait $!; done")
	d.ok("start", "work")
	// The logs live in the profile's encrypted data folder.
	logs := filepath.Join(d.state, "store", "work", "data", "logs")
	done := fmt.Sprintf("/proc/%d/root/tmp/done-writing", d.status("work").Pid)
	waitFor(t, "the init to finish writing", func() bool {
		_, err := os.Stat(done)
		return err == nil
	})
	// A last write after the burst makes sure the capper has run.
	d.ok("exec", "work", "--", "sh", "-c", "echo tail-marker >> /proc/1/fd/1")
	waitFor(t, "the log to be under its cap", func() bool {
		st, err := os.Stat(filepath.Join(logs, "console.log"))
		return err == nil && st.Size() <= capBytes
	})
	out := d.ok("logs", "work")
	if len(out) > 2*capBytes+100 {
		t.Fatalf("logs printed %d bytes, over twice the cap", len(out))
	}
	// Capping drops the oldest lines, not the newest.
	for _, want := range []string{"tail-marker"} {
		if !strings.Contains(out, want) {
			t.Fatalf("logs lost the recent line %q", want)
		}
	}
	if strings.Contains(out, "line-0-padding\n") {
		t.Fatal("the oldest line survived the cap")
	}
}

func TestLogsFollow(t *testing.T) {
	d := newDaemon(t)
	d.install("work")
	d.ok("start", "work")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "workcell"), "--socket", d.socket, "logs", "-f", "work")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	time.Sleep(200 * time.Millisecond)
	for _, want := range []string{"first-followed-line", "second-followed-line"} {
		d.ok("exec", "work", "--", "sh", "-c", "echo "+want+" >> /proc/1/fd/1")
		select {
		case got := <-lines:
			if got != want {
				t.Fatalf("logs -f printed %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("logs -f did not print %q", want)
		}
	}
}
