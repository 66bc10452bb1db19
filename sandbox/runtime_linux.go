package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runc/libcontainer/system"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Option configures a Runtime.
type Option func(*options) error

type options struct {
	logger       *slog.Logger
	cgroupParent string
}

// WithLogger sets the logger; default: discard everything.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("WithLogger: nil logger")
		}
		o.logger = l
		return nil
	}
}

// WithCgroupParent sets the cgroup under which containers are placed when
// Spec.Harden.CgroupParent is empty, and where Remove looks for the cgroups
// of half-created containers; default DefaultCgroupParent.
func WithCgroupParent(p string) Option {
	return func(o *options) error {
		if strings.Trim(p, "/") == "" || strings.Contains(p, "..") {
			return fmt.Errorf("WithCgroupParent: %q is not a cgroup path below the root", p)
		}
		o.cgroupParent = "/" + strings.Trim(p, "/")
		return nil
	}
}

// Runtime creates, adopts and removes containers whose libcontainer state
// lives under one root directory.
type Runtime struct {
	root         string
	log          *slog.Logger
	cgroupParent string
	// probe reads the cgroup layout at each start (mounts can change
	// under a running daemon); tests fake layouts through it.
	probe func(context.Context) (CgroupLayout, error)
}

// New returns a Runtime keeping container state under root (created 0700 if
// missing), e.g. /run/workcell/containers.
func New(root string, opts ...Option) (*Runtime, error) {
	o := options{
		logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		cgroupParent: DefaultCgroupParent,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("sandbox runtime: %w", err)
		}
	}
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("sandbox runtime: state root %q is not absolute", root)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox runtime: %w", err)
	}
	return &Runtime{root: root, log: o.logger, cgroupParent: o.cgroupParent, probe: ProbeCgroups}, nil
}

// Spec is what Start needs to run one container.
type Spec struct {
	ID        string
	BundleDir string
	// Harden carries the daemon's decisions; its ID is set from Spec.ID and
	// an empty CgroupParent takes the Runtime's.
	Harden HardenOptions
	// Stdout receives init's stdout and stderr (e.g. an O_APPEND log file);
	// nil means /dev/null. Init's stdin is /dev/null.
	Stdout *os.File
}

// Start creates the container and returns once init's user process is
// running. On any failure nothing is left behind: no cgroup, no state dir.
func (r *Runtime) Start(ctx context.Context, s Spec) (*Container, error) {
	c, err := r.Prepare(ctx, s)
	if err != nil {
		return nil, err
	}
	if err := c.Begin(ctx); err != nil {
		r.discard(c.lc)
		if err := removeV1Groups(c.v1); err != nil {
			r.log.Warn("cleanup after failed start", "id", s.ID, "err", err)
		}
		c.Close()
		return nil, fmt.Errorf("start %s: %w", s.ID, err)
	}
	return c, nil
}

