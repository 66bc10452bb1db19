package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/binder"
	"github.com/workcell/workcell/sandbox"
)

// The binder split (DESIGN.md, "Binder"). While a profile's container is
// prepared or runs, the profile has a binder context of its own: a device
// made in binderfs (<run-dir>/binderfs/wc-<profile>) where the kernel has
// it, else the first free device of the config's binder_devices. workcelld
// is that context's manager (binder.ServiceManager), and its resolver is a
// binder.NodeHelpers: each host service (binder_host_device) the profile's
// policy allows is proxied by a helper process (workcelld re-executed as
// `workcelld binder-node`) that owns its node in the profile's context,
// lets through only what the policy allows, and exits when the host
// service dies, so that work apps' death recipients fire. Each work
// service the policy exports gets a helper too, which registers a proxy of
// it in the host's service manager while the work service lives. The
// container sees the device as /dev/binder.
//
// The policy lives in profiles/<name>/binder.json (api.BinderPolicy,
// written atomically; absent means no host service), the proxy's audit
// records in profiles/<name>/logs/binder-audit.log (+ .1), and which
// device each up context holds in <state-dir>/binder.json, so that a new
// daemon can become the manager of the contexts of the containers it
// adopts.
const (
	binderFile      = "binder.json"
	binderStateFile = "binder.json"
	binderAuditLog  = "binder-audit.log"
	binderAuditOld  = "binder-audit.log.1"
	binderfsDir     = "binderfs"
	binderfsPrefix  = "wc-"
	// binderHelperNodes (beside the host's binder device, where device
	// nodes work: /run is often nodev) holds, per profile, nodes of the
	// binder devices that the node helpers' gid may open.
	binderHelperNodes = "workcell-binder"
	// containerBinder is where the container finds its context.
	containerBinder = "/dev/binder"
)

// binders is the binder concern of the daemon. Its zero value has no
// driver; binderReconcile fills it at start.
type binders struct {
	mu  sync.Mutex
	rel binder.Release
	// binderfs is the binderfs mount point when the kernel has binderfs.
	binderfs string
	// devices are the config's binder_devices that exist.
	devices []string
	// note says why profiles get no binder context, when they cannot.
	note string
	// hostNoted is set once the missing host device was logged.
	hostNoted bool
	ctxs      map[string]*binderCtx // by profile
}

// binderCtx is one profile's binder context, served by workcelld.
type binderCtx struct {
	device   string
	binderfs bool // device made in binderfs: removed when the context goes
	work     *binder.Conn
	host     *binder.Conn // nil when the host's device cannot be opened
	sm       *binder.ServiceManager
	res      *policyResolver
	// helperCgroup is the node helpers' cgroup, removed with the context.
	helperCgroup string
	// helperNodes holds device nodes the helpers can open, removed too.
	helperNodes string
	log         *slog.Logger
	audit       *auditFile
	auditLog    *binder.AuditLog
	cancel      context.CancelFunc
	wg          sync.WaitGroup
}

// policyResolver is the service manager's resolver: the node helpers of
// the current policy, replaced whole when the policy changes, so that a
// running profile keeps its context.
type policyResolver struct {
	p atomic.Pointer[binder.NodeHelpers]
}

var (
	_ binder.RegisteringResolver = (*policyResolver)(nil)
	_ binder.RegistrationWatcher = (*policyResolver)(nil)
)

func (r *policyResolver) Resolve(ctx context.Context, name string) (*binder.Node, bool) {
	return nil, false
}

func (r *policyResolver) Names() []string {
	if p := r.p.Load(); p != nil {
		return p.Names()
	}
	return nil
}

func (r *policyResolver) Await(ctx context.Context, name string) bool {
	if p := r.p.Load(); p != nil {
		return p.Await(ctx, name)
	}
	return false
}

func (r *policyResolver) Registrant(name string, pid int32) bool {
	if p := r.p.Load(); p != nil {
		return p.Registrant(name, pid)
	}
	return false
}

func (r *policyResolver) Registered(name string, pid int32) {
	if p := r.p.Load(); p != nil {
		p.Registered(name, pid)
	}
}

func (r *policyResolver) ServiceAdded(name string) {
	if p := r.p.Load(); p != nil {
		p.ServiceAdded(name)
	}
}

// BinderNodeCommand is workcelld's hidden subcommand that runs one binder
// node helper (binder.RunNodeHelper); RunBinderNode is its body.
const BinderNodeCommand = "binder-node"

