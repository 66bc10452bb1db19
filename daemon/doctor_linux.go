package daemon

import (
	"context"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/images"
	"github.com/workcell/workcell/images/fscrypt"
	"github.com/workcell/workcell/netns"
	"github.com/workcell/workcell/sandbox"
)

// workcell doctor: each kernel and platform feature the daemon needs or
// can use, whether it is there, which mechanism the daemon chose, and for
// what is missing what it costs and how to get it. Each check is a small
// function over doctorEnv (files under a root and probe functions), so a
// test can fake any feature's absence; the modes come from the daemon's
// own decisions (doctorFacts), never recomputed here.

// doctorEnv is what the checks read about the host.
type doctorEnv struct {
	// root is where /proc, /sys and /dev are read ("/").
	root     string
	goarch   string
	lookPath func(string) (string, error)

	probePIDNS          func(context.Context) error
	probeUserNS         func(context.Context) error
	probeCgroups        func(context.Context) (sandbox.CgroupLayout, error)
	probeNFTables       func(context.Context) error
	probeIPTablesLegacy func(context.Context) error
	probeSeccomp        func() error
	probeCipher         func(context.Context, fscrypt.Mode) error
	// routes says whether the main table has a default route and which
	// other tables have one.
	routes func() (mainDefault bool, tables []int, err error)
}

// doctorFacts are the daemon's decisions, as it made them at start.
type doctorFacts struct {
	ident identity
	// storage
	insecure   bool
	storeImage string
	unusable   error
	mode       fscrypt.Mode
	modeWhy    string
	// binder
	binderfs      string
	binderDevices []string
	binderNote    string
	dns           dnsDecision
	// network: the firewall backend chosen and why; how work's traffic is
	// routed (nil without a network manager) and whether it gets IPv6.
	firewall    netns.Backend
	firewallWhy string
	// netUnusable says why no profile network can be made (no backend).
	netUnusable error
	routing     *netns.PolicyRouting
	routingErr  error
	ipv6        bool
	ipv6Why     string
	// warnings are the limits the kernel cannot enforce for the
	// profiles that run (sandbox.Container.Warnings).
	warnings []string
}

// doctorCheck is one row of the report.
type doctorCheck func(ctx context.Context, env *doctorEnv, f *doctorFacts) api.DoctorCheck

// doctorChecks are the rows, in the order they print.
var doctorChecks = []doctorCheck{
	checkPIDNS, checkUserNS,
	checkCgroup("memory"), checkCgroup("cpu"), checkCgroup("pids"), checkFreezer, checkDevices,
	checkOverlay, checkFscrypt, checkFscryptMode,
	checkFirewall, checkVeth, checkTun, checkPolicyRouting, checkDNS,
	checkBinder, checkSeccomp, checkLoop, checkMkfs, checkMqueue,
}

// Doctor reports what the daemon found and chose.
func (d *Daemon) Doctor(ctx context.Context) api.DoctorReport {
	env := hostDoctorEnv()
	f := d.doctorFacts()
	// The limits the running profiles' kernels could not enforce.
	for _, p := range d.Profiles(ctx) {
		for _, w := range p.Warnings {
			f.warnings = append(f.warnings, "profile "+p.Name+": "+w)
		}
	}
	if d.net != nil {
		r, err := d.net.PolicyRouting(ctx)
		f.routing, f.routingErr = &r, err
		f.ipv6, f.ipv6Why = d.net.IPv6()
	}
	return runDoctor(ctx, &env, f)
}

func runDoctor(ctx context.Context, env *doctorEnv, f *doctorFacts) api.DoctorReport {
	r := api.DoctorReport{Checks: make([]api.DoctorCheck, 0, len(doctorChecks)), Warnings: f.warnings}
	// Five rows read the cgroup layout: probe it once for all of them.
	e := *env
	if env.probeCgroups != nil {
		l, err := env.probeCgroups(ctx)
		e.probeCgroups = func(context.Context) (sandbox.CgroupLayout, error) { return l, err }
	}
	for _, c := range doctorChecks {
		r.Checks = append(r.Checks, c(ctx, &e, f))
	}
	return r
}

