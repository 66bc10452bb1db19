package sandbox

import (
	"fmt"
	"math"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Rlimit caps: the highest hard limit a bundle may give its processes. The
// runtime sets them as root, above anything the daemon itself holds, so a
// bundle's limit is a grant, not a restriction.
const (
	// MaxNofile is the kernel's default fs.nr_open: more is memory the
	// profile's cgroup barely sees.
	MaxNofile = 1 << 20
	// MaxMemlock bounds the memory work may pin out of reach of reclaim
	// (the personal side's memory pressure).
	MaxMemlock = 64 << 20
	// MaxMsgqueue bounds POSIX message queue bytes, counted per host uid.
	MaxMsgqueue = 8 << 20
	// MaxNice (20 - nice) keeps work from raising its priority above
	// nice 0, the personal side's default.
	MaxNice = 20
)

// rlimitCaps is the allow-list of rlimit types with the highest hard limit
// each may have. The ones at MaxUint64 only restrict the container's own
// processes (the pids and memory cgroups bound them anyway); RTPRIO and
// RTTIME at 0 keep work off real-time scheduling, which would starve the
// personal side.
var rlimitCaps = map[string]uint64{
	"RLIMIT_AS":         math.MaxUint64,
	"RLIMIT_CORE":       math.MaxUint64,
	"RLIMIT_CPU":        math.MaxUint64,
	"RLIMIT_DATA":       math.MaxUint64,
	"RLIMIT_FSIZE":      math.MaxUint64,
	"RLIMIT_LOCKS":      math.MaxUint64,
	"RLIMIT_NPROC":      math.MaxUint64,
	"RLIMIT_RSS":        math.MaxUint64,
	"RLIMIT_SIGPENDING": math.MaxUint64,
	"RLIMIT_STACK":      math.MaxUint64,
	"RLIMIT_MEMLOCK":    MaxMemlock,
	"RLIMIT_MSGQUEUE":   MaxMsgqueue,
	"RLIMIT_NICE":       MaxNice,
	"RLIMIT_NOFILE":     MaxNofile,
	"RLIMIT_RTPRIO":     0,
	"RLIMIT_RTTIME":     0,
}

// defaultRlimits are set where the bundle sets none of that type, so that
// the container never inherits the daemon's own (an init's may be
// unlimited): systemd's defaults for NOFILE and MEMLOCK.
var defaultRlimits = []specs.POSIXRlimit{
	{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 524288},
	{Type: "RLIMIT_MEMLOCK", Soft: 8 << 20, Hard: 8 << 20},
	{Type: "RLIMIT_MSGQUEUE", Soft: 819200, Hard: 819200},
	{Type: "RLIMIT_NICE", Soft: 0, Hard: 0},
	{Type: "RLIMIT_RTPRIO", Soft: 0, Hard: 0},
	{Type: "RLIMIT_RTTIME", Soft: 0, Hard: 0},
}

func validateRlimits(rl []specs.POSIXRlimit, bad func(field, format string, a ...any)) {
	seen := map[string]int{}
	for i, r := range rl {
		f := fmt.Sprintf("process.rlimits[%d]", i)
		limit, ok := rlimitCaps[r.Type]
		if !ok {
			bad(f+".type", "unknown rlimit %s", bounded(r.Type))
			continue
		}
		if j, dup := seen[r.Type]; dup {
			bad(f+".type", "%s is set already by process.rlimits[%d]", r.Type, j)
			continue
		}
		seen[r.Type] = i
		if r.Hard > limit {
			bad(f+".hard", "%s %d exceeds the cap of %d", r.Type, r.Hard, limit)
		}
		if r.Soft > r.Hard {
			bad(f+".soft", "%s soft limit %d is above its hard limit %d", r.Type, r.Soft, r.Hard)
		}
	}
}

// hardenRlimits returns the bundle's validated rlimits plus the defaults of
// the capped types it does not set.
func hardenRlimits(rl []specs.POSIXRlimit) []specs.POSIXRlimit {
	out := slices.Clone(rl)
	for _, d := range defaultRlimits {
		if !slices.ContainsFunc(rl, func(r specs.POSIXRlimit) bool { return r.Type == d.Type }) {
			out = append(out, d)
		}
	}
	return out
}
