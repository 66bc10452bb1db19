package binder

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Node helpers: each proxied service lives in a small process of its own.
//
// The driver sends a death notice for a node only when the process that
// owns it dies, and a process cannot call the context manager it owns, so
// nodes that the profile's manager (workcelld) owned itself could never
// tell work apps that a host service died. Instead, for each host service
// the policy allows and the host has, a helper process (the daemon
// re-executing itself) opens both devices as a client, runs a Proxy for
// that one service (the same policy checks, no extra hop: the helper is the
// proxy), registers the service's node with the profile's manager, which
// answers lookups with it, and exits when the host service dies: the
// driver then delivers BR_DEAD_BINDER to every work app linked to the
// node. The next lookup starts a new helper.
//
// Exports run the same way round the other way: when a work app registers
// a work service the policy exports, a helper looks it up in the
// profile's context, registers a node standing for it in the host's
// service manager, checks every host call against the export, and exits
// when the work service dies or the profile stops, so that the host's
// manager forgets the name.
//
// The helper gets its HelperSpec as JSON on stdin, writes its audit records
// as JSON lines on stdout and its log on stderr, and exits when stdin
// closes (its daemon went away).

// Modes of a node helper.
const (
	HelperImport = "import" // a host service, for the profile's apps
	HelperExport = "export" // a work service, for the host's processes
)

// ExitHelperAbsent is a node helper's exit code when the service it was to
// serve is not there.
const ExitHelperAbsent = 3

// HelperSpec is what a node helper serves.
type HelperSpec struct {
	Mode         string        `json:"mode"`
	Release      Release       `json:"release"`
	HostDevice   string        `json:"host_device"`
	WorkDevice   string        `json:"work_device"`
	Profile      string        `json:"profile"`
	AuditAllowed bool          `json:"audit_allowed,omitempty"`
	Service      ServicePolicy `json:"service"` // HelperImport
	Export       ExportPolicy  `json:"export"`  // HelperExport
	// MaxObjects bounds the objects the helper's proxy stands for
	// (Limits.ProxiedObjects); 0: DefaultLimits.
	MaxObjects int `json:"max_objects,omitempty"`
	// Sandbox, when set, is what the helper drops to before it opens the
	// devices (helpersandbox_linux.go), which must then be open to its
	// uid or gid (NewNodeHelpers sees to it).
	Sandbox *HelperSandbox `json:"sandbox,omitempty"`
}

var errStdin = errors.New("stdin closed")

