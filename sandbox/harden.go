package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Limits are the resource limits of a container. Zero means unlimited.
type Limits struct {
	MemoryBytes int64
	CPUMillis   int64 // 1000 = one CPU
	Pids        int64
}

// HardenOptions are what the daemon, not the bundle, decides. Everything here
// is trusted: it is applied after validation.
type HardenOptions struct {
	ID string
	// Hostname is used when the bundle sets none; default the ID.
	Hostname string
	Limits   Limits
	// NetNSPath is joined as the container's network namespace; empty means
	// a fresh, empty one.
	NetNSPath string
	// CgroupParent is the cgroup (cgroupfs path) under which the container's
	// cgroup ID is made; default DefaultCgroupParent.
	CgroupParent string
	// Mounts are the daemon's own (the binder node, resolv.conf): trusted,
	// mounted after the bundle's, which Harden rebuilds from runc's
	// defaults.
	Mounts  []specs.Mount
	Devices []specs.LinuxDevice
	// Rootfs, when set, is the absolute path the container runs on
	// instead of the bundle's root.path (trusted, from the daemon: e.g. the
	// profile's overlay of the image and its encrypted upper layer).
	Rootfs string
	// ExtraCapabilities are granted beyond AllowedCapabilities, into the
	// bounding, effective and permitted sets, after the bundle was
	// validated: only the daemon sets them, never a bundle. The daemon
	// grants CAP_NET_ADMIN to a profile in vpn-lockdown mode, whose VPN
	// client must make its tunnel; the capability is confined to the
	// profile's own network namespace, and the host's rules, not the
	// profile's, are the enforcement.
	ExtraCapabilities []string
	// SELinuxLabel, SELinuxMountLabel and AppArmorProfile are the
	// container's labels, from the daemon's config; a bundle's own are
	// refused. Empty means none.
	SELinuxLabel      string
	SELinuxMountLabel string
	AppArmorProfile   string
	// OOMScoreAdj is the least oom_score_adj the container's processes get
	// (a bundle may ask for more); 0 means DefaultOOMScoreAdj.
	OOMScoreAdj int
	// UserNS, when set, runs the container in a user namespace: its root
	// is an unprivileged host uid of the profile's range. Devices are then
	// bind-mounted from the host (a user namespace cannot mknod): from
	// DeviceSources[path] where the host node has another path than the
	// container's, else from the same path.
	UserNS        *UserNS
	DeviceSources map[string]string
	// UIDRange, when set and UserNS is not (a kernel without user
	// namespaces, or the daemon's userns "off"), runs work under its
	// profile's id range without a mapping: the bundle's process.user
	// uid and gid (and additionalGids) u become UIDRange.HostID+u, the
	// profile's files are owned by the range, and a non-root uid keeps no
	// capability across exec (effective, permitted, inheritable and
	// ambient are emptied; the bounding set stays). ExtraCapabilities are
	// refused: without a user namespace they would be the host's. Devices
	// are bind-mounted from DeviceSources as with UserNS.
	UIDRange *IDMap
	// SharedPID runs the container in the host's pid namespace, for
	// kernels without pid namespaces: its /proc gets ProcOptions (what
	// ProbeProcOptions answered), its init is not pid 1. Work must not be
	// host root then: UIDRange is required (a user namespace cannot mount
	// the host pid namespace's procfs).
	SharedPID   bool
	ProcOptions []string
	// NoMqueue leaves out the bundle's /dev/mqueue mount: the kernel has
	// no POSIX message queues (GKI: `# CONFIG_POSIX_MQUEUE is not set`),
	// and the mount would fail the start (ProbeMqueue).
	NoMqueue bool
}

// DefaultOOMScoreAdj is the container's oom_score_adj unless the daemon or
// the bundle asks for more. Without one the container inherits the daemon's,
// and Android's init runs its services at -1000: the work profile would then
// be the last thing the kernel kills. 800 puts work below the personal
// side's foreground, visible and service apps (lmkd gives them 0 to 500)
// and above its cached ones (900 and up).
const DefaultOOMScoreAdj = 800

// MaxConfigBytes bounds a bundle's config.json: the runtime-spec's default is
// about 3 KiB, and the daemon reads it whole.
const MaxConfigBytes = 1 << 20

