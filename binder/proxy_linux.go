package binder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy lets a profile's apps use the host services its policy allows.
// It is a client of the host's context (a Conn on the host's device, which
// must be serving: callbacks from the host and death notices arrive on its
// loopers) and the Resolver of the profile's ServiceManager, whose
// connection serves the proxy's nodes: one for each allowed service the
// host has, and one for every binder such a service hands out.
//
// Every call on those nodes is checked against the policy (interface token
// and code; default deny), its binder objects are wrapped (a binder from
// work reaches the host as a node of the proxy that forwards calls back,
// and the other way round), fds pass only where allowed, and a denied call
// gets a SecurityException reply and an audit record.
//
// When a host service dies, its nodes answer DEAD_OBJECT and the next
// lookup asks the host again. Run in the context manager's own process,
// work apps' death recipients do not fire: the driver sends death notices
// only when the process owning a node goes away, and a process cannot hand
// nodes of a second connection to its own context manager either. This is
// why workcelld runs each proxied service's Proxy in a node helper process
// of its own (NodeHelpers, nodehelper_linux.go), which exits when the
// host service dies.
type Proxy struct {
	host   *Conn
	work   *Conn
	rel    Release
	policy ProxyPolicy
	o      proxyOptions

	mu       sync.Mutex
	closed   bool
	entries  map[string]*proxied
	wrappers map[uint64]workRef // nodes of the host connection -> the work binder they stand for
	hostOf   map[uint64]hostRef // nodes of the work connection -> the host binder they stand for
}

type proxyOptions struct {
	profile      string
	audit        *AuditLog
	auditAllowed bool
	log          *slog.Logger
	// export runs the proxy the other way round (exports, nodehelper_linux.go):
	// its "host" is the profile's context and its "work" the host's, which
	// only changes the directions audit records name.
	export     bool
	onDeath    func(name string)
	maxObjects int
}

// ProxyOption configures NewProxy.
type ProxyOption func(*proxyOptions) error

// WithProfile names the profile in audit records (default: empty).
func WithProfile(name string) ProxyOption {
	return func(o *proxyOptions) error { o.profile = name; return nil }
}

// WithAudit writes a record of every denied call to a, and of every
// allowed one too when allowed is set (default: no records).
func WithAudit(a *AuditLog, allowed bool) ProxyOption {
	return func(o *proxyOptions) error {
		if a == nil {
			return errors.New("binder: WithAudit: nil audit log")
		}
		o.audit, o.auditAllowed = a, allowed
		return nil
	}
}

// WithProxyLimits bounds the objects the proxy stands for (the
// ProxiedObjects field; default DefaultLimits): past it, a call that would
// make a new one is denied with a SecurityException naming the limit.
func WithProxyLimits(l Limits) ProxyOption {
	return func(o *proxyOptions) error {
		if err := l.Validate(); err != nil {
			return err
		}
		o.maxObjects = l.ProxiedObjects
		return nil
	}
}

// WithServiceDeath calls fn (on a looper of the host connection) when a
// proxied host service dies.
func WithServiceDeath(fn func(name string)) ProxyOption {
	return func(o *proxyOptions) error { o.onDeath = fn; return nil }
}

// directions are the audit directions of a call on a proxied service and
// of a call back on a binder passed to it.
func (o *proxyOptions) directions() (call, callback string) {
	if o.export {
		return DirectionHostToWork, DirectionWorkToHost
	}
	return DirectionWorkToHost, DirectionHostToWork
}

// WithProxyLogger sets where the proxy reports what it cannot answer as a
// call's reply (default: nowhere).
func WithProxyLogger(l *slog.Logger) ProxyOption {
	return func(o *proxyOptions) error { o.log = l; return nil }
}

// NewProxy returns a proxy from the host context of host to the profile's
// context, whose service manager serves work; both speak one release.
func NewProxy(host, work *Conn, policy ProxyPolicy, opts ...ProxyOption) (*Proxy, error) {
	if host.Release() != work.Release() {
		return nil, fmt.Errorf("binder: proxy between %s and %s: releases differ", host.Release(), work.Release())
	}
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	o := proxyOptions{log: slog.New(slog.NewTextHandler(io.Discard, nil)), maxObjects: DefaultLimits.ProxiedObjects}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	return &Proxy{
		host: host, work: work, rel: host.Release(), policy: policy, o: o,
		entries: map[string]*proxied{}, wrappers: map[uint64]workRef{}, hostOf: map[uint64]hostRef{},
	}, nil
}