// RunBinderNode runs a binder node helper and returns its exit code.
func RunBinderNode() int { return binder.RunNodeHelper(os.Stdin, os.Stdout, os.Stderr) }

// binderNodeCommand returns the command of a node helper: this program
// again, with an empty environment.
var binderNodeCommand = func() *exec.Cmd {
	cmd := exec.Command("/proc/self/exe", BinderNodeCommand)
	cmd.Env = []string{}
	return cmd
}

// binderState is <state-dir>/binder.json: device -> profile.
type binderState struct {
	Devices map[string]string `json:"devices"`
}

func (d *Daemon) binderLog() *slog.Logger { return d.log.With("concern", "binder") }

// binderReconcile finds the binder driver and takes over the contexts of
// the profiles whose containers were adopted. Without a driver it says so
// once; profiles then run without binder.
func (d *Daemon) binderReconcile(ctx context.Context) error {
	log := d.binderLog()
	b := &d.bnd
	rel, err := binder.ParseRelease(d.cfg.BinderRelease)
	if err != nil {
		return fmt.Errorf("binder: %w", err)
	}
	b.mu.Lock()
	b.rel = rel
	if b.ctxs == nil {
		b.ctxs = map[string]*binderCtx{}
	}
	if binder.BinderfsSupported() {
		dir := filepath.Join(d.cfg.RunDir, binderfsDir)
		if err := binder.MountBinderfs(dir); err != nil {
			log.Warn("binderfs is in the kernel but cannot be mounted", "err", err)
		} else {
			b.binderfs = dir
		}
	}
	for _, dev := range d.cfg.BinderDevices {
		if _, _, err := binder.DeviceNumbers(dev); err != nil {
			log.Warn("configured binder device is not there", "device", dev, "err", err)
			continue
		}
		b.devices = append(b.devices, dev)
	}
	switch {
	case b.binderfs != "":
		log.Info("binder contexts from binderfs", "mount", b.binderfs, "release", rel)
	case len(b.devices) > 0:
		log.Info("binder contexts from binder_devices", "devices", b.devices, "release", rel)
	default:
		b.note = "no binder driver: the kernel has no binderfs and no device of binder_devices exists"
		if len(d.cfg.BinderDevices) == 0 {
			b.note = "no binder driver: the kernel has no binderfs and binder_devices is empty"
		}
		log.Info("profiles run without binder", "reason", b.note)
	}
	b.mu.Unlock()

	// Contexts of containers that still run are taken over; what else the
	// state file names was held by a daemon that is gone.
	st := d.loadBinderState()
	for dev, name := range st.Devices {
		p := d.profiles[name]
		if p == nil {
			continue
		}
		p.mu.Lock()
		if p.ctr != nil {
			if err := d.binderOpen(ctx, name, dev); err != nil {
				log.Error("cannot take over the binder context of a running profile", "profile", name, "device", dev, "err", err)
			} else {
				log.Info("took over the binder context of a running profile", "profile", name, "device", dev)
			}
		}
		p.mu.Unlock()
	}
	d.saveBinderState()
	return nil
}

// binderUp gives a profile's container its binder context as /dev/binder.
// Without a driver or a free device the profile runs without binder.
func (d *Daemon) binderUp(ctx context.Context, p *profile, h *sandbox.HardenOptions) error {
	name := p.rec.Name
	w, _, err := d.loadBinder(name)
	if err != nil {
		return err
	}
	b := &d.bnd
	b.mu.Lock()
	bc := b.ctxs[name]
	noDriver := b.note
	dev, fromfs, note := "", false, noDriver
	if bc == nil && note == "" {
		dev, fromfs, note = b.pickLocked(name)
	}
	b.mu.Unlock()
	if bc == nil {
		if noDriver != "" && len(w.Services) > 0 {
			// Work apps that expect host services would fail in ways
			// nobody can read: say what the kernel lacks.
			return api.Errorf(api.ErrConflict, "profile %s: its binder policy allows host services, but %s"+doctorHint, name, noDriver)
		}
		if note != "" {
			if noDriver == "" { // the driver's absence was said at start
				d.binderLog().Warn("profile runs without binder", "profile", name, "reason", note)
			}
			return nil
		}
		if err := d.binderOpen(ctx, name, dev); err != nil {
			if fromfs {
				_ = binder.RemoveBinderfsDevice(b.binderfs, filepath.Base(dev))
			}
			return fmt.Errorf("binder context of profile %s: %w", name, err)
		}
		b.mu.Lock()
		bc = b.ctxs[name]
		bc.binderfs = fromfs
		b.mu.Unlock()
		d.saveBinderState()
	}
	major, minor, err := binder.DeviceNumbers(bc.device)
	if err != nil {
		d.binderDown(ctx, p)
		return fmt.Errorf("binder context of profile %s: %w", name, err)
	}
	h.Devices = append(h.Devices, specs.LinuxDevice{
		Path: containerBinder, Type: "c", Major: int64(major), Minor: int64(minor),
		FileMode: ptr(os.FileMode(0o666)), UID: ptr(uint32(0)), GID: ptr(uint32(0)),
	})
	if bc.binderfs {
		// A binderfs device opens only as itself: in a user namespace it is
		// bound, not copied (identity_linux.go).
		if h.DeviceSources == nil {
			h.DeviceSources = map[string]string{}
		}
		h.DeviceSources[containerBinder] = bc.device
	}
	return nil
}

