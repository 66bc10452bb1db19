package binder

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// A Resolver answers a lookup of a name that no app of the context
// registered, with a node of the service manager's own connection. (The
// driver refuses calls from a process to the context manager it owns, so
// a node of another connection of the same process could never be handed
// to the manager.)
type Resolver interface {
	Resolve(ctx context.Context, name string) (*Node, bool)
	// Names lists the names Resolve may answer; apps cannot register them.
	Names() []string
}

// A RegisteringResolver has the nodes of its names live in processes of
// their own (NodeHelpers): on a lookup it makes the process for the name
// register its node with the manager, which then answers with that
// registration like with any other; when the process dies, the driver
// tells every holder of the node, and the manager forgets it.
type RegisteringResolver interface {
	Resolver
	// Await makes the name's process register, unless it did, and reports
	// whether it has.
	Await(ctx context.Context, name string) bool
	// Registrant says whether the process pid may register name, which is
	// one of Names.
	Registrant(name string, pid int32) bool
	// Registered tells that pid's registration of name is in place.
	Registered(name string, pid int32)
}

// A RegistrationWatcher hears of every service an app of the context
// registers (for exports); ServiceAdded must not block.
type RegistrationWatcher interface {
	ServiceAdded(name string)
}

// ServiceManager serves the service manager protocol of a release as the
// context manager of a connection: a registry of the services that the
// context's apps add, which stay in the context, and a Resolver for the
// other names.
type ServiceManager struct {
	conn     *Conn
	rel      Release
	codes    ServiceManagerCodes
	resolver Resolver
	log      *slog.Logger
	limits   Limits
	refusals refusalLog

	mu       sync.Mutex
	services map[string]smService
	// links are the apps' binders the manager watches for death, one
	// notification per handle however many names it has.
	links map[uint32]*smLink
}

type smLink struct {
	unlink func(context.Context) error // nil while being set up
}

type smService struct {
	obj          Object // a handle of the manager's connection, or one of its nodes
	dumpPriority int32
}

// ServiceManagerOption configures NewServiceManager.
type ServiceManagerOption func(*ServiceManager)

// WithResolver answers lookups of names not registered in the context
// (default: they are not found).
func WithResolver(r Resolver) ServiceManagerOption {
	return func(sm *ServiceManager) { sm.resolver = r }
}

// WithServiceManagerLimits bounds the services and death links the
// context's apps can make the manager hold (default DefaultLimits; only
// the Services and DeathLinks fields count here).
func WithServiceManagerLimits(l Limits) ServiceManagerOption {
	return func(sm *ServiceManager) { sm.limits = l }
}

// WithServiceManagerLogger sets where the manager reports refused requests
// (default: nowhere).
func WithServiceManagerLogger(l *slog.Logger) ServiceManagerOption {
	return func(sm *ServiceManager) { sm.log = l }
}

// NewServiceManager returns a manager for the context of c, speaking c's
// release. Start makes it the context manager.
func NewServiceManager(c *Conn, opts ...ServiceManagerOption) *ServiceManager {
	sm := &ServiceManager{
		conn: c, rel: c.Release(), codes: c.Release().ServiceManager(),
		log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		limits:   DefaultLimits,
		services: map[string]smService{},
		links:    map[uint32]*smLink{},
	}
	for _, o := range opts {
		o(sm)
	}
	return sm
}

// Start makes the manager the context manager of its connection; the
// connection must then Serve. Like AOSP's servicemanager it takes no fds:
// the driver fails a call to it that carries any (fd objects or fd
// arrays) before they reach this process.
func (sm *ServiceManager) Start(ctx context.Context) (*Node, error) {
	return sm.conn.becomeContextManager(ctx, sm, 0)
}

// AddLocal registers a node of the manager's own connection under name,
// for services of this process.
func (sm *ServiceManager) AddLocal(name string, n *Node) error {
	if !validServiceName(name) {
		return fmt.Errorf("binder: add service %q: invalid name", name)
	}
	if n.conn != sm.conn {
		return fmt.Errorf("binder: add service %q: node of another connection", name)
	}
	sm.mu.Lock()
	defer sm.mu.Unlock()
	sm.services[name] = smService{obj: n.object(), dumpPriority: DumpPriorityDefault}
	return nil
}