// DefaultCgroupParent is the cgroup under which containers are placed unless
// HardenOptions.CgroupParent says otherwise.
const DefaultCgroupParent = "/workcell"

// DefaultEnv is the environment of processes that give none.
var DefaultEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

// cpuPeriod is the CFS period used to express CPUMillis as a quota.
const cpuPeriod = 100000 // µs

// minCPUQuota is the smallest quota the kernel accepts (1 ms).
const minCPUQuota = 1000 // µs

// AllowedCapabilities is Docker's default capability set minus NET_RAW and
// MKNOD: the most a work container may hold.
var AllowedCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE", "CAP_SETFCAP",
}

// Runc's default masked and read-only paths (runc spec), plus the two that
// Docker and Kubernetes mask since (/proc/interrupts, powercap: energy
// counters are a side channel), which Harden adds to the bundle's own.
var (
	defaultMaskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
		"/proc/sched_debug", "/sys/firmware", "/proc/scsi",
		"/proc/interrupts", "/sys/devices/virtual/powercap",
	}
	defaultReadonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// namespacedSysctlPrefixes are the sysctls that belong to a namespace the
// container owns (net, ipc); anything else would change the host.
var namespacedSysctlPrefixes = []string{"net.", "kernel.shm", "kernel.msg", "fs.mqueue."}

var namespacedSysctlExact = []string{"kernel.sem"}

// LoadBundle reads dir/config.json, checks that root.path resolves inside the
// bundle and exists, and runs Validate.
func LoadBundle(dir string) (*specs.Spec, error) {
	name := filepath.Join(dir, "config.json")
	data, err := readConfig(name)
	if err != nil {
		return nil, fmt.Errorf("load bundle %s: %w", dir, err)
	}
	spec, err := decodeSpec(name, data)
	if err != nil {
		return nil, err
	}
	if err := Validate(spec); err != nil {
		return nil, fmt.Errorf("load bundle %s: %w", dir, err)
	}
	rootfs, err := rootfsPath(dir, spec)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(rootfs)
	if err != nil {
		return nil, fmt.Errorf("load bundle %s: root.path: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("load bundle %s: root.path: %s is not a directory: %w", dir, rootfs, ErrInvalidSpec)
	}
	return spec, nil
}

// readConfig reads a config.json of at most MaxConfigBytes.
func readConfig(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxConfigBytes {
		return nil, fmt.Errorf("%s: larger than %d KiB: %w", name, MaxConfigBytes>>10, ErrInvalidSpec)
	}
	return data, nil
}

// decodeSpec parses config.json strictly: unknown fields and trailing data
// are errors, and syntax errors name the file and byte offset.
func decodeSpec(name string, data []byte) (*specs.Spec, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var spec specs.Spec
	if err := dec.Decode(&spec); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return nil, fmt.Errorf("%s: offset %d: %w: %w", name, syn.Offset, err, ErrInvalidSpec)
		case errors.As(err, &typ):
			return nil, fmt.Errorf("%s: offset %d: field %s: %w: %w", name, typ.Offset, typ.Field, err, ErrInvalidSpec)
		default:
			return nil, fmt.Errorf("%s: offset %d: %w: %w", name, dec.InputOffset(), err, ErrInvalidSpec)
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s: offset %d: trailing data after the JSON object: %w", name, dec.InputOffset(), ErrInvalidSpec)
	}
	return &spec, nil
}

// rootfsPath returns the absolute rootfs of a validated spec, refusing one
// that resolves (through symlinks) outside the bundle.
func rootfsPath(bundleDir string, spec *specs.Spec) (string, error) {
	abs, err := filepath.Abs(bundleDir)
	if err != nil {
		return "", fmt.Errorf("bundle %s: %w", bundleDir, err)
	}
	bundleReal, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("bundle %s: %w", bundleDir, err)
	}
	p := filepath.Join(bundleReal, spec.Root.Path)
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("bundle %s: root.path: %w", bundleDir, err)
	}
	rel, err := filepath.Rel(bundleReal, real)
	if err != nil || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("bundle %s: %w", bundleDir, &FieldError{"root.path", fmt.Sprintf("%q resolves to %s, outside the bundle", spec.Root.Path, real)})
	}
	return real, nil
}