// doctorFacts copies the daemon's decisions.
func (d *Daemon) doctorFacts() *doctorFacts {
	f := &doctorFacts{ident: d.ident, storeImage: d.cfg.StoreImage, dns: d.dns, firewall: d.firewall, firewallWhy: d.firewallWhy, netUnusable: d.netUnusable}
	if d.stor != nil {
		f.insecure, f.unusable, f.mode, f.modeWhy = d.stor.insecure, d.stor.unusable, d.stor.mode, d.stor.modeWhy
	}
	d.bnd.mu.Lock()
	f.binderfs, f.binderDevices, f.binderNote = d.bnd.binderfs, slices.Clone(d.bnd.devices), d.bnd.note
	d.bnd.mu.Unlock()
	return f
}

// doctorRoutes adds GET /v1/doctor: the owner may read it.
func (s *Server) doctorRoutes(h route) {
	h("GET /"+api.Version+"/doctor", roleOwner, "", func(w http.ResponseWriter, r *http.Request) error {
		return writeJSON(w, http.StatusOK, s.d.Doctor(r.Context()))
	})
}

// doctorHint is appended to errors that a missing kernel feature explains.
const doctorHint = "; run `workcell doctor` to see what the kernel lacks and how to fix it"

func found(name, mode, detail string) api.DoctorCheck {
	return api.DoctorCheck{Name: name, Status: api.DoctorFound, Mode: mode, Detail: detail}
}

func missing(name, mode, detail, cost, fix string) api.DoctorCheck {
	return api.DoctorCheck{Name: name, Status: api.DoctorMissing, Mode: mode, Detail: detail, Cost: cost, Fix: fix}
}