// pickLocked chooses the device of a profile's new context: its own in
// binderfs, or the first configured device no other profile holds.
func (b *binders) pickLocked(name string) (dev string, fromfs bool, note string) {
	if b.binderfs != "" {
		path, err := binder.AddBinderfsDevice(b.binderfs, binderfsPrefix+name)
		if err == nil {
			return path, true, ""
		}
		if len(b.devices) == 0 {
			return "", false, err.Error()
		}
	}
	held := map[string]bool{}
	for _, c := range b.ctxs {
		held[c.device] = true
	}
	for _, dev := range b.devices {
		if !held[dev] {
			return dev, false, ""
		}
	}
	return "", false, fmt.Sprintf("every device of binder_devices (%s) is held by another profile", strings.Join(b.devices, ", "))
}

// binderOpen makes workcelld the manager of dev for profile name, with the
// proxy of the profile's policy as its resolver, and records it.
func (d *Daemon) binderOpen(ctx context.Context, name, dev string) (err error) {
	log := d.binderLog().With("profile", name)
	_, pol, err := d.loadBinder(name)
	if err != nil {
		return err
	}
	b := &d.bnd
	b.mu.Lock()
	rel := b.rel
	b.mu.Unlock()
	sctx, cancel := context.WithCancel(d.ctx)
	bc := &binderCtx{device: dev, res: &policyResolver{}, cancel: cancel, log: log}
	defer func() {
		if err != nil {
			bc.close()
		}
	}()
	if bc.work, err = binder.Open(ctx, dev, rel, binder.WithLogger(log)); err != nil {
		return err
	}
	if bc.audit, err = openAuditFile(d.logsDir(name), d.cfg.LogMaxBytes); err != nil {
		return err
	}
	bc.auditLog = binder.NewAuditLog(bc.audit)
	if host, herr := binder.Open(ctx, d.cfg.BinderHostDevice, rel, binder.WithMaxThreads(4), binder.WithLogger(log)); herr != nil {
		b.mu.Lock()
		noted := b.hostNoted
		b.hostNoted = true
		b.mu.Unlock()
		if !noted {
			d.binderLog().Warn("the host's binder context cannot be opened: profiles get their own contexts but no host service", "device", d.cfg.BinderHostDevice, "err", herr)
		}
	} else {
		bc.host = host
		bc.wg.Go(func() {
			if err := host.Serve(sctx); err != nil && sctx.Err() == nil {
				log.Warn("binder host connection stopped", "err", err)
			}
		})
		if err := bc.setPolicy(name, d.cfg, rel, pol, log); err != nil {
			return err
		}
	}
	bc.sm = binder.NewServiceManager(bc.work, binder.WithResolver(bc.res), binder.WithServiceManagerLogger(log),
		binder.WithServiceManagerLimits(d.cfg.binderLimits()))
	// The driver drops a context manager when its fd is released, which it
	// does a moment after the close: an earlier context of this device
	// may still be going away.
	for deadline := time.Now().Add(3 * time.Second); ; {
		_, err = bc.sm.Start(ctx)
		if err == nil || !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	bc.wg.Go(func() {
		if err := bc.work.Serve(sctx); err != nil && sctx.Err() == nil {
			log.Warn("binder context stopped serving", "err", err)
		}
	})
	b.mu.Lock()
	if b.ctxs == nil {
		b.ctxs = map[string]*binderCtx{}
	}
	b.ctxs[name] = bc
	b.mu.Unlock()
	log.Info("binder context up", "device", dev, "release", rel, "host", bc.host != nil)
	return nil
}

// setPolicy makes node helpers for pol and puts them in place of the old
// ones, whose helpers stop: their proxied services die (work apps get
// death notices) and their exports leave the host's service manager. The
// work services registered now are exported again as pol says.
func (bc *binderCtx) setPolicy(name string, cfg Config, rel binder.Release, pol binder.ProxyPolicy, log *slog.Logger) error {
	if bc.host == nil {
		return nil
	}
	// The helpers parse what work apps send: never as root (see
	// binder/helpersandbox_linux.go), and in a cgroup of the profile's
	// beside the containers'.
	sb := binder.HelperSandbox{UID: cfg.BinderHelperUID, GID: cfg.BinderHelperGID,
		NodeDir:   filepath.Join(filepath.Dir(cfg.BinderHostDevice), binderHelperNodes, name),
		MemoryMax: cfg.BinderHelperMemoryMax, PidsMax: cfg.BinderHelperPidsMax}
	if mnt := binder.Cgroup2Mount(); mnt != "" {
		sb.Cgroup = filepath.Join(mnt, cfg.CgroupParent+"-binder", name)
	} else {
		log.Warn("node helpers run without cgroup limits: no cgroup2 hierarchy is mounted")
	}
	bc.helperCgroup, bc.helperNodes = sb.Cgroup, sb.NodeDir
	nh, err := binder.NewNodeHelpers(rel, cfg.BinderHostDevice, bc.device, name, pol, binderNodeCommand,
		bc.auditLog, cfg.BinderAuditAllowed, log, binder.WithHelperLimits(cfg.binderLimits()), binder.WithHelperSandbox(sb))
	if err != nil {
		return err
	}
	if old := bc.res.p.Swap(nh); old != nil {
		old.Close()
	}
	if bc.sm != nil {
		for _, s := range bc.sm.Services() {
			nh.ServiceAdded(s)
		}
	}
	return nil
}

func (bc *binderCtx) close() {
	bc.cancel()
	if nh := bc.res.p.Swap(nil); nh != nil {
		nh.Close()
	}
	// Closing the connections ends their loopers; the driver then drops
	// this process as the context's manager.
	if bc.work != nil {
		bc.work.Close()
	}
	if bc.host != nil {
		bc.host.Close()
	}
	bc.wg.Wait()
	if bc.audit != nil {
		bc.audit.Close()
	}
	if err := binder.RemoveHelperCgroup(bc.helperCgroup); err != nil {
		bc.log.Warn("binder node helpers' cgroup stays", "err", err)
	}
	if err := binder.RemoveHelperNodes(bc.helperNodes); err != nil {
		bc.log.Warn("binder node helpers' device nodes stay", "err", err)
	}
}

// binderDown closes a profile's binder context, after its container
// stopped (or its prepared container was discarded).
func (d *Daemon) binderDown(ctx context.Context, p *profile) {
	b := &d.bnd
	b.mu.Lock()
	bc := b.ctxs[p.rec.Name]
	delete(b.ctxs, p.rec.Name)
	fsdir := b.binderfs
	b.mu.Unlock()
	if bc == nil {
		return
	}
	bc.close()
	if bc.binderfs {
		if err := binder.RemoveBinderfsDevice(fsdir, filepath.Base(bc.device)); err != nil {
			d.binderLog().Warn("remove binderfs device", "profile", p.rec.Name, "err", err)
		}
	}
	d.saveBinderState()
	d.binderLog().Info("binder context down", "profile", p.rec.Name, "device", bc.device)
}

// binderRemove runs for a profile being removed: its context is down by
// then; its files go with the profile's folder.
func (d *Daemon) binderRemove(ctx context.Context, p *profile) error {
	d.binderDown(ctx, p)
	return nil
}

// closeBinder closes every context when the daemon exits; running
// containers keep their devices and the next daemon becomes their manager
// again.
func (d *Daemon) closeBinder() {
	b := &d.bnd
	b.mu.Lock()
	ctxs := b.ctxs
	b.ctxs = map[string]*binderCtx{}
	b.mu.Unlock()
	for _, bc := range ctxs {
		bc.close()
	}
}

func (d *Daemon) binderPath(name string) string {
	return filepath.Join(d.store.dir(name), binderFile)
}

// loadBinder reads a profile's binder policy; none allows no host service.
func (d *Daemon) loadBinder(name string) (api.BinderPolicy, binder.ProxyPolicy, error) {
	raw, err := os.ReadFile(d.binderPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return api.BinderPolicy{Services: []api.BinderService{}}, binder.ProxyPolicy{}, nil
	}
	if err != nil {
		return api.BinderPolicy{}, binder.ProxyPolicy{}, fmt.Errorf("read binder policy of %s: %w", name, err)
	}
	var w api.BinderPolicy
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return api.BinderPolicy{}, binder.ProxyPolicy{}, fmt.Errorf("binder policy %s is corrupt: %w", d.binderPath(name), err)
	}
	pol, err := binderFromWire(w)
	if err != nil {
		return api.BinderPolicy{}, binder.ProxyPolicy{}, fmt.Errorf("binder policy %s: %w", d.binderPath(name), err)
	}
	if w.Services == nil {
		w.Services = []api.BinderService{}
	}
	return w, pol, nil
}

