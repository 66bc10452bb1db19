package sandbox

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A defaultMount is one mount a bundle may ask for: a mount of `runc spec`'s
// default config, at its one destination. The daemon builds the mount from
// this entry, never from the bundle's options: a bundle only says which of
// these it wants.
type defaultMount struct {
	dest    string
	types   []string // the first is the source the mount gets
	options []string
}

// defaultMounts are `runc spec`'s mounts with runc's options (proc also gets
// nosuid, noexec, nodev, as Docker's default has it), in the order they are
// mounted: a bundle cannot reorder them to shadow one with another.
var defaultMounts = []defaultMount{
	{"/proc", []string{"proc"}, []string{"nosuid", "noexec", "nodev"}},
	{"/dev", []string{"tmpfs"}, []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
	{"/dev/pts", []string{"devpts"}, []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
	{"/dev/shm", []string{"tmpfs"}, []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
	{"/dev/mqueue", []string{"mqueue"}, []string{"nosuid", "noexec", "nodev"}},
	// Read-only: a network namespace does not make sysfs writes harmless,
	// and the cgroup tree is the daemon's.
	{"/sys", []string{"sysfs"}, []string{"nosuid", "noexec", "nodev", "ro"}},
	{"/sys/fs/cgroup", []string{"cgroup", "cgroup2"}, []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
}

// shmSizeMax bounds the one option a bundle may choose: the size of
// /dev/shm. Browsers and other shared-memory users need more than runc's
// 64 MiB (Docker has --shm-size for them); the pages are charged to the
// profile's memory cgroup, so this is a second fence, not the first.
const shmSizeMax = 1 << 30

// validateMounts checks that every mount of the bundle is one of
// defaultMounts, once, at its destination.
func validateMounts(mounts []specs.Mount, bad func(field, format string, a ...any)) {
	seen := map[string]int{}
	for i, m := range mounts {
		f := fmt.Sprintf("mounts[%d]", i)
		for j, o := range m.Options {
			if o == "bind" || o == "rbind" {
				bad(fmt.Sprintf("%s.options[%d]", f, j), "bind mounts of host paths are not allowed")
			}
		}
		if len(m.UIDMappings) > 0 {
			bad(f+".uidMappings", "idmapped mounts are not allowed")
		}
		if len(m.GIDMappings) > 0 {
			bad(f+".gidMappings", "idmapped mounts are not allowed")
		}
		if m.Type == "bind" || m.Type == "rbind" {
			bad(f+".type", "bind mounts of host paths are not allowed")
			continue
		}
		if !slices.ContainsFunc(defaultMounts, func(d defaultMount) bool { return slices.Contains(d.types, m.Type) }) {
			bad(f+".type", "mount type %s is not allowed (allowed: proc, tmpfs, devpts, mqueue, sysfs, cgroup, cgroup2)", bounded(m.Type))
			continue
		}
		if !strings.HasPrefix(m.Destination, "/") {
			bad(f+".destination", "%s must be an absolute path", bounded(m.Destination))
			continue
		}
		dest := filepath.Clean(m.Destination)
		d, ok := lookupDefaultMount(dest)
		if !ok || !slices.Contains(d.types, m.Type) {
			bad(f+".destination", "%s only at %s", m.Type, strings.Join(destinationsOf(m.Type), ", "))
			continue
		}
		if j, dup := seen[dest]; dup {
			bad(f+".destination", "%s is mounted already by mounts[%d]", dest, j)
			continue
		}
		seen[dest] = i
		if dest == "/dev/shm" {
			for j, o := range m.Options {
				if v, ok := strings.CutPrefix(o, "size="); ok {
					if _, err := parseShmSize(v); err != nil {
						bad(fmt.Sprintf("%s.options[%d]", f, j), "%v", err)
					}
				}
			}
		}
	}
}

// hardenMounts builds the container's mounts from the bundle's validated
// ones: each is the default mount at its destination, with the daemon's
// options; the bundle's options are read only for /dev/shm's size.
func hardenMounts(mounts []specs.Mount, opts HardenOptions) []specs.Mount {
	var out []specs.Mount
	for _, d := range defaultMounts {
		if d.dest == "/dev/mqueue" && opts.NoMqueue {
			continue
		}
		for _, m := range mounts {
			if filepath.Clean(m.Destination) != d.dest || !slices.Contains(d.types, m.Type) {
				continue
			}
			opts := slices.Clone(d.options)
			if d.dest == "/dev/shm" {
				for _, o := range m.Options {
					v, ok := strings.CutPrefix(o, "size=")
					if n, err := parseShmSize(v); ok && err == nil {
						opts = slices.DeleteFunc(opts, func(o string) bool { return strings.HasPrefix(o, "size=") })
						opts = append(opts, "size="+strconv.FormatInt(n, 10))
					}
				}
			}
			out = append(out, specs.Mount{Destination: d.dest, Type: m.Type, Source: m.Type, Options: opts})
			break
		}
	}
	return out
}

func lookupDefaultMount(dest string) (defaultMount, bool) {
	i := slices.IndexFunc(defaultMounts, func(d defaultMount) bool { return d.dest == dest })
	if i < 0 {
		return defaultMount{}, false
	}
	return defaultMounts[i], true
}

func destinationsOf(typ string) []string {
	var out []string
	for _, d := range defaultMounts {
		if slices.Contains(d.types, typ) {
			out = append(out, d.dest)
		}
	}
	return out
}

// parseShmSize reads a tmpfs size= value in bytes, k, m or g (no % of the
// host's memory), bounded by shmSizeMax.
func parseShmSize(v string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(v, "k"), strings.HasSuffix(v, "K"):
		mult = 1 << 10
	case strings.HasSuffix(v, "m"), strings.HasSuffix(v, "M"):
		mult = 1 << 20
	case strings.HasSuffix(v, "g"), strings.HasSuffix(v, "G"):
		mult = 1 << 30
	}
	digits := v
	if mult > 1 {
		digits = v[:len(v)-1]
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n <= 0 || digits[0] == '+' {
		return 0, fmt.Errorf("size=%s is not a size such as 256m", bounded(v))
	}
	if n > shmSizeMax/mult {
		return 0, fmt.Errorf("size=%s exceeds /dev/shm's cap of %d MiB", bounded(v), shmSizeMax>>20)
	}
	return n * mult, nil
}

// bounded quotes an attacker-chosen string for an error, cut to a length
// that keeps a refusal's log line short.
func bounded(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

// hardenSharedPID adds the daemon's procfs options to the container's
// /proc when it shares the host's pid namespace, and refuses what cannot
// work or would not be safe there.
func hardenSharedPID(s *specs.Spec, opts HardenOptions) error {
	if !opts.SharedPID {
		return nil
	}
	if opts.UserNS != nil {
		// The host's pid namespace belongs to the host's user namespace:
		// root in another cannot mount its procfs.
		return fmt.Errorf("shared pid namespace: a user namespace cannot mount the host pid namespace's /proc; work runs under its uid range without one: %w", ErrInvalidSpec)
	}
	if opts.UIDRange == nil {
		return fmt.Errorf("shared pid namespace: work would be host root, which sees and signals every host process; it needs its uid range: %w", ErrInvalidSpec)
	}
	if len(opts.ProcOptions) == 0 {
		return fmt.Errorf("shared pid namespace: no procfs options (hidepid) for /proc: %w", ErrInvalidSpec)
	}
	for _, o := range opts.ProcOptions {
		if !strings.HasPrefix(o, "hidepid=") && !strings.HasPrefix(o, "subset=") {
			return fmt.Errorf("shared pid namespace: procfs option %q is not hidepid= or subset=: %w", o, ErrInvalidSpec)
		}
	}
	// Without /proc/sys (subset=pid) the runtime cannot write a sysctl.
	if slices.Contains(opts.ProcOptions, "subset=pid") && s.Linux != nil && len(s.Linux.Sysctl) > 0 {
		keys := slices.Sorted(maps.Keys(s.Linux.Sysctl))
		return &FieldError{"linux.sysctl." + keys[0], "cannot be set on this kernel: without pid namespaces the container's /proc holds only its processes (subset=pid), no /proc/sys"}
	}
	for i := range s.Mounts {
		if s.Mounts[i].Type == "proc" && s.Mounts[i].Destination == "/proc" {
			s.Mounts[i].Options = append(s.Mounts[i].Options, opts.ProcOptions...)
		}
	}
	return nil
}
