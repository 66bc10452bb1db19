package sandbox

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// fakeCgroups is a kernel made of files: mountinfo, /proc/cgroups and the
// roots' cgroup.controllers, with the device of each reachable mount point.
type fakeCgroups struct {
	files   map[string]string
	devs    map[string]uint64 // mount point -> st_dev; absent: not reachable
	bpf     bool
	release string
}

func (f fakeCgroups) ReadFile(name string) ([]byte, error) {
	s, ok := f.files[name]
	if !ok {
		return nil, fmt.Errorf("open %s: %w", name, os.ErrNotExist)
	}
	return []byte(s), nil
}

func (f fakeCgroups) Dev(path string) (uint64, error) {
	d, ok := f.devs[path]
	if !ok {
		return 0, os.ErrNotExist
	}
	return d, nil
}

func (f fakeCgroups) DeviceBPF() bool { return f.bpf }
func (f fakeCgroups) Release() string { return f.release }

// mi builds one mountinfo line for a mount of device 0:minor.
func mi(id, minor int, mountpoint, fstype, super string) string {
	return fmt.Sprintf("%d 1 0:%d / %s rw,nosuid,nodev,noexec,relatime shared:%d - %s %s %s\n", id, minor, mountpoint, id, fstype, fstype, super)
}

const procCgroupsAll = `#subsys_name	hierarchy	num_cgroups	enabled
cpuset	3	1	1
cpu	1	1	1
cpuacct	2	1	1
blkio	7	1	1
memory	4	51	1
devices	5	1	1
freezer	6	1	1
pids	8	1	1
`

// Android 12-15 on GKI: no pids, no devices controller in the kernel.
const procCgroupsGKI = `#subsys_name	hierarchy	num_cgroups	enabled
cpuset	3	10	1
cpu	2	10	1
cpuacct	4	100	1
blkio	5	2	1
memory	1	20	1
freezer	0	1	1
`