func partial(name, mode, detail, cost, fix string) api.DoctorCheck {
	return api.DoctorCheck{Name: name, Status: api.DoctorPartial, Mode: mode, Detail: detail, Cost: cost, Fix: fix}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func checkPIDNS(ctx context.Context, env *doctorEnv, f *doctorFacts) api.DoctorCheck {
	const name = "pid namespace"
	mode := string(f.ident.pid)
	if err := env.probePIDNS(ctx); err != nil {
		return missing(name, mode, errText(err)+"; "+f.ident.pidWhy,
			"no pid namespace: work shares the host's pid namespace; its /proc is mounted "+strings.Join(f.ident.proc, ",")+
				" ("+f.ident.procWhy+"), so work sees only its own processes; its init is not pid 1, and stop, wipe and remove kill it by cgroup",
			"enable CONFIG_PID_NS in the kernel (GKI leaves it off)")
	}
	if f.ident.pid == pidShared {
		return partial(name, mode, "the kernel has pid namespaces; "+f.ident.pidWhy,
			"work shares the host's pid namespace (hidepid /proc)", "set pid_namespace to \"auto\" in the config")
	}
	return found(name, mode, f.ident.pidWhy)
}

func checkUserNS(ctx context.Context, env *doctorEnv, f *doctorFacts) api.DoctorCheck {
	const name = "user namespace"
	err := env.probeUserNS(ctx)
	mode := string(f.ident.mode)
	switch {
	case err != nil:
		return missing(name, mode, errText(err)+"; "+f.ident.why,
			"no user namespace: work runs under its profile's own host uid range without a mapping, so work's ids are real host ids (never root's)",
			"enable CONFIG_USER_NS and set user.max_user_namespaces above 0")
	case f.ident.mode != identityUserNS:
		return partial(name, mode, "the kernel has user namespaces; "+f.ident.why,
			"work does not get its own user namespace", "set userns to \"auto\" in the config, and give run_dir search permission for other users")
	}
	return found(name, mode, f.ident.why)
}

var cgroupCosts = map[string][2]string{
	"memory": {"no memory controller: a profile's memory limit is not enforced (a warning, not a failed start)", "enable CONFIG_MEMCG"},
	"cpu":    {"no cpu controller: a profile's CPU limit is not enforced (a warning, not a failed start)", "enable CONFIG_CGROUP_SCHED and CONFIG_FAIR_GROUP_SCHED"},
	"pids":   {"no pids controller: a profile's process limit is not enforced, so a fork bomb in work is bounded only by memory (a warning, not a failed start)", "enable CONFIG_CGROUP_PIDS (GKI leaves it off)"},
}

// checkCgroup shows where the sandbox puts a controller's limit on this
// layout (sandbox.ProbeCgroups, the probe the sandbox itself plans by).
func checkCgroup(ctrl string) doctorCheck {
	return func(ctx context.Context, env *doctorEnv, _ *doctorFacts) api.DoctorCheck {
		name := "cgroup " + ctrl
		l, err := env.probeCgroups(ctx)
		if err != nil {
			return missing(name, "", err.Error(), cgroupCosts[ctrl][0], "mount the cgroup hierarchies (Android's init does, from cgroups.json)")
		}
		c := l.Controller(ctrl)
		if c.Use == sandbox.CgroupUseNone {
			return missing(name, "", joinNote("no cgroup hierarchy offers "+ctrl, c.Note), cgroupCosts[ctrl][0],
				cgroupCosts[ctrl][1]+", and mount it (cgroup2, or a v1 hierarchy as Android's /dev/memcg and /dev/cpuctl)")
		}
		return found(name, cgroupWhere(l, c), joinNote("layout "+l.Mode(), c.Note))
	}
}

func cgroupWhere(l sandbox.CgroupLayout, c sandbox.CgroupController) string {
	if c.Use == sandbox.CgroupUseV1 {
		return "v1 at " + c.V1Mount
	}
	return "v2 at " + l.V2Mount
}

func joinNote(s, note string) string {
	if note == "" {
		return s
	}
	return s + "; " + note
}

func checkFreezer(ctx context.Context, env *doctorEnv, _ *doctorFacts) api.DoctorCheck {
	const name = "cgroup freezer"
	l, err := env.probeCgroups(ctx)
	c := l.Controller(sandbox.CgroupFreezer)
	if err != nil || c.Use == sandbox.CgroupUseNone {
		return missing(name, "", "no freezer in any cgroup hierarchy"+errSuffix(err),
			"work mode off cannot freeze the profile: off fails, and only stop is left",
			"enable CONFIG_CGROUP_FREEZER and mount cgroup2 (its cgroup.freeze), as Android does at /sys/fs/cgroup")
	}
	return found(name, cgroupWhere(l, c), joinNote("layout "+l.Mode(), c.Note))
}

// checkDevices: without a device cgroup (v1's, or v2's BPF filter) the
// device allow-list cannot be enforced, and the sandbox refuses to start.
func checkDevices(ctx context.Context, env *doctorEnv, _ *doctorFacts) api.DoctorCheck {
	const name = "cgroup devices"
	l, err := env.probeCgroups(ctx)
	c := l.Controller(sandbox.CgroupDevices)
	if err != nil || c.Use == sandbox.CgroupUseNone {
		return missing(name, "", joinNote("no device cgroup"+errSuffix(err), c.Note),
			"the device allow-list cannot be enforced, so no profile starts (sandbox.ErrNoDeviceCgroup)",
			"enable CONFIG_CGROUP_BPF (cgroup v2's device filter, as GKI has) or CONFIG_CGROUP_DEVICE")
	}
	mode := "v1 devices at " + c.V1Mount
	if c.Use == sandbox.CgroupUseV2 {
		mode = "v2 BPF device filter"
	}
	return found(name, mode, joinNote("layout "+l.Mode(), c.Note))
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return ": " + err.Error()
}

// filesystems reads root's /proc/filesystems.
func filesystems(root string) []string {
	b, _ := os.ReadFile(filepath.Join(root, "proc/filesystems"))
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			out = append(out, f[len(f)-1])
		}
	}
	return out
}

// kernelConfig reads root's /proc/config.gz; nil when there is none.
func kernelConfig(root string) map[string]string {
	cfg, _ := fscrypt.ReadKernelConfig(filepath.Join(root, "proc/config.gz"))
	return cfg
}

// configHas says whether the kernel config sets opt (y or m); known is
// false without a config to read.
func configHas(root, opt string) (has, known bool) {
	cfg := kernelConfig(root)
	if cfg == nil {
		return false, false
	}
	v := cfg[opt]
	return v == "y" || v == "m", true
}

func checkOverlay(_ context.Context, env *doctorEnv, _ *doctorFacts) api.DoctorCheck {
	const name = "overlayfs"
	if slices.Contains(filesystems(env.root), "overlay") {
		return found(name, "overlay on the encrypted upper layer", "/proc/filesystems lists overlay")
	}
	if has, _ := configHas(env.root, "CONFIG_OVERLAY_FS"); has {
		return found(name, "overlay on the encrypted upper layer", "CONFIG_OVERLAY_FS is a module: it loads at the first mount")
	}
	return missing(name, "", "/proc/filesystems has no overlay",
		"no profile can start: its root is an overlay of the image under its encrypted writable layer",
		"enable CONFIG_OVERLAY_FS (or modprobe overlay)")
}