func (d *Daemon) saveBinder(name string, w api.BinderPolicy) error {
	b, err := json.MarshalIndent(w, "", "  ")
	if err != nil {
		return fmt.Errorf("encode binder policy of %s: %w", name, err)
	}
	return d.store.writeAtomic(d.binderPath(name), append(b, '\n'))
}

func (d *Daemon) loadBinderState() binderState {
	st := binderState{Devices: map[string]string{}}
	raw, err := os.ReadFile(filepath.Join(d.cfg.StateDir, binderStateFile))
	if err == nil {
		if err := json.Unmarshal(raw, &st); err != nil {
			d.binderLog().Warn("binder device records are corrupt; starting without them", "err", err)
		}
	}
	if st.Devices == nil {
		st.Devices = map[string]string{}
	}
	return st
}

// saveBinderState records which device each up context holds.
func (d *Daemon) saveBinderState() {
	b := &d.bnd
	st := binderState{Devices: map[string]string{}}
	b.mu.Lock()
	for name, bc := range b.ctxs {
		st.Devices[bc.device] = name
	}
	b.mu.Unlock()
	raw, _ := json.MarshalIndent(st, "", "  ")
	if err := d.store.writeAtomic(filepath.Join(d.cfg.StateDir, binderStateFile), append(raw, '\n')); err != nil {
		d.binderLog().Warn("record binder devices", "err", err)
	}
}