func TestProbeCgroupsLayouts(t *testing.T) {
	type want struct{ use, mount string }
	tests := []struct {
		name     string
		src      fakeCgroups
		mode     string
		want     map[string]want
		cpuQuota bool
		notes    map[string]string // substring of the note
	}{
		{
			name: "debian hybrid (this CI host)",
			src: fakeCgroups{
				files: map[string]string{
					"/proc/self/mountinfo": mi(30, 27, "/sys/fs/cgroup", "tmpfs", "rw,mode=755") +
						mi(31, 28, "/sys/fs/cgroup/cpu", "cgroup", "rw,cpu") +
						mi(32, 29, "/sys/fs/cgroup/memory", "cgroup", "rw,memory") +
						mi(33, 30, "/sys/fs/cgroup/devices", "cgroup", "rw,devices") +
						mi(34, 31, "/sys/fs/cgroup/freezer", "cgroup", "rw,freezer") +
						mi(35, 32, "/sys/fs/cgroup/pids", "cgroup", "rw,pids") +
						mi(36, 33, "/sys/fs/cgroup/systemd", "cgroup", "rw,xattr,name=systemd") +
						mi(37, 34, "/sys/fs/cgroup/unified", "cgroup2", "rw,nsdelegate"),
					"/proc/cgroups": procCgroupsAll,
					"/sys/fs/cgroup/unified/cgroup.controllers": "hugetlb\n",
					"/sys/fs/cgroup/cpu/cpu.cfs_quota_us":       "-1\n",
				},
				devs: map[string]uint64{"/sys/fs/cgroup": 27, "/sys/fs/cgroup/cpu": 28, "/sys/fs/cgroup/memory": 29, "/sys/fs/cgroup/devices": 30,
					"/sys/fs/cgroup/freezer": 31, "/sys/fs/cgroup/pids": 32, "/sys/fs/cgroup/systemd": 33, "/sys/fs/cgroup/unified": 34},
				bpf: true, release: "6.18.0-1-amd64",
			},
			mode:     "hybrid",
			cpuQuota: true,
			want: map[string]want{
				CgroupMemory: {"v1", "/sys/fs/cgroup/memory"}, CgroupCPU: {"v1", "/sys/fs/cgroup/cpu"}, CgroupPids: {"v1", "/sys/fs/cgroup/pids"},
				CgroupFreezer: {"v1", "/sys/fs/cgroup/freezer"}, CgroupDevices: {"v1", "/sys/fs/cgroup/devices"},
			},
		},
		{
			name: "android 14 on GKI: cgroup2 with the freezer only, memcg and cpuctl on v1",
			src: fakeCgroups{
				files: map[string]string{
					"/proc/self/mountinfo": mi(20, 20, "/sys/fs/cgroup", "cgroup2", "rw,memory_recursiveprot") +
						mi(21, 21, "/dev/memcg", "cgroup", "rw,memory") +
						mi(22, 22, "/dev/cpuctl", "cgroup", "rw,cpu") +
						mi(23, 23, "/dev/cpuset", "cgroup", "rw,cpuset,noprefix,release_agent=/sbin/cpuset_release_agent") +
						mi(24, 24, "/acct", "cgroup", "rw,cpuacct") +
						mi(25, 25, "/dev/blkio", "cgroup", "rw,blkio"),
					"/proc/cgroups":                     procCgroupsGKI,
					"/sys/fs/cgroup/cgroup.controllers": "",
					"/dev/cpuctl/cpu.cfs_quota_us":      "-1\n",
				},
				devs: map[string]uint64{"/sys/fs/cgroup": 20, "/dev/memcg": 21, "/dev/cpuctl": 22, "/dev/cpuset": 23, "/acct": 24, "/dev/blkio": 25},
				bpf:  true, release: "6.1.75-android14-11-g1234",
			},
			mode:     "split",
			cpuQuota: true,
			want: map[string]want{
				CgroupMemory: {"v1", "/dev/memcg"}, CgroupCPU: {"v1", "/dev/cpuctl"}, CgroupPids: {"", ""},
				CgroupFreezer: {"v2", ""}, CgroupDevices: {"v2", ""},
			},
			notes: map[string]string{CgroupPids: "no pids controller", CgroupMemory: "own v1 group", CgroupDevices: "BPF"},
		},
		{
			name: "pure cgroup v2 with every controller",
			src: fakeCgroups{
				files: map[string]string{
					"/proc/self/mountinfo":              mi(20, 20, "/sys/fs/cgroup", "cgroup2", "rw,nsdelegate"),
					"/proc/cgroups":                     procCgroupsAll,
					"/sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
				},
				devs: map[string]uint64{"/sys/fs/cgroup": 20},
				bpf:  true, release: "6.12.0",
			},
			mode: "v2",
			want: map[string]want{
				CgroupMemory: {"v2", ""}, CgroupCPU: {"v2", ""}, CgroupPids: {"v2", ""}, CgroupFreezer: {"v2", ""}, CgroupDevices: {"v2", ""},
			},
		},
		{
			name: "cgroup2 without BPF and on a kernel before the v2 freezer",
			src: fakeCgroups{
				files: map[string]string{
					"/proc/self/mountinfo":              mi(20, 20, "/sys/fs/cgroup", "cgroup2", "rw"),
					"/sys/fs/cgroup/cgroup.controllers": "memory pids\n",
				},
				devs:    map[string]uint64{"/sys/fs/cgroup": 20},
				release: "4.19.113",
			},
			mode: "v2",
			want: map[string]want{
				CgroupMemory: {"v2", ""}, CgroupCPU: {"", ""}, CgroupPids: {"v2", ""}, CgroupFreezer: {"", ""}, CgroupDevices: {"", ""},
			},
			notes: map[string]string{CgroupDevices: "CONFIG_CGROUP_BPF", CgroupFreezer: "cannot pause"},
		},
		{
			name: "v1 controllers hidden under a later mount are not used",
			src: fakeCgroups{
				files: map[string]string{
					"/proc/self/mountinfo": mi(30, 27, "/sys/fs/cgroup", "tmpfs", "rw") +
						mi(32, 29, "/sys/fs/cgroup/memory", "cgroup", "rw,memory") +
						mi(33, 30, "/sys/fs/cgroup/pids", "cgroup", "rw,pids") +
						mi(40, 40, "/sys/fs/cgroup", "cgroup2", "rw") +
						mi(41, 41, "/tmp/x/memcg", "cgroup", "rw,memory"),
					"/proc/cgroups":                     procCgroupsAll,
					"/sys/fs/cgroup/cgroup.controllers": "hugetlb",
				},
				// /sys/fs/cgroup now shows the cgroup2; the old memory and
				// pids mount points are gone with the tmpfs.
				devs: map[string]uint64{"/sys/fs/cgroup": 40, "/tmp/x/memcg": 41},
				bpf:  true, release: "6.18.0",
			},
			mode: "split",
			want: map[string]want{
				CgroupMemory: {"v1", "/tmp/x/memcg"}, CgroupCPU: {"", ""}, CgroupPids: {"", ""}, CgroupFreezer: {"v2", ""}, CgroupDevices: {"v2", ""},
			},
		},
		{
			name: "cpu on v1 without CFS bandwidth control",
			src: fakeCgroups{
				files: map[string]string{
					"/proc/self/mountinfo": mi(31, 28, "/sys/fs/cgroup/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct") +
						mi(33, 30, "/sys/fs/cgroup/devices", "cgroup", "rw,devices"),
					"/proc/cgroups": procCgroupsAll,
				},
				devs:    map[string]uint64{"/sys/fs/cgroup/cpu,cpuacct": 28, "/sys/fs/cgroup/devices": 30},
				release: "5.10.0",
			},
			mode: "v1",
			want: map[string]want{
				CgroupMemory: {"", ""}, CgroupCPU: {"v1", "/sys/fs/cgroup/cpu,cpuacct"}, CgroupPids: {"", ""}, CgroupFreezer: {"", ""}, CgroupDevices: {"v1", "/sys/fs/cgroup/devices"},
			},
			notes: map[string]string{CgroupCPU: "CONFIG_CFS_BANDWIDTH"},
		},
		{
			name: "no cgroups mounted at all",
			src: fakeCgroups{
				files: map[string]string{"/proc/self/mountinfo": mi(1, 1, "/", "ext4", "rw")},
				devs:  map[string]uint64{"/": 1},
			},
			mode: "none",
			want: map[string]want{
				CgroupMemory: {"", ""}, CgroupCPU: {"", ""}, CgroupPids: {"", ""}, CgroupFreezer: {"", ""}, CgroupDevices: {"", ""},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := probeCgroups(tt.src)
			if err != nil {
				t.Fatal(err)
			}
			if l.Mode() != tt.mode {
				t.Errorf("mode = %s, want %s (%s)", l.Mode(), tt.mode, l)
			}
			if l.CPUQuotaV1 != tt.cpuQuota {
				t.Errorf("CPUQuotaV1 = %v, want %v", l.CPUQuotaV1, tt.cpuQuota)
			}
			var names []string
			for _, c := range l.Controllers {
				names = append(names, c.Name)
				w := tt.want[c.Name]
				if c.Use != w.use || (w.use == CgroupUseV1 && c.V1Mount != w.mount) {
					t.Errorf("%s: use %q at %q, want %q at %q", c.Name, c.Use, c.V1Mount, w.use, w.mount)
				}
				if n := tt.notes[c.Name]; !strings.Contains(c.Note, n) {
					t.Errorf("%s: note %q, want it to say %q", c.Name, c.Note, n)
				}
			}
			if !slices.Equal(names, probedControllers) {
				t.Errorf("controllers %v, want %v", names, probedControllers)
			}
			if len(l.Rows()) != len(probedControllers) || !strings.Contains(l.String(), l.Mode()) {
				t.Errorf("rows %v, string %q", l.Rows(), l)
			}
		})
	}
}