// RunNodeHelper is the node helper process: it reads its spec from stdin,
// serves, and returns the process's exit code: 0 when the service died or
// stdin closed, ExitHelperAbsent when the service is not there, 1 on an
// error (reported on stderr).
func RunNodeHelper(stdin io.Reader, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var spec HelperSpec
	rest := stdin
	if os.Getenv(helperStageEnv) == stageServe {
		// Executed by the first stage, sandboxed: the spec, with the open
		// devices, is in the environment.
		if err := json.Unmarshal([]byte(os.Getenv(helperSpecEnv)), &spec); err != nil || spec.Sandbox == nil {
			log.Error("binder node helper: read the sandboxed stage's spec", "err", err)
			return 1
		}
		os.Unsetenv(helperSpecEnv)
		os.Unsetenv(helperStageEnv)
	} else {
		dec := json.NewDecoder(stdin)
		if err := dec.Decode(&spec); err != nil {
			log.Error("binder node helper: read spec", "err", err)
			return 1
		}
		if spec.Sandbox != nil {
			err := enterSandbox(spec) // returns only when it failed
			log.Error("binder node helper: enter the sandbox", "err", err)
			return 1
		}
		rest = io.MultiReader(dec.Buffered(), stdin)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	go func() {
		io.Copy(io.Discard, rest)
		cancel(errStdin)
	}()
	code, err := runNodeHelper(ctx, cancel, spec, stdout, log)
	if err != nil {
		log.Error("binder node helper", "mode", spec.Mode, "err", err)
	}
	return code
}

func runNodeHelper(ctx context.Context, cancel context.CancelCauseFunc, spec HelperSpec, stdout io.Writer, log *slog.Logger) (int, error) {
	if !spec.Release.valid() {
		return 1, fmt.Errorf("release %d", spec.Release)
	}
	host, err := Open(ctx, spec.HostDevice, spec.Release, WithMaxThreads(8), WithLogger(log))
	if err != nil {
		return 1, err
	}
	defer host.Close()
	work, err := Open(ctx, spec.WorkDevice, spec.Release, WithMaxThreads(15), WithLogger(log))
	if err != nil {
		return 1, err
	}
	defer work.Close()
	if spec.Sandbox != nil {
		if err := lockDown(); err != nil {
			return 1, err
		}
	}
	for _, c := range []*Conn{host, work} {
		go func() {
			if err := c.Serve(ctx); err != nil && ctx.Err() == nil {
				cancel(fmt.Errorf("serve: %w", err))
			}
		}()
	}
	died := errors.New("service died")
	limits := DefaultLimits
	if spec.MaxObjects > 0 {
		limits.ProxiedObjects = spec.MaxObjects
	}
	opts := []ProxyOption{WithProfile(spec.Profile), WithAudit(NewAuditLog(stdout), spec.AuditAllowed),
		WithProxyLogger(log), WithServiceDeath(func(string) { cancel(died) }), WithProxyLimits(limits)}
	// The proxy's "host" is where the service lives, its "work" where the
	// helper's node is registered.
	from, to, name, regName, pol := host, work, spec.Service.Name, spec.Service.Name, spec.Service
	switch spec.Mode {
	case HelperImport:
	case HelperExport:
		from, to, name, regName, pol = work, host, spec.Export.Name, spec.Export.hostName(), spec.Export.servicePolicy()
		opts = append(opts, func(o *proxyOptions) error { o.export = true; return nil })
	default:
		return 1, fmt.Errorf("mode %q", spec.Mode)
	}
	px, err := NewProxy(from, to, ProxyPolicy{Services: []ServicePolicy{pol}}, opts...)
	if err != nil {
		return 1, err
	}
	defer px.Close()
	root, ok := px.Resolve(ctx, name)
	if !ok {
		return ExitHelperAbsent, nil
	}
	if err := AddService(ctx, to, regName, root); err != nil {
		return 1, err
	}
	<-ctx.Done()
	if cause := context.Cause(ctx); cause != died && cause != errStdin {
		return 1, cause
	}
	return 0, nil
}

// lockDown is the sandboxed stage's last step before it reads a parcel:
// no core dumps or ptrace by its uid's other processes, and the seccomp
// filter on every thread. It checks that the first stage left no root.
func lockDown() error {
	if uid, euid := unix.Getuid(), unix.Geteuid(); uid == 0 || euid == 0 {
		return fmt.Errorf("binder: node helper: sandboxed stage runs as uid %d/%d", uid, euid)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("binder: node helper: clear dumpable: %w", err)
	}
	// Changing the uid cleared the parent-death signal workcelld set.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("binder: node helper: set the parent-death signal: %w", err)
	}
	return installSeccomp()
}

// NodeHelpers is the Resolver of a profile's ServiceManager that runs its
// proxied services in node helpers (see above), and the watcher that starts
// an export's helper when a work app registers an exported service.
type NodeHelpers struct {
	spec    HelperSpec // the fields every helper shares
	policy  ProxyPolicy
	command func() *exec.Cmd
	audit   *AuditLog
	log     *slog.Logger
	sandbox *HelperSandbox

	exportMu sync.Mutex // serialises replacing an export's helper
	mu       sync.Mutex
	closed   bool
	imports  map[string]*helperProc
	exports  map[string]*helperProc
	all      map[*helperProc]bool
}

type helperProc struct {
	name       string
	pid        int32
	cmd        *exec.Cmd
	stdin      *os.File
	regOnce    sync.Once
	registered chan struct{}
	exited     chan struct{}
	code       int
}

// HelperAwait bounds how long a lookup waits for a helper to register.
var HelperAwait = 10 * time.Second

