package binder

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// ProxyPolicy says which host services a profile's apps may use through
// Proxy, and how. Everything it does not name is denied.
type ProxyPolicy struct {
	Services []ServicePolicy
	// Exports are the work services host processes may use (exports.go).
	Exports []ExportPolicy
}

// ServicePolicy allows one host service, by its name in the host's service
// manager.
type ServicePolicy struct {
	Name string
	// Descriptor is the interface the service implements; a call to the
	// service must carry it in its interface token.
	Descriptor string
	// Codes are the transaction codes allowed on Descriptor.
	Codes []CodeRange
	// AllowFDs lets file descriptors travel in calls, callbacks and replies
	// of this service; without it a call carrying one is denied.
	AllowFDs bool
	// Objects are the interfaces of binders the service hands out (in
	// replies, or as arguments of callbacks) that work may call, with their
	// codes. Calls on a handed-out binder of any other interface are denied.
	Objects []InterfacePolicy
}

// InterfacePolicy allows codes on an interface.
type InterfacePolicy struct {
	Descriptor string
	Codes      []CodeRange
}

// CodeRange is an inclusive range of transaction codes; Code(c) is one code.
type CodeRange struct{ First, Last uint32 }

// Code is the range of the single code c.
func Code(c uint32) CodeRange { return CodeRange{c, c} }

func (r CodeRange) String() string {
	if r.First == r.Last {
		return fmt.Sprint(r.First)
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

func codesAllow(rs []CodeRange, code uint32) bool {
	for _, r := range rs {
		if r.First <= code && code <= r.Last {
			return true
		}
	}
	return false
}

// Validate checks that names are unique and non-empty, descriptors are set
// and codes lie in the user range (FIRST_CALL..LAST_CALL): the meta codes
// (dump, shell command, sysprops) are never forwarded.
func (pp ProxyPolicy) Validate() error {
	seen := map[string]bool{}
	for i, s := range pp.Services {
		if !validServiceName(s.Name) {
			return fmt.Errorf("binder: policy service %d: invalid name %q", i, s.Name)
		}
		if seen[s.Name] {
			return fmt.Errorf("binder: policy service %q listed twice", s.Name)
		}
		seen[s.Name] = true
		ifaces := append([]InterfacePolicy{{s.Descriptor, s.Codes}}, s.Objects...)
		for _, ip := range ifaces {
			if ip.Descriptor == "" {
				return fmt.Errorf("binder: policy service %q: empty interface descriptor", s.Name)
			}
			for _, r := range ip.Codes {
				if r.First > r.Last || r.First < FirstCallTransaction || r.Last > LastCallTransaction {
					return fmt.Errorf("binder: policy service %q, interface %s: code range %s outside %d-%d",
						s.Name, ip.Descriptor, r, FirstCallTransaction, LastCallTransaction)
				}
			}
		}
	}
	return pp.validateExports()
}

// service returns the policy of a service name, or nil.
func (pp *ProxyPolicy) service(name string) *ServicePolicy {
	for i := range pp.Services {
		if pp.Services[i].Name == name {
			return &pp.Services[i]
		}
	}
	return nil
}

// decide says whether a call from work with descriptor and code may reach
// the host: on the service itself (root) the descriptor must be the
// service's; on a binder the service handed out, one of Objects'.
func (s *ServicePolicy) decide(descriptor string, code uint32, root bool) (bool, string) {
	if code < FirstCallTransaction || code > LastCallTransaction {
		return false, fmt.Sprintf("meta transaction %#x", code)
	}
	if root {
		if descriptor != s.Descriptor {
			return false, fmt.Sprintf("interface %q is not the service's %q", descriptor, s.Descriptor)
		}
		if !codesAllow(s.Codes, code) {
			return false, "code not allowed"
		}
		return true, ""
	}
	for _, ip := range s.Objects {
		if ip.Descriptor == descriptor {
			if !codesAllow(ip.Codes, code) {
				return false, "code not allowed"
			}
			return true, ""
		}
	}
	return false, fmt.Sprintf("interface %q not allowed on objects of the service", descriptor)
}

// validServiceName follows AOSP's servicemanager (isValidServiceName):
// 1 to 127 characters of [a-zA-Z0-9_.\-/].
func validServiceName(name string) bool {
	if len(name) == 0 || len(name) > 127 {
		return false
	}
	for _, c := range []byte(name) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == '-', c == '.', c == '/':
		default:
			return false
		}
	}
	return true
}

// Verdicts of audit records.
const (
	VerdictAllow = "allow"
	VerdictDeny  = "deny"
)

// Directions of audit records.
const (
	DirectionWorkToHost = "work-to-host" // a work app calls a host service or an object it handed out
	DirectionHostToWork = "host-to-work" // the host calls back into a binder work passed out
)

// AuditRecord is one decision of the proxy.
type AuditRecord struct {
	Time       time.Time `json:"time"`
	Profile    string    `json:"profile"`
	Service    string    `json:"service"`
	Direction  string    `json:"direction"`
	Descriptor string    `json:"descriptor"`
	Code       uint32    `json:"code"`
	Verdict    string    `json:"verdict"`
	Reason     string    `json:"reason,omitempty"`
	SenderPID  int32     `json:"sender_pid"`
}

