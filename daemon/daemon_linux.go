package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/netns"
	"github.com/workcell/workcell/sandbox"
)

// Daemon owns the profiles of one state directory.
type Daemon struct {
	cfg   Config
	log   *slog.Logger
	rt    *sandbox.Runtime
	store *store
	bus   *bus
	lock  *os.File
	// stor is the encrypted storage of the profiles (storage_linux.go).
	stor *storage
	// net owns the profiles' networks (network_linux.go).
	net *netns.Manager
	// bnd owns the profiles' binder contexts (binder_linux.go).
	bnd binders
	// ident is how work's ids relate to the host's (identity_linux.go).
	ident identity
	// dns is where the profiles' default resolvers come from
	// (network_dns_linux.go).
	dns dnsDecision
	// firewall is the netns backend chosen at start, and why
	// (network_linux.go).
	firewall    netns.Backend
	firewallWhy string
	// netUnusable says why the network manager could not open (nil when
	// it did): the daemon serves on, profiles cannot start.
	netUnusable error

	// ctx ends when the daemon closes; it bounds the watchers.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// closing stops new prepared containers while the daemon shuts down.
	closing atomic.Bool

	mu       sync.Mutex
	profiles map[string]*profile
	// ids are the profiles' id ranges, as their records (and installs
	// under way) hold them: the allocator's view.
	ids map[string]idRange
}

// profile is one profile in memory. mu serialises operations on it.
type profile struct {
	mu  sync.Mutex
	rec record
	ctr *sandbox.Container
	// gen changes whenever the daemon itself starts or stops the
	// container, so a watcher can tell a crash from a stop it asked for.
	gen  uint64
	logs *logCapper
	// installing is set while the profile's files are being imported.
	installing bool
	// stor is the profile's key and lock state (storage_linux.go).
	stor profileStorage
	// tun says the running container was started in vpn-lockdown mode, with
	// the tunnel device and CAP_NET_ADMIN (network_linux.go).
	tun bool
	// standby is the prepared container of a stopped profile
	// (standby_linux.go); standbyTun is its tun setting.
	standby    *sandbox.Container
	standbyTun bool
	// ops lets admin operations cut a stop's grace short and end the
	// readers of the logs (opguard_linux.go).
	ops opGuard
}

// New opens the state directory (one daemon at a time), then reconciles:
// it finishes or rolls back what an earlier daemon left half done and
// adopts the containers that still run.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o711); err != nil {
		return nil, fmt.Errorf("make state folder %s: %w", cfg.StateDir, err)
	}
	if err := os.MkdirAll(cfg.RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("make run folder %s: %w", cfg.RunDir, err)
	}
	lock, err := os.OpenFile(filepath.Join(cfg.StateDir, ".lock"), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open state lock: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("state folder %s is in use by another workcelld: %w", cfg.StateDir, err)
	}
	st, err := newStore(cfg.StateDir)
	if err != nil {
		lock.Close()
		return nil, err
	}
	rt, err := sandbox.New(filepath.Join(cfg.RunDir, "containers"), sandbox.WithLogger(log), sandbox.WithCgroupParent(cfg.CgroupParent))
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("container runtime: %w", err)
	}
	dctx, cancel := context.WithCancel(context.Background())
	d := &Daemon{cfg: cfg, log: log, rt: rt, store: st, bus: newBus(), lock: lock, ctx: dctx, cancel: cancel, profiles: map[string]*profile{}, ids: map[string]idRange{}}
	if err := d.openIdentity(ctx); err != nil {
		d.Close(ctx)
		return nil, err
	}
	if err := d.reconcile(ctx); err != nil {
		d.Close(ctx)
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	return d, nil
}

// Close stops the watchers and, with StopOnExit, every profile. Without
// it the containers keep running for the next daemon to adopt.
func (d *Daemon) Close(ctx context.Context) {
	d.closing.Store(true) // no new prepared containers from here on
	if d.cfg.StopOnExit {
		for _, name := range d.names() {
			p := d.get(name)
			if p == nil {
				continue
			}
			p.mu.Lock()
			if p.ctr != nil {
				if err := d.stopLocked(ctx, p, time.Duration(d.cfg.StopTimeout), "daemon shutdown"); err != nil {
					d.log.Error("stop on exit", "profile", name, "err", err)
				}
			}
			d.dropStandby(ctx, p)
			p.mu.Unlock()
		}
	}
	d.cancel()
	d.wg.Wait()
	d.mu.Lock()
	for _, p := range d.profiles {
		if p.logs != nil {
			p.logs.close()
		}
	}
	d.mu.Unlock()
	d.closeBinder()
	d.closeNetwork()
	if d.lock != nil {
		d.lock.Close()
	}
}

