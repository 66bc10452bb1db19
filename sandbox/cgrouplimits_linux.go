package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// ErrNoDeviceCgroup is wrapped by a start refused because the kernel can
// enforce no device allow-list: neither a v1 devices cgroup nor cgroup BPF.
var ErrNoDeviceCgroup = errors.New("no device cgroup: the kernel has neither a v1 devices controller nor cgroup BPF (CONFIG_CGROUP_BPF)")

// Labels in the container's libcontainer state: the v1 groups the sandbox
// made itself and the warnings of the start, so that a daemon adopting the
// container removes the groups and still shows the warnings.
const (
	cgroupV1LabelKey = "workcell.cgroup-v1"
	warningLabelKey  = "workcell.warning"
)

// cgroupPlan is where one container's limits go on a cgroup layout.
type cgroupPlan struct {
	// lc* say whether libcontainer is given the memory, CPU and pids
	// limits; what it is not given is either in v1 (below) or lost.
	lcMemory, lcCPU, lcPids bool
	// v1 are the groups the sandbox makes itself: on a unified host
	// (libcontainer sees only cgroup2) for controllers cgroup2 lacks and a
	// v1 hierarchy has (Android's /dev/memcg, /dev/cpuctl).
	v1 []v1Group
	// warnings are the limits the kernel cannot enforce.
	warnings []string
}

// v1Group is one v1 cgroup directory with the files to write into it.
type v1Group struct {
	controller string
	dir        string
	files      [][2]string
}

// planCgroups places lim on layout l for the container id under parent
// (a cgroup path like /workcell). The only refusal is a kernel with no
// device cgroup at all: the device allow-list is part of the isolation.
func planCgroups(l CgroupLayout, lim Limits, parent, id string) (cgroupPlan, error) {
	var p cgroupPlan
	if l.Controller(CgroupDevices).Use == CgroupUseNone {
		return p, fmt.Errorf("%s: %w", l, ErrNoDeviceCgroup)
	}
	if l.Controller(CgroupFreezer).Use == CgroupUseNone {
		p.warnings = append(p.warnings, "work mode off cannot freeze the profile: the kernel has no cgroup freezer")
	}
	rel := strings.Trim(filepath.Clean("/"+parent+"/"+id), "/")
	if id == "" || strings.Contains(id, "/") || rel == "" {
		return p, fmt.Errorf("cgroup of %q under %q: %w", id, parent, ErrInvalidSpec)
	}
	quota := lim.CPUMillis * cpuPeriod / 1000
	for _, name := range []string{CgroupMemory, CgroupCPU, CgroupPids} {
		c := l.Controller(name)
		var files [][2]string
		var want string // the limit, for a warning
		switch name {
		case CgroupMemory:
			if lim.MemoryBytes > 0 {
				files = [][2]string{{"memory.limit_in_bytes", strconv.FormatInt(lim.MemoryBytes, 10)}}
				want = fmt.Sprintf("memory limit of %d bytes", lim.MemoryBytes)
			}
		case CgroupCPU:
			if lim.CPUMillis > 0 {
				files = [][2]string{{"cpu.cfs_period_us", strconv.Itoa(cpuPeriod)}, {"cpu.cfs_quota_us", strconv.FormatInt(quota, 10)}}
				want = fmt.Sprintf("CPU limit of %d millis", lim.CPUMillis)
			}
		case CgroupPids:
			if lim.Pids > 0 {
				files = [][2]string{{"pids.max", strconv.FormatInt(lim.Pids, 10)}}
				want = fmt.Sprintf("pids limit of %d", lim.Pids)
			}
		}
		lc := false
		switch {
		case c.Use == CgroupUseV2:
			lc = true
		case c.Use == CgroupUseV1 && name == CgroupCPU && !l.CPUQuotaV1 && want != "":
			// The group is still made on a unified host (CPU accounting
			// and shares), the quota is not.
			p.warnings = append(p.warnings, want+" not enforced: the kernel's cpu controller has no CFS bandwidth control (CONFIG_CFS_BANDWIDTH)")
			files = nil
			if l.Unified {
				p.v1 = append(p.v1, v1Group{controller: name, dir: filepath.Join(c.V1Mount, rel)})
			}
		case c.Use == CgroupUseV1 && !l.Unified:
			lc = true
		case c.Use == CgroupUseV1:
			p.v1 = append(p.v1, v1Group{controller: name, dir: filepath.Join(c.V1Mount, rel), files: files})
		case want != "":
			p.warnings = append(p.warnings, fmt.Sprintf("%s not enforced: the kernel has no %s cgroup controller", want, name))
		}
		switch name {
		case CgroupMemory:
			p.lcMemory = lc
		case CgroupCPU:
			p.lcCPU = lc && (c.Use == CgroupUseV2 || l.CPUQuotaV1)
		case CgroupPids:
			p.lcPids = lc
		}
	}
	return p, nil
}