// Validate refuses anything in spec that would weaken the sandbox. It returns
// all violations joined; each is a *FieldError naming its field, and each
// wraps ErrInvalidSpec.
//
// User and time namespaces are refused: whether the work container gets a
// user namespace, and its mapping, is the daemon's decision
// (HardenOptions.UserNS), and a time namespace buys nothing here.
func Validate(spec *specs.Spec) error {
	if spec == nil {
		return &FieldError{"(root)", "no spec"}
	}
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, &FieldError{field, fmt.Sprintf(format, a...)})
	}

	if spec.Root == nil || spec.Root.Path == "" {
		bad("root.path", "missing")
	} else if filepath.IsAbs(spec.Root.Path) || !filepath.IsLocal(spec.Root.Path) {
		bad("root.path", "%q must be a relative path inside the bundle", spec.Root.Path)
	}
	if spec.Hooks != nil {
		bad("hooks", "hooks run on the host as root and are not allowed")
	}
	if spec.Windows != nil || spec.Solaris != nil || spec.VM != nil || spec.ZOS != nil || spec.FreeBSD != nil {
		bad("(root)", "only a linux container is supported")
	}

	validateProcess(spec.Process, bad)
	validateMounts(spec.Mounts, bad)
	validateAnnotations(spec.Annotations, bad)

	if l := spec.Linux; l != nil {
		validateLinux(l, bad)
	}
	return errors.Join(errs...)
}

// interpretedAnnotations are annotation prefixes that runtimes read as
// settings: libcontainer's systemd unit properties and CRIU options, crun's
// run.oci.* (a bundle may meet another runtime in a bench or a debug run).
// "bundle" is libcontainer's own label of the bundle's path.
var interpretedAnnotations = []string{"org.systemd.property.", "org.criu.", "run.oci."}

func validateAnnotations(a map[string]string, bad func(field, format string, a ...any)) {
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if k == "bundle" || slices.ContainsFunc(interpretedAnnotations, func(p string) bool { return strings.HasPrefix(k, p) }) {
			bad("annotations", "%s is read by container runtimes as a setting and is not allowed", bounded(k))
		}
	}
}

func validateProcess(p *specs.Process, bad func(field, format string, a ...any)) {
	if p == nil {
		bad("process", "missing")
		return
	}
	if len(p.Args) == 0 && p.CommandLine == "" {
		bad("process.args", "missing")
	}
	if p.Terminal {
		bad("process.terminal", "a terminal is not supported; init's output goes to the daemon's log")
	}
	if p.Capabilities != nil {
		sets := []struct {
			name string
			caps []string
		}{
			{"bounding", p.Capabilities.Bounding},
			{"effective", p.Capabilities.Effective},
			{"permitted", p.Capabilities.Permitted},
			{"inheritable", p.Capabilities.Inheritable},
			{"ambient", p.Capabilities.Ambient},
		}
		for _, s := range sets {
			for i, c := range s.caps {
				if !slices.Contains(AllowedCapabilities, c) {
					bad(fmt.Sprintf("process.capabilities.%s[%d]", s.name, i), "capability %s is not allowed", c)
				}
			}
		}
	}
	// Labels are the phone's policy, not the image's: an image could
	// otherwise pick the most privileged domain the host's policy has.
	if p.ApparmorProfile != "" {
		bad("process.apparmorProfile", "%s: the AppArmor profile comes from the daemon's config (apparmor_profile)", bounded(p.ApparmorProfile))
	}
	if p.SelinuxLabel != "" {
		bad("process.selinuxLabel", "%s: the SELinux label comes from the daemon's config (selinux_label)", bounded(p.SelinuxLabel))
	}
	if p.OOMScoreAdj != nil && *p.OOMScoreAdj < 0 {
		bad("process.oomScoreAdj", "%d would shield the container from the OOM killer", *p.OOMScoreAdj)
	} else if p.OOMScoreAdj != nil && *p.OOMScoreAdj > 1000 {
		bad("process.oomScoreAdj", "%d is above the kernel's 1000", *p.OOMScoreAdj)
	}
	validateRlimits(p.Rlimits, bad)
	if n := len(p.User.AdditionalGids); n > maxGroups {
		bad("process.user.additionalGids", "%d groups exceed the kernel's %d", n, maxGroups)
	}
	if s := p.Scheduler; s != nil {
		switch s.Policy {
		case specs.SchedFIFO, specs.SchedRR, specs.SchedDeadline:
			bad("process.scheduler.policy", "real-time policy %s is not allowed", s.Policy)
		}
		// The runtime applies these as root: a negative nice would put
		// work ahead of the personal side.
		if s.Nice < 0 {
			bad("process.scheduler.nice", "%d would raise the container above the personal side's priority", s.Nice)
		}
		for i, fl := range s.Flags {
			if fl != specs.SchedFlagResetOnFork {
				bad(fmt.Sprintf("process.scheduler.flags[%d]", i), "flag %s is not allowed", bounded(string(fl)))
			}
		}
	}
	if io := p.IOPriority; io != nil && io.Class == specs.IOPRIO_CLASS_RT {
		bad("process.ioPriority.class", "real-time I/O class is not allowed")
	}
}