func checkFscrypt(_ context.Context, _ *doctorEnv, f *doctorFacts) api.DoctorCheck {
	const name = "fscrypt v2"
	switch {
	case f.insecure:
		return partial(name, "unencrypted (insecure_unencrypted_storage)", "work data is kept in plain folders",
			"lock and wipe cannot make work data unreadable", "drop --insecure-unencrypted-storage and use an encrypting filesystem or --store-image")
	case f.unusable != nil:
		return missing(name, "", f.unusable.Error(),
			"no profile can start: work data must be encrypted with the profile's own key",
			"start workcelld with --store-image PATH --store-size SIZE (a loop-mounted ext4 made with -O encrypt; needs CONFIG_FS_ENCRYPTION and loop devices)")
	case f.storeImage != "":
		return found(name, "v2 policies on the store image "+f.storeImage, "the profiles' data is on a loop-mounted ext4 -O encrypt")
	}
	return found(name, "v2 policies in the state folder", "the state folder's filesystem encrypts and is not encrypted already")
}

func checkFscryptMode(ctx context.Context, env *doctorEnv, f *doctorFacts) api.DoctorCheck {
	const name = "fscrypt contents"
	cpu, _ := os.ReadFile(filepath.Join(env.root, "proc/cpuinfo"))
	aes := "the CPU has no AES instructions"
	if fscrypt.CPUHasAES(cpu) {
		aes = "the CPU has AES instructions"
	}
	mode := f.mode
	label := map[fscrypt.Mode]string{fscrypt.ModeAES: "AES-256-XTS", fscrypt.ModeAdiantum: "Adiantum"}
	detail := f.modeWhy
	if !strings.Contains(detail, "AES instructions") {
		detail += "; " + aes
	}
	if f.insecure || mode == "" {
		return partial(name, "", "no encryption chosen: "+detail, "work data is not encrypted", "use encrypted storage")
	}
	err := env.probeCipher(ctx, mode)
	switch {
	case errors.Is(err, fscrypt.ErrCipherMissing):
		other := fscrypt.ModeAES
		if mode == fscrypt.ModeAES {
			other = fscrypt.ModeAdiantum
		}
		opt := "CONFIG_CRYPTO_ADIANTUM"
		if mode == fscrypt.ModeAES {
			opt = "CONFIG_CRYPTO_AES and CONFIG_CRYPTO_XTS"
		}
		return missing(name, label[mode], detail+"; "+err.Error(),
			"new profiles cannot be unlocked: the kernel cannot encrypt their files with "+label[mode],
			"enable "+opt+", or set fscrypt_contents to \""+string(other)+"\" in the config")
	case err != nil:
		return partial(name, label[mode], detail+"; "+err.Error(), "the kernel's ciphers could not be checked", "")
	}
	return found(name, label[mode], detail)
}

// checkFirewall shows the backend the network concern chose at start
// (netns.ChooseBackend) beside what each probe finds now.
func checkFirewall(ctx context.Context, env *doctorEnv, f *doctorFacts) api.DoctorCheck {
	const name = "firewall"
	nft, ipt := env.probeNFTables(ctx), env.probeIPTablesLegacy(ctx)
	mode := string(f.firewall)
	if mode == "" {
		mode = "none"
	}
	detail := "nf_tables: " + okOr(nft) + "; iptables-legacy: " + okOr(ipt)
	if f.firewallWhy != "" {
		detail = f.firewallWhy + "; " + detail
	}
	switch {
	case nft != nil && ipt != nil:
		return missing(name, mode, detail,
			"no profile network can be isolated: start fails closed",
			"enable CONFIG_NF_TABLES, or CONFIG_IP_NF_IPTABLES with the iptables command (install iptables)")
	case f.netUnusable != nil:
		// The kernel has one, but not the one the config names.
		return missing(name, mode, f.netUnusable.Error()+"; "+detail,
			"no profile network can be isolated: start fails closed",
			"set firewall to \"auto\" in the config, or give the daemon the backend it names (install iptables for iptables-legacy)")
	case f.firewall == netns.BackendIPTables && nft != nil:
		return partial(name, mode, detail, "no nf_tables (as on GKI): the rules go through iptables-legacy, in one iptables-restore batch per family, "+
			"in wc_ chains hooked first in netd's oem_fwd/oem_out (or the built-in chains); allow-lists are one rule per entry (no ipset)",
			"enable CONFIG_NF_TABLES for the nftables backend")
	}
	return found(name, mode, detail)
}

