package api

import (
	"regexp"
	"time"
)

// Version is the path prefix of this revision of the API.
const Version = "v1"

// DefaultSocket is where workcelld listens on a Linux phone.
const DefaultSocket = "/run/workcell/workcelld.sock"

// AndroidSocket is where Android's init creates workcelld's control socket
// (the `socket workcelld` line of dist/android/workcelld.rc).
const AndroidSocket = "/dev/socket/workcelld"

// DefaultProfile is the profile name the CLI uses when none is given.
const DefaultProfile = "work"

// State is where a profile is in its life cycle (see DESIGN.md).
type State string

// The states of a profile.
const (
	StateAbsent  State = "absent"
	StateLocked  State = "locked"
	StateStopped State = "stopped"
	StateRunning State = "running"
	StatePaused  State = "paused"
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

// ValidName reports whether name is a valid profile name: [a-z][a-z0-9-]{0,30}.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		if len(name) > 40 { // it comes from a client: echo a bounded part
			name = name[:40] + "..."
		}
		return Errorf(ErrInvalidArgument, "profile name %q is invalid: want [a-z][a-z0-9-]{0,30}", name)
	}
	return nil
}

// Limits are the resource limits of a profile; zero means unlimited.
type Limits struct {
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	// CPUMillis is the CPU bandwidth in thousandths of a CPU (1000 = one CPU).
	CPUMillis int64 `json:"cpu_millis,omitempty"`
	Pids      int64 `json:"pids,omitempty"`
}

// Profile is the status of one profile.
type Profile struct {
	Name  string `json:"name"`
	State State  `json:"state"`
	// Pid is the host pid of the profile's init, 0 when it has none.
	Pid       int        `json:"pid"`
	Limits    Limits     `json:"limits"`
	CreatedAt time.Time  `json:"created_at"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	// Encrypted: the profile's writable layer is fscrypt-encrypted (false
	// only under --insecure-unencrypted-storage).
	Encrypted bool `json:"encrypted"`
	// Passphrase: unlocking needs the user's passphrase (else the daemon
	// unlocks the profile by itself).
	Passphrase bool `json:"passphrase"`
	// FailedUnlocks counts wrong passphrases in a row (unlocks and
	// passphrase changes), kept across daemon restarts.
	FailedUnlocks int `json:"failed_unlocks,omitempty"`
	// PassphraseRetryAt, after too many wrong passphrases, is when the
	// next try is allowed; a try before it is refused unchecked.
	PassphraseRetryAt *time.Time `json:"passphrase_retry_at,omitempty"`
	// Standby: a stopped profile whose container is prepared (namespaces,
	// mounts, cgroups, seccomp in place); start then takes milliseconds.
	Standby bool `json:"standby,omitempty"`
	// Warnings are what the kernel cannot enforce for the running
	// container, e.g. a pids limit on a kernel without the pids cgroup
	// controller: the profile runs, without that limit.
	Warnings []string `json:"warnings,omitempty"`
}

// InstallRequest is the body of POST /v1/profiles.
type InstallRequest struct {
	Name string `json:"name"`
	// Bundle is the absolute path, on the daemon's host, of an OCI runtime
	// bundle (config.json and rootfs). It is copied; the source may be
	// deleted afterwards.
	Bundle string `json:"bundle"`
	Limits Limits `json:"limits"`
	// NoStandby: never keep this profile's container prepared while it
	// is stopped (saves the idle init; start then takes tens of ms).
	NoStandby bool `json:"no_standby,omitempty"`
}

// StartRequest is the optional body of POST /v1/profiles/{name}/start.
type StartRequest struct {
	// Cold starts without the prepared container (it is discarded first):
	// for measurements and troubleshooting.
	Cold bool `json:"cold,omitempty"`
}

// StopRequest is the optional body of POST /v1/profiles/{name}/stop.
type StopRequest struct {
	// TimeoutMillis is how long init has after SIGTERM before SIGKILL;
	// 0 means the daemon's default. Above the daemon's stop_timeout_max
	// (5 minutes by default) it is refused. A wipe, lock or removal by
	// root or the system uid cuts the grace short.
	TimeoutMillis int64 `json:"timeout_ms,omitempty"`
}

// Stats is the resource usage of a running or paused profile.
type Stats struct {
	Name             string `json:"name"`
	State            State  `json:"state"`
	CPUUsageNanos    uint64 `json:"cpu_usage_ns"`
	MemoryBytes      uint64 `json:"memory_bytes"`
	MemoryLimitBytes uint64 `json:"memory_limit_bytes,omitempty"`
	Pids             uint64 `json:"pids"`
	PidsLimit        uint64 `json:"pids_limit,omitempty"`
	// Network traffic of the profile (see NetworkCounters).
	NetInBytes    uint64 `json:"net_in_bytes"`
	NetInPackets  uint64 `json:"net_in_packets"`
	NetOutBytes   uint64 `json:"net_out_bytes"`
	NetOutPackets uint64 `json:"net_out_packets"`
}

// StreamEndTrailer is the HTTP trailer of a stream (logs, events, the
// binder audit) that says why workcelld ended it: for example the profile
// was locked. It is absent when the client ended it.
const StreamEndTrailer = "Workcell-Stream-End"

// Event is one line of GET /v1/events: a profile changed state.
type Event struct {
	Time    time.Time `json:"time"`
	Profile string    `json:"profile"`
	State   State     `json:"state"`
	Pid     int       `json:"pid,omitempty"`
	// Reason says why, for changes the user did not ask for
	// (for example "init exited with status 1").
	Reason string `json:"reason,omitempty"`
}

// ExecRequest is the body of POST /v1/profiles/{name}/exec. The process's
// stdio is made by the daemon and relayed over the upgraded connection
// (see ExecUpgrade and Client.Exec).
type ExecRequest struct {
	Args []string `json:"args"`
	Env  []string `json:"env,omitempty"`
	Cwd  string   `json:"cwd,omitempty"`
	// Tty asks for a terminal: the process gets a pty (stdin, stdout and
	// stderr on it) of the size in Rows and Cols.
	Tty  bool   `json:"tty,omitempty"`
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
	// User runs the process as another user of the container than the
	// bundle's process.user; only root and the system uid may ask.
	User *ExecUser `json:"user,omitempty"`
}

// ExecUser is a user of the container (a container uid, mapped like every
// other one where the profile has a user namespace).
type ExecUser struct {
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
}

// ExecResult is the payload of the exit frame, the last the daemon sends.
type ExecResult struct {
	ExitCode int        `json:"exit_code"`
	Error    *ErrorBody `json:"error,omitempty"`
}

// VersionInfo is the body of GET /v1/version.
type VersionInfo struct {
	Version   string `json:"version"`
	API       string `json:"api"`
	CgroupV2  bool   `json:"cgroup_v2"`
	StateDir  string `json:"state_dir"`
	DaemonPid int    `json:"daemon_pid"`
	// Identity is how work's ids relate to the host's: "userns" (each
	// profile in its own user namespace) or "uid-range" (none: work runs
	// under its profile's id range without a mapping); IdentityWhy says why.
	Identity    string `json:"identity,omitempty"`
	IdentityWhy string `json:"identity_why,omitempty"`
	// PIDMode is "pid-namespace" (each profile its own) or
	// "shared-pid+hidepid" (the host's, with ProcOptions on the profile's
	// /proc, killed by cgroup); PIDModeWhy says why.
	PIDMode     string   `json:"pid_mode,omitempty"`
	PIDModeWhy  string   `json:"pid_mode_why,omitempty"`
	ProcOptions []string `json:"proc_options,omitempty"`
}
