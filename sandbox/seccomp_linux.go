package sandbox

import (
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// defaultSeccompProfile returns Docker's default profile for s; it reads
// s.Process.Capabilities, which must be final.
func defaultSeccompProfile(s *specs.Spec) (*specs.LinuxSeccomp, error) {
	return seccomp.GetDefaultProfile(s)
}