func (d *Daemon) names() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	names := make([]string, 0, len(d.profiles))
	for n, p := range d.profiles {
		if !p.installing {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

func (d *Daemon) get(name string) *profile {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.profiles[name]
	if p == nil || p.installing {
		return nil
	}
	return p
}

// lookup returns the locked profile or a not-found error.
func (d *Daemon) lookup(name string) (*profile, error) {
	if err := api.ValidName(name); err != nil {
		return nil, err
	}
	p := d.get(name)
	if p == nil {
		return nil, api.Errorf(api.ErrNotFound, "profile %s does not exist", name)
	}
	p.mu.Lock()
	if d.get(name) != p { // removed while we waited
		p.mu.Unlock()
		return nil, api.Errorf(api.ErrNotFound, "profile %s does not exist", name)
	}
	return p, nil
}

func (p *profile) status() api.Profile {
	return api.Profile{Name: p.rec.Name, State: p.rec.State, Pid: p.rec.Pid, Limits: p.rec.Limits, CreatedAt: p.rec.CreatedAt, StartedAt: p.rec.StartedAt,
		Encrypted: p.stor.encrypted, Passphrase: p.stor.passphrase, FailedUnlocks: p.stor.tries.Failures, PassphraseRetryAt: p.stor.retryAt(),
		Standby: p.standby != nil, Warnings: p.warnings()}
}

// warnings are the running container's limits the kernel cannot enforce.
func (p *profile) warnings() []string {
	if p.ctr == nil {
		return nil
	}
	return p.ctr.Warnings()
}

// setState records a new state, persists it and tells subscribers.
func (d *Daemon) setState(p *profile, st api.State, pid int, reason string) error {
	prev := p.rec
	p.rec.State = st
	p.rec.Pid = pid
	if st == api.StateRunning && prev.State == api.StateStopped {
		now := time.Now().UTC()
		p.rec.StartedAt = &now
	}
	if st == api.StateStopped {
		p.rec.StartedAt = nil
	}
	if err := d.store.saveState(p.rec); err != nil {
		p.rec = prev
		return err
	}
	d.bus.publish(api.Event{Time: time.Now().UTC(), Profile: p.rec.Name, State: st, Pid: pid, Reason: reason})
	return nil
}

// Profiles lists every profile.
func (d *Daemon) Profiles(ctx context.Context) []api.Profile {
	var out []api.Profile
	for _, name := range d.names() {
		if p, err := d.lookup(name); err == nil {
			out = append(out, p.status())
			p.mu.Unlock()
		}
	}
	if out == nil {
		out = []api.Profile{}
	}
	return out
}

// Profile returns one profile's status.
func (d *Daemon) Profile(ctx context.Context, name string) (api.Profile, error) {
	p, err := d.lookup(name)
	if err != nil {
		return api.Profile{}, err
	}
	defer p.mu.Unlock()
	return p.status(), nil
}

// Install imports a bundle as a new, stopped profile.
func (d *Daemon) Install(ctx context.Context, req api.InstallRequest) (api.Profile, error) {
	if err := api.ValidName(req.Name); err != nil {
		return api.Profile{}, err
	}
	if req.Bundle == "" || !filepath.IsAbs(req.Bundle) {
		return api.Profile{}, api.Errorf(api.ErrInvalidArgument, "bundle %q: must be an absolute path on the phone", req.Bundle)
	}
	if err := checkLimits(req.Limits); err != nil {
		return api.Profile{}, err
	}
	// Check the source first for a quick, precise answer; the copy is
	// checked again (it is what will run).
	if _, err := sandbox.LoadBundle(req.Bundle); err != nil {
		return api.Profile{}, api.Errorf(api.ErrInvalidArgument, "%s", oneLine(err))
	}
	p := &profile{installing: true}
	d.mu.Lock()
	if _, ok := d.profiles[req.Name]; ok {
		d.mu.Unlock()
		return api.Profile{}, api.Errorf(api.ErrConflict, "profile %s already exists", req.Name)
	}
	ids, err := d.allocateLocked(req.Name)
	if err != nil {
		d.mu.Unlock()
		return api.Profile{}, err
	}
	d.profiles[req.Name] = p
	d.mu.Unlock()

	// Work runs under the range in every identity mode: the copy is
	// owned by it, shifted once, here.
	m := ids.idMap()
	shift := &m
	ids.Shifted = true
	p.rec = record{Name: req.Name, State: api.StateLocked, Limits: req.Limits, NoStandby: req.NoStandby, CreatedAt: time.Now().UTC(), IDs: &ids}
	err = d.store.install(p.rec, req.Bundle, shift, func(bundle string) error {
		if _, err := sandbox.LoadBundle(bundle); err != nil {
			return api.Errorf(api.ErrInvalidArgument, "bundle %s, as copied: %s", req.Bundle, oneLine(err))
		}
		return nil
	})
	d.mu.Lock()
	if err != nil {
		delete(d.profiles, req.Name)
		delete(d.ids, req.Name)
	} else {
		p.installing = false
	}
	d.mu.Unlock()
	if err != nil {
		return api.Profile{}, err
	}
	d.log.Info("profile installed", "profile", req.Name, "bundle", clip(req.Bundle, clipMax))
	d.bus.publish(api.Event{Time: time.Now().UTC(), Profile: req.Name, State: api.StateLocked, Reason: "installed"})
	// Installed means locked; without a passphrase it unlocks at once.
	p.mu.Lock()
	defer p.mu.Unlock()
	d.storageInstalled(ctx, p)
	d.kickStandby(p)
	return p.status(), nil
}

// oneLine joins the lines of a multi-error (every refused field of a
// bundle) into one line for the API and the CLI.
func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}

func checkLimits(l api.Limits) error {
	switch {
	case l.MemoryBytes < 0:
		return api.Errorf(api.ErrInvalidArgument, "limits.memory_bytes %d: must not be negative", l.MemoryBytes)
	case l.MemoryBytes > 0 && l.MemoryBytes < 4<<20:
		return api.Errorf(api.ErrInvalidArgument, "limits.memory_bytes %d: below the 4 MiB minimum", l.MemoryBytes)
	case l.CPUMillis < 0:
		return api.Errorf(api.ErrInvalidArgument, "limits.cpu_millis %d: must not be negative", l.CPUMillis)
	case l.CPUMillis > 0 && l.CPUMillis < 10:
		return api.Errorf(api.ErrInvalidArgument, "limits.cpu_millis %d: below the minimum of 10 (1%% of a CPU)", l.CPUMillis)
	case l.Pids < 0:
		return api.Errorf(api.ErrInvalidArgument, "limits.pids %d: must not be negative", l.Pids)
	}
	return nil
}

// Remove stops a profile if needed and deletes it with all its files.
// It does not wait out a stop's grace or the readers of the logs.
func (d *Daemon) Remove(ctx context.Context, name string) error {
	p, err := d.lookupPreempt(name)
	if err != nil {
		return err
	}
	defer p.mu.Unlock()
	p.ops.endReaders(errProfileGone)
	if p.ctr != nil {
		if err := d.stopLocked(ctx, p, time.Duration(d.cfg.StopTimeout), "removed"); err != nil {
			return err
		}
	}
	d.dropStandby(ctx, p)
	if err := d.rt.Remove(ctx, name); err != nil && !errors.Is(err, sandbox.ErrNotExist) {
		return fmt.Errorf("remove container leftovers of %s: %w", name, err)
	}
	if p.logs != nil {
		p.logs.close()
		p.logs = nil
	}
	if err := d.purge(ctx, p); err != nil {
		return fmt.Errorf("remove profile %s: %w", name, err)
	}
	if err := d.store.remove(name); err != nil {
		return err
	}
	// The range is free only now: every file it owned went with the
	// profile's data and folder.
	d.mu.Lock()
	delete(d.profiles, name)
	delete(d.ids, name)
	d.mu.Unlock()
	d.log.Info("profile removed", "profile", name)
	d.bus.publish(api.Event{Time: time.Now().UTC(), Profile: name, State: api.StateAbsent, Reason: "removed"})
	return nil
}

// Start starts a stopped profile and returns once its init runs.
func (d *Daemon) Start(ctx context.Context, name string) (api.Profile, error) {
	return d.StartWith(ctx, name, api.StartRequest{})
}

// StartWith starts a stopped profile: from its prepared container when it
// has one (unless req.Cold), else from scratch.
func (d *Daemon) StartWith(ctx context.Context, name string, req api.StartRequest) (api.Profile, error) {
	p, err := d.lookup(name)
	if err != nil {
		return api.Profile{}, err
	}
	defer p.mu.Unlock()
	if err := d.storageUsable(); err != nil {
		return api.Profile{}, err
	}
	if _, err := next(name, p.rec.State, actStart); err != nil {
		return api.Profile{}, err
	}
	if req.Cold {
		d.dropStandby(ctx, p)
	}
	if c, err := d.beginStandby(ctx, p); err != nil {
		d.log.Warn("prepared container failed, starting from scratch", "profile", name, "err", err)
	} else if c != nil {
		return d.started(ctx, p, c)
	}
	spec, logf, err := d.containerSpec(p)
	if err != nil {
		return api.Profile{}, err
	}
	defer logf.Close() // the container holds its own copy
	// The concerns prepare what the container runs on: its root (storage)
	// and its network. Whatever fails, what was prepared is released.
	if err := d.prepare(ctx, p, &spec.Harden); err != nil {
		return api.Profile{}, fmt.Errorf("start profile %s: %w", name, err)
	}
	c, err := d.rt.Start(ctx, spec)
	if err != nil {
		d.release(ctx, p)
		return api.Profile{}, fmt.Errorf("start profile %s: %w", name, d.startHint(ctx, err))
	}
	return d.started(ctx, p, c)
}

// containerSpec is what the sandbox runs for a profile, before the
// concerns add their parts. The caller closes the log file.
func (d *Daemon) containerSpec(p *profile) (sandbox.Spec, *os.File, error) {
	name := p.rec.Name
	logf, err := openConsole(d.logsDir(name))
	if err != nil {
		return sandbox.Spec{}, nil, err
	}
	return sandbox.Spec{
		ID:        name,
		BundleDir: d.store.bundle(name),
		Stdout:    logf,
		Harden: sandbox.HardenOptions{
			ID:           name,
			Hostname:     name,
			CgroupParent: d.cfg.CgroupParent,
			Limits:       sandbox.Limits{MemoryBytes: p.rec.Limits.MemoryBytes, CPUMillis: p.rec.Limits.CPUMillis, Pids: p.rec.Limits.Pids},
			// Labels are the phone's policy: from the config, never the bundle.
			SELinuxLabel:      d.cfg.SELinuxLabel,
			SELinuxMountLabel: d.cfg.SELinuxMountLabel,
			AppArmorProfile:   d.cfg.AppArmorProfile,
		},
	}, logf, nil
}

// started records a container whose user process runs.
func (d *Daemon) started(ctx context.Context, p *profile, c *sandbox.Container) (api.Profile, error) {
	name := p.rec.Name
	p.gen++
	p.ctr = c
	if err := d.setState(p, api.StateRunning, c.Pid(), ""); err != nil {
		// Without a record the next daemon would not know it runs.
		_ = c.Stop(ctx, 0)
		c.Close()
		p.ctr = nil
		d.release(ctx, p)
		return api.Profile{}, fmt.Errorf("start profile %s: %w", name, err)
	}
	d.watch(p, c)
	d.log.Info("profile started", "profile", name, "pid", c.Pid())
	return p.status(), nil
}

// Stop stops a running or paused profile.
func (d *Daemon) Stop(ctx context.Context, name string, timeout time.Duration) (api.Profile, error) {
	p, err := d.lookup(name)
	if err != nil {
		return api.Profile{}, err
	}
	defer p.mu.Unlock()
	if _, err := next(name, p.rec.State, actStop); err != nil {
		return api.Profile{}, err
	}
	if timeout <= 0 {
		timeout = time.Duration(d.cfg.StopTimeout)
	}
	if max := time.Duration(d.cfg.StopTimeoutMax); timeout > max {
		return api.Profile{}, api.Errorf(api.ErrInvalidArgument, "stop timeout %s: above the maximum of %s (stop_timeout_max)", timeout, max)
	}
	if err := d.stopLocked(ctx, p, timeout, ""); err != nil {
		return api.Profile{}, err
	}
	return p.status(), nil
}

func (d *Daemon) stopLocked(ctx context.Context, p *profile, timeout time.Duration, reason string) error {
	p.gen++
	if p.ctr != nil {
		cut, done := p.ops.graceCut()
		err := p.ctr.StopCut(ctx, timeout, cut)
		done()
		if err != nil {
			return fmt.Errorf("stop profile %s: %w", p.rec.Name, err)
		}
		p.ctr.Close()
	}
	p.ctr = nil
	if p.logs != nil {
		p.logs.close()
		p.logs = nil
	}
	d.release(ctx, p)
	d.log.Info("profile stopped", "profile", p.rec.Name)
	if err := d.setState(p, api.StateStopped, 0, reason); err != nil {
		return err
	}
	d.kickStandby(p)
	return nil
}

// Off turns work mode off: every process of the profile is frozen.
func (d *Daemon) Off(ctx context.Context, name string) (api.Profile, error) {
	return d.freeze(ctx, name, actOff)
}

// On turns work mode on again.
func (d *Daemon) On(ctx context.Context, name string) (api.Profile, error) {
	return d.freeze(ctx, name, actOn)
}

func (d *Daemon) freeze(ctx context.Context, name string, act action) (api.Profile, error) {
	p, err := d.lookup(name)
	if err != nil {
		return api.Profile{}, err
	}
	defer p.mu.Unlock()
	to, err := next(name, p.rec.State, act)
	if err != nil {
		return api.Profile{}, err
	}
	if to == p.rec.State {
		return p.status(), nil
	}
	if act == actOff {
		err = p.ctr.Freeze(ctx)
	} else {
		err = p.ctr.Thaw(ctx)
	}
	if err != nil {
		return api.Profile{}, fmt.Errorf("work mode %s for profile %s: %w", act, name, err)
	}
	// Paused or running is the kernel's freezer state, which reconcile
	// reads back; the record is not rewritten, to keep the toggle fast.
	p.rec.State = to
	d.bus.publish(api.Event{Time: time.Now().UTC(), Profile: name, State: to, Pid: p.rec.Pid})
	return p.status(), nil
}

// Stats returns the resource usage of a profile.
func (d *Daemon) Stats(ctx context.Context, name string) (api.Stats, error) {
	p, err := d.lookup(name)
	if err != nil {
		return api.Stats{}, err
	}
	defer p.mu.Unlock()
	out := api.Stats{Name: name, State: p.rec.State}
	d.networkStats(ctx, name, &out)
	if p.ctr == nil {
		return out, nil
	}
	s, err := p.ctr.Stats(ctx)
	if err != nil {
		return out, fmt.Errorf("stats of profile %s: %w", name, err)
	}
	out.CPUUsageNanos, out.MemoryBytes, out.MemoryLimitBytes, out.Pids, out.PidsLimit = s.CPUUsageNanos, s.MemoryBytes, s.MemoryLimitBytes, s.Pids, s.PidsLimit
	return out, nil
}

// container returns the running container of a profile for exec.
func (d *Daemon) container(name string) (*sandbox.Container, error) {
	p, err := d.lookup(name)
	if err != nil {
		return nil, err
	}
	defer p.mu.Unlock()
	if _, err := next(name, p.rec.State, actExec); err != nil {
		return nil, err
	}
	return p.ctr, nil
}

// watch follows a container's init: if it dies without the daemon asking
// (a crash, or an exit of its own), the profile becomes stopped and its
// leftovers are removed.
func (d *Daemon) watch(p *profile, c *sandbox.Container) {
	gen := p.gen
	name := p.rec.Name
	if p.logs == nil {
		p.logs = newLogCapper(d.logsDir(name), d.cfg.LogMaxBytes, d.log)
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		err := c.Wait(d.ctx)
		if d.ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.gen != gen {
			return
		}
		reason := "init exited"
		if err != nil {
			reason = fmt.Sprintf("init lost: %v", err)
		}
		d.log.Warn("profile init ended by itself", "profile", name, "reason", reason)
		if err := d.rt.Remove(d.ctx, name); err != nil && !errors.Is(err, sandbox.ErrNotExist) {
			d.log.Error("remove leftovers", "profile", name, "err", err)
		}
		c.Close()
		p.ctr = nil
		if p.logs != nil {
			p.logs.close()
			p.logs = nil
		}
		d.release(d.ctx, p)
		if err := d.setState(p, api.StateStopped, 0, reason); err != nil {
			d.log.Error("record stop", "profile", name, "err", err)
		}
		d.kickStandby(p)
	}()
}

// Version describes the daemon.
func (d *Daemon) Version() api.VersionInfo {
	return api.VersionInfo{Version: Version, API: api.Version, CgroupV2: sandbox.CgroupV2(), StateDir: d.cfg.StateDir, DaemonPid: os.Getpid(),
		Identity: string(d.ident.mode), IdentityWhy: d.ident.why,
		PIDMode: string(d.ident.pid), PIDModeWhy: d.ident.pidWhy, ProcOptions: d.ident.proc}
}

// Version is the daemon's version, set at link time.
var Version = "dev"

// Events subscribes to state changes.
func (d *Daemon) Events() (<-chan api.Event, func()) { return d.bus.subscribe() }