// strip removes from libcontainer's resources what it must not set: limits
// of controllers its cgroup does not have.
func (p cgroupPlan) strip(r *cgroups.Resources) {
	if r == nil {
		return
	}
	if !p.lcMemory {
		r.Memory, r.MemorySwap, r.MemoryReservation = 0, 0, 0
	}
	if !p.lcCPU {
		r.CpuQuota, r.CpuPeriod, r.CpuShares, r.CpuWeight, r.CpuBurst = 0, 0, 0, 0, nil
	}
	if !p.lcPids {
		r.PidsLimit = nil
	}
}

// labels records the plan in the container's state.
func (p cgroupPlan) labels() []string {
	var out []string
	for _, g := range p.v1 {
		out = append(out, cgroupV1LabelKey+"="+g.dir)
	}
	for _, w := range p.warnings {
		out = append(out, warningLabelKey+"="+w)
	}
	return out
}

// fromLabels reads back what labels recorded: the v1 group directories
// and the warnings.
func fromLabels(labels []string) (dirs, warnings []string) {
	for _, l := range labels {
		if v, ok := strings.CutPrefix(l, cgroupV1LabelKey+"="); ok {
			dirs = append(dirs, v)
		} else if v, ok := strings.CutPrefix(l, warningLabelKey+"="); ok {
			warnings = append(warnings, v)
		}
	}
	return dirs, warnings
}

// create makes the v1 groups and writes their limits; on failure it removes
// what it made.
func (p cgroupPlan) create() (retErr error) {
	var made []string
	defer func() {
		if retErr != nil {
			_ = removeV1Groups(made)
		}
	}()
	for _, g := range p.v1 {
		if err := os.MkdirAll(filepath.Dir(g.dir), 0o755); err != nil {
			return fmt.Errorf("cgroup v1 %s: %w", g.controller, err)
		}
		// A group of the same name left by a daemon that died mid-start
		// is taken over: it is ours by name, and empty or init fails.
		if err := os.Mkdir(g.dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("cgroup v1 %s: %w", g.controller, err)
		}
		made = append(made, g.dir)
		for _, f := range g.files {
			if err := writeFile(filepath.Join(g.dir, f[0]), []byte(f[1])); err != nil {
				return fmt.Errorf("cgroup v1 %s limit: %w", g.controller, err)
			}
		}
	}
	return nil
}

// join puts pid (the waiting init: before it execs the user's process)
// into every v1 group.
func (p cgroupPlan) join(pid int) error {
	for _, g := range p.v1 {
		if err := cgroups.WriteCgroupProc(g.dir, pid); err != nil {
			return fmt.Errorf("cgroup v1 %s: join %d: %w", g.controller, pid, err)
		}
	}
	return nil
}

// dirs are the v1 group directories.
func (p cgroupPlan) dirs() []string {
	var out []string
	for _, g := range p.v1 {
		out = append(out, g.dir)
	}
	return out
}

// removeV1Groups removes the given v1 groups (and any sub-groups), retrying
// while the kernel still counts exiting tasks. A directory that is not in a
// cgroup filesystem is refused: the paths come from the container's state.
func removeV1Groups(dirs []string) error {
	var errs []error
	for _, d := range dirs {
		if !filepath.IsAbs(d) || filepath.Clean(d) != d {
			errs = append(errs, fmt.Errorf("cgroup v1 group %q: not a clean absolute path", d))
			continue
		}
		var st unix.Statfs_t
		if err := unix.Statfs(d, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			errs = append(errs, fmt.Errorf("cgroup v1 group %s: %w", d, err))
			continue
		}
		if st.Type != unix.CGROUP_SUPER_MAGIC {
			errs = append(errs, fmt.Errorf("cgroup v1 group %s: not in a cgroup v1 filesystem", d))
			continue
		}
		if err := cgroups.RemovePath(d); err != nil {
			errs = append(errs, fmt.Errorf("cgroup v1 group %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// v1Pids lists the processes of the container's v1 groups that are alive
// (the union over the groups).
func v1GroupPids(dirs []string) ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for _, d := range dirs {
		pids, err := cgroups.GetAllPids(d)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		for _, p := range pids {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// v1MemoryStats reads usage and limit from the container's v1 memory
// group, if it has one.
func v1MemoryStats(dirs []string) (usage, limit uint64, ok bool, err error) {
	for _, d := range dirs {
		u, uerr := readUint(filepath.Join(d, "memory.usage_in_bytes"))
		if errors.Is(uerr, os.ErrNotExist) {
			continue
		}
		if uerr != nil {
			return 0, 0, false, uerr
		}
		l, lerr := readUint(filepath.Join(d, "memory.limit_in_bytes"))
		if lerr != nil {
			return 0, 0, false, lerr
		}
		return u, l, true, nil
	}
	return 0, 0, false, nil
}

func readUint(name string) (uint64, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}