func validateLinux(l *specs.Linux, bad func(field, format string, a ...any)) {
	for i, ns := range l.Namespaces {
		f := fmt.Sprintf("linux.namespaces[%d]", i)
		if ns.Path != "" {
			bad(f+".path", "joining an existing namespace is not allowed")
		}
		switch ns.Type {
		case specs.PIDNamespace, specs.NetworkNamespace, specs.MountNamespace,
			specs.IPCNamespace, specs.UTSNamespace, specs.CgroupNamespace:
		case specs.UserNamespace, specs.TimeNamespace:
			bad(f+".type", "%s namespace is not supported", ns.Type)
		default:
			bad(f+".type", "unknown namespace type %q", ns.Type)
		}
	}
	if len(l.UIDMappings) > 0 {
		bad("linux.uidMappings", "the user namespace and its mapping are the daemon's to decide")
	}
	if len(l.GIDMappings) > 0 {
		bad("linux.gidMappings", "the user namespace and its mapping are the daemon's to decide")
	}
	for i, d := range l.Devices {
		bad(fmt.Sprintf("linux.devices[%d]", i), "device %s is not allowed; devices come from the daemon", d.Path)
	}
	if r := l.Resources; r != nil {
		validateResources(r, bad)
	}
	for k := range l.Sysctl {
		if !slices.Contains(namespacedSysctlExact, k) && !slices.ContainsFunc(namespacedSysctlPrefixes, func(p string) bool { return strings.HasPrefix(k, p) }) {
			bad("linux.sysctl."+k, "not a namespaced sysctl; it would change the host")
		}
	}
	if l.Seccomp != nil {
		bad("linux.seccomp", "a custom seccomp profile is not allowed; the default profile is enforced")
	}
	switch l.RootfsPropagation {
	case "", "private", "rprivate", "slave", "rslave":
	default:
		bad("linux.rootfsPropagation", "%q would propagate mounts to the host", l.RootfsPropagation)
	}
	if len(l.NetDevices) > 0 {
		bad("linux.netDevices", "moving host network devices into the container is not allowed")
	}
	if l.IntelRdt != nil {
		bad("linux.intelRdt", "not supported")
	}
	if l.MountLabel != "" {
		bad("linux.mountLabel", "%s: the SELinux mount label comes from the daemon's config (selinux_mount_label)", bounded(l.MountLabel))
	}
	if len(l.TimeOffsets) > 0 {
		bad("linux.timeOffsets", "time namespaces are not supported")
	}
}

// maxGroups is the kernel's NGROUPS_MAX.
const maxGroups = 65536

