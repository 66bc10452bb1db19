// Command workcell-bench is `make bench`: it starts its own workcelld on a
// temp folder, drives it through the api client, measures each figure
// beside a peer (runc, unshare) in the same run, and prints one table of
// medians and ratios. Figures over their target are named, never failed:
// the exit status says only whether something broke.
//
// Rows live in one file per section (runtime_linux.go, ...) and register
// themselves with Register.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		quick   = flag.Bool("quick", false, "few iterations, for a smoke run")
		rowsSel = flag.String("rows", "", "comma-separated rows or sections to run (default all)")
		daemonB = flag.String("daemon", defaultDaemon(), "workcelld binary")
		runcB   = flag.String("runc", "/usr/sbin/runc", "runc binary of the peer")
	)
	flag.Parse()
	sel, err := selectRows(rows(), splitList(*rowsSel))
	if err != nil {
		fmt.Fprintln(os.Stderr, "workcell-bench:", err)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "workcell-bench: must run as root (it starts workcelld and runc)")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	b, err := setup(ctx, *daemonB, *runcB, *quick)
	if b != nil {
		defer func() {
			for _, e := range b.teardown() {
				fmt.Fprintln(os.Stderr, "workcell-bench: cleanup:", e)
			}
		}()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "workcell-bench:", err)
		return 1
	}
	fmt.Printf("workcell-bench: %s, %d CPUs, kernel %s, cgroup %s, workcelld pid %d, %s\n",
		runtime.Version(), runtime.NumCPU(), kernel(), cgroupMode(), b.Daemon.Pid, b.Runc.Version(ctx))
	if b.Quick {
		fmt.Println("quick run: few iterations, figures are indicative only")
	}

	var lines []Line
	failed := false
	for _, r := range sel {
		start := time.Now()
		fmt.Fprintf(os.Stderr, "running %s/%s...\n", r.Section, r.Name)
		ls, err := r.Run(ctx, b)
		lines = append(lines, ls...)
		if err != nil {
			if !b.Daemon.alive() {
				err = fmt.Errorf("%w: %w (log: %s)", err, errDaemonGone, b.Daemon.tail())
			}
			failed = true
			lines = append(lines, Line{Name: r.Name, Note: "ERROR: " + err.Error()})
			fmt.Fprintf(os.Stderr, "%s/%s failed: %v\n", r.Section, r.Name, err)
		}
		fmt.Fprintf(os.Stderr, "  %s/%s took %s\n", r.Section, r.Name, time.Since(start).Round(time.Millisecond))
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "workcell-bench: interrupted")
			failed = true
			break
		}
	}
	printTable(os.Stdout, lines)
	if failed {
		return 1
	}
	return 0
}

// setup makes the temp folder, the bundle, the daemon and the peer.
func setup(ctx context.Context, daemonBin, runcBin string, quick bool) (*Bench, error) {
	for _, p := range []string{daemonBin, runcBin} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%w (see -daemon and -runc)", err)
		}
	}
	dir, err := os.MkdirTemp("", "workcell-bench-")
	if err != nil {
		return nil, err
	}
	// A profile's root in its user namespace passes through the run
	// folder to reach its root folder (the daemon's default /run/workcell
	// is 0755).
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, err
	}
	b := &Bench{
		Dir:          dir,
		CgroupParent: fmt.Sprintf("/workcell-bench-%d", os.Getpid()),
		Quick:        quick,
		fixtures:     map[string]any{},
		bundles:      map[string]string{},
	}
	if b.DevNull, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
		return b, err
	}
	if b.Runc, err = newRunc(runcBin, dir, b.CgroupParent); err != nil {
		return b, err
	}
	b.DaemonBin = daemonBin
	b.Daemon, b.Client, err = startDaemon(ctx, daemonBin, dir, b.CgroupParent, "", nil)
	return b, err
}

// defaultDaemon is bin/workcelld beside the bench binary, else ./bin/workcelld.
func defaultDaemon() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "workcelld")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return filepath.Join("bin", "workcelld")
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

func cgroupMode() string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return "v2"
	}
	if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.controllers"); err == nil {
		return "v1 hybrid"
	}
	return "v1"
}

// printTable writes the lines as one aligned markdown-like table, then
// names the figures over target.
func printTable(w io.Writer, lines []Line) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	row := func(cols ...string) { fmt.Fprintln(tw, "| "+strings.Join(cols, "\t ")+"\t") }
	row("row", "workcell", "peer", "ratio", "p99 workcell / peer", "target", "note")
	row("---", "---", "---", "---", "---", "---", "---")
	var over, broken []string
	for _, l := range lines {
		if strings.HasPrefix(l.Note, "ERROR: ") {
			broken = append(broken, l.Name)
		}
		p99 := ""
		if l.WorkcellP99.Set || l.PeerP99.Set {
			p99 = l.WorkcellP99.String() + " / " + l.PeerP99.String()
		}
		target := l.Target
		if l.Over {
			target += " OVER"
			over = append(over, l.Name)
		}
		note := l.Note
		if l.PeerName != "" {
			note = strings.TrimSuffix("peer: "+l.PeerName+"; "+note, "; ")
		}
		r := ratio(l.Workcell, l.Peer)
		if l.Ratio != 0 {
			r = fmt.Sprintf("%.2fx", l.Ratio)
		}
		row(l.Name, l.Workcell.String(), l.Peer.String(), r, p99, target, note)
	}
	tw.Flush()
	fmt.Fprintln(w)
	switch {
	case over != nil:
		fmt.Fprintf(w, "over target: %s\n", strings.Join(over, ", "))
	case broken == nil:
		fmt.Fprintln(w, "all figures within target")
	}
	if broken != nil {
		fmt.Fprintf(w, "failed, no figures: %s\n", strings.Join(broken, ", "))
	}
}
