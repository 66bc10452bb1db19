package sandbox

import "github.com/opencontainers/cgroups"

// CgroupV2 reports whether the host runs the unified cgroup v2 hierarchy
// (phones do; the hybrid v1 hosts of the CI do not).
func CgroupV2() bool { return cgroups.IsCgroup2UnifiedMode() }