func okOr(err error) string {
	if err == nil {
		return "found"
	}
	return err.Error()
}

func checkVeth(_ context.Context, env *doctorEnv, _ *doctorFacts) api.DoctorCheck {
	return checkKernelPart(env, "veth", "CONFIG_VETH", "sys/module/veth",
		"no profile network: work's eth0 is one end of a veth pair", "enable CONFIG_VETH (or modprobe veth)")
}

func checkTun(_ context.Context, env *doctorEnv, _ *doctorFacts) api.DoctorCheck {
	return checkKernelPart(env, "tun", "CONFIG_TUN", "dev/net/tun",
		"vpn-lockdown mode cannot run: the VPN client inside the profile has no tunnel device", "enable CONFIG_TUN (or modprobe tun)")
}

// checkKernelPart finds a feature by the kernel config, else by a file.
func checkKernelPart(env *doctorEnv, name, opt, file, cost, fix string) api.DoctorCheck {
	has, known := configHas(env.root, opt)
	if _, err := os.Stat(filepath.Join(env.root, file)); err == nil {
		return found(name, "", "/"+file+" exists")
	}
	switch {
	case has:
		return found(name, "", opt+" is set")
	case known:
		return missing(name, "", "the kernel config does not set "+opt, cost, fix)
	}
	return missing(name, "", "no /"+file+" and no /proc/config.gz to ask", cost, fix)
}

func checkPolicyRouting(_ context.Context, env *doctorEnv, f *doctorFacts) api.DoctorCheck {
	const name = "policy routing"
	if f.routing != nil && f.routingErr == nil {
		if r := *f.routing; r.Table4 != 0 || r.Table6 != 0 {
			mode := "main table"
			if (r.Table4 != 0 && r.Table4 != unix.RT_TABLE_MAIN) || (r.Table6 != 0 && r.Table6 != unix.RT_TABLE_MAIN) {
				mode = "per-network tables"
			}
			detail := routeFamily("IPv4", r.Table4, r.Uplinks4, r.Rule4, r.Priority) + "; " + routeFamily("IPv6", r.Table6, r.Uplinks6, r.Rule6, r.Priority)
			if !f.ipv6 && f.ipv6Why != "" {
				detail += "; profiles get no IPv6: " + f.ipv6Why
			}
			return found(name, mode, detail)
		}
	}
	mainDef, tables, err := env.routes()
	switch {
	case err != nil:
		return partial(name, "", err.Error(), "uplinks cannot be found", "")
	case mainDef:
		return found(name, "main table", "the main table has a default route")
	case len(tables) > 0:
		return found(name, "per-network tables", fmt.Sprintf("no default route in the main table; tables %v have one (netd's per-network routing)", tables))
	}
	return missing(name, "", "no default route in any table",
		"work has no way out: no uplink", "connect the phone to a network")
}

func routeFamily(fam string, table int, uplinks []string, rule bool, prio int) string {
	if table == 0 {
		return fam + ": no uplink"
	}
	s := fmt.Sprintf("%s: table %d via %s", fam, table, strings.Join(uplinks, ","))
	if rule {
		s += fmt.Sprintf(", iif wc-NAME rules at priority %d", prio)
	}
	return s
}

func checkDNS(_ context.Context, _ *doctorEnv, f *doctorFacts) api.DoctorCheck {
	const name = "dns"
	var servers []string
	for _, a := range f.dns.servers {
		servers = append(servers, a.String())
	}
	detail := f.dns.why
	if len(servers) > 0 {
		detail += ": " + strings.Join(servers, ", ")
	}
	if f.dns.source == dnsNone {
		return missing(name, dnsNone, detail, "profiles get no DNS resolver unless their network settings name one", f.dns.warning)
	}
	return found(name, f.dns.source, detail)
}

