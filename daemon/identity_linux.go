package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/sandbox"
)

// Work root is not host root. The daemon decides once, here, how a
// profile's ids and processes relate to the host's, by probing the kernel
// (never by guessing the platform):
//
//   - userns: each profile runs in its own user namespace; its uids and
//     gids 0..65535 are its own host range (idrange.go). The profile's
//     files are owned by that range on the host: the bundle is shifted
//     once, at install (or, for a profile from before, at its next start),
//     and what work writes to its upper layer is the range's by itself.
//     The namespace is pinned with the profile's network namespace made
//     inside it, so work's root administers its own network (the VPN
//     client of vpn-lockdown makes its tunnel) and nothing of the host's.
//   - uid-range: the kernel has no user namespaces (Android's GKI) or they
//     are switched off: work runs under the same range without a mapping,
//     the Android way (one uid range per profile): the bundle's uid u is
//     host uid HostID+u, for init and exec alike, its files are shifted
//     exactly as for userns, and its processes hold no capability (a
//     non-root uid keeps none across exec; the daemon's grant, e.g.
//     CAP_NET_ADMIN for a VPN client, is ambient).
//
// And, independently, the pid namespace:
//
//   - pid-namespace: each profile has its own; its init is pid 1.
//   - shared-pid+hidepid: the kernel has none (GKI: `# CONFIG_PID_NS is
//     not set`) or pid_namespace is "off": the profile shares the host's,
//     its /proc is a procfs instance of its own mounted hidepid=invisible
//     (hidepid=2 before Linux 5.8: what the kernel takes is probed; not
//     subset=pid, which takes /proc/sys that the runtime reads on every
//     exec), so it sees only its own uid's processes,
//     and stop, wipe and remove kill it by cgroup.
//
// Layout: <run>/userns/<name>-<host id> is the pinned user namespace (the
// host id in the name says which mapping it has); <run>/dev is a tmpfs of
// the daemon's (without nodev, which /run usually has) holding each
// profile's device nodes, owned by its range's root.
type identityMode string

const (
	identityUserNS   identityMode = "userns"
	identityUIDRange identityMode = "uid-range"
)

// pidMode is the pid namespace decision.
type pidMode string

const (
	pidPrivate pidMode = "pid-namespace"
	pidShared  pidMode = "shared-pid+hidepid"
)

const (
	usernsDir = "userns"
	devDir    = "dev"
)

// identity is the decision and the pool ranges come from.
type identity struct {
	mode identityMode
	why  string
	pid  pidMode
	// pidWhy says why pid was chosen; proc are the procfs options of a
	// shared pid namespace's /proc, procWhy why those.
	pidWhy, procWhy string
	proc            []string
	// noMqueue says why profiles get no /dev/mqueue ("" when they do).
	noMqueue string
	pool     idPool
}

// kernelProbes are the kernel questions the decision asks; a test fakes
// their answers.
type kernelProbes struct {
	userNS func(context.Context) error
	pidNS  func(context.Context) error
	proc   func(context.Context) ([]string, error)
	mqueue func(context.Context) error
}

var realProbes = kernelProbes{userNS: sandbox.ProbeUserNS, pidNS: sandbox.ProbePIDNS, proc: sandbox.ProbeProcOptions, mqueue: sandbox.ProbeMqueue}

// decideIdentity probes the kernel, unless the config switched a
// namespace off.
func decideIdentity(ctx context.Context, cfg Config) identity {
	return decide(ctx, cfg, realProbes)
}

