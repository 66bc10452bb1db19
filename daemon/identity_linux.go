package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/sandbox"
)

// Work root is not host root. The daemon decides once, here, how a
// profile's ids relate to the host's:
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
//     are switched off: ranges are still allocated and recorded, but work
//     runs as before. Running work under its range without a mapping is
//     the phone-kernel issue's; nothing is refused here.
//
// Layout: <run>/userns/<name>-<host id> is the pinned user namespace (the
// host id in the name says which mapping it has); <run>/dev is a tmpfs of
// the daemon's (without nodev, which /run usually has) holding each
// profile's device nodes, owned by its mapped root.
type identityMode string

const (
	identityUserNS   identityMode = "userns"
	identityUIDRange identityMode = "uid-range"
)

const (
	usernsDir = "userns"
	devDir    = "dev"
)

// identity is the decision and the pool ranges come from.
type identity struct {
	mode identityMode
	why  string
	pool idPool
}

// decideIdentity probes the kernel, unless the config switched user
// namespaces off.
func decideIdentity(ctx context.Context, cfg Config) identity {
	id := identity{pool: idPool{base: cfg.IDBase, size: IDRangeSize, slots: cfg.IDRanges}}
	if cfg.UserNS == "off" {
		id.mode, id.why = identityUIDRange, "userns is \"off\" in the config: work root is host root"
		return id
	}
	switch err := sandbox.ProbeUserNS(ctx); {
	case unreachable(cfg.RunDir) != "":
		// The runtime binds the root folder from inside the namespace,
		// as the range's root.
		id.mode, id.why = identityUIDRange, fmt.Sprintf("run_dir %s: %s, so a root in a user namespace cannot reach its root folder; work root is host root", cfg.RunDir, unreachable(cfg.RunDir))
	case err != nil:
		id.mode, id.why = identityUIDRange, fmt.Sprintf("no user namespaces: %v; work root is host root until the phone-kernel mode runs it under its range", err)
	default:
		id.mode, id.why = identityUserNS, "the kernel gives user namespaces (a child with CLONE_NEWUSER and a mapping started)"
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
// before ranges gets one, and in userns mode its files are shifted into it
// (once: the record says so) and the container joins the pinned user
// namespace the network concern makes.
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
	if !d.userns() {
		if p.rec.IDs.Shifted {
			d.log.Warn("profile's files are owned by its id range but user namespaces are off: its non-root processes see other owners",
				"profile", name, "why", d.ident.why)
		}
		return nil
	}
	if !p.rec.IDs.Shifted {
		if err := d.shiftProfile(ctx, p); err != nil {
			return err
		}
	}
	h.UserNS = &sandbox.UserNS{IDs: p.rec.IDs.idMap(), Path: d.usernsPath(name, *p.rec.IDs)}
	// Init's console is work's own output (it lives in work's encrypted
	// data): its root may open it again through /proc/1/fd/1, as host root
	// could before. The log is capped in place, so the owner stays.
	if err := sandbox.ShiftFile(filepath.Join(d.logsDir(name), consoleLog), h.UserNS.IDs); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
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
	if h.UserNS == nil {
		return nil
	}
	if err := sandbox.ShiftFile(upper, h.UserNS.IDs); err != nil {
		return err
	}
	for _, dir := range []string{filepath.Dir(target), filepath.Dir(filepath.Dir(target))} {
		if err := os.Chmod(dir, 0o711); err != nil {
			return fmt.Errorf("root of the profile's container: %w", err)
		}
	}
	return nil
}

// identityDevices runs last in prepare, once every concern has named its
// devices: in a user namespace each is bind-mounted from a node of the
// profile's own, owned by its mapped root and 0600, so that work's root
// can open it and no other host uid can (a host node such as
// /dev/net/tun is root's 0600, and a binder context must not be opened
// from the personal side). The cgroup device rule stays the gate inside.
func (d *Daemon) identityDevices(ctx context.Context, p *profile, h *sandbox.HardenOptions) error {
	if h.UserNS == nil || len(h.Devices) == 0 {
		return nil
	}
	// Mounted at the first need (a daemon that fails to start leaves no
	// mount); an earlier daemon's mount is used as it is.
	if err := sandbox.MountDeviceDir(ctx, filepath.Join(d.cfg.RunDir, devDir)); err != nil {
		return fmt.Errorf("devices of profile %s: %w", p.rec.Name, err)
	}
	dir := d.devicesDir(p.rec.Name)
	srcs, err := sandbox.MakeDeviceNodes(ctx, dir, h.Devices, h.UserNS.IDs, h.DeviceSources)
	if err != nil {
		return fmt.Errorf("devices of profile %s: %w", p.rec.Name, err)
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
	if !d.userns() {
		return
	}
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