// AuditLog writes audit records as JSON lines; it is safe for concurrent use.
type AuditLog struct {
	mu  sync.Mutex
	enc *json.Encoder
}

// NewAuditLog writes records to w, one JSON object a line.
func NewAuditLog(w io.Writer) *AuditLog { return &AuditLog{enc: json.NewEncoder(w)} }

// Write appends one record.
func (a *AuditLog) Write(r AuditRecord) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.enc.Encode(r); err != nil {
		return fmt.Errorf("binder: write audit record: %w", err)
	}
	return nil
}

// errObjectRefused is returned by a rewrite function to refuse an object;
// its text is the audit reason.
type errObjectRefused struct{ reason string }

func (e errObjectRefused) Error() string { return e.reason }

// rewriteObjects returns a copy of p in which fn has replaced every binder
// object. Only flat objects (binders, handles, fds) are given to fn. Each fd
// of an fd array is given to fn as a TypeFD object, so an fd array is
// allowed or refused like fds, and the fds fn returns are stored back in
// the array's parent buffer. Buffer objects are copied with their contents
// and layout: the driver layer sends them again as scatter-gather buffers.
// The bytes around the objects, such as the stability words after binders,
// are kept as they are. The fds of the result are owned by it (closed once
// sent).
func rewriteObjects(p *Parcel, fn func(o Object) (flatObject, error)) (*Parcel, error) {
	out := &Parcel{rel: p.rel, data: append([]byte(nil), p.data...)}
	if len(p.offsets) > 0 {
		out.offsets = append([]uint64(nil), p.offsets...)
	}
	if p.bufs != nil {
		out.bufs = make(map[int][]byte, len(p.bufs))
		for i, b := range p.bufs {
			out.bufs[i] = append(make([]byte, 0, len(b)), b...)
		}
	}
	for i, off := range p.offsets {
		typ := ne.Uint32(p.data[off:])
		switch typ {
		case TypeBinder, TypeHandle, TypeFD, TypeWeakBinder, TypeWeakHandle:
		case TypePtr:
			if _, ok := out.bufs[i]; !ok {
				return nil, errObjectRefused{fmt.Sprintf("buffer object %d cannot be proxied without its contents", i)}
			}
			continue
		case TypeFDA:
			if err := rewriteFDArray(out, i, fn); err != nil {
				return nil, err
			}
			continue
		default:
			return nil, errObjectRefused{fmt.Sprintf("object type %#x cannot be proxied", typ)}
		}
		b := p.data[off : off+sizeFlatObject]
		o := Object{Type: typ, Flags: ne.Uint32(b[4:]), Binder: ne.Uint64(b[8:]), Cookie: ne.Uint64(b[16:])}
		fo, err := fn(o)
		if err != nil {
			return nil, err
		}
		w := out.data[off : off+sizeFlatObject]
		ne.PutUint32(w[0:], fo.Type)
		ne.PutUint32(w[4:], fo.Flags)
		ne.PutUint64(w[8:], fo.Binder)
		ne.PutUint64(w[16:], fo.Cookie)
		if fo.Type == TypeFD {
			out.owned = append(out.owned, int(int32(uint32(fo.Binder))))
		}
	}
	// The fds went into out, which closes them once sent.
	p.recvFDs = nil
	return out, nil
}

// rewriteFDArray passes each fd of fd array i of out to fn as a TypeFD
// object and stores the fd it returns in the array's parent buffer.
func rewriteFDArray(out *Parcel, i int, fn func(o Object) (flatObject, error)) error {
	fa := out.fdArrayObjectAt(i)
	buf, ok := out.bufs[int(fa.Parent)]
	if !ok {
		return errObjectRefused{fmt.Sprintf("fd array %d without its parent buffer", i)}
	}
	for k := uint64(0); k < fa.NumFDs; k++ { // ParseParcel bounded NumFDs by the parent
		at := fa.ParentOffset + 4*k
		fo, err := fn(Object{Type: TypeFD, Binder: uint64(ne.Uint32(buf[at:]))})
		if err != nil {
			return err
		}
		if fo.Type != TypeFD {
			return fmt.Errorf("binder: fd %d of fd array %d rewritten as object type %#x", k, i, fo.Type)
		}
		ne.PutUint32(buf[at:], uint32(fo.Binder))
		out.owned = append(out.owned, int(int32(uint32(fo.Binder))))
	}
	return nil
}

// receivedFDs lists the fds in a received parcel, plain and in fd arrays:
// they belong to this process.
func receivedFDs(p *Parcel) []int {
	var fds []int
	for _, o := range p.Objects() {
		if o.Type == TypeFD {
			fds = append(fds, o.FD())
		}
	}
	return append(fds, p.fdArrayFDs()...)
}

// refusal extracts the audit reason of a refused object.
func refusal(err error) (string, bool) {
	var r errObjectRefused
	if errors.As(err, &r) {
		return r.reason, true
	}
	return "", false
}
