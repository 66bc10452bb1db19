package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The controllers the probe reports on, in the order it reports them.
const (
	CgroupMemory  = "memory"
	CgroupCPU     = "cpu"
	CgroupPids    = "pids"
	CgroupFreezer = "freezer"
	CgroupDevices = "devices"
)

var probedControllers = []string{CgroupMemory, CgroupCPU, CgroupPids, CgroupFreezer, CgroupDevices}

// Where a controller is used, in CgroupController.Use.
const (
	CgroupUseV1 = "v1"
	CgroupUseV2 = "v2"
	// CgroupUseNone: the kernel offers the controller nowhere that the
	// sandbox can use; its limit is not enforced (devices: start refused).
	CgroupUseNone = ""
)

// unifiedMountpoint is where libcontainer looks for cgroup v2: a cgroup2 fs
// mounted there puts it in unified mode, whatever v1 hierarchies exist
// elsewhere (Android's /dev/memcg, /dev/cpuctl).
const unifiedMountpoint = "/sys/fs/cgroup"

// CgroupController is what the kernel offers for one controller.
type CgroupController struct {
	Name string
	// V1Mount is the mount point of the (reachable) v1 hierarchy the
	// controller is bound to, "" if none.
	V1Mount string
	// V2: usable in the cgroup2 hierarchy (memory, cpu, pids: listed in
	// the root's cgroup.controllers; freezer: kernel 5.2 or later;
	// devices: the kernel loads BPF_PROG_TYPE_CGROUP_DEVICE programs).
	V2 bool
	// Use is where the sandbox applies it on this layout: CgroupUseV1,
	// CgroupUseV2 or CgroupUseNone.
	Use string
	// Note says what is lost or how it is done, e.g. a missing CPU quota.
	Note string
}

// CgroupLayout is the host's cgroup layout as the sandbox sees it.
type CgroupLayout struct {
	// V2Mount is where cgroup2 is mounted ("" if nowhere); Unified says it
	// is at /sys/fs/cgroup, where libcontainer then uses it for every
	// controller it has.
	V2Mount string
	Unified bool
	// V2Controllers is the root's cgroup.controllers.
	V2Controllers []string
	Controllers   []CgroupController
	// CPUQuotaV1: the v1 cpu hierarchy has cpu.cfs_quota_us
	// (CONFIG_CFS_BANDWIDTH).
	CPUQuotaV1 bool
}

// Mode names the layout: "v2" (unified, every controller there), "split"
// (cgroup2 at /sys/fs/cgroup plus v1 controllers elsewhere: Android 12-15),
// "hybrid" (v1 controllers with a cgroup2 beside them), "v1", or "none".
func (l CgroupLayout) Mode() string {
	v1 := false
	for _, c := range l.Controllers {
		if c.V1Mount != "" {
			v1 = true
		}
	}
	switch {
	case l.Unified && v1:
		return "split"
	case l.Unified:
		return "v2"
	case v1 && l.V2Mount != "":
		return "hybrid"
	case v1:
		return "v1"
	default:
		return "none"
	}
}

// Controller returns the named controller's entry (Name only, Use
// CgroupUseNone, when the probe does not know it).
func (l CgroupLayout) Controller(name string) CgroupController {
	for _, c := range l.Controllers {
		if c.Name == name {
			return c
		}
	}
	return CgroupController{Name: name}
}

// Rows is one line per controller: name, where it is used ("v1 at
// /dev/memcg", "v2", "missing"), and the note.
func (l CgroupLayout) Rows() [][3]string {
	var rows [][3]string
	for _, c := range l.Controllers {
		where := "missing"
		switch c.Use {
		case CgroupUseV1:
			where = "v1 at " + c.V1Mount
		case CgroupUseV2:
			where = "v2 at " + l.V2Mount
		}
		rows = append(rows, [3]string{c.Name, where, c.Note})
	}
	return rows
}

func (l CgroupLayout) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cgroup layout %s", l.Mode())
	if l.V2Mount != "" {
		fmt.Fprintf(&b, " (cgroup2 at %s, controllers %q)", l.V2Mount, strings.Join(l.V2Controllers, " "))
	}
	for _, r := range l.Rows() {
		fmt.Fprintf(&b, "; %s: %s", r[0], r[1])
		if r[2] != "" {
			fmt.Fprintf(&b, " (%s)", r[2])
		}
	}
	return b.String()
}