// Names lists the services the policy allows.
func (p *Proxy) Names() []string {
	names := make([]string, len(p.policy.Services))
	for i, s := range p.policy.Services {
		names[i] = s.Name
	}
	slices.Sort(names)
	return names
}

// Resolve returns the node standing for a host service the policy allows
// and the host has, asking the host's service manager on first use and
// again after the service died.
func (p *Proxy) Resolve(ctx context.Context, name string) (*Node, bool) {
	pol := p.policy.service(name)
	if pol == nil {
		return nil, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, false
	}
	if e := p.entries[name]; e != nil && !e.dead.Load() {
		return e.root, true
	}
	h, ok, err := CheckService(ctx, p.host, name)
	if err != nil {
		p.o.log.Warn("binder proxy cannot ask the host's service manager", "service", name, "err", err)
		return nil, false
	}
	if !ok {
		return nil, false
	}
	if err := p.roomLocked(); err != nil {
		p.o.log.Warn("binder proxy refused a lookup past a limit", "service", name, "limit", KnobProxiedObjects)
		if err := p.host.ReleaseHandle(ctx, h); err != nil {
			p.o.log.Warn("binder proxy cannot release a host service", "service", name, "err", err)
		}
		return nil, false
	}
	e := &proxied{p: p, pol: pol, host: h, hostObjs: map[uint32]*Node{}, workObjs: map[uint32]*Node{}}
	e.root = p.work.NewNode(&toHost{e: e, handle: h, root: true})
	p.hostOf[e.root.ID()] = hostRef{e: e, handle: h}
	p.host.keepHandle(h)
	if _, err := p.host.LinkToDeath(ctx, h, func() { p.hostDied(e) }); err != nil {
		p.o.log.Warn("binder proxy cannot watch a host service", "service", name, "err", err)
		e.dead.Store(true)
		return nil, false
	}
	p.entries[name] = e
	return e.root, true
}

// roomLocked says whether the proxy may stand for one more object; p.mu
// is held. Nodes stay registered until the connection closes, so this
// bounds them over the proxy's life.
func (p *Proxy) roomLocked() error {
	if len(p.hostOf)+len(p.wrappers) >= p.o.maxObjects {
		return errObjectRefused{(&LimitError{What: "proxied objects", Limit: p.o.maxObjects, Knob: KnobProxiedObjects}).Error()}
	}
	return nil
}

// hostDied runs on a looper of the host connection.
func (p *Proxy) hostDied(e *proxied) {
	e.dead.Store(true)
	p.mu.Lock()
	if p.entries[e.pol.Name] == e {
		delete(p.entries, e.pol.Name)
	}
	p.mu.Unlock()
	p.o.log.Info("binder proxy: host service died", "service", e.pol.Name)
	if p.o.onDeath != nil {
		p.o.onDeath(e.pol.Name)
	}
}

// Close stops proxying: every proxied service answers DEAD_OBJECT from now
// on. The connections are the caller's.
func (p *Proxy) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, e := range p.entries {
		e.dead.Store(true)
	}
	p.entries = map[string]*proxied{}
	return nil
}

func (p *Proxy) audit(rec AuditRecord, verdict, reason string) {
	if p.o.audit == nil || (verdict == VerdictAllow && !p.o.auditAllowed) {
		return
	}
	rec.Time, rec.Profile, rec.Verdict, rec.Reason = time.Now().UTC(), p.o.profile, verdict, reason
	if err := p.o.audit.Write(rec); err != nil {
		p.o.log.Warn("binder proxy cannot write an audit record", "err", err)
	}
}

// proxied is one host service as seen by the profile.
type proxied struct {
	p    *Proxy
	pol  *ServicePolicy
	root *Node  // of the work connection, standing for the service
	host uint32 // the service, a handle of the host connection
	dead atomic.Bool

	mu       sync.Mutex
	hostObjs map[uint32]*Node // host handle -> node of the work connection
	workObjs map[uint32]*Node // work handle -> node of the host connection
}

// workRef is a work binder a node of the host connection stands for;
// hostRef a host binder a node of the work connection stands for.
type (
	workRef struct {
		e      *proxied
		handle uint32
	}
	hostRef struct {
		e      *proxied
		handle uint32
	}
)

// toHost serves a node of a work connection: calls go to a host object.
type toHost struct {
	e      *proxied
	handle uint32
	root   bool
}

func (h *toHost) Handle(ctx context.Context, t *Transaction) (*Parcel, error) {
	return h.e.callHost(ctx, t, h.handle, h.root)
}