func decide(ctx context.Context, cfg Config, k kernelProbes) identity {
	id := identity{pool: idPool{base: cfg.IDBase, size: IDRangeSize, slots: cfg.IDRanges}}
	const ranged = "work runs under its profile's id range without a mapping (non-root, no capabilities)"
	if cfg.PIDNamespace == "off" {
		id.pid, id.pidWhy = pidShared, "pid_namespace is \"off\" in the config: profiles share the host's pid namespace"
	} else if err := k.pidNS(ctx); err != nil {
		id.pid, id.pidWhy = pidShared, fmt.Sprintf("no pid namespaces: %v; profiles share the host's pid namespace", err)
	} else {
		id.pid, id.pidWhy = pidPrivate, "the kernel gives pid namespaces (a child with CLONE_NEWPID started)"
	}
	var uerr error
	if cfg.UserNS != "off" {
		uerr = k.userNS(ctx)
	}
	switch {
	case cfg.UserNS == "off":
		id.mode, id.why = identityUIDRange, "userns is \"off\" in the config: "+ranged
	case unreachable(cfg.RunDir) != "":
		// The runtime binds the root folder from inside the namespace,
		// as the range's root.
		id.mode, id.why = identityUIDRange, fmt.Sprintf("run_dir %s: %s, so a root in a user namespace cannot reach its root folder; %s", cfg.RunDir, unreachable(cfg.RunDir), ranged)
	case uerr != nil:
		id.mode, id.why = identityUIDRange, fmt.Sprintf("no user namespaces: %v; %s", uerr, ranged)
	case id.pid == pidShared:
		// The host's pid namespace belongs to the host's user namespace:
		// root in another cannot mount its procfs.
		id.mode, id.why = identityUIDRange, "the kernel gives user namespaces, but profiles share the host's pid namespace, whose /proc a user namespace cannot mount: "+ranged
	default:
		id.mode, id.why = identityUserNS, "the kernel gives user namespaces (a child with CLONE_NEWUSER and a mapping started)"
	}
	if k.mqueue != nil {
		if err := k.mqueue(ctx); err != nil {
			id.noMqueue = err.Error() + "; profiles get no /dev/mqueue"
		}
	}
	if id.pid == pidShared {
		proc, err := k.proc(ctx)
		id.proc = proc
		if err != nil {
			id.procWhy = fmt.Sprintf("/proc mounted %s: %v; before Linux 5.8 hidepid is a setting of the whole pid namespace, the host's too", strings.Join(proc, ","), err)
		} else {
			id.procWhy = fmt.Sprintf("/proc mounted %s: work sees only its own processes", strings.Join(proc, ","))
		}
		id.pidWhy += "; " + id.procWhy + "; stop, wipe and remove kill by cgroup"
	}
	return id
}

// unreachable names the first existing folder on the way to dir that other
// users cannot pass through, or "" when there is none.
func unreachable(dir string) string {
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o001 == 0 {
			return fmt.Sprintf("%s is mode %04o (no search for other users)", p, fi.Mode().Perm())
		}
		if p == "/" {
			return ""
		}
	}
}

func (d *Daemon) userns() bool { return d.ident.mode == identityUserNS }

// openIdentity runs once at start: decides and says so.
func (d *Daemon) openIdentity(ctx context.Context) error {
	d.ident = decideIdentity(ctx, d.cfg)
	d.log.Info("identity mode", "mode", d.ident.mode, "why", d.ident.why,
		"id_base", d.ident.pool.base, "range_size", d.ident.pool.size, "ranges", d.ident.pool.slots)
	d.log.Info("pid mode", "mode", d.ident.pid, "why", d.ident.pidWhy, "proc_options", strings.Join(d.ident.proc, ","))
	return nil
}

// allocateLocked gives a profile a range; d.mu is held, so two installs
// never get the same one. The ranges in use are those of the records (and
// of installs under way), which d.ids mirrors.
func (d *Daemon) allocateLocked(name string) (idRange, error) {
	r, err := d.ident.pool.allocate(d.ids)
	if err != nil {
		return idRange{}, api.Errorf(api.ErrConflict, "profile %s: %v", name, err)
	}
	d.ids[name] = r
	return r, nil
}