// NewNodeHelpers returns the helpers of a profile's context on workDevice
// with the host's context on hostDevice: command returns a fresh command
// that runs RunNodeHelper (such as the daemon re-executing itself); audit
// records of the helpers go to audit (nil: none).
func NewNodeHelpers(rel Release, hostDevice, workDevice, profile string, policy ProxyPolicy, command func() *exec.Cmd,
	audit *AuditLog, auditAllowed bool, log *slog.Logger, opts ...NodeHelpersOption) (*NodeHelpers, error) {
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h := &NodeHelpers{
		spec: HelperSpec{Release: rel, HostDevice: hostDevice, WorkDevice: workDevice, Profile: profile,
			AuditAllowed: auditAllowed && audit != nil},
		policy: policy, command: command, audit: audit, log: log,
		imports: map[string]*helperProc{}, exports: map[string]*helperProc{}, all: map[*helperProc]bool{},
	}
	for _, o := range opts {
		if err := o(h); err != nil {
			return nil, err
		}
	}
	if h.sandbox != nil {
		h.spec.Sandbox = h.sandbox
		var err error
		if h.spec.HostDevice, err = helperDevice(*h.sandbox, "host", hostDevice); err != nil {
			return nil, err
		}
		if h.spec.WorkDevice, err = helperDevice(*h.sandbox, "work", workDevice); err != nil {
			return nil, err
		}
		note, err := setupHelperCgroup(h.sandbox)
		if err != nil {
			return nil, err
		}
		if note != "" {
			log.Warn("binder: node helpers run with fewer limits", "profile", profile, "reason", note)
		}
	}
	return h, nil
}

// NodeHelpersOption configures NewNodeHelpers.
type NodeHelpersOption func(*NodeHelpers) error

// WithHelperLimits bounds the objects each helper's proxy stands for
// (l.ProxiedObjects; default DefaultLimits).
func WithHelperLimits(l Limits) NodeHelpersOption {
	return func(h *NodeHelpers) error {
		if err := l.Validate(); err != nil {
			return err
		}
		h.spec.MaxObjects = l.ProxiedObjects
		return nil
	}
}

// WithHelperSandbox runs every helper in s (helpersandbox_linux.go); its
// cgroup is made now. Default: helpers run as their parent does, which
// only tests should.
func WithHelperSandbox(s HelperSandbox) NodeHelpersOption {
	return func(h *NodeHelpers) error {
		if err := s.Validate(); err != nil {
			return err
		}
		h.sandbox = &s
		return nil
	}
}

// Names lists the host services the policy allows.
func (h *NodeHelpers) Names() []string {
	names := make([]string, len(h.policy.Services))
	for i, s := range h.policy.Services {
		names[i] = s.Name
	}
	slices.Sort(names)
	return names
}

// Resolve is never asked: the manager calls Await.
func (h *NodeHelpers) Resolve(ctx context.Context, name string) (*Node, bool) { return nil, false }

// Await starts the helper of an allowed host service unless one runs, and
// waits until it registered (true) or found no such service (false).
func (h *NodeHelpers) Await(ctx context.Context, name string) bool {
	pol := h.policy.service(name)
	if pol == nil {
		return false
	}
	h.mu.Lock()
	p := h.imports[name]
	if p != nil {
		select {
		case <-p.exited:
			p = nil
		default:
		}
	}
	if p == nil {
		if h.closed {
			h.mu.Unlock()
			return false
		}
		spec := h.spec
		spec.Mode, spec.Service = HelperImport, *pol
		var err error
		if p, err = h.start(name, spec); err != nil {
			h.mu.Unlock()
			h.log.Warn("binder: cannot start a node helper", "service", name, "err", err)
			return false
		}
		h.imports[name] = p
	}
	h.mu.Unlock()
	t := time.NewTimer(HelperAwait)
	defer t.Stop()
	select {
	case <-p.registered:
		return true
	case <-p.exited:
		return false
	case <-ctx.Done():
	case <-t.C:
		h.log.Warn("binder: node helper did not register in time", "service", name, "pid", p.pid)
	}
	return false
}

// Registrant says whether pid is the helper of the host service name.
func (h *NodeHelpers) Registrant(name string, pid int32) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.imports[name]
	return p != nil && p.pid == pid && !h.closed
}

// Registered marks the helper pid of name registered.
func (h *NodeHelpers) Registered(name string, pid int32) {
	h.mu.Lock()
	p := h.imports[name]
	h.mu.Unlock()
	if p != nil && p.pid == pid {
		p.regOnce.Do(func() { close(p.registered) })
	}
}