func checkBinder(_ context.Context, env *doctorEnv, f *doctorFacts) api.DoctorCheck {
	const name = "binder"
	switch {
	case f.binderfs != "":
		return found(name, "binderfs at "+f.binderfs, "each profile gets its own device in binderfs")
	case len(f.binderDevices) > 0:
		return found(name, "binder_devices", "profiles get the devices "+strings.Join(f.binderDevices, ", "))
	}
	detail := f.binderNote
	if slices.Contains(filesystems(env.root), "binder") {
		detail = "the kernel has binderfs, but it could not be mounted; " + detail
	}
	return missing(name, "none", detail,
		"no binder: work apps get no /dev/binder, and a profile whose binder policy allows host services does not start",
		"enable CONFIG_ANDROID_BINDERFS (GKI has it), or load the driver with devices for work: "+
			"insmod binder_linux.ko devices=binder,workbinder and set binder_devices to [\"/dev/workbinder\"]")
}

func checkSeccomp(_ context.Context, env *doctorEnv, _ *doctorFacts) api.DoctorCheck {
	const name = "seccomp"
	if err := env.probeSeccomp(); err != nil {
		return missing(name, "", err.Error(), "no profile can start: the default seccomp profile is always enforced",
			"enable CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER")
	}
	return found(name, "default profile", "the kernel filters system calls")
}

func checkLoop(_ context.Context, env *doctorEnv, f *doctorFacts) api.DoctorCheck {
	const name = "loop devices"
	cost := "no store image: where the state folder cannot encrypt (Android's /data/misc), no profile can start"
	if f.storeImage == "" {
		cost = "no store image can be used (needed only where the state folder cannot encrypt)"
	}
	if _, err := os.Stat(filepath.Join(env.root, "dev/loop-control")); err != nil {
		return missing(name, "", "no /dev/loop-control", cost, "enable CONFIG_BLK_DEV_LOOP")
	}
	for _, dir := range []string{"dev", "dev/block"} {
		if m, _ := filepath.Glob(filepath.Join(env.root, dir, "loop[0-9]*")); len(m) > 0 {
			return found(name, "/dev/loop-control, nodes in /"+dir, "")
		}
	}
	return found(name, "/dev/loop-control, nodes made in the run folder", "no loop node in /dev or /dev/block: the daemon makes one when it needs it")
}

func checkMkfs(_ context.Context, env *doctorEnv, f *doctorFacts) api.DoctorCheck {
	const name = "mkfs.ext4"
	// The store's own choice, so doctor never names a tool it would not use.
	argv, err := images.MkfsCommand(env.lookPath)
	if err != nil {
		cost := "a new store image cannot be made (an existing one still mounts)"
		return missing(name, "", "neither mkfs.ext4 nor mke2fs is on PATH", cost, "install e2fsprogs (on Android, /system/bin/mke2fs)")
	}
	if argv[1] == "-t" {
		return found(name, "mke2fs -t ext4", argv[0]+" (no mkfs.ext4, as on AOSP)")
	}
	return found(name, "mkfs.ext4", argv[0])
}

// requiredChecks are the features without which no container starts.
var requiredChecks = []doctorCheck{checkPIDNS, checkSeccomp, checkOverlay, checkFirewall}

// startHint adds to a failed start the missing kernel features that can
// explain it, by name, and points at workcell doctor: an opaque "container
// failed to start" is what users of kernels without a feature get
// elsewhere.
func (d *Daemon) startHint(ctx context.Context, err error) error {
	env := hostDoctorEnv()
	return startHintWith(ctx, &env, d.doctorFacts(), err)
}

func startHintWith(ctx context.Context, env *doctorEnv, f *doctorFacts, err error) error {
	if err == nil {
		return nil
	}
	var lacks []string
	for _, c := range requiredChecks {
		if r := c(ctx, env, f); r.Status == api.DoctorMissing {
			lacks = append(lacks, r.Name+" ("+r.Fix+")")
		}
	}
	if len(lacks) == 0 {
		return fmt.Errorf("%w%s", err, doctorHint)
	}
	return fmt.Errorf("%w; the kernel lacks %s%s", err, strings.Join(lacks, ", "), doctorHint)
}

func checkMqueue(_ context.Context, _ *doctorEnv, f *doctorFacts) api.DoctorCheck {
	const name = "mqueue"
	if f.ident.noMqueue != "" {
		return missing(name, "no /dev/mqueue", f.ident.noMqueue,
			"work gets no POSIX message queues (mq_open fails); everything else runs",
			"enable CONFIG_POSIX_MQUEUE (GKI leaves it off)")
	}
	return found(name, "/dev/mqueue", "the kernel has the mqueue filesystem")
}