func TestProbeCgroupsBadInput(t *testing.T) {
	for name, src := range map[string]fakeCgroups{
		"no mountinfo":       {files: map[string]string{}},
		"mountinfo garbage":  {files: map[string]string{"/proc/self/mountinfo": "1 2 3\n"}},
		"device not maj:min": {files: map[string]string{"/proc/self/mountinfo": "1 1 x / / rw - ext4 /dev/x rw\n"}},
		"v2 root unreadable": {files: map[string]string{"/proc/self/mountinfo": mi(1, 1, "/sys/fs/cgroup", "cgroup2", "rw")}, devs: map[string]uint64{"/sys/fs/cgroup": 1}},
	} {
		t.Run(name, func(t *testing.T) {
			if l, err := probeCgroups(src); err == nil {
				t.Fatalf("probe accepted it: %s", l)
			}
		})
	}
}

func TestPlanCgroups(t *testing.T) {
	split, err := probeCgroups(fakeCgroups{
		files: map[string]string{
			"/proc/self/mountinfo":              mi(20, 20, "/sys/fs/cgroup", "cgroup2", "rw") + mi(21, 21, "/dev/memcg", "cgroup", "rw,memory") + mi(22, 22, "/dev/cpuctl", "cgroup", "rw,cpu"),
			"/proc/cgroups":                     procCgroupsGKI,
			"/sys/fs/cgroup/cgroup.controllers": "",
			"/dev/cpuctl/cpu.cfs_quota_us":      "-1",
		},
		devs: map[string]uint64{"/sys/fs/cgroup": 20, "/dev/memcg": 21, "/dev/cpuctl": 22},
		bpf:  true, release: "6.1.0",
	})
	if err != nil {
		t.Fatal(err)
	}
	lim := Limits{MemoryBytes: 64 << 20, CPUMillis: 500, Pids: 100}
	p, err := planCgroups(split, lim, "/workcell", "work")
	if err != nil {
		t.Fatal(err)
	}
	if p.lcMemory || p.lcCPU || p.lcPids {
		t.Errorf("libcontainer is given limits its cgroup2 lacks: %+v", p)
	}
	wantV1 := []v1Group{
		{CgroupMemory, "/dev/memcg/workcell/work", [][2]string{{"memory.limit_in_bytes", "67108864"}}},
		{CgroupCPU, "/dev/cpuctl/workcell/work", [][2]string{{"cpu.cfs_period_us", "100000"}, {"cpu.cfs_quota_us", "50000"}}},
	}
	if fmt.Sprint(p.v1) != fmt.Sprint(wantV1) {
		t.Errorf("v1 groups %v, want %v", p.v1, wantV1)
	}
	if len(p.warnings) != 1 || !strings.Contains(p.warnings[0], "pids limit of 100 not enforced") {
		t.Errorf("warnings %q, want one on the pids limit", p.warnings)
	}
	dirs, warnings := fromLabels(append([]string{"other=x"}, p.labels()...))
	if !slices.Equal(dirs, p.dirs()) || !slices.Equal(warnings, p.warnings) {
		t.Errorf("labels read back %v %v", dirs, warnings)
	}

	noDevices := split
	noDevices.Controllers = slices.Clone(split.Controllers)
	for i := range noDevices.Controllers {
		if noDevices.Controllers[i].Name == CgroupDevices {
			noDevices.Controllers[i].Use = CgroupUseNone
		}
	}
	if _, err := planCgroups(noDevices, lim, "/workcell", "work"); !errors.Is(err, ErrNoDeviceCgroup) {
		t.Errorf("no device cgroup: err %v, want ErrNoDeviceCgroup", err)
	}
	for _, id := range []string{"", "a/b"} {
		if _, err := planCgroups(split, lim, "/workcell", id); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("id %q: err %v, want ErrInvalidSpec", id, err)
		}
	}
}
