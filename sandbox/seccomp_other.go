//go:build !linux

package sandbox

import (
	"errors"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// defaultSeccompProfile is only available where moby's profile builds: a
// spec that cannot carry the default profile must not be run.
func defaultSeccompProfile(*specs.Spec) (*specs.LinuxSeccomp, error) {
	return nil, errors.New("docker's default seccomp profile is only available on linux")
}