// Binder reports a profile's binder context: its own services and the
// host services its policy lets it see.
func (d *Daemon) Binder(ctx context.Context, name string) (api.Binder, error) {
	p, err := d.lookup(name)
	if err != nil {
		return api.Binder{}, err
	}
	defer p.mu.Unlock()
	return d.binderLocked(ctx, name)
}

func (d *Daemon) binderLocked(ctx context.Context, name string) (api.Binder, error) {
	w, _, err := d.loadBinder(name)
	if err != nil {
		return api.Binder{}, err
	}
	out := api.Binder{Name: name, Policy: w, Services: []string{}, Host: []api.BinderHostService{}}
	b := &d.bnd
	b.mu.Lock()
	bc, rel, note := b.ctxs[name], b.rel, b.note
	b.mu.Unlock()
	var host *binder.Conn
	if bc != nil {
		out.Active, out.Device, out.Release = true, bc.device, rel.String()
		out.Services = bc.sm.Services()
		host = bc.host
		if nh := bc.res.p.Load(); nh != nil {
			out.Exported = nh.Exports()
		}
	} else {
		out.Note = note
		if note == "" {
			out.Note = "the profile has a binder context only while its container is prepared or runs"
		}
		if rel != 0 && len(w.Services) > 0 {
			// Ask the host's context through a connection of this request.
			if c, err := binder.Open(ctx, d.cfg.BinderHostDevice, rel, binder.WithMaxThreads(0)); err == nil {
				defer c.Close()
				host = c
			}
		}
	}
	var present map[string]bool
	if host != nil && len(w.Services) > 0 {
		if names, err := binder.ListServices(ctx, host); err == nil {
			present = map[string]bool{}
			for _, n := range names {
				present[n] = true
			}
		} else {
			d.binderLog().Warn("cannot list the host's binder services", "profile", name, "err", err)
		}
	}
	for _, s := range w.Services {
		hs := api.BinderHostService{BinderService: s}
		if present != nil {
			hs.Present = ptr(present[s.Name])
		}
		out.Host = append(out.Host, hs)
	}
	return out, nil
}