// Services lists the names registered in the context, sorted.
func (sm *ServiceManager) Services() []string {
	sm.mu.Lock()
	all := make([]string, 0, len(sm.services))
	for n := range sm.services {
		all = append(all, n)
	}
	sm.mu.Unlock()
	names := all[:0]
	for _, n := range all {
		if !sm.reserved(n) { // a proxy helper's registration
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// Handle serves one service manager call. The references the connection
// took on binders the call carried are dropped again unless a registration
// keeps them: apps cannot make the manager hold binders it never uses.
func (sm *ServiceManager) Handle(ctx context.Context, t *Transaction) (*Parcel, error) {
	defer sm.dropUnkept(t.Data)
	return sm.handle(ctx, t)
}

func (sm *ServiceManager) dropUnkept(p *Parcel) {
	for _, o := range p.Objects() {
		if o.Type != TypeHandle && o.Type != TypeWeakHandle {
			continue
		}
		sm.conn.dropHandle(o.Handle()) // unless a registration keeps it
	}
}

func (sm *ServiceManager) handle(ctx context.Context, t *Transaction) (*Parcel, error) {
	switch t.Code {
	case InterfaceTransaction:
		r := NewParcel(sm.rel)
		r.WriteString16(ServiceManagerDescriptor)
		return r, nil
	case 0: // the code of every method a release lacks
		return nil, StatusUnknownTransaction
	}
	if err := t.Data.EnforceInterface(ServiceManagerDescriptor); err != nil {
		sm.log.Debug("service manager call refused", "code", t.Code, "pid", t.SenderPID, "err", err)
		return nil, sm.fail()
	}
	c := sm.codes
	switch t.Code {
	case c.GetService, c.CheckService:
		name, err := t.Data.ReadString16()
		if err != nil {
			return nil, err
		}
		obj, ok := sm.lookup(ctx, name)
		r := NewParcel(sm.rel)
		if sm.rel == Android10 {
			// service_manager.c answers a missing name with a bare 0, which
			// readStrongBinder reads as null.
			if !ok {
				r.WriteInt32(0)
				return r, nil
			}
			writeObject(r, obj)
			return r, nil
		}
		r.WriteNoException()
		if !ok {
			r.WriteNullBinder()
		} else {
			writeObject(r, obj)
		}
		return r, nil
	case c.AddService:
		return sm.add(ctx, t)
	case c.ListServices:
		return sm.list(t)
	case c.IsDeclared: // 0 on Android 10, where codes are >= 1
		if _, err := t.Data.ReadString16(); err != nil {
			return nil, err
		}
		r := NewParcel(sm.rel)
		r.WriteNoException()
		r.WriteBool(false) // no VINTF manifest in a profile
		return r, nil
	case c.GetDeclaredInstances, c.GetUpdatableNames, c.GetServiceDebugInfo:
		r := NewParcel(sm.rel)
		r.WriteNoException()
		r.WriteInt32(0) // an empty list
		return r, nil
	case c.UpdatableViaApex:
		r := NewParcel(sm.rel)
		r.WriteNoException()
		r.WriteNullString16()
		return r, nil
	case c.GetConnectionInfo:
		r := NewParcel(sm.rel)
		r.WriteNoException()
		r.WriteInt32(0) // null parcelable
		return r, nil
	case c.RegisterForNotifications, c.UnregisterForNotifications, c.RegisterClientCallback, c.TryUnregisterService:
		return sm.exception(ExUnsupportedOperation, "not supported by workcell's service manager")
	}
	return nil, StatusUnknownTransaction
}

// fail is the answer to a refused call: service_manager.c returns -1 on
// Android 10; AIDL stubs answer a bad token with BAD_TYPE.
func (sm *ServiceManager) fail() error {
	if sm.rel == Android10 {
		return StatusPermissionDenied
	}
	return StatusBadType
}

func (sm *ServiceManager) exception(code int32, msg string) (*Parcel, error) {
	if sm.rel == Android10 {
		return nil, sm.fail()
	}
	r := NewParcel(sm.rel)
	r.WriteException(&Exception{Code: code, Message: msg})
	return r, nil
}

func writeObject(p *Parcel, o Object) {
	if o.Type == TypeBinder {
		p.WriteLocalBinder(o.Binder, o.Cookie)
		return
	}
	st := o.Stability
	if st == StabilityUndeclared {
		st = StabilitySystem
	}
	p.WriteHandleStability(o.Handle(), st)
}

func (sm *ServiceManager) lookup(ctx context.Context, name string) (Object, bool) {
	sm.mu.Lock()
	s, ok := sm.services[name]
	sm.mu.Unlock()
	if ok {
		return s.obj, true
	}
	if sm.resolver == nil {
		return Object{}, false
	}
	if rr, ok := sm.resolver.(RegisteringResolver); ok {
		if !rr.Await(ctx, name) {
			return Object{}, false
		}
		sm.mu.Lock()
		s, ok := sm.services[name]
		sm.mu.Unlock()
		return s.obj, ok
	}
	n, ok := sm.resolver.Resolve(ctx, name)
	if !ok {
		return Object{}, false
	}
	if n.conn != sm.conn {
		sm.log.Warn("service manager: resolver answered with a node of another connection", "name", name)
		return Object{}, false
	}
	return n.object(), true
}

func (sm *ServiceManager) reserved(name string) bool {
	return sm.resolver != nil && slices.Contains(sm.resolver.Names(), name)
}

func (sm *ServiceManager) add(ctx context.Context, t *Transaction) (*Parcel, error) {
	name, err := t.Data.ReadString16()
	if err != nil {
		return nil, err
	}
	obj, err := t.Data.ReadBinder()
	if err != nil {
		return nil, err
	}
	if _, err := t.Data.ReadInt32(); err != nil { // allowIsolated: no isolated apps here
		return nil, err
	}
	prio := DumpPriorityDefault
	if t.Data.Remaining() >= 4 { // older callers omit it
		if prio, err = t.Data.ReadInt32(); err != nil {
			return nil, err
		}
	}
	switch {
	case !validServiceName(name):
		return sm.exception(ExIllegalArgument, "invalid service name")
	case obj.IsNull():
		return sm.exception(ExIllegalArgument, "null service")
	case sm.reserved(name) && !sm.registrant(name, obj, t.SenderPID):
		if ok, held := sm.refusals.allow("reserved", time.Now()); ok {
			sm.log.Info("service manager refused a name reserved for the host", "name", name, "pid", t.SenderPID, "refusals_not_logged", held)
		}
		return sm.exception(ExSecurity, "name reserved for a host service")
	}
	reserved := sm.reserved(name)
	sm.mu.Lock()
	old, replacing := sm.services[name]
	var link *smLink
	var refused *LimitError
	switch {
	case !reserved && !replacing && sm.appServicesLocked() >= sm.limits.Services:
		refused = &LimitError{What: "registered services", Limit: sm.limits.Services, Knob: KnobServices}
	case obj.Type == TypeHandle && sm.links[obj.Handle()] == nil:
		if !reserved && len(sm.links) >= sm.limits.DeathLinks {
			refused = &LimitError{What: "death links", Limit: sm.limits.DeathLinks, Knob: KnobDeathLinks}
			break
		}
		// Held in place while the link is made, so that concurrent adds
		// count it.
		link = &smLink{}
		sm.links[obj.Handle()] = link
		sm.conn.keepHandle(obj.Handle())
	}
	sm.mu.Unlock()
	if refused != nil {
		sm.refuse(refused, name, t.SenderPID)
		return sm.exception(ExIllegalState, "workcell: "+refused.Error())
	}
	if link != nil {
		h := obj.Handle()
		unlink, err := sm.conn.LinkToDeath(ctx, h, func() { sm.died(h) })
		if err != nil {
			sm.mu.Lock()
			delete(sm.links, h)
			sm.mu.Unlock()
			sm.conn.unkeepHandle(h)
			return nil, err
		}
		sm.mu.Lock()
		link.unlink = unlink
		sm.mu.Unlock()
	}
	sm.mu.Lock()
	sm.services[name] = smService{obj: obj, dumpPriority: prio}
	sm.mu.Unlock()
	if replacing {
		sm.forget(old.obj)
	}
	if rr, ok := sm.resolver.(RegisteringResolver); ok && sm.reserved(name) {
		rr.Registered(name, t.SenderPID)
	} else if w, ok := sm.resolver.(RegistrationWatcher); ok {
		w.ServiceAdded(name)
	}
	r := NewParcel(sm.rel)
	if sm.rel == Android10 {
		r.WriteInt32(0)
	} else {
		r.WriteNoException()
	}
	return r, nil
}

// appServicesLocked counts the names apps registered (not the node
// helpers' registrations of reserved names).
func (sm *ServiceManager) appServicesLocked() int {
	n := 0
	for name := range sm.services {
		if !sm.reserved(name) {
			n++
		}
	}
	return n
}

// refuse logs a refusal past a limit, at most a line a second.
func (sm *ServiceManager) refuse(e *LimitError, name string, pid int32) {
	if ok, held := sm.refusals.allow(e.Knob, time.Now()); ok {
		sm.log.Warn("service manager refused a registration past a limit", "limit", e.Knob, "max", e.Limit,
			"name", name, "pid", pid, "refusals_not_logged", held)
	}
}

// forget drops the death link and the reference on a replaced
// registration's handle once no name uses it any more.
func (sm *ServiceManager) forget(o Object) {
	if o.Type != TypeHandle {
		return
	}
	h := o.Handle()
	sm.mu.Lock()
	for _, s := range sm.services {
		if s.obj.Type == TypeHandle && s.obj.Handle() == h {
			sm.mu.Unlock()
			return
		}
	}
	link := sm.links[h]
	delete(sm.links, h)
	sm.mu.Unlock()
	if link == nil {
		return
	}
	if link.unlink != nil {
		if err := link.unlink(context.Background()); err != nil {
			sm.log.Warn("service manager cannot unlink a replaced service", "handle", h, "err", err)
		}
	}
	sm.conn.unkeepHandle(h)
	sm.conn.dropHandle(h) // sent with the next command
}

// registrant says whether a reserved name's registration comes from the
// process its RegisteringResolver runs for it.
func (sm *ServiceManager) registrant(name string, obj Object, pid int32) bool {
	rr, ok := sm.resolver.(RegisteringResolver)
	return ok && obj.Type == TypeHandle && rr.Registrant(name, pid)
}

// died forgets the services of a dead handle, as servicemanager does.
func (sm *ServiceManager) died(h uint32) {
	sm.mu.Lock()
	for name, s := range sm.services {
		if s.obj.Type == TypeHandle && s.obj.Handle() == h {
			delete(sm.services, name)
		}
	}
	_, linked := sm.links[h]
	delete(sm.links, h) // the driver cleared the notification with the death
	sm.mu.Unlock()
	if linked {
		sm.conn.unkeepHandle(h)
	}
	if err := sm.conn.ReleaseHandle(context.Background(), h); err != nil {
		sm.log.Warn("service manager cannot release a dead handle", "handle", h, "err", err)
	}
}

func (sm *ServiceManager) names(prio int32) []string {
	sm.mu.Lock()
	var names []string
	for n, s := range sm.services {
		if s.dumpPriority&prio != 0 {
			names = append(names, n)
		}
	}
	sm.mu.Unlock()
	if sm.resolver != nil && prio&DumpPriorityDefault != 0 {
		for _, n := range sm.resolver.Names() {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	return names
}

func (sm *ServiceManager) list(t *Transaction) (*Parcel, error) {
	r := NewParcel(sm.rel)
	if sm.rel == Android10 {
		// One name per call, by index, until the manager fails.
		idx, err := t.Data.ReadInt32()
		if err != nil {
			return nil, err
		}
		prio := DumpPriorityAll
		if t.Data.Remaining() >= 4 {
			if prio, err = t.Data.ReadInt32(); err != nil {
				return nil, err
			}
		}
		names := sm.names(prio)
		if idx < 0 || int(idx) >= len(names) {
			return nil, StatusPermissionDenied
		}
		r.WriteString16(names[idx])
		return r, nil
	}
	prio, err := t.Data.ReadInt32()
	if err != nil {
		return nil, err
	}
	names := sm.names(prio)
	r.WriteNoException()
	r.WriteInt32(int32(len(names)))
	for _, n := range names {
		r.WriteString16(n)
	}
	return r, nil
}