// checkIDs refuses a recorded range that maps host root or overlaps
// another profile's (a state folder edited by hand, or restored from
// elsewhere): two profiles sharing ids would share files and signals.
func (d *Daemon) checkIDs(name string, r idRange) error {
	if err := r.idMap().Validate(); err != nil {
		return api.Errorf(api.ErrConflict, "profile %s: recorded id range %d+%d: %v", name, r.HostID, r.Size, err)
	}
	if r.HostID < sandbox.MinRangeHostID {
		return api.Errorf(api.ErrConflict, "profile %s: recorded id range %d+%d starts below %d, among the host's own users; refusing to start it", name, r.HostID, r.Size, sandbox.MinRangeHostID)
	}
	// Work running as the daemon's own uid, or a uid the control socket
	// trusts, would be that user.
	for _, u := range []struct {
		who string
		uid int
	}{{"the daemon's uid", os.Getuid()}, {"owner_uid", d.cfg.OwnerUID}, {"system_uid", d.cfg.SystemUID}} {
		if u.uid >= 0 && r.idMap().Contains(uint32(u.uid)) {
			return api.Errorf(api.ErrConflict, "profile %s: recorded id range %d+%d holds %s %d; refusing to start it", name, r.HostID, r.Size, u.who, u.uid)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for other, o := range d.ids {
		if other != name && uint64(o.HostID) < uint64(r.HostID)+uint64(r.Size) && uint64(r.HostID) < uint64(o.HostID)+uint64(o.Size) {
			return api.Errorf(api.ErrConflict, "profile %s: recorded id range %d+%d overlaps profile %s's %d+%d; refusing to start it",
				name, r.HostID, r.Size, other, o.HostID, o.Size)
		}
	}
	return nil
}

func (d *Daemon) freeIDs(name string) {
	d.mu.Lock()
	delete(d.ids, name)
	d.mu.Unlock()
}

func (d *Daemon) idsOf(name string) (idRange, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.ids[name]
	return r, ok
}

func (r idRange) idMap() sandbox.IDMap { return sandbox.IDMap{HostID: r.HostID, Size: r.Size} }

func (d *Daemon) usernsPath(name string, r idRange) string {
	return filepath.Join(d.cfg.RunDir, usernsDir, fmt.Sprintf("%s-%d", name, r.HostID))
}

// identityUp runs first when a profile's container is made: a profile from
// before ranges gets one, its files are shifted into it (once: the record
// says so), and the container joins the pinned user namespace the network
// concern makes (userns) or runs under the range without one (uid-range),
// in the host's pid namespace where the decision says so.
func (d *Daemon) identityUp(ctx context.Context, p *profile, h *sandbox.HardenOptions) error {
	name := p.rec.Name
	if p.rec.IDs == nil {
		d.mu.Lock()
		r, err := d.allocateLocked(name)
		d.mu.Unlock()
		if err != nil {
			return err
		}
		prev := p.rec
		p.rec.IDs = &r
		if err := d.store.save(p.rec); err != nil {
			p.rec = prev
			d.freeIDs(name)
			return fmt.Errorf("record the id range of %s: %w", name, err)
		}
		d.log.Info("id range allocated for a profile from before ranges", "profile", name, "host_id", r.HostID, "size", r.Size)
	}
	if err := d.checkIDs(name, *p.rec.IDs); err != nil {
		return err
	}
	// Both modes run work under its range: its files must be the range's.
	if !p.rec.IDs.Shifted {
		if err := d.shiftProfile(ctx, p); err != nil {
			return err
		}
	}
	ids := p.rec.IDs.idMap()
	if d.userns() {
		h.UserNS = &sandbox.UserNS{IDs: ids, Path: d.usernsPath(name, *p.rec.IDs)}
	} else {
		h.UIDRange = &ids
	}
	if d.ident.pid == pidShared {
		h.SharedPID, h.ProcOptions = true, slices.Clone(d.ident.proc)
	}
	h.NoMqueue = d.ident.noMqueue != ""
	// Init's console is work's own output (it lives in work's encrypted
	// data): its root may open it again through /proc/self/fd/1, as host
	// root could before. The log is capped in place, so the owner stays.
	if err := sandbox.ShiftFile(filepath.Join(d.logsDir(name), consoleLog), ids); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// rangeOf is the range the container of h runs under, or nil.
func rangeOf(h *sandbox.HardenOptions) *sandbox.IDMap {
	switch {
	case h.UserNS != nil:
		return &h.UserNS.IDs
	case h.UIDRange != nil:
		return h.UIDRange
	}
	return nil
}

// shiftProfile gives a profile's existing files (its bundle and what work
// wrote to its upper layer, readable now that it is unlocked) the owners
// of its range. The range is recorded first and the shift keeps ids
// already in the range, so a shift cut short is finished at the next
// start; the record says "shifted" only once all of it is.
func (d *Daemon) shiftProfile(ctx context.Context, p *profile) error {
	name := p.rec.Name
	m := p.rec.IDs.idMap()
	dirs := []string{d.store.bundle(name), filepath.Join(d.stor.dataDir(name), "upper")}
	for _, dir := range dirs {
		if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := sandbox.ShiftTree(ctx, dir, m); err != nil {
			return fmt.Errorf("give the files of profile %s its id range: %w", name, err)
		}
	}
	prev := p.rec
	r := *p.rec.IDs
	r.Shifted = true
	p.rec.IDs = &r
	if err := d.store.save(p.rec); err != nil {
		p.rec = prev
		return fmt.Errorf("record the shifted files of %s: %w", name, err)
	}
	d.log.Info("profile's files shifted into its id range", "profile", name, "host_id", m.HostID)
	return nil
}

// identityRootfs readies the overlay for a root in a user namespace: the
// upper layer's top folder (the root folder work sees) is its root's, and
// the folders above the mountpoint can be passed through (0711) by it,
// which the runtime needs to bind the root inside the namespace.
func (d *Daemon) identityRootfs(h *sandbox.HardenOptions, upper, target string) error {
	ids := rangeOf(h)
	if ids == nil {
		return nil
	}
	if err := sandbox.ShiftFile(upper, *ids); err != nil {
		return err
	}
	if h.UserNS == nil {
		// Without a user namespace the runtime binds the root as host
		// root, before it drops to the range.
		return nil
	}
	for _, dir := range []string{filepath.Dir(target), filepath.Dir(filepath.Dir(target))} {
		if err := os.Chmod(dir, 0o711); err != nil {
			return fmt.Errorf("root of the profile's container: %w", err)
		}
	}
	return nil
}

// identityDevices runs last in prepare, once every concern has named its
// devices: in a user namespace or under a range, each is bind-mounted
// from a node of the profile's own, owned by its range's root, so that work
// can open it and no other host uid can (a host node such as
// /dev/net/tun is root's 0600, and a binder context must not be opened
// from the personal side). The cgroup device rule stays the gate inside.
func (d *Daemon) identityDevices(ctx context.Context, p *profile, h *sandbox.HardenOptions) error {
	ids := rangeOf(h)
	if ids == nil || len(h.Devices) == 0 {
		return nil
	}
	// Mounted at the first need (a daemon that fails to start leaves no
	// mount); an earlier daemon's mount is used as it is.
	if err := sandbox.MountDeviceDir(ctx, filepath.Join(d.cfg.RunDir, devDir)); err != nil {
		return fmt.Errorf("devices of profile %s: %w", p.rec.Name, err)
	}
	dir := d.devicesDir(p.rec.Name)
	srcs, err := sandbox.MakeDeviceNodes(ctx, dir, h.Devices, *ids, h.DeviceSources)
	if err != nil {
		return fmt.Errorf("devices of profile %s: %w", p.rec.Name, err)
	}
	// A device that opens only as itself (binderfs) is given to the range
	// and closed to others by its folder (MakeDeviceNodes makes it 0700);
	// the binder node helpers, which serve the profile's side of the
	// proxy, must still pass through it: root and their gid only.
	for _, src := range h.DeviceSources {
		folder := filepath.Dir(src)
		if err := os.Chown(folder, 0, d.cfg.BinderHelperGID); err != nil {
			return fmt.Errorf("devices of profile %s: open %s to the binder helpers' gid %d: %w", p.rec.Name, folder, d.cfg.BinderHelperGID, err)
		}
		if err := os.Chmod(folder, 0o710); err != nil {
			return fmt.Errorf("devices of profile %s: open %s to the binder helpers' gid %d: %w", p.rec.Name, folder, d.cfg.BinderHelperGID, err)
		}
	}
	if h.DeviceSources == nil {
		h.DeviceSources = map[string]string{}
	}
	for k, v := range srcs {
		h.DeviceSources[k] = v
	}
	return nil
}

func (d *Daemon) devicesDir(name string) string { return filepath.Join(d.cfg.RunDir, devDir, name) }

// identityDown removes the profile's device nodes once its container is
// gone.
func (d *Daemon) identityDown(ctx context.Context, p *profile) {
	if err := os.RemoveAll(d.devicesDir(p.rec.Name)); err != nil {
		d.log.Warn("remove the profile's device nodes", "profile", p.rec.Name, "err", err)
	}
}

// identityRemove unpins a removed profile's user namespaces; its range is
// freed when its record is gone (Remove).
func (d *Daemon) identityRemove(ctx context.Context, p *profile) error {
	d.identityDown(ctx, p)
	pins, _ := filepath.Glob(filepath.Join(d.cfg.RunDir, usernsDir, p.rec.Name+"-*"))
	var errs []error
	for _, pin := range pins {
		if _, err := strconv.ParseUint(strings.TrimPrefix(filepath.Base(pin), p.rec.Name+"-"), 10, 32); err != nil {
			continue // another profile's, whose name extends this one's
		}
		errs = append(errs, sandbox.UnpinNS(pin))
	}
	return errors.Join(errs...)
}

// identityReconcile runs at start, after the networks: user namespace
// pins of profiles that are gone (a wipe finished at start) or of a range
// the profile no longer has are removed; a pin a container still runs in
// is only a reference, so unpinning it harms nothing.
func (d *Daemon) identityReconcile(ctx context.Context) {
	pins, _ := filepath.Glob(filepath.Join(d.cfg.RunDir, usernsDir, "*"))
	for _, pin := range pins {
		base := filepath.Base(pin)
		i := strings.LastIndexByte(base, '-')
		if i > 0 {
			if r, ok := d.idsOf(base[:i]); ok && d.usernsPath(base[:i], r) == pin {
				continue
			}
		}
		if err := sandbox.UnpinNS(pin); err != nil {
			d.log.Warn("remove a stale user namespace pin", "path", pin, "err", err)
		} else {
			d.log.Info("removed a stale user namespace pin", "path", pin)
		}
	}
}

// nsMaker makes the profiles' network namespaces: in userns mode inside
// the profile's own pinned user namespace.
type nsMaker struct{ d *Daemon }

func (m nsMaker) MakeNetNS(ctx context.Context, profile, path string) (bool, error) {
	r, ok := m.d.idsOf(profile)
	if !m.d.userns() || !ok {
		return false, nil
	}
	if err := sandbox.PinUserNS(ctx, r.idMap(), m.d.usernsPath(profile, r), path); err != nil {
		return true, err
	}
	return true, nil
}

func (m nsMaker) NetNSCurrent(profile string, fd int) bool {
	r, ok := m.d.idsOf(profile)
	var current bool
	if !m.d.userns() || !ok {
		current = sandbox.NetNSOwnedByOurs(fd)
	} else {
		current = sandbox.NetNSOwnedBy(fd, m.d.usernsPath(profile, r))
	}
	if !current && m.d.containerAlive(profile) {
		// A container from before (an earlier daemon, another mode) runs
		// in it: it keeps its network until its next start.
		m.d.log.Info("profile's network namespace is from another identity mode; it is made again at the next start", "profile", profile)
		return true
	}
	return current
}

// containerAlive reports whether the profile's container (running,
// paused or prepared) is there; it asks the runtime, not the profile, so
// it needs no lock of the profile's.
func (d *Daemon) containerAlive(name string) bool {
	c, err := d.rt.Load(d.ctx, name)
	if err != nil {
		return false
	}
	defer c.Close()
	st, err := c.State(d.ctx)
	return err == nil && st != sandbox.Stopped
}