// SetBinderPolicy replaces a profile's binder policy. A profile whose
// context is up keeps it: its proxy is replaced, so the next lookup of a
// host service follows the new policy (services looked up before answer
// DEAD_OBJECT and must be looked up again). A prepared container is made
// anew.
func (d *Daemon) SetBinderPolicy(ctx context.Context, name string, w api.BinderPolicy) (api.Binder, error) {
	pol, err := binderFromWire(w)
	if err != nil {
		return api.Binder{}, err
	}
	if w.Services == nil {
		w.Services = []api.BinderService{}
	}
	p, err := d.lookup(name)
	if err != nil {
		return api.Binder{}, err
	}
	defer p.mu.Unlock()
	if err := d.saveBinder(name, w); err != nil {
		return api.Binder{}, err
	}
	if p.standby != nil {
		d.dropStandby(ctx, p)
		d.kickStandby(p)
	}
	b := &d.bnd
	b.mu.Lock()
	bc, rel := b.ctxs[name], b.rel
	b.mu.Unlock()
	if bc != nil {
		log := d.binderLog().With("profile", name)
		if err := bc.setPolicy(name, d.cfg, rel, pol, log); err != nil {
			return api.Binder{}, fmt.Errorf("apply binder policy of %s: %w", name, err)
		}
	}
	d.binderLog().Info("binder policy changed", "profile", name, "services", len(w.Services), "exports", len(w.Exports), "live", bc != nil)
	return d.binderLocked(ctx, name)
}

// binderFromWire parses the API's policy, naming the first bad value.
func binderFromWire(w api.BinderPolicy) (binder.ProxyPolicy, error) {
	bad := func(format string, args ...any) (binder.ProxyPolicy, error) {
		return binder.ProxyPolicy{}, api.Errorf(api.ErrInvalidArgument, format, args...)
	}
	var pol binder.ProxyPolicy
	// entry checks what a service and an export both need: a name, a
	// descriptor and at least one code.
	entry := func(at, name, descriptor string, in []string) ([]binder.CodeRange, error) {
		switch {
		case name == "":
			return nil, api.Errorf(api.ErrInvalidArgument, "%s.name: required", at)
		case descriptor == "":
			return nil, api.Errorf(api.ErrInvalidArgument, "%s (%s).descriptor: required", at, name)
		case len(in) == 0:
			return nil, api.Errorf(api.ErrInvalidArgument, "%s (%s).codes: at least one code is required", at, name)
		}
		codes, err := parseCodes(in)
		if err != nil {
			return nil, api.Errorf(api.ErrInvalidArgument, "%s (%s).codes: %v", at, name, err)
		}
		return codes, nil
	}
	for i, s := range w.Services {
		at := fmt.Sprintf("services[%d]", i)
		codes, err := entry(at, s.Name, s.Descriptor, s.Codes)
		if err != nil {
			return binder.ProxyPolicy{}, err
		}
		sp := binder.ServicePolicy{Name: s.Name, Descriptor: s.Descriptor, Codes: codes, AllowFDs: s.AllowFDs}
		for j, o := range s.Objects {
			if o.Descriptor == "" {
				return bad("%s (%s).objects[%d].descriptor: required", at, s.Name, j)
			}
			oc, err := parseCodes(o.Codes)
			if err != nil {
				return bad("%s (%s).objects[%d].codes: %v", at, s.Name, j, err)
			}
			sp.Objects = append(sp.Objects, binder.InterfacePolicy{Descriptor: o.Descriptor, Codes: oc})
		}
		pol.Services = append(pol.Services, sp)
	}
	for i, e := range w.Exports {
		codes, err := entry(fmt.Sprintf("exports[%d]", i), e.Name, e.Descriptor, e.Codes)
		if err != nil {
			return binder.ProxyPolicy{}, err
		}
		pol.Exports = append(pol.Exports, binder.ExportPolicy{Name: e.Name, HostName: e.HostName,
			Descriptor: e.Descriptor, Codes: codes, AllowFDs: e.AllowFDs})
	}
	if err := pol.Validate(); err != nil {
		return bad("%s", strings.TrimPrefix(err.Error(), "binder: "))
	}
	return pol, nil
}

