package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of the times in /proc/<pid>/stat: USER_HZ, fixed at
// 100 by the kernel ABI on every architecture Go supports.
const userHZ = 100

// procStatus returns the fields of /proc/<pid>/status we report.
func procStatus(pid int) (rssBytes uint64, threads int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			kb, _ := strconv.ParseUint(f[0], 10, 64)
			rssBytes = kb << 10
		case "Threads":
			threads, _ = strconv.Atoi(f[0])
		}
	}
	return rssBytes, threads, nil
}

// procCPU is a process's CPU use: utime+stime from /proc/<pid>/stat (in
// ticks), and for finer grain the sum over its threads of schedstat's
// run time and of their context switches (each one a wakeup).
type procCPU struct {
	ticks    uint64
	runNanos uint64
	switches uint64
}

func readProcCPU(pid int) (procCPU, error) {
	var c procCPU
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return c, err
	}
	// Fields after the command, which may hold spaces, in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return c, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return c, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// f[0] is field 3 (state); utime is field 14, stime 15.
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	c.ticks = ut + st
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		dir := fmt.Sprintf("/proc/%d/task/%s", pid, t.Name())
		if s, err := os.ReadFile(dir + "/schedstat"); err == nil {
			if f := strings.Fields(string(s)); len(f) > 0 {
				n, _ := strconv.ParseUint(f[0], 10, 64)
				c.runNanos += n
			}
		}
		if s, err := os.ReadFile(dir + "/status"); err == nil {
			for line := range strings.Lines(string(s)) {
				k, v, _ := strings.Cut(line, ":")
				if k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches" {
					n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
					c.switches += n
				}
			}
		}
	}
	return c, nil
}

// cgroupDirs returns the folders of cgroup parent in every mounted
// hierarchy (v1 controllers, the named systemd one, the hybrid unified
// one, or the v2 root).
func cgroupDirs(parent string) []string {
	rel := strings.Trim(parent, "/")
	var dirs []string
	if m, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", rel)); m != nil {
		dirs = append(dirs, m...)
	}
	if fi, err := os.Stat(filepath.Join("/sys/fs/cgroup", rel)); err == nil && fi.IsDir() {
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", rel))
	}
	return dirs
}

// pidsCurrent counts the processes of a cgroup below the root (v1 pids
// controller or v2).
func pidsCurrent(cgroup string) (int, error) {
	rel := strings.Trim(cgroup, "/")
	for _, p := range []string{
		filepath.Join("/sys/fs/cgroup/pids", rel, "pids.current"),
		filepath.Join("/sys/fs/cgroup", rel, "pids.current"),
	} {
		if b, err := os.ReadFile(p); err == nil {
			return strconv.Atoi(strings.TrimSpace(string(b)))
		}
	}
	return 0, fmt.Errorf("no pids.current for cgroup %s", cgroup)
}

// freezerState reads the v1 freezer state (or v2 cgroup.freeze as
// FROZEN/THAWED) of a cgroup below the root.
func freezerState(cgroup string) (string, error) {
	rel := strings.Trim(cgroup, "/")
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/freezer", rel, "freezer.state")); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", rel, "cgroup.freeze"))
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(string(b)) == "1" {
		return "FROZEN", nil
	}
	return "THAWED", nil
}

// removeCgroups removes every cgroup folder of the run, deepest first. A
// process still inside (which a clean teardown never leaves) is thawed and
// killed first: it can only be one of ours.
func removeCgroups(parent string) error {
	if parent == "" || strings.Trim(parent, "/") == "" {
		return nil
	}
	var errs []error
	for _, root := range cgroupDirs(parent) {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		slices.Reverse(dirs) // children before parents
		for _, dir := range dirs {
			if err := rmdirCgroup(dir); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func rmdirCgroup(dir string) error {
	err := syscall.Rmdir(dir)
	if err == nil || errors.Is(err, syscall.ENOENT) {
		return nil
	}
	if !errors.Is(err, syscall.EBUSY) {
		return fmt.Errorf("remove cgroup %s: %w", dir, err)
	}
	_ = os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("THAWED"), 0)
	_ = os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte("0"), 0)
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	left := strings.Fields(string(b))
	for _, s := range left {
		if pid, err := strconv.Atoi(s); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for range 50 {
		if err = syscall.Rmdir(dir); err == nil || errors.Is(err, syscall.ENOENT) {
			if len(left) > 0 {
				return fmt.Errorf("cgroup %s still held processes %v at the end (killed)", dir, left)
			}
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: %w (processes %v)", dir, err, left)
}