// Prepare creates the container and runs its init up to the last step
// before the user's process: namespaces, cgroups, mounts, capabilities and
// seccomp are in place, and init waits (state Created) until Begin lets it
// exec. Starting a prepared container costs only that exec. On any failure
// nothing is left behind.
func (r *Runtime) Prepare(ctx context.Context, s Spec) (_ *Container, retErr error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.ID, err)
	}
	if s.Harden.ID != "" && s.Harden.ID != s.ID {
		return nil, fmt.Errorf("start %s: Harden.ID %q differs from the container id: %w", s.ID, s.Harden.ID, ErrInvalidSpec)
	}
	spec, err := LoadBundle(s.BundleDir)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", s.ID, err)
	}
	h := s.Harden
	h.ID = s.ID
	if h.CgroupParent == "" {
		h.CgroupParent = r.cgroupParent
	}
	hs, err := Harden(spec, s.BundleDir, h)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", s.ID, err)
	}
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: s.ID, Spec: hs})
	if err != nil {
		return nil, fmt.Errorf("start %s: convert spec: %w: %w", s.ID, err, ErrInvalidSpec)
	}
	proc, err := initProcess(hs.Process)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", s.ID, err)
	}
	user := specUser(hs.Process.User)
	cfg.Labels = append(cfg.Labels, user.label())
	// Limits go where the kernel has the controller: libcontainer gets
	// those its cgroup has, the sandbox's own v1 groups the rest, and a
	// limit no hierarchy can enforce becomes a warning.
	layout, err := r.probe(ctx)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", s.ID, err)
	}
	plan, err := planCgroups(layout, h.Limits, h.CgroupParent, s.ID)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", s.ID, err)
	}
	plan.strip(cfg.Cgroups.Resources)
	cfg.Labels = append(cfg.Labels, plan.labels()...)
	for _, w := range plan.warnings {
		r.log.Warn("limit not enforced", "id", s.ID, "warning", w)
	}
	if err := plan.create(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.ID, err)
	}
	defer func() {
		// Runs after discard below has killed init.
		if retErr != nil {
			if err := removeV1Groups(plan.dirs()); err != nil {
				r.log.Warn("cleanup after failed start", "id", s.ID, "err", err)
			}
		}
	}()
	ids := rangeOf(h)
	if ids != nil {
		cfg.Labels = append(cfg.Labels, ids.label())
	}
	if s.Stdout != nil {
		proc.Stdout, proc.Stderr = s.Stdout, s.Stdout
	}

	lc, err := libcontainer.Create(r.root, s.ID, cfg)
	if err != nil {
		if errors.Is(err, libcontainer.ErrExist) {
			return nil, fmt.Errorf("start %s: %w", s.ID, err)
		}
		// Create makes the state dir last; a failure after manager.New
		// leaves nothing but be sure of the cgroup.
		return nil, fmt.Errorf("start %s: create: %w", s.ID, err)
	}
	defer func() {
		if retErr != nil {
			r.discard(lc)
		}
	}()
	if err := lc.Start(proc); err != nil {
		return nil, fmt.Errorf("start %s: run init: %w", s.ID, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.ID, err)
	}
	pid, err := proc.Pid()
	if err != nil {
		return nil, fmt.Errorf("start %s: init pid: %w", s.ID, err)
	}
	// init waits for Begin: it joins the v1 groups before the user's
	// process exists, so everything it forks is in them.
	if err := plan.join(pid); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.ID, err)
	}
	c := &Container{id: s.ID, lc: lc, pid: pid, pidfd: -1, log: r.log, reaped: make(chan struct{}), user: &user,
		v1: plan.dirs(), warnings: plan.warnings, ids: ids}
	// The pidfd is taken before the reaper can reap, so it refers to init.
	c.pidfd, err = unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("start %s: pidfd_open %d: %w", s.ID, pid, err)
	}
	go func() {
		// Reap our child so no zombie is left; the exit is observed
		// through the pidfd.
		_, _ = proc.Wait()
		close(c.reaped)
	}()
	r.log.Debug("container prepared", "id", s.ID, "pid", pid, "cgroup", hs.Linux.CgroupsPath)
	return c, nil
}

// discard tears down a container whose start failed half way.
func (r *Runtime) discard(lc *libcontainer.Container) {
	if err := lc.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) && !errors.Is(err, os.ErrProcessDone) {
		r.log.Debug("kill after failed start", "id", lc.ID(), "err", err)
	}
	if st, err := lc.Status(); err == nil && st == libcontainer.Paused {
		_ = lc.Resume()
	}
	ctx, cancel := context.WithTimeout(context.Background(), discardKillTimeout)
	defer cancel()
	if err := killShared(ctx, lc); err != nil {
		r.log.Warn("cleanup after failed start", "id", lc.ID(), "err", err)
	}
	if err := lc.Destroy(); err != nil {
		r.log.Warn("cleanup after failed start", "id", lc.ID(), "err", err)
	}
}

// initProcess converts the hardened spec's process for libcontainer.
// Capabilities, no_new_privs and seccomp come from the container config.
func initProcess(p *specs.Process) (*libcontainer.Process, error) {
	lp := &libcontainer.Process{
		Args: p.Args,
		Env:  p.Env,
		Cwd:  p.Cwd,
		UID:  int(p.User.UID),
		GID:  int(p.User.GID),
		Init: true,
	}
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	for i, rl := range p.Rlimits {
		t, ok := rlimits[rl.Type]
		if !ok {
			return nil, &FieldError{fmt.Sprintf("process.rlimits[%d].type", i), fmt.Sprintf("unknown rlimit %q", rl.Type)}
		}
		lp.Rlimits = append(lp.Rlimits, configs.Rlimit{Type: t, Hard: rl.Hard, Soft: rl.Soft})
	}
	return lp, nil
}

var rlimits = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