// parseCodes reads "N" and "FIRST-LAST" in the user range of transaction
// codes.
func parseCodes(in []string) ([]binder.CodeRange, error) {
	var out []binder.CodeRange
	num := func(s string) (uint32, error) {
		v, err := strconv.ParseUint(strings.TrimSpace(s), 0, 32)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", s)
		}
		if v < uint64(binder.FirstCallTransaction) || v > uint64(binder.LastCallTransaction) {
			return 0, fmt.Errorf("%d outside %d-%d (meta transactions are never forwarded)", v, binder.FirstCallTransaction, binder.LastCallTransaction)
		}
		return uint32(v), nil
	}
	for _, c := range in {
		first, last, isRange := strings.Cut(c, "-")
		a, err := num(first)
		if err != nil {
			return nil, err
		}
		z := a
		if isRange {
			if z, err = num(last); err != nil {
				return nil, err
			}
			if z < a {
				return nil, fmt.Errorf("range %q runs backwards", c)
			}
		}
		out = append(out, binder.CodeRange{First: a, Last: z})
	}
	return out, nil
}

// auditFile is the profile's audit log, capped: past max bytes it moves
// to binder-audit.log.1 and a new one begins. workcelld is its only
// writer.
type auditFile struct {
	mu       sync.Mutex
	dir      string
	max      int64
	f        *os.File
	size     int64
	rotating bool
}

func openAuditFile(dir string, max int64) (*auditFile, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("make logs folder %s: %w", dir, err)
	}
	a := &auditFile{dir: dir, max: max}
	if err := a.open(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *auditFile) open() error {
	f, err := os.OpenFile(filepath.Join(a.dir, binderAuditLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("open binder audit log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open binder audit log: %w", err)
	}
	a.f, a.size = f, st.Size()
	return nil
}

func (a *auditFile) Write(b []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return 0, os.ErrClosed
	}
	if a.size > 0 && a.size+int64(len(b)) > a.max {
		a.f.Close()
		a.f = nil
		if err := os.Rename(filepath.Join(a.dir, binderAuditLog), filepath.Join(a.dir, binderAuditOld)); err != nil {
			return 0, fmt.Errorf("rotate binder audit log: %w", err)
		}
		if err := a.open(); err != nil {
			return 0, err
		}
	}
	n, err := a.f.Write(b)
	a.size += int64(n)
	return n, err
}

func (a *auditFile) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}

// copyAudit writes the audit records (older file first) to w; with follow
// it then keeps writing new ones, across rotations, until ctx ends.
func copyAudit(ctx context.Context, dir string, follow bool, w io.Writer, flush func()) error {
	return copyFollow(ctx, dir, binderAuditLog, binderAuditOld, follow, w, flush)
}

// binderRoutes adds the binder endpoints: the owner may look and follow
// the audit records; only root or the system uid may change the policy.
func (s *Server) binderRoutes(h route) {
	v := "/" + api.Version
	h("GET "+v+"/profiles/{name}/binder", roleOwner, "", func(w http.ResponseWriter, r *http.Request) error {
		b, err := s.d.Binder(r.Context(), r.PathValue("name"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, b)
	})
	h("PUT "+v+"/profiles/{name}/binder", roleAdmin, "change binder policies", func(w http.ResponseWriter, r *http.Request) error {
		var req api.BinderPolicy
		if err := decodeBody(r, &req, true); err != nil {
			return err
		}
		b, err := s.d.SetBinderPolicy(r.Context(), r.PathValue("name"), req)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, b)
	})
	h("GET "+v+"/profiles/{name}/binder/audit", roleOwner, "", func(w http.ResponseWriter, r *http.Request) error {
		// A registered reader: a lock, wipe or removal ends it.
		name := r.PathValue("name")
		ctx, done, err := s.d.readLogs(r.Context(), name)
		if err != nil {
			return err
		}
		defer done()
		follow := r.URL.Query().Get("follow") == "true" || r.URL.Query().Get("follow") == "1"
		return s.stream(ctx, w, r, "application/x-ndjson", func(ctx context.Context, w io.Writer, flush func()) error {
			return copyAudit(ctx, s.d.logsDir(name), follow, w, flush)
		})
	})
}
