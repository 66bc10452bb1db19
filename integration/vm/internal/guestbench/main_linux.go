// Command guestbench measures workcelld's runtime rows inside an
// integration/vm guest (the Debian kernel's or the GKI-shaped one), each
// beside an in-guest peer in the same run, alternating them:
//
//   - start (prepared): workcelld's Start of a stopped profile whose
//     container is prepared, vs the floor of any container start in this
//     kernel: `unshare -m -u -i -n /bin/true` (the namespaces GKI has).
//   - off+on: workcelld's Off then On of a profile with one process, vs a
//     bare cgroup v2 freeze and thaw (cgroup.freeze, waiting on
//     cgroup.events) of a group with one process.
//
// It starts workcelld itself (-daemon, -config), installs a busybox
// profile, and prints one line per row:
//
//	GUEST-BENCH row=<row> unit=ms workcell=<median> peer=<median> n=<n>
//
// or "GUEST-BENCH error=<what failed>" and exits 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/internal/testbundle"
)

func main() {
	daemon := flag.String("daemon", "/wc/workcelld", "workcelld binary")
	config := flag.String("config", "/wc/daemon.json", "workcelld's config (its run_dir must be /run/workcell)")
	n := flag.Int("n", 15, "measurements of each figure")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := run(ctx, *daemon, *config, *n); err != nil {
		fmt.Printf("GUEST-BENCH error=%q\n", err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context, daemon, config string, n int) error {
	// The bench measures the runtime, not DNS: a guest without a resolver
	// file (Android's shape) gets a placeholder so that start can write
	// the profile's own.
	if _, err := os.Stat("/etc/resolv.conf"); err != nil {
		if err := os.WriteFile("/etc/resolv.conf", []byte("nameserver 192.0.2.53\n"), 0o644); err != nil {
			return err
		}
	}
	logf, err := os.Create("/tmp/workcelld.log")
	if err != nil {
		return err
	}
	cmd := exec.Command(daemon, "--config", config)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start workcelld: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		// A daemon that does not stop in 10 s is killed: the guest must end.
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			fmt.Println("guestbench: workcelld did not exit 10 s after SIGINT; killing it")
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	c := api.NewClient("/run/workcell/workcelld.sock")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.Version(ctx); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile("/tmp/workcelld.log")
			return fmt.Errorf("workcelld never answered; its log: %s", lastLines(string(b), 8))
		}
		time.Sleep(50 * time.Millisecond)
	}
	bundle := "/tmp/bench-bundle"
	if err := testbundle.WriteBundle(bundle, "sleep", "infinity"); err != nil {
		return err
	}
	const name = "bench"
	fmt.Println("guestbench: workcelld is up; installing the profile")
	if _, err := c.Install(ctx, api.InstallRequest{Name: name, Bundle: bundle}); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if _, err := c.SetNetwork(ctx, name, api.NetworkSettings{Mode: "offline"}); err != nil {
		return fmt.Errorf("net offline: %w", err)
	}
	if _, err := c.Start(ctx, name); err != nil {
		return fmt.Errorf("first start: %s", withLog(err))
	}

	fmt.Println("guestbench: the profile started; measuring")
	// start (prepared) vs the namespace floor.
	var wc, peer []time.Duration
	for i := 0; i < n; i++ {
		if _, err := c.Stop(ctx, name, api.StopRequest{TimeoutMillis: 500}); err != nil {
			return fmt.Errorf("stop: %w", err)
		}
		if err := waitPrepared(ctx, c, name); err != nil {
			return err
		}
		t0 := time.Now()
		if _, err := c.Start(ctx, name); err != nil {
			return fmt.Errorf("start: %s", withLog(err))
		}
		wc = append(wc, time.Since(t0))
		t0 = time.Now()
		if out, err := exec.Command("/bin/busybox", "unshare", "-m", "-u", "-i", "-n", "/bin/true").CombinedOutput(); err != nil {
			return fmt.Errorf("peer unshare -muin: %v: %s", err, out)
		}
		peer = append(peer, time.Since(t0))
	}
	line("start-prepared", wc, peer)

	// off+on vs a bare cgroup v2 freeze and thaw.
	group, stopPeer, err := peerGroup()
	if err != nil {
		return err
	}
	defer stopPeer()
	wc, peer = nil, nil
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := c.Off(ctx, name); err != nil {
			return fmt.Errorf("off: %w", err)
		}
		if _, err := c.On(ctx, name); err != nil {
			return fmt.Errorf("on: %w", err)
		}
		wc = append(wc, time.Since(t0))
		t0 = time.Now()
		if err := freeze(ctx, group, true); err != nil {
			return err
		}
		if err := freeze(ctx, group, false); err != nil {
			return err
		}
		peer = append(peer, time.Since(t0))
	}
	line("off-on", wc, peer)

	if _, err := c.Stop(ctx, name, api.StopRequest{TimeoutMillis: 500}); err != nil {
		return fmt.Errorf("final stop: %w", err)
	}
	return c.Remove(ctx, name)
}

func withLog(err error) string {
	b, _ := os.ReadFile("/tmp/workcelld.log")
	return err.Error() + "; workcelld: " + lastLines(string(b), 6)
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

func waitPrepared(ctx context.Context, c *api.Client, name string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		p, err := c.Profile(ctx, name)
		if err != nil {
			return err
		}
		if p.Standby {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("no prepared container 15s after stop")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// peerGroup makes a cgroup v2 group at /sys/fs/cgroup holding one sleep.
func peerGroup() (string, func(), error) {
	group := filepath.Join("/sys/fs/cgroup", fmt.Sprintf("guestbench-peer-%d", os.Getpid()))
	if err := os.Mkdir(group, 0o755); err != nil {
		return "", nil, fmt.Errorf("peer cgroup: %w", err)
	}
	sleep := exec.Command("/bin/busybox", "sleep", "3600")
	if err := sleep.Start(); err != nil {
		os.Remove(group)
		return "", nil, err
	}
	stop := func() {
		_ = sleep.Process.Kill()
		_ = sleep.Wait()
		for i := 0; i < 100 && os.Remove(group) != nil; i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := os.WriteFile(filepath.Join(group, "cgroup.procs"), []byte(strconv.Itoa(sleep.Process.Pid)), 0); err != nil {
		stop()
		return "", nil, fmt.Errorf("peer cgroup: move the sleep: %w", err)
	}
	return group, stop, nil
}

// freeze writes cgroup.freeze and waits until cgroup.events says so.
func freeze(ctx context.Context, group string, on bool) error {
	v, want := "0", "frozen 0"
	if on {
		v, want = "1", "frozen 1"
	}
	if err := os.WriteFile(filepath.Join(group, "cgroup.freeze"), []byte(v), 0); err != nil {
		return fmt.Errorf("peer freeze: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(group, "cgroup.events"))
		if err != nil {
			return err
		}
		if strings.Contains(string(b), want) {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("peer freeze: %w", ctx.Err())
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func line(row string, wc, peer []time.Duration) {
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 3, 64) }
	fmt.Printf("GUEST-BENCH row=%s unit=ms workcell=%s peer=%s n=%d\n", row, ms(median(wc)), ms(median(peer)), len(wc))
}