// ServiceAdded starts the helper of an exported work service (replacing
// one that served an earlier registration of the name).
func (h *NodeHelpers) ServiceAdded(name string) {
	exp := h.policy.export(name)
	if exp == nil {
		return
	}
	spec := h.spec
	spec.Mode, spec.Export = HelperExport, *exp
	go func() {
		h.exportMu.Lock()
		defer h.exportMu.Unlock()
		h.mu.Lock()
		old := h.exports[name]
		h.mu.Unlock()
		if old != nil {
			old.kill()
			<-old.exited
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.closed {
			return
		}
		p, err := h.start(name, spec)
		if err != nil {
			h.log.Warn("binder: cannot start the helper of an export", "service", name, "err", err)
			return
		}
		h.exports[name] = p
	}()
}

// Exports lists the exported work services whose helper runs now (their
// nodes are registered in the host's service manager, or about to be).
func (h *NodeHelpers) Exports() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var names []string
	for name, p := range h.exports {
		select {
		case <-p.exited:
		default:
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// Close stops every helper and waits for them: work apps linked to a
// proxied host service get its death notice, and the host's service
// manager forgets the exports.
func (h *NodeHelpers) Close() error {
	h.exportMu.Lock()
	h.mu.Lock()
	h.closed = true
	procs := make([]*helperProc, 0, len(h.all))
	for p := range h.all {
		procs = append(procs, p)
	}
	h.mu.Unlock()
	h.exportMu.Unlock()
	for _, p := range procs {
		p.kill()
	}
	for _, p := range procs {
		<-p.exited
	}
	return nil
}

// start runs a helper for spec; h.mu is held.
func (h *NodeHelpers) joinCgroup(pid int) error {
	if h.sandbox == nil {
		return nil
	}
	return joinCgroup(h.sandbox.Cgroup, pid)
}

func (h *NodeHelpers) start(name string, spec HelperSpec) (*helperProc, error) {
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := h.command()
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		for _, f := range []*os.File{inR, inW, outR, outW} {
			f.Close()
		}
		return nil, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if h.sandbox != nil {
		cmd.Env = append(cmd.Env, helperStageEnv+"="+stageOpen)
	}
	// Start from a goroutine of its own: the parent-death signal follows
	// the starting OS thread, and the caller may be a binder looper, whose
	// locked thread ends with it.
	started := make(chan error, 1)
	go func() { started <- cmd.Start() }()
	err = <-started
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, err
	}
	p := &helperProc{name: name, pid: int32(cmd.Process.Pid), cmd: cmd, stdin: inW,
		registered: make(chan struct{}), exited: make(chan struct{})}
	h.all[p] = true
	// Into the cgroup before the spec: until it has the spec, the helper
	// neither opens a device nor reads a parcel.
	if err := h.joinCgroup(cmd.Process.Pid); err != nil {
		h.log.Warn("binder: node helper not started", "service", name, "err", err)
		inW.Close() // the helper exits without a spec, and is reaped below
	} else if _, err := inW.Write(append(raw, '\n')); err != nil {
		h.log.Warn("binder: write a node helper's spec", "service", name, "err", err)
	}
	var readers sync.WaitGroup
	readers.Go(func() { h.readAudit(outR) })
	readers.Go(func() {
		// A helper parses hostile parcels: what it says is bounded in
		// length and rate before it reaches workcelld's log.
		var said refusalLog
		sc := bufio.NewScanner(errR)
		sc.Buffer(make([]byte, 4096), 4096)
		sc.Split(boundedLines)
		for n := 0; sc.Scan(); n++ {
			ok, held := n < 20, 0 // the first lines say why a helper failed
			if !ok {
				ok, held = said.allow("said", time.Now())
			}
			if ok {
				h.log.Warn("binder node helper", "mode", spec.Mode, "service", name, "pid", p.pid, "said", sc.Text(), "lines_not_logged", held)
			}
		}
		io.Copy(io.Discard, errR)
		errR.Close()
	})
	go func() {
		err := cmd.Wait()
		readers.Wait()
		inW.Close()
		p.code = cmd.ProcessState.ExitCode()
		if err != nil && p.code != ExitHelperAbsent && p.code != -1 {
			h.log.Warn("binder node helper failed", "mode", spec.Mode, "service", name, "pid", p.pid, "err", err)
		}
		h.mu.Lock()
		delete(h.all, p)
		h.mu.Unlock()
		close(p.exited)
	}()
	return p, nil
}

// readAudit copies a helper's audit records into the profile's log.
func (h *NodeHelpers) readAudit(r *os.File) {
	defer r.Close()
	dec := json.NewDecoder(r)
	for {
		var rec AuditRecord
		if err := dec.Decode(&rec); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				h.log.Warn("binder: bad audit record from a node helper", "err", err)
				io.Copy(io.Discard, r)
			}
			return
		}
		if h.audit != nil {
			if err := h.audit.Write(rec); err != nil {
				h.log.Warn("binder: write an audit record", "err", err)
			}
		}
	}
}

func (p *helperProc) kill() {
	p.stdin.Close()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
}
