package images

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Holder is a process that keeps files under a path in use.
type Holder struct {
	PID  int
	Comm string
	// Uses says how, without file names (those can be work data):
	// "fd 3", "cwd", "root", "exe", "mmap".
	Uses []string
}

func (h Holder) String() string {
	return fmt.Sprintf("pid %d (%s): %s", h.PID, h.Comm, strings.Join(h.Uses, ", "))
}

func describeHolders(hs []Holder) string {
	s := make([]string, len(hs))
	for i, h := range hs {
		s[i] = h.String()
	}
	return strings.Join(s, "; ")
}

// Holders scans /proc for processes whose open files, working or root
// directory, executable or memory mappings are under path. If path is a
// mountpoint, anything on that filesystem counts, whatever path a process
// in another mount namespace sees for it; otherwise the path prefix
// decides. Processes that vanish during the scan are skipped.
func Holders(ctx context.Context, path string) ([]Holder, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("holders of %s: %w", path, err)
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	m := matcher{prefix: abs}
	if mnt, err := mountAt(abs); err == nil && mnt != nil {
		var st unix.Stat_t
		if err := unix.Stat(abs, &st); err == nil {
			m.dev, m.byDev = st.Dev, true
		}
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("holders of %s: %w", path, err)
	}
	var hs []Holder
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if uses := m.scan(pid); len(uses) > 0 {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			hs = append(hs, Holder{PID: pid, Comm: strings.TrimSpace(string(comm)), Uses: uses})
		}
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].PID < hs[j].PID })
	return hs, nil
}

type matcher struct {
	prefix string
	dev    uint64
	byDev  bool
}

func (m *matcher) under(p string) bool {
	return p == m.prefix || strings.HasPrefix(p, m.prefix+"/") || m.prefix == "/"
}

// link matches a /proc magic link: by the device of what it points to, or
// by the path it shows.
func (m *matcher) link(proc string) bool {
	if m.byDev {
		var st unix.Stat_t
		if unix.Stat(proc, &st) == nil && st.Dev == m.dev {
			return true
		}
	}
	target, err := os.Readlink(proc)
	return err == nil && m.under(strings.TrimSuffix(target, " (deleted)"))
}

func (m *matcher) scan(pid int) []string {
	base := fmt.Sprintf("/proc/%d", pid)
	var uses []string
	for _, l := range []string{"cwd", "root", "exe"} {
		if m.link(base + "/" + l) {
			uses = append(uses, l)
		}
	}
	if fds, err := os.ReadDir(base + "/fd"); err == nil {
		for _, fd := range fds {
			if m.link(base + "/fd/" + fd.Name()) {
				uses = append(uses, "fd "+fd.Name())
			}
		}
	}
	if m.maps(base + "/maps") {
		uses = append(uses, "mmap")
	}
	return uses
}

// maps reports whether any mapping in a /proc/PID/maps file is of a file
// under the path. Lines: addr perms offset major:minor inode [path].
func (m *matcher) maps(file string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[4] == "0" {
			continue
		}
		if m.byDev {
			if maj, min, ok := strings.Cut(fields[3], ":"); ok {
				a, err1 := strconv.ParseUint(maj, 16, 32)
				b, err2 := strconv.ParseUint(min, 16, 32)
				if err1 == nil && err2 == nil && unix.Mkdev(uint32(a), uint32(b)) == m.dev {
					return true
				}
			}
		}
		if m.under(strings.Join(fields[5:], " ")) {
			return true
		}
	}
	return false
}