// toWork serves a node of the host connection: calls go to a work binder.
type toWork struct {
	e      *proxied
	handle uint32
}

func (h *toWork) Handle(ctx context.Context, t *Transaction) (*Parcel, error) {
	return h.e.callWork(ctx, t, h.handle)
}

// deny answers a refused call: the fds it brought are closed, the decision
// recorded, and the caller gets a SecurityException.
func (e *proxied) deny(t *Transaction, rec AuditRecord, reason string) (*Parcel, error) {
	e.discard(t)
	e.p.audit(rec, VerdictDeny, reason)
	return SecurityReply(e.p.rel, "workcell: "+reason), nil
}

// discard lets go of what a call that is not forwarded brought: its fds,
// and the references its connection took on handles it carried that the
// proxy does not stand for.
func (e *proxied) discard(t *Transaction) {
	t.Data.CloseFDs()
	if t.Node != nil && t.Node.conn != nil {
		e.p.dropUnmapped(t.Node.conn, t.Data)
	}
}

// dropUnmapped releases the references c took on the handles in parcel
// that no node of the proxy stands for (those it keeps, see keepHandle):
// a refused parcel's binders must not stay held, however many a caller
// sends.
func (p *Proxy) dropUnmapped(c *Conn, parcel *Parcel) {
	for _, o := range parcel.Objects() {
		if o.Type == TypeHandle || o.Type == TypeWeakHandle {
			c.dropHandle(o.Handle())
		}
	}
}

// forwardErr turns a failed forward into the status the caller sees.
func forwardErr(err error) error {
	if s, ok := asStatus(err); ok {
		return s
	}
	switch {
	case errors.Is(err, ErrDeadObject), errors.Is(err, ErrClosed):
		return StatusDeadObject
	case errors.Is(err, ErrFailedTransaction):
		return StatusFailedTransaction
	}
	return StatusUnknownError
}

func (e *proxied) callHost(ctx context.Context, t *Transaction, target uint32, root bool) (*Parcel, error) {
	dir, _ := e.p.o.directions()
	rec := AuditRecord{Service: e.pol.Name, Direction: dir, Code: t.Code, SenderPID: t.SenderPID}
	if e.dead.Load() {
		e.discard(t)
		return nil, StatusDeadObject
	}
	if t.Code == InterfaceTransaction && root {
		r := NewParcel(e.p.rel)
		r.WriteString16(e.pol.Descriptor)
		return r, nil
	}
	if t.Code != InterfaceTransaction && (t.Code < FirstCallTransaction || t.Code > LastCallTransaction) {
		return e.deny(t, rec, fmt.Sprintf("meta transaction %#x", t.Code))
	}
	if t.Code != InterfaceTransaction {
		tok, err := t.Data.ReadInterfaceToken()
		if err != nil {
			return e.deny(t, rec, "no readable interface token")
		}
		rec.Descriptor = tok.Descriptor
		if e.p.rel.hasHeaderWord() && tok.Header != HeaderSystem && tok.Header != HeaderVendor {
			return e.deny(t, rec, fmt.Sprintf("interface header %#x", uint32(tok.Header)))
		}
		if ok, reason := e.pol.decide(tok.Descriptor, t.Code, root); !ok {
			return e.deny(t, rec, reason)
		}
	}
	return e.forward(ctx, t, rec, e.p.host, target, e.workToHost, e.hostToWork)
}

func (e *proxied) callWork(ctx context.Context, t *Transaction, target uint32) (*Parcel, error) {
	_, dir := e.p.o.directions()
	rec := AuditRecord{Service: e.pol.Name, Direction: dir, Code: t.Code, SenderPID: t.SenderPID}
	if e.dead.Load() {
		e.discard(t)
		return nil, StatusDeadObject
	}
	if tok, err := t.Data.ReadInterfaceToken(); err == nil {
		rec.Descriptor = tok.Descriptor
	}
	if t.Code != InterfaceTransaction && (t.Code < FirstCallTransaction || t.Code > LastCallTransaction) {
		return e.deny(t, rec, fmt.Sprintf("meta transaction %#x", t.Code))
	}
	return e.forward(ctx, t, rec, e.p.work, target, e.hostToWork, e.workToHost)
}