// Load adopts a container present in the state root, e.g. one started by an
// earlier daemon process. errors.Is(err, ErrNotExist) when there is none.
func (r *Runtime) Load(ctx context.Context, id string) (*Container, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("load %s: %w", id, err)
	}
	lc, err := libcontainer.Load(r.root, id)
	if err != nil {
		if errors.Is(err, libcontainer.ErrNotExist) || errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("load %s: %w", id, ErrNotExist)
		}
		return nil, fmt.Errorf("load %s: %w", id, err)
	}
	st, err := lc.State()
	if err != nil {
		return nil, fmt.Errorf("load %s: state: %w", id, err)
	}
	c := &Container{id: id, lc: lc, pid: st.InitProcessPid, pidfd: -1, log: r.log, user: userFromLabels(st.Config.Labels), ids: rangeFromLabels(st.Config.Labels)}
	c.v1, c.warnings = fromLabels(st.Config.Labels)
	if st.InitProcessPid > 0 {
		fd, err := unix.PidfdOpen(st.InitProcessPid, unix.PIDFD_NONBLOCK)
		switch {
		case err == nil:
			// The pid may have been reused between init's death and
			// pidfd_open: the pidfd counts only if the start time still
			// matches the one libcontainer recorded.
			if initAlive(st.InitProcessPid, st.InitProcessStartTime) {
				c.pidfd = fd
			} else {
				unix.Close(fd)
			}
		case errors.Is(err, unix.ESRCH):
		default:
			return nil, fmt.Errorf("load %s: pidfd_open %d: %w", id, st.InitProcessPid, err)
		}
	}
	r.log.Info("container adopted", "id", id, "pid", c.pid, "alive", c.pidfd >= 0)
	return c, nil
}

func initAlive(pid int, startTime uint64) bool {
	st, err := system.Stat(pid)
	if err != nil {
		return false
	}
	return st.StartTime == startTime && st.State != system.Zombie && st.State != system.Dead
}

// List returns the ids of the containers present in the state root.
func (r *Runtime) List(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	ents, err := os.ReadDir(r.root)
	if err != nil {
		return nil, fmt.Errorf("list containers in %s: %w", r.root, err)
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Remove removes what is left of a container whose init is dead, or that was
// created only half way: its cgroups and its state dir. It is idempotent and
// refuses (ErrRunning) while init is alive. The cgroup of a container without
// saved state is looked for under the Runtime's cgroup parent.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return fmt.Errorf("remove %q: invalid id: %w", id, ErrInvalidSpec)
	}
	stateDir := filepath.Join(r.root, id)
	lc, err := libcontainer.Load(r.root, id)
	if err == nil {
		st, err := lc.State()
		if err != nil {
			return fmt.Errorf("remove %s: state: %w", id, err)
		}
		if initAlive(st.InitProcessPid, st.InitProcessStartTime) {
			return fmt.Errorf("remove %s: init %d: %w", id, st.InitProcessPid, ErrRunning)
		}
		if status, err := lc.Status(); err == nil && status == libcontainer.Paused {
			if err := lc.Resume(); err != nil {
				return fmt.Errorf("remove %s: thaw: %w", id, err)
			}
		}
		if err := killShared(ctx, lc); err != nil {
			return fmt.Errorf("remove %s: %w", id, err)
		}
		if err := lc.Destroy(); err != nil {
			return fmt.Errorf("remove %s: %w", id, err)
		}
		if dirs, _ := fromLabels(st.Config.Labels); len(dirs) > 0 {
			if err := removeV1Groups(dirs); err != nil {
				return fmt.Errorf("remove %s: %w", id, err)
			}
		}
		r.log.Info("container removed", "id", id)
		return nil
	}
	if !errors.Is(err, libcontainer.ErrNotExist) && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: load: %w", id, err)
	}
	// No saved state: a create cut short. Its cgroup, if any, is where
	// Start would have put it.
	cm, err := manager.New(&cgroups.Cgroup{Path: r.cgroupParent + "/" + id, Resources: &cgroups.Resources{}})
	if err != nil {
		return fmt.Errorf("remove %s: cgroup manager: %w", id, err)
	}
	if cm.Exists() {
		pids, err := cm.GetAllPids()
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: cgroup pids: %w", id, err)
		}
		if len(pids) > 0 {
			return fmt.Errorf("remove %s: cgroup still holds %d process(es) %v: %w", id, len(pids), pids, ErrRunning)
		}
	}
	if err := cm.Destroy(); err != nil {
		return fmt.Errorf("remove %s: cgroup: %w", id, err)
	}
	// And the sandbox's own v1 groups, where this layout has them.
	if layout, err := r.probe(ctx); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	} else if plan, err := planCgroups(layout, Limits{}, r.cgroupParent, id); err == nil {
		pids, err := v1GroupPids(plan.dirs())
		if err != nil {
			return fmt.Errorf("remove %s: cgroup v1 pids: %w", id, err)
		}
		if len(pids) > 0 {
			return fmt.Errorf("remove %s: cgroup v1 groups still hold %d process(es) %v: %w", id, len(pids), pids, ErrRunning)
		}
		if err := removeV1Groups(plan.dirs()); err != nil {
			return fmt.Errorf("remove %s: %w", id, err)
		}
	}
	if err := os.RemoveAll(stateDir); err != nil {
		return fmt.Errorf("remove %s: state dir: %w", id, err)
	}
	r.log.Info("container leftovers removed", "id", id)
	return nil
}