// validateResources accepts from a bundle only what the daemon replaces by
// the profile's limits (memory, swap and reservation, CPU shares and quota,
// pids) and device rules that deny: everything else is a raw cgroup knob
// that could lift the daemon's limits, pin memory, or reach a cgroup other
// than the profile's, and is refused by name.
func validateResources(r *specs.LinuxResources, bad func(field, format string, a ...any)) {
	for i, d := range r.Devices {
		if d.Allow {
			bad(fmt.Sprintf("linux.resources.devices[%d].allow", i), "allowing device access is not allowed")
		}
	}
	if len(r.Unified) > 0 {
		keys := slices.Sorted(maps.Keys(r.Unified))
		if len(keys) > 3 {
			keys = append(keys[:3], "...")
		}
		for i := range keys {
			keys[i] = bounded(keys[i])
		}
		bad("linux.resources.unified", "raw cgroup files (%s) are not allowed: the daemon owns the profile's cgroup", strings.Join(keys, ", "))
	}
	if r.BlockIO != nil {
		bad("linux.resources.blockIO", "block I/O weights and throttles of host devices are not allowed")
	}
	if len(r.HugepageLimits) > 0 {
		bad("linux.resources.hugepageLimits", "hugepage limits are not allowed")
	}
	if len(r.Rdma) > 0 {
		bad("linux.resources.rdma", "RDMA limits are not allowed")
	}
	if r.Network != nil {
		bad("linux.resources.network", "net_cls/net_prio ids are not allowed: they would tag work's traffic for the host's own rules")
	}
	if m := r.Memory; m != nil {
		refuse := map[string]bool{
			"kernel": m.Kernel != nil, "kernelTCP": m.KernelTCP != nil, "swappiness": m.Swappiness != nil,
			"disableOOMKiller": m.DisableOOMKiller != nil, "useHierarchy": m.UseHierarchy != nil,
			"checkBeforeUpdate": m.CheckBeforeUpdate != nil,
		}
		for _, k := range slices.Sorted(maps.Keys(refuse)) {
			if refuse[k] {
				bad("linux.resources.memory."+k, "not allowed: the daemon sets the profile's memory limits")
			}
		}
	}
	if c := r.CPU; c != nil {
		if c.RealtimeRuntime != nil || c.RealtimePeriod != nil {
			bad("linux.resources.cpu.realtimeRuntime", "real-time CPU time is not allowed")
		}
		if c.Burst != nil {
			bad("linux.resources.cpu.burst", "a burst would lift the daemon's CPU quota")
		}
		if c.Cpus != "" || c.Mems != "" {
			bad("linux.resources.cpu.cpus", "CPU and memory node placement is the daemon's")
		}
		if c.Idle != nil {
			bad("linux.resources.cpu.idle", "not allowed: the daemon sets the profile's CPU limits")
		}
	}
}