// cgroupSource is where the probe reads the kernel: the host, or a fake
// layout in tests.
type cgroupSource interface {
	ReadFile(name string) ([]byte, error)
	// Dev is the device number of the filesystem at path (stat's st_dev),
	// to tell a reachable mount from one hidden under a later mount.
	Dev(path string) (uint64, error)
	// DeviceBPF reports whether the kernel loads cgroup device programs.
	DeviceBPF() bool
	// Release is the kernel release (uname -r).
	Release() string
}

// ProbeCgroups reads the host's cgroup layout from /proc/self/mountinfo,
// /proc/cgroups and the hierarchies' root files.
func ProbeCgroups(ctx context.Context) (CgroupLayout, error) {
	if err := ctx.Err(); err != nil {
		return CgroupLayout{}, fmt.Errorf("probe cgroups: %w", err)
	}
	// The mount table and the stat of its mount points must be read in
	// one mount namespace: this thread's (a locked thread may have left
	// the process's), as libcontainer reads /proc/thread-self/mountinfo.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return probeCgroups(hostCgroups{})
}

type mountEntry struct {
	dev        uint64
	root       string
	mountpoint string
	fstype     string
	super      []string
}

func probeCgroups(src cgroupSource) (CgroupLayout, error) {
	mi, err := src.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return CgroupLayout{}, fmt.Errorf("probe cgroups: %w", err)
	}
	mounts, err := parseMountinfo(mi)
	if err != nil {
		return CgroupLayout{}, fmt.Errorf("probe cgroups: /proc/self/mountinfo: %w", err)
	}
	known := map[string]bool{}
	if pc, err := src.ReadFile("/proc/cgroups"); err == nil {
		for _, line := range strings.Split(string(pc), "\n") {
			f := strings.Fields(line)
			if len(f) >= 4 && !strings.HasPrefix(f[0], "#") && f[3] == "1" {
				known[f[0]] = true
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return CgroupLayout{}, fmt.Errorf("probe cgroups: %w", err)
	}
	reachable := func(m mountEntry) bool {
		dev, err := src.Dev(m.mountpoint)
		return err == nil && dev == m.dev
	}

	var l CgroupLayout
	v1 := map[string]string{}
	for _, m := range mounts {
		switch m.fstype {
		case "cgroup2":
			if !reachable(m) {
				continue
			}
			// The one at /sys/fs/cgroup is the one libcontainer uses;
			// otherwise the first reachable one.
			if m.mountpoint == unifiedMountpoint || l.V2Mount == "" {
				l.V2Mount = m.mountpoint
				l.Unified = m.mountpoint == unifiedMountpoint
			}
		case "cgroup":
			if !reachable(m) {
				continue
			}
			for _, o := range m.super {
				// /proc/cgroups lists the kernel's controllers; without
				// it, trust the names we look for.
				if (known[o] || (len(known) == 0 && hasString(probedControllers, o))) && v1[o] == "" && m.root == "/" {
					v1[o] = m.mountpoint
				}
			}
		}
	}
	if l.V2Mount != "" {
		b, err := src.ReadFile(l.V2Mount + "/cgroup.controllers")
		if err != nil {
			return CgroupLayout{}, fmt.Errorf("probe cgroups: %w", err)
		}
		l.V2Controllers = strings.Fields(string(b))
	}
	if m := v1[CgroupCPU]; m != "" {
		_, err := src.ReadFile(m + "/cpu.cfs_quota_us")
		l.CPUQuotaV1 = err == nil
	}
	freezerV2 := l.V2Mount != "" && kernelAtLeast(src.Release(), 5, 2)
	devicesV2 := l.V2Mount != "" && src.DeviceBPF()
	for _, name := range probedControllers {
		c := CgroupController{Name: name, V1Mount: v1[name]}
		switch name {
		case CgroupFreezer:
			c.V2 = freezerV2
		case CgroupDevices:
			c.V2 = devicesV2
		default:
			c.V2 = hasString(l.V2Controllers, name)
		}
		c.Use, c.Note = l.use(c)
		l.Controllers = append(l.Controllers, c)
	}
	return l, nil
}

// use decides where a controller is applied. libcontainer, in unified mode,
// handles only what cgroup2 has; the rest of memory, cpu and pids the
// sandbox puts in v1 groups of its own. Outside unified mode libcontainer
// uses the v1 hierarchies only.
func (l CgroupLayout) use(c CgroupController) (string, string) {
	switch {
	case l.Unified && c.V2:
		switch c.Name {
		case CgroupDevices:
			return CgroupUseV2, "BPF device filter"
		case CgroupFreezer:
			return CgroupUseV2, "cgroup.freeze"
		}
		return CgroupUseV2, ""
	case c.V1Mount != "" && (!l.Unified || (c.Name != CgroupFreezer && c.Name != CgroupDevices)):
		note := ""
		if l.Unified {
			note = "own v1 group beside the cgroup2 one"
		}
		if c.Name == CgroupCPU && !l.CPUQuotaV1 {
			note = strings.TrimPrefix(note+"; no cpu.cfs_quota_us (CONFIG_CFS_BANDWIDTH): the CPU limit is not enforced", "; ")
		}
		return CgroupUseV1, note
	}
	switch c.Name {
	case CgroupDevices:
		return CgroupUseNone, "no device cgroup (v1) nor cgroup BPF (CONFIG_CGROUP_BPF): containers cannot start"
	case CgroupFreezer:
		return CgroupUseNone, "no freezer: work mode off cannot pause the profile"
	}
	return CgroupUseNone, fmt.Sprintf("no %s controller: the profile's %s limit is not enforced", c.Name, c.Name)
}

// parseMountinfo reads the fields the probe needs from each line of
// /proc/self/mountinfo (proc(5)).
func parseMountinfo(b []byte) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || len(f) < sep+3 {
			return nil, fmt.Errorf("line %d: not a mountinfo line", n)
		}
		maj, min, ok := strings.Cut(f[2], ":")
		ma, err1 := strconv.ParseUint(maj, 10, 32)
		mi, err2 := strconv.ParseUint(min, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("line %d: device %q is not major:minor", n, f[2])
		}
		e := mountEntry{dev: unix.Mkdev(uint32(ma), uint32(mi)), root: unescapeOctal(f[3]), mountpoint: unescapeOctal(f[4]), fstype: f[sep+1]}
		if sep+3 < len(f) {
			e.super = strings.Split(f[sep+3], ",")
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// unescapeOctal undoes mountinfo's \ooo escapes of spaces and the like.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func kernelAtLeast(release string, major, minor int) bool {
	a, rest, _ := strings.Cut(release, ".")
	b, _, _ := strings.Cut(rest, ".")
	b = strings.TrimRightFunc(b, func(r rune) bool { return r < '0' || r > '9' })
	ma, err1 := strconv.Atoi(a)
	mi, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

func hasString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// hostCgroups reads the running kernel.
type hostCgroups struct{}

func (hostCgroups) ReadFile(name string) ([]byte, error) {
	if name == "/proc/self/mountinfo" {
		if b, err := os.ReadFile("/proc/thread-self/mountinfo"); err == nil {
			return b, nil
		}
	}
	return os.ReadFile(name)
}

func (hostCgroups) Dev(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Dev, nil
}

// The kernel's release and its BPF support cannot change under a running
// daemon: asked once, not at every start as the mounts are.
var (
	kernelRelease = sync.OnceValue(unameRelease)
	deviceBPF     = sync.OnceValue(loadDeviceBPF)
)

func (hostCgroups) Release() string { return kernelRelease() }

func (hostCgroups) DeviceBPF() bool { return deviceBPF() }

func unameRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// DeviceBPF loads the smallest cgroup device program ("allow": r0 = 1;
// exit) and closes it: the kernel has CONFIG_CGROUP_BPF and lets us load
// what libcontainer's device filter needs.
func loadDeviceBPF() bool {
	insns := []uint64{
		0x00000001_000000b7, // BPF_ALU64|BPF_MOV|BPF_K r0 = 1
		0x00000000_00000095, // BPF_JMP|BPF_EXIT
	}
	license := []byte("Apache\x00")
	// union bpf_attr for BPF_PROG_LOAD, up to and including kern_version.
	var attr struct {
		progType    uint32
		insnCnt     uint32
		insns       uint64
		license     uint64
		logLevel    uint32
		logSize     uint32
		logBuf      uint64
		kernVersion uint32
		_           uint32
	}
	attr.progType = unix.BPF_PROG_TYPE_CGROUP_DEVICE
	attr.insnCnt = uint32(len(insns))
	attr.insns = uint64(uintptr(unsafe.Pointer(&insns[0])))
	attr.license = uint64(uintptr(unsafe.Pointer(&license[0])))
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	if errno != 0 {
		return false
	}
	unix.Close(int(fd))
	return true
}