// forward sends an allowed call on to target on conn, its objects
// rewritten by out for the other side, and rewrites the reply by back on
// its way home; an object either way refuses is a denial with an audit
// record.
func (e *proxied) forward(ctx context.Context, t *Transaction, rec AuditRecord, conn *Conn, target uint32, out, back func(Object) (flatObject, error)) (*Parcel, error) {
	data, err := rewriteObjects(t.Data, out)
	if err != nil {
		if reason, ok := refusal(err); ok {
			return e.deny(t, rec, reason)
		}
		e.discard(t)
		return nil, err
	}
	e.p.audit(rec, VerdictAllow, "")
	reply, err := conn.Transact(ctx, target, t.Code, data, t.Flags&FlagOneWay)
	if err != nil {
		return nil, forwardErr(err)
	}
	if t.OneWay() {
		return nil, nil
	}
	r, err := rewriteObjects(reply, back)
	if err != nil {
		reply.CloseFDs()
		e.p.dropUnmapped(conn, reply)
		reason, _ := refusal(err)
		e.p.audit(rec, VerdictDeny, "reply: "+reason)
		return SecurityReply(e.p.rel, "workcell: reply: "+reason), nil
	}
	return r, nil
}

// wrapperFlags are the flags of a node the proxy hands out: it takes fds
// (the handler decides), with libbinder's default priority.
const wrapperFlags = FlagAcceptsFDs | schedFlags

func (e *proxied) checkObject(o Object) error {
	switch o.Type {
	case TypeFD:
		if !e.pol.AllowFDs {
			return errObjectRefused{"file descriptors not allowed"}
		}
	case TypeWeakBinder, TypeWeakHandle:
		return errObjectRefused{"weak references cannot be proxied"}
	}
	return nil
}

// workToHost rewrites an object that arrived from work for the host
// connection.
func (e *proxied) workToHost(o Object) (flatObject, error) {
	if err := e.checkObject(o); err != nil {
		return flatObject{}, err
	}
	switch {
	case o.Type == TypeFD, o.IsNull():
		return flatObject{Type: o.Type, Flags: o.Flags, Binder: o.Binder, Cookie: o.Cookie}, nil
	case o.Type == TypeBinder: // a node of the work connection comes back: unwrap it
		e.p.mu.Lock()
		ref, ok := e.p.hostOf[o.Cookie]
		e.p.mu.Unlock()
		if !ok || ref.e != e {
			return flatObject{}, errObjectRefused{"binder of workcelld that is not this service's"}
		}
		return flatObject{Type: TypeHandle, Flags: o.Flags, Binder: uint64(ref.handle)}, nil
	}
	// A work binder: the host gets a node of the proxy that calls it back.
	h := o.Handle()
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.workObjs[h]
	if n == nil {
		e.p.mu.Lock()
		defer e.p.mu.Unlock()
		if err := e.p.roomLocked(); err != nil {
			return flatObject{}, err
		}
		n = e.p.host.NewNode(&toWork{e: e, handle: h})
		e.workObjs[h] = n
		e.p.wrappers[n.ID()] = workRef{e: e, handle: h}
		e.p.work.keepHandle(h)
	}
	return flatObject{Type: TypeBinder, Flags: wrapperFlags, Binder: n.ID(), Cookie: n.ID()}, nil
}

// hostToWork rewrites an object that arrived from the host for the work
// connection.
func (e *proxied) hostToWork(o Object) (flatObject, error) {
	if err := e.checkObject(o); err != nil {
		return flatObject{}, err
	}
	switch {
	case o.Type == TypeFD, o.IsNull():
		return flatObject{Type: o.Type, Flags: o.Flags, Binder: o.Binder, Cookie: o.Cookie}, nil
	case o.Type == TypeBinder: // a node of the host connection comes back: unwrap it
		e.p.mu.Lock()
		ref, ok := e.p.wrappers[o.Cookie]
		e.p.mu.Unlock()
		if !ok || ref.e != e {
			return flatObject{}, errObjectRefused{"work binder that was not passed to this service"}
		}
		return flatObject{Type: TypeHandle, Flags: o.Flags, Binder: uint64(ref.handle)}, nil
	}
	h := o.Handle()
	if h == e.host {
		return flatObject{Type: TypeBinder, Flags: wrapperFlags, Binder: e.root.ID(), Cookie: e.root.ID()}, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.hostObjs[h]
	if n == nil {
		e.p.mu.Lock()
		defer e.p.mu.Unlock()
		if err := e.p.roomLocked(); err != nil {
			return flatObject{}, err
		}
		n = e.p.work.NewNode(&toHost{e: e, handle: h})
		e.hostObjs[h] = n
		e.p.hostOf[n.ID()] = hostRef{e: e, handle: h}
		e.p.host.keepHandle(h)
	}
	return flatObject{Type: TypeBinder, Flags: wrapperFlags, Binder: n.ID(), Cookie: n.ID()}, nil
}
