package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/internal/testbundle"
)

// Bench is what rows share: the daemon under test and its client, the
// runc peer, the temp folder, and fixtures made once and torn down at the
// end whatever happens.
type Bench struct {
	Client *api.Client
	Daemon *Daemon
	Runc   *Runc
	// DaemonBin is the workcelld binary, for rows that start another.
	DaemonBin string
	// Dir is the run's temp folder; everything the run makes lives in it.
	Dir string
	// CgroupParent is the cgroup (below each hierarchy's root) that holds
	// every container of the run, workcell's and runc's.
	CgroupParent string
	Quick        bool
	// DevNull is open read-write for the stdio of execs.
	DevNull *os.File

	fixtures map[string]any
	bundles  map[string]string
	cleanups []cleanup
}

type cleanup struct {
	what string
	fn   func(context.Context) error
}

// N is an iteration count: full normally, quick with -quick.
func (b *Bench) N(full, quick int) int {
	if b.Quick {
		return quick
	}
	return full
}

// AtEnd registers fn to run at the end of the run, last registered first.
func (b *Bench) AtEnd(what string, fn func(context.Context) error) {
	b.cleanups = append(b.cleanups, cleanup{what, fn})
}

// Fixture returns the value made by mk for key, making it on first use, so
// that rows run alone (-rows) or together share it.
func (b *Bench) Fixture(key string, mk func() (any, error)) (any, error) {
	if v, ok := b.fixtures[key]; ok {
		return v, nil
	}
	v, err := mk()
	if err != nil {
		return nil, fmt.Errorf("fixture %s: %w", key, err)
	}
	b.fixtures[key] = v
	return v, nil
}

// Bundle writes (once) a busybox OCI bundle running args (the default
// command when none) and returns its folder.
func (b *Bench) Bundle(name string, args ...string) (string, error) {
	if dir, ok := b.bundles[name]; ok {
		return dir, nil
	}
	dir := filepath.Join(b.Dir, "bundles", name)
	if err := testbundle.WriteBundle(dir, args...); err != nil {
		return "", err
	}
	b.bundles[name] = dir
	return dir, nil
}

// Profile installs a profile from bundle; it is stopped and removed at the
// end of the run.
func (b *Bench) Profile(ctx context.Context, name, bundle string) error {
	if _, err := b.Client.Install(ctx, api.InstallRequest{Name: name, Bundle: bundle}); err != nil {
		return fmt.Errorf("install profile %s: %w", name, err)
	}
	b.AtEnd("remove profile "+name, func(ctx context.Context) error {
		p, err := b.Client.Profile(ctx, name)
		if err != nil {
			return err
		}
		if p.State == api.StateRunning || p.State == api.StatePaused {
			if _, err := b.Client.Stop(ctx, name, api.StopRequest{TimeoutMillis: 500}); err != nil {
				return err
			}
		}
		return b.Client.Remove(ctx, name)
	})
	return nil
}

// Daemon is the workcelld under test, started by the bench.
type Daemon struct {
	Pid  int
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startDaemon runs workcelld on state, run dir and socket inside dir, with
// a config file naming the run's own cgroup parent (and extra's settings),
// in the network namespace ns (a new one of the run's when empty).
func startDaemon(ctx context.Context, bin, dir, cgroupParent, ns string, extra map[string]any) (*Daemon, *api.Client, error) {
	cfg := map[string]any{"cgroup_parent": cgroupParent, "stop_timeout": "2s"}
	for k, v := range extra {
		cfg[k] = v
	}
	data, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(dir, "workcelld.json")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		return nil, nil, err
	}
	socket := filepath.Join(dir, "run", "workcelld.sock")
	d := &Daemon{Log: filepath.Join(dir, "workcelld.log"), done: make(chan struct{})}
	logf, err := os.Create(d.Log)
	if err != nil {
		return nil, nil, err
	}
	defer logf.Close()
	// Its own network namespace: the profiles' veths and rules never
	// touch the machine's network.
	if ns == "" {
		if ns, err = newDaemonNetNS(); err != nil {
			return nil, nil, err
		}
	}
	d.cmd = exec.Command("nsenter", "--net="+ns, "--", bin, "--config", cfgPath,
		"--state-dir", filepath.Join(dir, "state"), "--run-dir", filepath.Join(dir, "run"),
		"--socket", socket, "--log-level", "info",
		// Sparse: room for the storage rows' largest work data.
		"--store-image", filepath.Join(dir, "store.img"), "--store-size", storeSize)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// Its own process group: a ^C on the terminal reaches only the bench,
	// which then stops the profiles before the daemon.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", bin, err)
	}
	d.Pid = d.cmd.Process.Pid
	go func() { d.err = d.cmd.Wait(); close(d.done) }()

	c := api.NewClient(socket)
	deadline := time.Now().Add(15 * time.Second)
	for {
		v, err := c.Version(ctx)
		if err == nil {
			if v.DaemonPid != d.Pid {
				d.stop()
				return nil, nil, fmt.Errorf("socket %s answered by pid %d, not our workcelld %d", socket, v.DaemonPid, d.Pid)
			}
			return d, c, nil
		}
		select {
		case <-d.done:
			return nil, nil, fmt.Errorf("workcelld exited at start (%v): %s", d.err, d.tail())
		case <-ctx.Done():
			d.stop()
			return nil, nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, nil, fmt.Errorf("workcelld not ready after 15s: %v: %s", err, d.tail())
		}
	}
}

// stop sends SIGTERM, then SIGKILL if it has not exited within 10 s.
func (d *Daemon) stop() error {
	select {
	case <-d.done:
		return nil
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return nil
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		return fmt.Errorf("workcelld %d ignored SIGTERM for 10s; killed", d.Pid)
	}
}

// alive reports whether the daemon still runs.
func (d *Daemon) alive() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// tail returns the end of the daemon's log, for error messages.
func (d *Daemon) tail() string {
	b, _ := os.ReadFile(d.Log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-10):], "\n")
}

// teardown runs the cleanups, stops the daemon and the runc containers,
// removes the run's cgroups and temp folder, and reports what it could
// not undo.
func (b *Bench) teardown() []error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var errs []error
	for _, c := range slices.Backward(b.cleanups) {
		if err := c.fn(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.what, err))
		}
	}
	if b.Runc != nil {
		if err := b.Runc.deleteAll(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if b.Daemon != nil {
		if err := b.Daemon.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, deleteBenchNetNS(filepath.Join(b.Dir, "run"))...)
	if b.DevNull != nil {
		b.DevNull.Close()
	}
	if err := removeCgroups(b.CgroupParent); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, releaseMounts(b.Dir)...)
	if err := os.RemoveAll(b.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", b.Dir, err))
	}
	return errs
}

// errDaemonGone marks a row that failed because workcelld died under it.
var errDaemonGone = errors.New("workcelld is no longer running")