// Harden validates spec and returns the spec the daemon actually runs: a deep
// copy with the sandbox's defaults enforced and opts applied. Root.Path of the
// result is absolute.
func Harden(spec *specs.Spec, bundleDir string, opts HardenOptions) (*specs.Spec, error) {
	if opts.ID == "" {
		return nil, fmt.Errorf("harden: no container id: %w", ErrInvalidSpec)
	}
	if err := Validate(spec); err != nil {
		return nil, fmt.Errorf("harden %s: %w", opts.ID, err)
	}
	if err := validateLimits(opts.Limits); err != nil {
		return nil, fmt.Errorf("harden %s: %w", opts.ID, err)
	}
	rootfs, err := rootfsPath(bundleDir, spec)
	if err != nil {
		return nil, fmt.Errorf("harden %s: %w", opts.ID, err)
	}
	s, err := deepCopy(spec)
	if err != nil {
		return nil, fmt.Errorf("harden %s: %w", opts.ID, err)
	}
	s.Root.Path = rootfs
	if opts.Rootfs != "" {
		if !filepath.IsAbs(opts.Rootfs) {
			return nil, fmt.Errorf("harden %s: rootfs %q is not absolute: %w", opts.ID, opts.Rootfs, ErrInvalidSpec)
		}
		s.Root.Path = opts.Rootfs
	}
	if s.Version == "" {
		s.Version = specs.Version
	}
	if s.Hostname == "" {
		s.Hostname = opts.Hostname
		if s.Hostname == "" {
			s.Hostname = opts.ID
		}
	}

	p := s.Process
	p.Terminal = false
	p.NoNewPrivileges = true
	if len(p.Env) == 0 {
		p.Env = slices.Clone(DefaultEnv)
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	p.Capabilities = hardenCapabilities(p.Capabilities)
	if err := hardenProcessLimits(p, opts); err != nil {
		return nil, fmt.Errorf("harden %s: %w", opts.ID, err)
	}
	if err := hardenUIDRange(p, opts); err != nil {
		return nil, fmt.Errorf("harden %s: %w", opts.ID, err)
	}
	if ranged(opts) && len(opts.ExtraCapabilities) > 0 {
		// Without a user namespace a capability acts in the host's: the
		// profile's network namespace is the host user namespace's, so
		// CAP_NET_ADMIN there creates links in (or moves them out of)
		// any other network namespace named by a pid, the phone's too.
		return nil, fmt.Errorf("harden %s: capability %s cannot be granted without a user namespace: it would act in the host's user namespace: %w",
			opts.ID, opts.ExtraCapabilities[0], ErrInvalidSpec)
	}
	for _, c := range opts.ExtraCapabilities {
		if !validCapName(c) {
			return nil, fmt.Errorf("harden %s: extra capability %q is not a CAP_ name: %w", opts.ID, c, ErrInvalidSpec)
		}
		for _, set := range []*[]string{&p.Capabilities.Bounding, &p.Capabilities.Effective, &p.Capabilities.Permitted} {
			if !slices.Contains(*set, c) {
				*set = append(*set, c)
			}
		}
	}

	// The daemon's mounts (binder node, resolv.conf...) are trusted.
	s.Mounts = append(hardenMounts(s.Mounts, opts), opts.Mounts...)
	if err := hardenSharedPID(s, opts); err != nil {
		return nil, fmt.Errorf("harden %s: %w", opts.ID, err)
	}

	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	l := s.Linux
	l.Namespaces = []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.MountNamespace},
		{Type: specs.UTSNamespace},
		{Type: specs.IPCNamespace},
		{Type: specs.NetworkNamespace, Path: opts.NetNSPath},
		{Type: specs.CgroupNamespace},
	}
	if opts.SharedPID {
		l.Namespaces = l.Namespaces[1:]
	}
	if err := hardenUserNS(s, opts); err != nil {
		return nil, fmt.Errorf("harden %s: %w", opts.ID, err)
	}
	l.MaskedPaths = union(defaultMaskedPaths, l.MaskedPaths)
	l.ReadonlyPaths = union(defaultReadonlyPaths, l.ReadonlyPaths)
	if slices.ContainsFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/sys/fs/cgroup" }) {
		// On cgroup v1 libcontainer makes /sys/fs/cgroup a writable tmpfs
		// and mounts each controller read-only inside it.
		l.ReadonlyPaths = union(l.ReadonlyPaths, []string{"/sys/fs/cgroup"})
	}
	l.MountLabel = opts.SELinuxMountLabel

	// Rebuilt, not edited: the bundle's validated resources hold nothing
	// the daemon keeps.
	l.Resources = &specs.LinuxResources{}
	r := l.Resources
	// Deny all, then libcontainer's defaults (specconv.AllowedDevices) and
	// the daemon's own devices are allowed.
	r.Devices = []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	if opts.UserNS == nil && opts.UIDRange == nil {
		l.Devices = slices.Clone(opts.Devices)
	}
	for _, d := range opts.Devices {
		major, minor := d.Major, d.Minor
		r.Devices = append(r.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: d.Type, Major: &major, Minor: &minor, Access: "rwm"})
	}
	if m := opts.Limits.MemoryBytes; m > 0 {
		r.Memory = &specs.LinuxMemory{Limit: &m}
	}
	if c := opts.Limits.CPUMillis; c > 0 {
		quota, period := c*cpuPeriod/1000, uint64(cpuPeriod)
		r.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	if n := opts.Limits.Pids; n > 0 {
		r.Pids = &specs.LinuxPids{Limit: &n}
	}

	parent := opts.CgroupParent
	if parent == "" {
		parent = DefaultCgroupParent
	}
	l.CgroupsPath = "/" + strings.Trim(parent, "/") + "/" + opts.ID

	seccomp, err := defaultSeccompProfile(s)
	if err != nil {
		return nil, fmt.Errorf("harden %s: default seccomp profile: %w", opts.ID, err)
	}
	l.Seccomp = seccomp
	return s, nil
}

// hardenProcessLimits gives the process the daemon's rlimits, labels and
// oom_score_adj.
func hardenProcessLimits(p *specs.Process, opts HardenOptions) error {
	p.Rlimits = hardenRlimits(p.Rlimits)
	p.SelinuxLabel, p.ApparmorProfile = opts.SELinuxLabel, opts.AppArmorProfile
	oom := opts.OOMScoreAdj
	if oom == 0 {
		oom = DefaultOOMScoreAdj
	}
	if oom < 1 || oom > 1000 {
		return fmt.Errorf("oom_score_adj %d is not in 1..1000: %w", oom, ErrInvalidSpec)
	}
	if p.OOMScoreAdj == nil || *p.OOMScoreAdj < oom {
		p.OOMScoreAdj = &oom
	}
	return nil
}

// hardenUserNS puts the container in the daemon's user namespace: joined
// by path (the mapping is the pin's) or new with opts.UserNS.IDs, and makes
// the daemon's devices bind mounts of the host's nodes, which keep their
// host owner and mode.
func hardenUserNS(s *specs.Spec, opts HardenOptions) error {
	u := opts.UserNS
	if u == nil {
		if opts.UIDRange != nil {
			return bindDevices(s, opts)
		}
		return nil
	}
	if err := u.IDs.Validate(); err != nil {
		return err
	}
	l := s.Linux
	l.Namespaces = append(l.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: u.Path})
	l.UIDMappings, l.GIDMappings = nil, nil
	if u.Path == "" {
		m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: u.IDs.HostID, Size: u.IDs.Size}}
		l.UIDMappings, l.GIDMappings = m, slices.Clone(m)
	}
	return bindDevices(s, opts)
}

// bindDevices makes the daemon's devices bind mounts of nodes the daemon
// made for the profile (MakeDeviceNodes: owned by its range), where work
// cannot mknod or must not get a host node's owner.
func bindDevices(s *specs.Spec, opts HardenOptions) error {
	for _, d := range opts.Devices {
		src := d.Path
		if p, ok := opts.DeviceSources[d.Path]; ok {
			src = p
		}
		if !filepath.IsAbs(src) || !filepath.IsAbs(d.Path) {
			return fmt.Errorf("device %s from %q: not an absolute path: %w", d.Path, src, ErrInvalidSpec)
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: d.Path, Type: "bind", Source: src, Options: []string{"bind", "nosuid", "noexec"}})
	}
	return nil
}

func validateLimits(l Limits) error {
	var errs []error
	if l.MemoryBytes < 0 {
		errs = append(errs, fmt.Errorf("memory limit %d is negative: %w", l.MemoryBytes, ErrInvalidSpec))
	}
	if l.CPUMillis < 0 {
		errs = append(errs, fmt.Errorf("cpu limit %d is negative: %w", l.CPUMillis, ErrInvalidSpec))
	} else if l.CPUMillis > 0 && l.CPUMillis*cpuPeriod/1000 < minCPUQuota {
		errs = append(errs, fmt.Errorf("cpu limit %d millis is below the kernel's minimum of %d: %w", l.CPUMillis, minCPUQuota*1000/cpuPeriod, ErrInvalidSpec))
	}
	if l.Pids < 0 {
		errs = append(errs, fmt.Errorf("pids limit %d is negative: %w", l.Pids, ErrInvalidSpec))
	}
	return errors.Join(errs...)
}

// hardenCapabilities intersects the bundle's sets with AllowedCapabilities; a
// bundle without capabilities gets the allowed set as bounding, effective
// and permitted.
func hardenCapabilities(c *specs.LinuxCapabilities) *specs.LinuxCapabilities {
	if c == nil {
		return &specs.LinuxCapabilities{
			Bounding:  slices.Clone(AllowedCapabilities),
			Effective: slices.Clone(AllowedCapabilities),
			Permitted: slices.Clone(AllowedCapabilities),
		}
	}
	keep := func(set []string) []string {
		out := []string{}
		for _, c := range set {
			if slices.Contains(AllowedCapabilities, c) && !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
		return out
	}
	return &specs.LinuxCapabilities{
		Bounding:    keep(c.Bounding),
		Effective:   keep(c.Effective),
		Permitted:   keep(c.Permitted),
		Inheritable: keep(c.Inheritable),
		Ambient:     keep(c.Ambient),
	}
}

func validCapName(c string) bool {
	rest, ok := strings.CutPrefix(c, "CAP_")
	if !ok || rest == "" {
		return false
	}
	for _, r := range rest {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func deepCopy(s *specs.Spec) (*specs.Spec, error) {
	data, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("copy spec: %w", err)
	}
	var c specs.Spec
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("copy spec: %w", err)
	}
	return &c, nil
}
